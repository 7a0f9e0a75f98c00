package proxy

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"unsafe"
)

// The event loops relay the steady state of plain (non-TLS) connections
// without waking a goroutine per message.
//
// A pump (relay.go) that is idle at a read (its reader empty, its writer
// flushed) parks its goroutine and registers its socket with one of a few
// event loops, each an epoll set (level-triggered) served by one goroutine.
// When the socket is readable, the loop reads it once, relays the complete
// frames with the pump's own hook, and writes them to the peer with one
// write; it never waits. The pump goes back to its goroutine (the loop
// "hands it back") whenever a frame needs more than that:
//   - a frame whose hook could wait or decide something (loopPump.safe says
//     no: a statement that needs the guard's decision, a held batch, a
//     Terminate, a draining server);
//   - a frame larger than the read buffer, or one with an invalid length;
//   - a peer that does not take what is written (the socket is full);
//   - a read that fails or ends (the pump reads again and reports it);
//   - the connection being closed (closeBoth and closeUpstream kick the loop).
//
// Handing back leaves the reader and writer as they are (a frame not yet
// relayed is still unread), so the pump goroutine carries on exactly where
// the loop stopped. A pump's reader, writer and hook belong to the loop
// between registration and hand-back, and to the pump goroutine otherwise;
// the loop only ever works on one pump at a time, so hooks never run
// concurrently for one direction. The writer shared with other goroutines
// (the client's, under cwMu) is only taken with TryLock: a busy lock is a
// hand-back, not a wait.
//
// Why: with a goroutine per direction, every message parks one goroutine
// and wakes another and reads its socket once more to find it empty before
// waiting; docs/perf/README.md has the profile. The loop's own waiting goes
// through Go's poller on the epoll descriptor, and its socket calls are raw
// (rawio_linux.go), so nothing here enters the runtime's syscall path
// except one call per sysmonKeepalive.

// eventLoop is one epoll set and the pumps registered in it.
type eventLoop struct {
	epfd   int
	kickfd int      // an eventfd: written when a connection is kicked
	ready  *os.File // epfd, waited on through Go's poller
	evs    []syscall.EpollEvent

	mu     sync.Mutex
	pumps  map[int32]*pump // by the token in their epoll registration
	next   int32
	kicked []*clientConn
}

// kickToken is the epoll token of the loop's eventfd; pumps get the others.
const kickToken = 0

// loopPump is a pump's event-loop state.
type loopPump struct {
	loop    *eventLoop
	conn    *clientConn
	in, out *rawIOConn // the sockets the pump reads and writes
	// safe reports whether an inspected frame's hook may run in the loop:
	// it cannot wait, and it cannot stop the pump.
	safe func(typ byte, body []byte) bool
	// mayPark reports whether the pump may enter the loop now.
	mayPark func() bool
	resume  chan struct{}
	token   int32 // guarded by loop.mu
	// readFailed: the loop handed the pump back because its read failed;
	// the pump reads again (and ends) before it may park again.
	readFailed bool
}

var (
	eventLoopsOnce sync.Once
	eventLoopsList []*eventLoop
	eventLoopsErr  error
)

// eventLoops returns the process's event loops, one per P, starting them
// the first time.
func eventLoops() ([]*eventLoop, error) {
	eventLoopsOnce.Do(func() {
		n := runtime.GOMAXPROCS(0)
		if v, err := strconv.Atoi(os.Getenv("DDLGUARD_EXP_LOOPS")); err == nil && v > 0 {
			n = v
		}
		for range n {
			l, err := newEventLoop()
			if err != nil {
				eventLoopsErr = err
				return
			}
			eventLoopsList = append(eventLoopsList, l)
		}
		for _, l := range eventLoopsList {
			go l.serve()
		}
	})
	return eventLoopsList, eventLoopsErr
}

func newEventLoop() (*eventLoop, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("event loop: epoll_create1: %w", err)
	}
	const efdNonblock, efdCloexec = syscall.O_NONBLOCK, syscall.O_CLOEXEC
	kfd, _, e := syscall.Syscall(syscall.SYS_EVENTFD2, 0, efdNonblock|efdCloexec, 0)
	if e != 0 {
		syscall.Close(epfd)
		return nil, fmt.Errorf("event loop: eventfd: %w", e)
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: kickToken}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, int(kfd), &ev); err != nil {
		syscall.Close(epfd)
		syscall.Close(int(kfd))
		return nil, fmt.Errorf("event loop: epoll_ctl: %w", err)
	}
	if err := syscall.SetNonblock(epfd, true); err != nil {
		return nil, fmt.Errorf("event loop: %w", err)
	}
	return &eventLoop{epfd: epfd, kickfd: int(kfd), ready: os.NewFile(uintptr(epfd), "epoll"),
		evs: make([]syscall.EpollEvent, 128), pumps: make(map[int32]*pump)}, nil
}

// attachLoop lets p be relayed by an event loop while it is idle, when the
// server allows it and both sockets are plain.
func (c *clientConn) attachLoop(p *pump, inConn, outConn net.Conn, safe func(byte, []byte) bool, mayPark func() bool) {
	in, _ := inConn.(*rawIOConn)
	out, _ := outConn.(*rawIOConn)
	if c.srv.cfg.DisableEventLoop || in == nil || out == nil {
		return
	}
	loops, err := eventLoops()
	if err != nil || len(loops) == 0 {
		c.srv.loopErrOnce.Do(func() {
			c.srv.log.Warn("event loop unavailable: every connection is relayed by its own goroutines", "err", err)
		})
		return
	}
	l := loops[c.id%uint64(len(loops))]
	p.lp = &loopPump{loop: l, conn: c, in: in, out: out, safe: safe, mayPark: mayPark, resume: make(chan struct{}, 1)}
	c.loopMu.Lock()
	c.loopPumps = append(c.loopPumps, p)
	c.loop = l
	c.loopMu.Unlock()
}

// park hands the idle pump to its loop and waits until the loop hands it
// back. It reports false (and the pump reads as usual) when the pump may
// not enter the loop now.
func (p *pump) park() bool {
	lp := p.lp
	if lp.readFailed {
		lp.readFailed = false
		return false
	}
	if !lp.mayPark() || !lp.loop.register(p) {
		return false
	}
	<-lp.resume
	return true
}

// register adds p's socket to the loop's epoll set. It fails when the
// socket is closed (closing it removed it from the set, or will).
func (l *eventLoop) register(p *pump) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.next++
	if l.next <= kickToken {
		l.next = kickToken + 1
	}
	tok := l.next
	var err error
	cerr := p.lp.in.rd.rc.Control(func(fd uintptr) {
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: tok}
		err = syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
	})
	if cerr != nil || err != nil {
		return false
	}
	p.lp.token = tok
	l.pumps[tok] = p
	return true
}

// handBack removes p from the loop and wakes its goroutine (loop only).
func (l *eventLoop) handBack(p *pump, readFailed bool) {
	p.lp.in.rd.rc.Control(func(fd uintptr) {
		syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, int(fd), nil)
	})
	l.mu.Lock()
	delete(l.pumps, p.lp.token)
	l.mu.Unlock()
	p.lp.readFailed = readFailed
	p.lp.resume <- struct{}{}
}

// kickLoop makes the loop hand back c's pumps: c is being closed, and a
// pump must see its socket fail. Any goroutine, the loop's included.
func (c *clientConn) kickLoop() {
	c.loopMu.Lock()
	l := c.loop
	c.loopMu.Unlock()
	if l == nil {
		return
	}
	l.mu.Lock()
	l.kicked = append(l.kicked, c)
	l.mu.Unlock()
	one := uint64(1)
	syscall.RawSyscall(syscall.SYS_WRITE, uintptr(l.kickfd), uintptr(unsafe.Pointer(&one)), 8)
}

// takeKicks hands back the pumps of every kicked connection (loop only).
func (l *eventLoop) takeKicks() {
	var n uint64
	syscall.RawSyscall(syscall.SYS_READ, uintptr(l.kickfd), uintptr(unsafe.Pointer(&n)), 8)
	l.mu.Lock()
	kicked := l.kicked
	l.kicked = nil
	l.mu.Unlock()
	for _, c := range kicked {
		c.loopMu.Lock()
		pumps := c.loopPumps
		c.loopMu.Unlock()
		for _, p := range pumps {
			l.mu.Lock()
			registered := l.pumps[p.lp.token] == p
			l.mu.Unlock()
			if registered {
				l.handBack(p, false)
			}
		}
	}
}

// serve runs the loop for the life of the process.
func (l *eventLoop) serve() {
	rc, err := l.ready.SyscallConn()
	if err != nil {
		panic("event loop: " + err.Error()) // an *os.File always has one
	}
	if os.Getenv("DDLGUARD_EXP_BLOCK") != "" {
		for {
			n := l.poll()
			if n == 0 {
				r, _, e := syscall.Syscall6(syscall.SYS_EPOLL_WAIT, uintptr(l.epfd),
					uintptr(unsafe.Pointer(&l.evs[0])), uintptr(len(l.evs)), ^uintptr(0), 0, 0)
				if e != 0 {
					continue
				}
				n = int(r)
			}
			l.dispatch(n)
		}
	}
	rc.Read(func(uintptr) bool {
		for {
			n := l.poll()
			if n == 0 {
				return false // wait until the epoll descriptor is readable
			}
			l.dispatch(n)
		}
	})
}

// dispatch handles the first n events in l.evs.
func (l *eventLoop) dispatch(n int) {
	for _, ev := range l.evs[:n] {
		if ev.Fd == kickToken {
			l.takeKicks()
			continue
		}
		l.mu.Lock()
		p := l.pumps[ev.Fd]
		l.mu.Unlock()
		if p == nil {
			continue // handed back earlier in this batch
		}
		if stay, readFailed := p.step(); !stay {
			l.handBack(p, readFailed)
		}
	}
}

// poll returns the number of ready events in l.evs, without waiting. The
// call is raw (no runtime syscall path) except once per sysmonKeepalive.
func (l *eventLoop) poll() int {
	for {
		call := syscall.RawSyscall6
		if viaRuntime() {
			call = syscall.Syscall6
		}
		n, _, e := call(syscall.SYS_EPOLL_WAIT, uintptr(l.epfd),
			uintptr(unsafe.Pointer(&l.evs[0])), uintptr(len(l.evs)), 0, 0, 0)
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			return 0
		}
		return int(n)
	}
}

// step relays, without waiting, what one read of p's socket brings: every
// complete frame the loop may relay, then one write. It reports whether p
// stays in the loop, and when not, whether it is because the read failed.
func (p *pump) step() (stay, readFailed bool) {
	r, w, lp := p.r, p.w, p.lp
	lp.in.rd.nonblock = true
	_, err := r.Peek(r.Buffered() + 1)
	lp.in.rd.nonblock = false
	switch err {
	case nil, errWouldBlock:
	case bufio.ErrBufferFull:
		return false, false
	default:
		return false, true
	}
	relayed := 0
	defer func() {
		if relayed > 0 {
			p.obs.Relayed(p.toUpstream, relayed)
		}
	}()
	for r.Buffered() >= 5 {
		typ, n, err := readFrameHeader(r, p.limit, p.side)
		size := 5 + n
		if err != nil || size > r.Size() {
			return false, false // the pump reports it, or streams the frame
		}
		if r.Buffered() < size {
			break // wait for the rest
		}
		frame, _ := r.Peek(size)
		inspect := p.inspect[typ] || (p.inspectAll != nil && p.inspectAll.Load())
		if inspect && !lp.safe(typ, frame[5:]) {
			return false, false
		}
		if p.wmu != nil && !p.wmu.TryLock() {
			return false, false
		}
		action, out := forwardFrame, frame
		if inspect {
			var repl []byte
			action, repl = p.hook(typ, frame[5:])
			if action == replaceFrame {
				out = repl
			}
		}
		if action != dropFrame {
			w.Buffer(out)
			p.counter.Add(int64(len(out)))
			relayed += len(out)
		}
		p.unlock()
		r.Discard(size)
		if inspect && p.after != nil {
			if err := p.after(typ); err != nil {
				return false, false
			}
		}
		p.last = typ
		if w.Buffered() >= relayBufferSize && !p.flushNow() {
			return false, false
		}
	}
	return p.flushNow(), false
}

// flushNow writes what the pump's writer holds without waiting; false
// means the rest is for the pump goroutine to write.
func (p *pump) flushNow() bool {
	if p.w.arr == nil {
		return true
	}
	if p.wmu != nil && !p.wmu.TryLock() {
		return false
	}
	p.lp.out.wr.nonblock = true
	err := p.w.Flush()
	p.lp.out.wr.nonblock = false
	p.unlock()
	return err == nil
}
