//go:build linux

package proxy

import "bufio"

// A pump in an event loop: attaching a connection's pumps to its sockets'
// loop, parking an idle pump and handing it back, and the loop's step,
// which relays what one read brings with the frame loop's own relayFrame
// (relay.go) and flushes without waiting. The loop itself, and how it
// waits, is eventloop_linux.go.

// loopPump is a pump's event-loop state.
type loopPump struct {
	loop    *eventLoop
	srv     *Server      // whose observer hears of the bytes the loop relays
	in, out *ownedSocket // the sockets the pump reads and writes
	resume  chan struct{}
	// readFailed: the loop handed the pump back because its socket ended
	// (peer gone, or closed); the pump reads again (and ends) before it may
	// park again.
	readFailed bool
}

// ownSockets gives both sockets of a plain connection to an event loop,
// once startup is done (relay goroutine, before the pumps start).
func (c *clientConn) ownSockets() {
	if c.srv.cfg.DisableEventLoop {
		return
	}
	cio, _ := c.clientIO.(*rawIOConn)
	uio, _ := c.upstreamIO.(*rawIOConn)
	if cio == nil || uio == nil {
		return // TLS on a side: Go's poller serves the connection
	}
	loops, err := eventLoops()
	if err != nil || len(loops) == 0 {
		c.srv.loopErrOnce.Do(func() {
			c.srv.log.Warn("event loop unavailable: every connection is relayed by its own goroutines", "err", err)
		})
		return
	}
	l := loops[c.id%uint64(len(loops))]
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	cs, err := own(cio.Conn, l)
	if err != nil {
		c.srv.log.Warn("event loop: relaying with goroutines", "conn_id", c.id, "err", err)
		return
	}
	c.raw, c.client, cio.own = cs, cs, cs
	us, err := own(uio.Conn, l)
	if err != nil {
		// The client socket is the loop's already; its pumps wait
		// through the loop but do not park in it.
		c.srv.log.Warn("event loop: relaying with goroutines", "conn_id", c.id, "err", err)
		return
	}
	c.upstreamRaw, c.upstream, uio.own = us, us, us
}

// attachLoop lets p be relayed by its sockets' event loop while it is
// idle, when both sockets are the loop's.
func (c *clientConn) attachLoop(p *pump, inConn, outConn any) {
	in, _ := inConn.(*rawIOConn)
	out, _ := outConn.(*rawIOConn)
	if in == nil || out == nil || in.own == nil || out.own == nil {
		return
	}
	p.lp = &loopPump{loop: in.own.loop, srv: c.srv, in: in.own, out: out.own,
		resume: make(chan struct{}, 1)}
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
	if !p.hooks.mayPark() {
		return false
	}
	s := lp.in
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	s.pump = p
	s.mu.Unlock()
	// Bytes may be waiting whose edge the pump's own read consumed: the
	// loop steps the pump once now.
	l := lp.loop
	l.mu.Lock()
	l.queued = append(l.queued, p)
	l.mu.Unlock()
	l.wake()
	<-lp.resume
	return true
}

// handBack returns p to its goroutine for reason (loop only).
func (l *eventLoop) handBack(p *pump, reason string) {
	s := p.lp.in
	s.mu.Lock()
	s.pump = nil
	s.mu.Unlock()
	p.lp.readFailed = reason == HandBackPeerGone || reason == HandBackClosed
	p.obs.LoopHandBack(reason)
	p.lp.resume <- struct{}{}
}

// inLoop reports whether the loop relays for p now (loop only).
func (p *pump) inLoop() bool {
	s := p.lp.in
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pump == p
}

// step relays, without waiting, what one read of p's socket brings: every
// complete frame the loop may relay, then one write. It returns why p must
// go back to its goroutine ("" when it stays in the loop), whether the
// read filled the buffer (bytes may be left, and the socket will not
// report them again), and how many bytes it relayed (for the counters).
func (p *pump) step() (leave string, more bool, relayed int) {
	r, lp := p.r, p.lp
	if !lp.in.acquire() {
		return HandBackClosed, false, relayed
	}
	defer lp.in.release()
	room := r.Size() - r.Buffered()
	lp.in.rnb = true
	_, err := r.Peek(r.Buffered() + 1)
	lp.in.rnb = false
	switch err {
	case nil, errWouldBlock:
	case bufio.ErrBufferFull:
		return HandBackLargeFrame, false, relayed
	default:
		return HandBackPeerGone, false, relayed
	}
	more = err == nil && (lp.in.hup || r.Size()-r.Buffered() == 0 && room > 0)
	for r.Buffered() >= 5 {
		typ, n, err := readFrameHeader(r, p.limit, p.side)
		size := 5 + n
		switch {
		case err != nil:
			return HandBackBadFrame, false, relayed // the pump reports it
		case size > r.Size():
			return HandBackLargeFrame, false, relayed // the pump streams it
		case r.Buffered() < size:
			return p.flushIf(relayed > 0), more, relayed // wait for the rest
		}
		frame, _ := r.Peek(size)
		res := p.relayFrame(typ, frame, size, p.inspects(typ), true)
		relayed += res.wrote
		switch {
		case res.leave != "":
			return res.leave, false, relayed
		case res.err != nil:
			return HandBackClosed, false, relayed
		case res.full:
			if leave := p.flushNow(); leave != "" {
				return leave, false, relayed
			}
		}
	}
	return p.flushIf(relayed > 0), more, relayed
}

// flushIf is flushNow when this step buffered something. Otherwise the
// writer is as the last flush left it: every other goroutine that writes
// to it (under wmu) flushes before it lets go.
func (p *pump) flushIf(wrote bool) string {
	if !wrote {
		return ""
	}
	return p.flushNow()
}

// flushNow writes what the pump's writer holds without waiting. It
// returns why the rest is for the pump goroutine to write, or "".
func (p *pump) flushNow() string {
	if p.wmu != nil && !p.wmu.TryLock() {
		return HandBackWriterBusy
	}
	if p.w.arr == nil {
		p.unlock()
		return ""
	}
	p.lp.out.wnb = true
	err := p.w.Flush()
	p.lp.out.wnb = false
	p.unlock()
	switch err {
	case nil:
		return ""
	case errWouldBlock:
		return HandBackSocketFull
	}
	return HandBackPeerGone // the pump's Flush reports the error
}
