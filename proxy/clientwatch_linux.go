package proxy

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// peerClosed reports whether the peer of the socket has closed it or reset
// it (unread data does not hide a FIN: POLLRDHUP). ok is false when the
// socket cannot be asked any more: ddlguard itself has closed it (the
// connection is ending for another reason, such as its upstream going away).
func peerClosed(rc syscall.RawConn) (closed, ok bool) {
	err := rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
		n, err := unix.Poll(fds, 0)
		closed = err == nil && n > 0 && fds[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR) != 0
	})
	return closed, err == nil
}
