//go:build ignore

// Command eventloop is a measuring stick, not part of ddlguard: the
// cheapest byte relay Go can do with an epoll event loop, to tell how much
// of the CPU gap between ddlguard's relay and PgBouncer's the goroutine-per-
// direction design costs (docs/perf/README.md). It does not parse the
// protocol, and it handles a full socket by polling for it; do not put it
// in front of anything.
//
//	[OWN=1] [BUSY=MS] go run docs/perf/eventloop/main.go LISTEN UPSTREAM [LOOPS]
//
// OWN=1 takes the sockets out of Go's poller (a duplicate descriptor, the
// net.Conn closed); BUSY=MS waits in a raw epoll_wait of at most MS
// milliseconds instead of through Go's poller. docs/perf/README.md has what
// each measured.
package main

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"unsafe"
)

// pair is one relayed connection: the two sockets, each the other's peer.
type pair struct {
	conns [2]net.Conn // kept referenced: they own the descriptors
	fds   [2]int
}

// loop owns an epoll set (level-triggered) and the pairs registered in it.
type loop struct {
	epfd  int
	mu    sync.Mutex
	byFD  map[int]*pair
	buf   []byte
	evs   []syscall.EpollEvent
	ready *os.File // the epoll descriptor, waited on through Go's poller
}

func newLoop() *loop {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		panic(err)
	}
	syscall.SetNonblock(epfd, true)
	return &loop{epfd: epfd, byFD: map[int]*pair{}, buf: make([]byte, 32<<10),
		evs: make([]syscall.EpollEvent, 128), ready: newReady(epfd)}
}

func (l *loop) add(p *pair) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, fd := range p.fds {
		l.byFD[fd] = p
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(fd)}
		if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
			panic(err)
		}
	}
}

func (l *loop) drop(p *pair) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, fd := range p.fds {
		syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, fd, nil)
		delete(l.byFD, fd)
	}
	p.conns[0].Close()
	p.conns[1].Close()
}

func rawRead(fd int, b []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	return int(n), e
}

func rawWrite(fd int, b []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	return int(n), e
}

// writeAll writes b to fd, polling while the socket is full.
func writeAll(fd int, b []byte) bool {
	for len(b) > 0 {
		n, e := rawWrite(fd, b)
		switch e {
		case 0:
			b = b[n:]
		case syscall.EAGAIN:
			pfd := [1]struct {
				fd             int32
				events, revent int16
			}{{fd: int32(fd), events: 0x4}} // POLLOUT
			syscall.Syscall(syscall.SYS_POLL, uintptr(unsafe.Pointer(&pfd[0])), 1, 1000)
		case syscall.EINTR:
		default:
			return false
		}
	}
	return true
}

// serve relays until the process ends: each readable socket is read once,
// what was read is written to its peer.
func (l *loop) serve() {
	if bw := os.Getenv("BUSY"); bw != "" {
		ms, _ := strconv.Atoi(bw)
		for {
			r, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_WAIT, uintptr(l.epfd),
				uintptr(unsafe.Pointer(&l.evs[0])), uintptr(len(l.evs)), uintptr(ms), 0, 0)
			n := int(r)
			if e != 0 || n <= 0 {
				continue
			}
			l.handle(n)
		}
	}
	rc, err := l.ready.SyscallConn()
	if err != nil {
		panic(err)
	}
	rc.Read(func(uintptr) bool {
		for {
			// epoll_wait with timeout 0 returns at once: issued raw, as
			// the socket calls are, so that it does not wake sysmon.
			r, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_WAIT, uintptr(l.epfd),
				uintptr(unsafe.Pointer(&l.evs[0])), uintptr(len(l.evs)), 0, 0, 0)
			if e == syscall.EINTR {
				continue
			}
			n := int(r)
			if e != 0 || n <= 0 {
				return false // wait for the epoll descriptor to become readable
			}
			l.handle(n)
		}
	})
}

func (l *loop) handle(n int) {
	for _, ev := range l.evs[:n] {
		fd := int(ev.Fd)
		l.mu.Lock()
		p := l.byFD[fd]
		l.mu.Unlock()
		if p == nil {
			continue
		}
		peer := p.fds[0]
		if fd == peer {
			peer = p.fds[1]
		}
		m, e := rawRead(fd, l.buf)
		if e == syscall.EAGAIN {
			continue
		}
		if e != 0 || m == 0 || !writeAll(peer, l.buf[:m]) {
			l.drop(p)
		}
	}
}

func fdOf(c net.Conn) int {
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		panic(err)
	}
	var fd int
	rc.Control(func(u uintptr) { fd = int(u) })
	if os.Getenv("OWN") != "" {
		nfd, err := syscall.Dup(fd)
		if err != nil {
			panic(err)
		}
		c.Close()
		return nfd
	}
	return fd
}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: eventloop LISTEN UPSTREAM [LOOPS]")
		os.Exit(2)
	}
	loops := runtime.GOMAXPROCS(0)
	if len(os.Args) > 3 {
		loops, _ = strconv.Atoi(os.Args[3])
	}
	ls := make([]*loop, loops)
	for i := range ls {
		ls[i] = newLoop()
		go ls[i].serve()
	}
	ln, err := net.Listen("tcp", os.Args[1])
	if err != nil {
		panic(err)
	}
	for i := 0; ; i++ {
		c, err := ln.Accept()
		if err != nil {
			panic(err)
		}
		u, err := net.Dial("tcp", os.Args[2])
		if err != nil {
			c.Close()
			continue
		}
		ls[i%loops].add(&pair{conns: [2]net.Conn{c, u}, fds: [2]int{fdOf(c), fdOf(u)}})
	}
}

// newReady is the epoll descriptor as a file Go's poller watches, or nil
// when the loop waits in epoll_wait itself (BUSY): then Go's poller must
// not watch it, or every event would wake the runtime too.
func newReady(epfd int) *os.File {
	if os.Getenv("BUSY") != "" {
		return nil
	}
	return os.NewFile(uintptr(epfd), "epoll")
}
