package proxy

import (
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// ownedSocket is a relayed socket taken out of Go's network poller and
// watched by an event loop instead (eventloop_linux.go). Go's poller keeps
// every socket it knows in its own epoll set, so a socket also watched by a
// loop would wake the runtime's poller thread for nothing on every message;
// measured, that alone cost more than the loop saves. own() therefore
// duplicates the descriptor, registers the duplicate with a loop, and
// closes the net.Conn (which removes it from Go's poller; the socket stays
// open through the duplicate).
//
// It is a net.Conn: Read and Write are read(2) and write(2) on the
// non-blocking descriptor, and when one would block, the goroutine waits
// until the loop reports the socket ready (edge-triggered, as Go's poller
// is) or a deadline passes. The descriptor is closed when Close has been
// called and no call is using it (refs), so a number is never reused under
// a call in flight. While a pump is relayed by the loop (pump is set), the
// loop reads and writes the socket itself without waiting (rnb, wnb).
type ownedSocket struct {
	fd            int
	loop          *eventLoop
	token, gen    int32 // its registration: slot and generation (eventloop_linux.go)
	local, remote net.Addr

	mu     sync.Mutex
	refs   int // calls using fd, plus one until Close
	closed bool
	// rready, wready: the loop saw the socket become readable (writable)
	// since a waiting call last looked.
	rready, wready bool
	rdl, wdl       time.Time
	rwake, wwake   chan struct{} // a waiting Read (Write) parks on these
	// pump is the pump the loop relays from this socket; nil while the
	// pump's goroutine reads it.
	pump *pump
	// outArmed: the registration asks for writability too. Only while a
	// Write waits: otherwise every acknowledged write would wake the loop.
	outArmed bool

	// rnb, wnb: the next Read (Write) returns errWouldBlock instead of
	// waiting. Set only by the loop, around its own calls.
	rnb, wnb bool
	// hup: the loop saw the peer close or reset (loop only). From then on
	// a short read does not mean the socket is drained: the end of the
	// stream is still to be read, and no new edge will announce it.
	hup bool
}

// own takes conn's socket out of Go's poller and hands it to l. On error
// conn is left as it was.
func own(conn net.Conn, l *eventLoop) (*ownedSocket, error) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("own socket: %T has no descriptor", conn)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("own socket: %w", err)
	}
	nfd := -1
	var derr error
	if err := rc.Control(func(fd uintptr) {
		r, _, e := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_DUPFD_CLOEXEC, 0)
		if e != 0 {
			derr = e
			return
		}
		nfd = int(r)
	}); err != nil {
		return nil, fmt.Errorf("own socket: %w", err)
	}
	if derr != nil {
		return nil, fmt.Errorf("own socket: dup: %w", derr)
	}
	s := &ownedSocket{fd: nfd, loop: l, local: conn.LocalAddr(), remote: conn.RemoteAddr(), refs: 1,
		rwake: make(chan struct{}, 1), wwake: make(chan struct{}, 1)}
	if err := l.register(s); err != nil {
		syscall.Close(nfd)
		return nil, err
	}
	conn.Close()
	return s, nil
}

// acquire marks a call using the descriptor; false once closed.
func (s *ownedSocket) acquire() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.refs++
	return true
}

func (s *ownedSocket) release() {
	s.mu.Lock()
	s.refs--
	last := s.refs == 0
	s.mu.Unlock()
	if last {
		syscall.Close(s.fd)
	}
}

func (s *ownedSocket) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if !s.acquire() {
		return 0, s.opError("read", net.ErrClosed)
	}
	defer s.release()
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(s.fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
		switch e {
		case 0:
			if n == 0 {
				return 0, io.EOF
			}
			return int(n), nil
		case syscall.EINTR:
		case syscall.EAGAIN:
			if s.rnb {
				return 0, errWouldBlock
			}
			if err := s.wait(&s.rready, &s.rdl, s.rwake); err != nil {
				return 0, s.opError("read", err)
			}
		default:
			return 0, s.opError("read", os.NewSyscallError("read", e))
		}
	}
}

func (s *ownedSocket) Write(p []byte) (int, error) {
	if !s.acquire() {
		return 0, s.opError("write", net.ErrClosed)
	}
	defer s.release()
	done := 0
	for done < len(p) {
		rest := p[done:]
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(s.fd), uintptr(unsafe.Pointer(unsafe.SliceData(rest))), uintptr(len(rest)))
		switch e {
		case 0:
			done += int(n)
		case syscall.EINTR:
		case syscall.EAGAIN:
			if s.wnb {
				return done, errWouldBlock
			}
			if err := s.waitWrite(); err != nil {
				return done, s.opError("write", err)
			}
		default:
			return done, s.opError("write", os.NewSyscallError("write", e))
		}
	}
	return done, nil
}

// wait parks until the loop reports the socket ready (*ready), the
// deadline passes or the socket is closed.
func (s *ownedSocket) wait(ready *bool, deadline *time.Time, wake chan struct{}) error {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		s.mu.Lock()
		closed, ok, dl := s.closed, *ready, *deadline
		*ready = false
		s.mu.Unlock()
		switch {
		case closed:
			return net.ErrClosed
		case ok:
			return nil
		case !dl.IsZero() && !time.Now().Before(dl):
			return os.ErrDeadlineExceeded
		}
		if dl.IsZero() {
			<-wake
			continue
		}
		if timer == nil {
			timer = time.NewTimer(time.Until(dl))
		} else {
			timer.Reset(time.Until(dl))
		}
		select {
		case <-wake:
		case <-timer.C:
		}
	}
}

// waitWrite asks the loop to report writability and waits for it.
func (s *ownedSocket) waitWrite() error {
	s.mu.Lock()
	if !s.outArmed && !s.closed {
		s.outArmed = true
		s.loop.watch(s, true)
	}
	s.mu.Unlock()
	return s.wait(&s.wready, &s.wdl, s.wwake)
}

// readable records that the socket became readable (hup: the peer closed
// or reset) and wakes a waiting Read; it returns the pump the loop relays
// from this socket instead, if any (loop only).
func (s *ownedSocket) readable(hup bool) *pump {
	if hup {
		s.hup = true
	}
	s.mu.Lock()
	p := s.pump
	if p == nil {
		s.rready = true
	}
	s.mu.Unlock()
	if p == nil {
		poke(s.rwake)
	}
	return p
}

// writable records that the socket has room again and wakes a waiting
// Write (loop only).
func (s *ownedSocket) writable() {
	s.mu.Lock()
	if s.outArmed && !s.closed {
		s.outArmed = false
		s.loop.watch(s, false)
	}
	s.wready = true
	s.mu.Unlock()
	poke(s.wwake)
}

// poke wakes whoever waits on ch, or the next one to wait.
func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Close ends the socket: waiting calls return net.ErrClosed, the loop
// stops watching it and hands back a pump it relays from it, and the
// descriptor is closed once no call uses it.
func (s *ownedSocket) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return s.opError("close", net.ErrClosed)
	}
	s.closed = true
	inLoop := s.pump != nil
	s.mu.Unlock()
	poke(s.rwake)
	poke(s.wwake)
	s.loop.unregister(s, inLoop)
	s.release()
	return nil
}

func (s *ownedSocket) LocalAddr() net.Addr  { return s.local }
func (s *ownedSocket) RemoteAddr() net.Addr { return s.remote }

func (s *ownedSocket) SetDeadline(t time.Time) error {
	s.SetReadDeadline(t)
	return s.SetWriteDeadline(t)
}

func (s *ownedSocket) SetReadDeadline(t time.Time) error  { return s.setDeadline(&s.rdl, s.rwake, t) }
func (s *ownedSocket) SetWriteDeadline(t time.Time) error { return s.setDeadline(&s.wdl, s.wwake, t) }

// setDeadline sets *dl and wakes a waiting call to look at it.
func (s *ownedSocket) setDeadline(dl *time.Time, wake chan struct{}, t time.Time) error {
	s.mu.Lock()
	*dl = t
	s.mu.Unlock()
	poke(wake)
	return nil
}

// SyscallConn gives access to the descriptor (clientwatch polls it).
func (s *ownedSocket) SyscallConn() (syscall.RawConn, error) { return ownedRawConn{s}, nil }

func (s *ownedSocket) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: s.local.Network(), Source: s.local, Addr: s.remote, Err: err}
}

// ownedRawConn is syscall.RawConn over an ownedSocket.
type ownedRawConn struct{ s *ownedSocket }

func (rc ownedRawConn) Control(f func(fd uintptr)) error {
	if !rc.s.acquire() {
		return net.ErrClosed
	}
	defer rc.s.release()
	f(uintptr(rc.s.fd))
	return nil
}

func (rc ownedRawConn) Read(f func(fd uintptr) bool) error {
	return rc.run(f, func() error { return rc.s.wait(&rc.s.rready, &rc.s.rdl, rc.s.rwake) })
}

func (rc ownedRawConn) Write(f func(fd uintptr) bool) error {
	return rc.run(f, rc.s.waitWrite)
}

// run calls f until it reports done, waiting between calls.
func (rc ownedRawConn) run(f func(fd uintptr) bool, wait func() error) error {
	if !rc.s.acquire() {
		return net.ErrClosed
	}
	defer rc.s.release()
	for !f(uintptr(rc.s.fd)) {
		if err := wait(); err != nil {
			return err
		}
	}
	return nil
}
