package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// rawIOConn is a socket whose Read and Write are read(2) and write(2)
// issued with syscall.RawSyscall on the non-blocking descriptor, waiting
// through Go's network poller (syscall.RawConn) when they would block, as
// net.Conn does. Everything else (deadlines, Close, addresses) is the
// wrapped net.Conn's.
//
// Why: net.Conn enters each read and write through the runtime's syscall
// path, and that path wakes the runtime's monitor thread (sysmon) whenever
// it sleeps, which it does whenever every P is idle: with one client,
// between every two messages. perf showed each relayed transaction paying
// for those wake-ups (futex, nanosleep, sched_yield and their context
// switches); docs/perf/README.md has the figures. A raw system call on a
// non-blocking socket returns at once, so it needs neither the syscall path
// nor a wake-up.
//
// What sysmon does still matters under load: it preempts goroutines that
// run for more than 10 ms and polls the network when every P stays busy.
// So at most once per sysmonKeepalive, process-wide, a call goes through
// net.Conn instead, and that wakes sysmon if it sleeps. The cost is one
// monotonic clock read per call.
//
// Reads and writes may run at the same time (TLS does); each direction has
// its own state.
type rawIOConn struct {
	net.Conn
	rd, wr rawIO
	// own, once set (before the relay starts), is the same socket taken
	// over by an event loop; every call goes to it (ownedsocket_linux.go).
	own *ownedSocket
}

// rawIO is the state of one direction: the buffer and the outcome of the
// current call, and the function given to syscall.RawConn (made once per
// connection, not per call).
type rawIO struct {
	rc    syscall.RawConn
	p     []byte
	n     int
	errno syscall.Errno
	fn    func(fd uintptr) bool
}

// sysmonKeepalive is how long the relay may go without entering the
// runtime's syscall path (see rawIOConn).
const sysmonKeepalive = 10 * time.Millisecond

var (
	rawIOEpoch = time.Now()
	// lastRuntimeIO is when a relay call last went through net.Conn, in
	// nanoseconds since rawIOEpoch.
	lastRuntimeIO atomic.Int64
)

// viaRuntime reports whether this call is the one that goes through
// net.Conn to keep sysmon awake.
func viaRuntime() bool {
	now := int64(time.Since(rawIOEpoch))
	last := lastRuntimeIO.Load()
	return now-last >= int64(sysmonKeepalive) && lastRuntimeIO.CompareAndSwap(last, now)
}

// withRawIO returns c with raw-syscall Read and Write when c is a TCP or
// Unix socket, else c itself.
func withRawIO(c net.Conn) net.Conn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return c
	}
	r := &rawIOConn{Conn: c}
	r.rd.rc, r.wr.rc = rc, rc
	r.rd.fn, r.wr.fn = r.rd.read, r.wr.write
	return r
}

func (s *rawIO) read(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(unsafe.SliceData(s.p))), uintptr(len(s.p)))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // wait for the poller
		case 0:
			s.n = int(n)
		default:
			s.errno = e
		}
		return true
	}
}

func (s *rawIO) write(fd uintptr) bool {
	for s.n < len(s.p) {
		rest := s.p[s.n:]
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(unsafe.SliceData(rest))), uintptr(len(rest)))
		switch e {
		case 0:
			s.n += int(n)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false // wait for the poller
		default:
			s.errno = e
			return true
		}
	}
	return true
}

func (c *rawIOConn) Read(p []byte) (int, error) {
	if c.own != nil {
		return c.own.Read(p)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if viaRuntime() {
		return c.Conn.Read(p)
	}
	n, err := c.call(&c.rd, "read", p)
	if err == nil && n == 0 {
		return 0, io.EOF
	}
	return n, err
}

func (c *rawIOConn) Write(p []byte) (int, error) {
	if c.own != nil {
		return c.own.Write(p)
	}
	if viaRuntime() {
		return c.Conn.Write(p)
	}
	return c.call(&c.wr, "write", p)
}

// call runs one Read or Write (op) over p through syscall.RawConn: s.fn
// does the system calls, RawConn does the waiting.
func (c *rawIOConn) call(s *rawIO, op string, p []byte) (int, error) {
	s.p, s.n, s.errno = p, 0, 0
	var err error
	if s == &c.rd {
		err = s.rc.Read(s.fn)
	} else {
		err = s.rc.Write(s.fn)
	}
	n, errno := s.n, s.errno
	s.p = nil
	switch {
	case err != nil:
		return n, c.opError(op, err)
	case errno != 0:
		return n, c.opError(op, os.NewSyscallError(op, errno))
	}
	return n, nil
}

// opError shapes err as net.Conn's Read and Write do: syscall.RawConn
// reports *net.OpError with Op "raw-read" or "raw-write"; the cause (a
// deadline, a closed connection) is kept, so errors.Is works as on net.Conn.
func (c *rawIOConn) opError(op string, err error) error {
	if oe, ok := errors.AsType[*net.OpError](err); ok {
		err = oe.Err
	}
	return &net.OpError{Op: op, Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
