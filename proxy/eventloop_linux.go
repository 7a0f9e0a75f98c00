package proxy

import (
	"fmt"
	"runtime"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// The event loops relay the steady state of plain (non-TLS) connections
// without waking a goroutine per message, as PgBouncer's single thread does.
//
// When a connection's startup is done and neither side uses TLS, both of
// its sockets are taken out of Go's poller and given to one of a few event
// loops (ownedsocket_linux.go), each an epoll set served by one goroutine.
// A pump (relay.go) that is idle at a read (its reader empty, its writer
// flushed) then parks its goroutine and lets the loop relay for it: when
// its socket is readable, the loop reads it once, relays the complete
// frames with the frame loop's own step and the pump's hooks (relay.go),
// and writes them to the peer with one write; it never waits. The loop
// hands the pump back to its goroutine whenever a frame needs more than
// that:
//   - a frame the hooks defer because handling it could wait or stop the
//     pump (a statement that needs the guard's decision, a held batch, a
//     Terminate, a draining server);
//   - a frame larger than the read buffer, or one with an invalid length;
//   - a peer that does not take what is written (the socket is full), or a
//     writer another goroutine holds (TryLock, never a wait);
//   - a read that fails or ends (the pump reads again and reports it);
//   - the socket being closed.
//
// Handing back leaves the reader and writer as they are (a frame not yet
// relayed is still unread), so the pump goroutine carries on exactly where
// the loop stopped, waiting for its sockets through the loop. A pump's
// reader, writer and hooks' state belong to the loop from parking to hand-back and
// to the pump goroutine otherwise; the loop works on one pump at a time.
//
// How the loop waits: while there is traffic it waits in epoll_wait itself
// for up to busyWait, keeping its P (and its thread: see serve), so a
// message wakes exactly one thread and no goroutine; after busyWait
// without an event it waits through the runtime's syscall path, which
// lets the scheduler have the P. Before either, when a server asks for it
// (Config.EventLoopSpin), a loop that has just relayed for one of its
// connections polls without waiting for up to that long. A signal
// (the runtime preempting the loop, or stopping the world for the garbage
// collector) ends a wait at once with EINTR. With GOMAXPROCS=1 the loop
// never keeps the P (busyWait 0). docs/perf/README.md has the measurements
// behind each of these choices.

// eventLoop is one epoll set and the sockets registered in it.
type eventLoop struct {
	epfd     int
	kickfd   int // an eventfd: written when queued or kicked has work
	evs      []syscall.EpollEvent
	busyWait time.Duration
	again    []*pump // loop only: pumps whose last read may have left bytes
	// relayed sums, per direction, the bytes this pass of the loop relayed
	// for pumps of relayedBy, for its observer (loop only; see report).
	// Servers are compared, not observers: an Observer's dynamic type need
	// not be comparable.
	relayed   [2]int
	relayedBy *Server
	// spinFor is how long the loop polls before it waits next: the longest
	// EventLoopSpin of the servers it relayed for in this pass (loop only).
	spinFor time.Duration
	// spinOffUntil: no spinning before then (see spin; loop only).
	spinOffUntil time.Time

	mu     sync.Mutex
	slots  []*ownedSocket // by the slot in their registration's token
	free   []int32        // slots no socket holds
	gen    int32          // the generation of the next registration
	queued []*pump        // pumps that just parked: step each once
	kicked []*ownedSocket // closed sockets whose pump must be handed back
}

// kickToken is the epoll token of the loop's eventfd; sockets get the
// others. A socket's token is its slot in eventLoop.slots (EpollEvent.Fd)
// and the generation of its registration (EpollEvent.Pad): an event read in
// the same batch as its socket's unregistration is not delivered to the
// socket registered next in that slot.
const kickToken = 0

var (
	eventLoopsOnce sync.Once
	eventLoopsList []*eventLoop
	eventLoopsErr  error
)

// eventLoops returns the process's event loops, starting them the first
// time: one per four Ps (at least one), each keeping its P while busy
// unless that would leave no P for the rest of the process.
func eventLoops() ([]*eventLoop, error) {
	eventLoopsOnce.Do(func() {
		procs := runtime.GOMAXPROCS(0)
		n := max(1, procs/4)
		var busyWait time.Duration
		if procs > n {
			busyWait = 5 * time.Millisecond
		}
		for range n {
			l, err := newEventLoop(busyWait)
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

func newEventLoop(busyWait time.Duration) (*eventLoop, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("event loop: epoll_create1: %w", err)
	}
	kfd, _, e := syscall.Syscall(syscall.SYS_EVENTFD2, 0, syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
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
	return &eventLoop{epfd: epfd, kickfd: int(kfd), evs: make([]syscall.EpollEvent, 128),
		slots: make([]*ownedSocket, 1, 64), busyWait: busyWait}, nil
}

// readEvents is what a socket is registered for: edge-triggered
// readability (writability only while a Write waits, see watch).
const readEvents = syscall.EPOLLIN | syscall.EPOLLRDHUP | edgeTriggered

// watch changes s's registration to ask for writability too, or not (the
// caller holds s.mu). Arming reports the socket at once if it is writable.
func (l *eventLoop) watch(s *ownedSocket, writes bool) {
	ev := syscall.EpollEvent{Events: readEvents, Fd: s.token, Pad: s.gen}
	if writes {
		ev.Events |= syscall.EPOLLOUT
	}
	syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_MOD, s.fd, &ev)
}

// register adds s to the loop's epoll set.
func (l *eventLoop) register(s *ownedSocket) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var slot int32
	if n := len(l.free); n > 0 {
		slot, l.free = l.free[n-1], l.free[:n-1]
	} else {
		slot = int32(len(l.slots))
		l.slots = append(l.slots, nil)
	}
	l.gen++
	s.token, s.gen = slot, l.gen
	ev := syscall.EpollEvent{Events: readEvents, Fd: s.token, Pad: s.gen}
	if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, s.fd, &ev); err != nil {
		l.free = append(l.free, slot)
		return fmt.Errorf("event loop: epoll_ctl: %w", err)
	}
	l.slots[slot] = s
	return nil
}

// unregister stops watching s (its descriptor still open); when a pump
// was relayed from it, the loop hands that pump back.
func (l *eventLoop) unregister(s *ownedSocket, inLoop bool) {
	l.mu.Lock()
	syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, s.fd, nil)
	if l.slots[s.token] == s {
		l.slots[s.token] = nil
		l.free = append(l.free, s.token)
	}
	if inLoop {
		l.kicked = append(l.kicked, s)
	}
	l.mu.Unlock()
	if inLoop {
		l.wake()
	}
}

// wake makes the loop look at queued and kicked.
func (l *eventLoop) wake() {
	one := uint64(1)
	syscall.RawSyscall(syscall.SYS_WRITE, uintptr(l.kickfd), uintptr(unsafe.Pointer(&one)), 8)
}

// serve runs the loop for the life of the process.
func (l *eventLoop) serve() {
	if l.busyWait > 0 {
		// A loop that keeps its P also keeps its thread. Unlocked (the
		// runtime's preemption moves it between threads), the kernel
		// moved the loop's thread to the waker's CPU 0.4-1.7 times per
		// transaction at one client, against PgBouncer's none, for 8-13
		// us more CPU per transaction in ddlguard and 6-7 in pgbench
		// (docs/perf/README.md). Locked, it stays put. It lets go of the
		// thread while it sleeps without a time limit: a loop locked
		// through its idle sleeps made TestManyConnections' second wave
		// peak 15-18 MiB higher in RSS than the first, in half the runs.
		// With no busy wait (one P) a locked loop would cost a thread
		// hand-off each time it sleeps, so it is not locked then.
		runtime.LockOSThread()
	}
	for {
		var n int
		switch {
		case len(l.again) > 0:
			n = l.poll(0)
		case l.busyWait > 0:
			if n = l.spin(); n == 0 {
				n = l.poll(l.busyWait)
			}
			if n == 0 {
				runtime.UnlockOSThread()
				n = l.sleep()
				runtime.LockOSThread()
			}
		default:
			if n = l.poll(0); n == 0 {
				n = l.sleep()
			}
		}
		if n > 0 {
			l.dispatch(n)
		}
		again := l.again
		l.again = nil
		for _, p := range again {
			if p.inLoop() {
				l.step(p)
			}
		}
		l.report(nil)
	}
}

// spin polls without waiting until there is an event or spinFor has
// passed, and returns the number of events (loop only). It spins once per
// pass that relayed for a spinning server: a spin that finds nothing ends
// in a wait.
//
// Spinning pays only while a CPU would otherwise be idle. When the loop's
// thread gets less than spinFairShare of a spin's wall time on a CPU, other
// threads (the database's, the clients') were waiting for that CPU, and the
// loop stops spinning for spinBackOff.
func (l *eventLoop) spin() int {
	d := l.spinFor
	if d <= 0 {
		return 0
	}
	l.spinFor = 0
	start := time.Now()
	if start.Before(l.spinOffUntil) {
		return 0
	}
	cpu0 := threadCPU()
	for {
		n := l.poll(0)
		took := time.Since(start)
		if n == 0 && took < d {
			continue
		}
		if took >= spinJudgeAfter && cpu0 >= 0 {
			if cpu := threadCPU() - cpu0; cpu < took*spinFairShare/100 {
				l.spinOffUntil = start.Add(took + spinBackOff)
			}
		}
		return n
	}
}

const (
	// spinJudgeAfter: spins shorter than that tell too little about
	// the CPU (a clock tick, a short preemption).
	spinJudgeAfter = 50 * time.Microsecond
	// spinFairShare is the share of a spin's wall time, in percent, that
	// its thread must have run for the loop to go on spinning.
	spinFairShare = 75
	// spinBackOff is how long the loop does not spin after a spin that
	// found its CPU contended. At one client a spin is now and then
	// contended for a moment (the server's backend woken on the loop's
	// CPU): backing off 100 ms after that lost most of the gain.
	spinBackOff = 10 * time.Millisecond
)

// threadCPU is the CPU time the calling thread has used, or -1.
func threadCPU() time.Duration {
	var ts syscall.Timespec
	const clockThreadCPUTime = 3 // CLOCK_THREAD_CPUTIME_ID
	if _, _, e := syscall.RawSyscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTime, uintptr(unsafe.Pointer(&ts)), 0); e != 0 {
		return -1
	}
	return time.Duration(ts.Nano())
}

// count adds n bytes relayed by p to the loop's sums (loop only).
func (l *eventLoop) count(p *pump, n int) {
	if p.lp.srv != l.relayedBy {
		l.report(p.lp.srv)
	}
	if p.toUpstream {
		l.relayed[0] += n
	} else {
		l.relayed[1] += n
	}
}

// report gives the byte sums to their observer and starts new ones for
// the pumps of next (loop only). The loop reports once per pass (and
// whenever the server changes within it), not once per step: the counters
// end the same, at most a pass later.
func (l *eventLoop) report(next *Server) {
	if l.relayedBy != nil {
		obs := l.relayedBy.obs
		if n := l.relayed[0]; n > 0 {
			obs.Relayed(true, n)
		}
		if n := l.relayed[1]; n > 0 {
			obs.Relayed(false, n)
		}
	}
	l.relayed = [2]int{}
	l.relayedBy = next
}

// poll waits up to wait (whole milliseconds) for events in l.evs and
// returns their number, or -1 when a signal interrupted it. The call is
// raw: the loop keeps its P while it waits.
func (l *eventLoop) poll(wait time.Duration) int {
	n, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_WAIT, uintptr(l.epfd),
		uintptr(unsafe.Pointer(&l.evs[0])), uintptr(len(l.evs)), uintptr(wait.Milliseconds()), 0, 0)
	if e != 0 {
		return -1
	}
	return int(n)
}

// sleep waits for events without a time limit, through the runtime's
// syscall path (the P goes back to the scheduler).
func (l *eventLoop) sleep() int {
	n, _, e := syscall.Syscall6(syscall.SYS_EPOLL_WAIT, uintptr(l.epfd),
		uintptr(unsafe.Pointer(&l.evs[0])), uintptr(len(l.evs)), ^uintptr(0), 0, 0)
	if e != 0 {
		return -1
	}
	return int(n)
}

// dispatch handles the first n events in l.evs.
func (l *eventLoop) dispatch(n int) {
	for _, ev := range l.evs[:n] {
		if ev.Fd == kickToken {
			l.takeQueued()
			continue
		}
		l.mu.Lock()
		s := l.slots[ev.Fd]
		l.mu.Unlock()
		if s == nil || s.gen != ev.Pad {
			continue // closed earlier in this batch
		}
		if ev.Events&(syscall.EPOLLOUT|syscall.EPOLLERR|syscall.EPOLLHUP) != 0 {
			s.writable()
		}
		if ev.Events&(syscall.EPOLLIN|syscall.EPOLLRDHUP|syscall.EPOLLERR|syscall.EPOLLHUP) != 0 {
			hup := ev.Events&(syscall.EPOLLRDHUP|syscall.EPOLLERR|syscall.EPOLLHUP) != 0
			if p := s.readable(hup); p != nil {
				l.step(p)
			}
		}
	}
}

// takeQueued steps the pumps that just parked and hands back those whose
// socket was closed.
func (l *eventLoop) takeQueued() {
	var n uint64
	syscall.RawSyscall(syscall.SYS_READ, uintptr(l.kickfd), uintptr(unsafe.Pointer(&n)), 8)
	l.mu.Lock()
	queued, kicked := l.queued, l.kicked
	l.queued, l.kicked = nil, nil
	l.mu.Unlock()
	for _, p := range queued {
		if p.inLoop() {
			l.step(p)
		}
	}
	for _, s := range kicked {
		s.mu.Lock()
		p := s.pump
		s.mu.Unlock()
		if p != nil {
			l.handBack(p, HandBackClosed)
		}
	}
}

// step runs one step of p and acts on its outcome.
func (l *eventLoop) step(p *pump) {
	leave, more, relayed := p.step()
	if relayed > 0 {
		l.count(p, relayed)
		l.spinFor = max(l.spinFor, p.lp.srv.cfg.EventLoopSpin)
	}
	switch {
	case leave != "":
		l.handBack(p, leave)
	case more:
		l.again = append(l.again, p)
	}
}

// edgeTriggered is EPOLLET as the uint32 an EpollEvent holds (the syscall
// package declares it negative).
const edgeTriggered = 1 << 31
