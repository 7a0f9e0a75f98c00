package proxy

import (
	"bufio"
	"errors"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// The relay runs two pumps per connection, one per direction. Each pump
// copies whole frames from its reader to the other side's buffered writer
// and flushes whenever its reader has nothing more buffered, so a burst of
// messages (a pipeline, a result set) leaves in as few writes as possible
// and nothing waits in a buffer while the pump blocks on a read.
//
// Frames whose type is marked in a pump's inspect table are read whole and
// passed to the pump's hook before they are forwarded; all others are
// forwarded without being decoded, straight from the read buffer when they
// fit in it and streamed in pieces when they do not, so a 1 GiB row never
// needs 1 GiB of memory. Hooks run in this order for each frame: hook, then
// forward. Policy (SQL inspection) will be called from the client pump's
// hook; it must never write to the client itself, only decide.

var clientInspect, upstreamInspect [256]bool

func init() {
	// Query, Parse, Bind, Sync, FunctionCall, Execute, Terminate
	for _, t := range []byte{'Q', 'P', 'B', 'S', 'F', 'E', 'X'} {
		clientInspect[t] = true
	}
	// ReadyForQuery, ParameterStatus, ErrorResponse
	for _, t := range []byte{'Z', 'S', 'E'} {
		upstreamInspect[t] = true
	}
}

// relayEnd records how the relay stopped and what the client is still owed.
type relayEnd struct {
	mu                 sync.Mutex
	why                string
	clientFatal        []byte // a FATAL for the client, sent by the upstream pump
	upstreamClosedByUs bool
	upstreamDead       bool
	cancelled          bool
	clientTerminated   bool // the client sent Terminate; the server will close
}

// terminateGrace bounds how long the upstream leg stays open after a client's
// Terminate while the server finishes what came before it.
const terminateGrace = 5 * time.Second

func (e *relayEnd) set(why string) {
	e.mu.Lock()
	if e.why == "" {
		e.why = why
	}
	e.mu.Unlock()
}

func (e *relayEnd) reason() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.why
}

// readError and writeError tell which side of a copy failed.
type readError struct{ err error }
type writeError struct{ err error }

func (e *readError) Error() string  { return "read: " + e.err.Error() }
func (e *readError) Unwrap() error  { return e.err }
func (e *writeError) Error() string { return "write: " + e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

// frameAction is a hook's verdict on one frame.
type frameAction int8

const (
	forwardFrame frameAction = iota // forward the frame unchanged
	replaceFrame                    // forward the returned bytes instead (may be several frames)
	dropFrame                       // forward nothing
	stopAfter                       // forward the frame, flush, and stop the pump
)

// pump is one direction of the relay.
type pump struct {
	r       *bufio.Reader
	w       *flushWriter
	limit   int
	side    string
	inspect *[256]bool
	// inspectAll, when set, passes every frame to the hook (while ddlguard
	// diverts responses or has notices to deliver).
	inspectAll *atomic.Bool
	hook       func(typ byte, body []byte) (frameAction, []byte)
	counter    *atomic.Int64
	// obs hears of the bytes relayed, once per flush; toUpstream says
	// which direction this pump is.
	obs        Observer
	toUpstream bool
	// wmu, when set, is held while writing each frame (and flushing), so
	// that another goroutine can write whole frames to the same writer.
	wmu *sync.Mutex
	// after, when set, is called after each frame the hook saw has been
	// written (not flushed: it flushes itself when it needs to); the client
	// pump uses it to act once a Sync has left.
	after func(typ byte) error
	// last is the type of the last frame relayed whole.
	last byte
	// lp, when set, lets an event loop relay for the pump while it is idle
	// (eventloop_linux.go).
	lp *loopPump
}

func (p *pump) lock() {
	if p.wmu != nil {
		p.wmu.Lock()
	}
}

func (p *pump) unlock() {
	if p.wmu != nil {
		p.wmu.Unlock()
	}
}

// run relays frames until a read or write fails or the hook says stop. It
// returns the type of the last frame relayed whole and whether the failure
// left a frame half-written.
func (p *pump) run() (last byte, midFrame bool, err error) {
	r, w := p.r, p.w
	var scratch []byte
	if p.obs == nil {
		p.obs = nopObserver{}
	}
	unreported := 0 // bytes relayed since the last report to obs
	defer func() {
		if unreported > 0 {
			p.obs.Relayed(p.toUpstream, unreported)
		}
	}()
	for {
		if r.Buffered() == 0 {
			if unreported > 0 {
				p.obs.Relayed(p.toUpstream, unreported)
				unreported = 0
			}
			p.lock()
			err := w.Flush()
			p.unlock()
			if err != nil {
				return p.last, false, &writeError{err}
			}
			if p.lp != nil && p.park() {
				continue // the loop relayed until it handed the pump back
			}
		}
		typ, n, err := readFrameHeader(r, p.limit, p.side)
		if err != nil {
			return p.last, false, &readError{err}
		}
		size := 5 + n
		inspect := p.inspect[typ] || (p.inspectAll != nil && p.inspectAll.Load())
		if !inspect && size > r.Size() {
			p.lock()
			err := streamFrame(r, w, size)
			p.unlock()
			if err != nil {
				return p.last, true, err
			}
			p.counter.Add(int64(size))
			unreported += size
			p.last = typ
			continue
		}
		var frame []byte
		peeked := size <= r.Size()
		if peeked {
			frame, err = r.Peek(size)
		} else {
			scratch, err = readWhole(r, scratch, size)
			frame = scratch
		}
		if err != nil {
			return p.last, false, &readError{unexpectedEOF(err)}
		}
		action, out := p.decide(typ, frame, inspect)
		if action != dropFrame {
			p.lock()
			_, err := w.Write(out)
			p.unlock()
			if err != nil {
				return p.last, true, &writeError{err}
			}
			p.counter.Add(int64(len(out)))
			unreported += len(out)
		}
		if peeked {
			r.Discard(size)
		} else if cap(scratch) > maxKeptScratch {
			scratch = nil // one huge statement must not pin its memory for the connection's life
		}
		if action == stopAfter {
			return typ, false, flushed(w)
		}
		if inspect && p.after != nil {
			if err := p.after(typ); err != nil {
				return typ, false, &writeError{err}
			}
		}
		p.last = typ
	}
}

// decide returns what to forward for a whole frame: the frame itself, or
// what the hook says when the frame is inspected.
func (p *pump) decide(typ byte, frame []byte, inspect bool) (frameAction, []byte) {
	if !inspect {
		return forwardFrame, frame
	}
	action, repl := p.hook(typ, frame[5:])
	if action == replaceFrame {
		return action, repl
	}
	return action, frame
}

// maxKeptScratch is the largest buffer for inspected frames a pump keeps
// between frames.
const maxKeptScratch = 1 << 20

// streamFrame forwards a frame larger than the read buffer piece by piece.
func streamFrame(r *bufio.Reader, w *flushWriter, size int) error {
	for size > 0 {
		if r.Buffered() == 0 {
			if err := w.Flush(); err != nil {
				return &writeError{err}
			}
			if _, err := r.Peek(1); err != nil {
				return &readError{unexpectedEOF(err)}
			}
		}
		k := min(size, r.Buffered())
		chunk, _ := r.Peek(k)
		if _, err := w.Write(chunk); err != nil {
			return &writeError{err}
		}
		r.Discard(k)
		size -= k
	}
	return nil
}

func flushed(w *flushWriter) error {
	if err := w.Flush(); err != nil {
		return &writeError{err}
	}
	return nil
}

// relay runs both pumps until the connection ends.
func (c *clientConn) relay() {
	c.ownSockets()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.pumpFromClient()
	}()
	c.pumpFromUpstream()
	<-done
	// The connection is over: a pending Terminate grace timer would only
	// keep it (and its buffers) in memory until it fires.
	if c.terminateGraceTimer != nil {
		c.terminateGraceTimer.Stop()
	}
}

// fromClient is the client pump's hook. Policy runs here, before the
// frame leaves: Query and Parse are decided (intercept.go) and may be
// replaced; the counters that track what the server owes are kept.
func (c *clientConn) fromClient(typ byte, body []byte) (frameAction, []byte) {
	if typ != 'X' && c.drainCheckClient() {
		return dropFrame, nil
	}
	if c.batch != nil {
		if typ == 'S' || typ == 'E' || typ == 'P' || typ == 'B' || typ == 'F' {
			c.sess.unsynced.Store(typ != 'S')
		}
		act, out := c.batchFrame(typ, body)
		if act == replaceFrame && typ != 'S' {
			// Released as it was (Flush or the like): count what the
			// server will answer.
			if typ == 'Q' || typ == 'F' {
				c.sess.pending.Add(1)
			}
		}
		if act == stopAfter {
			c.end.set("client terminated")
			c.end.mu.Lock()
			c.end.clientTerminated = true
			c.end.mu.Unlock()
		}
		return act, out
	}
	switch typ {
	case 'Q':
		act, out := c.interceptQuery(body)
		if act != dropFrame {
			c.sess.pending.Add(1)
		}
		return act, out
	case 'P':
		act, out := c.interceptParse(body)
		c.sess.unsynced.Store(true)
		return act, out
	case 'B':
		c.interceptBind(body)
		c.sess.unsynced.Store(true)
		if c.batch != nil { // this Bind starts a held batch
			c.batch.frames = appendFrame(c.batch.frames, 'B', body)
			return dropFrame, nil
		}
	case 'S', 'F':
		c.sess.pending.Add(1)
	case 'E':
		c.sess.unsynced.Store(true)
	case 'X':
		// Recorded before the Terminate leaves: the server may close the
		// upstream leg the moment it reads it, and that close is expected.
		c.end.set("client terminated")
		c.end.mu.Lock()
		c.end.clientTerminated = true
		c.end.mu.Unlock()
		return stopAfter, nil
	}
	return forwardFrame, nil
}

// clientFrameLoopSafe reports whether the client hook may run for this
// frame in an event loop: it will not wait, decide a guarded statement,
// hold a batch or stop the pump (eventloop_linux.go). Client pump's state,
// read by whoever runs the pump.
func (c *clientConn) clientFrameLoopSafe(typ byte, body []byte) bool {
	if c.batch != nil || c.restoreOnSync != nil || c.draining.Load() || c.divert.Load() != nil {
		return false
	}
	switch typ {
	case 'Q':
		if len(body) == 0 {
			return true
		}
		return !c.needsDecision(unsafe.String(unsafe.SliceData(body), len(body)-1))
	case 'P':
		sql, ok := parseText(body)
		return !ok || !c.needsDecision(sql)
	case 'B':
		return len(c.stmtTimeouts) == 0
	case 'S', 'F', 'E':
		return true
	}
	return false // Terminate, and anything not listed
}

// clientMayPark: the client pump has no held batch, no lock timeout to
// restore at a Sync, and the server is not draining.
func (c *clientConn) clientMayPark() bool {
	return c.batch == nil && c.restoreOnSync == nil && !c.draining.Load()
}

// upstreamFrameLoopSafe: the upstream hook never waits nor stops the pump.
func upstreamFrameLoopSafe(byte, []byte) bool { return true }

func upstreamMayPark() bool { return true }

// afterUpstreamFrame runs once a frame the upstream hook saw has been
// written: a draining session is closed after the ReadyForQuery that
// leaves it idle.
func (c *clientConn) afterUpstreamFrame(typ byte) error {
	if typ == 'Z' && c.draining.Load() {
		c.closeIfIdle()
	}
	return nil
}

// fromUpstream is the upstream pump's hook. While ddlguard has its own
// query in flight (facts.go) every frame comes here and the responses to it
// are diverted; queued notices are delivered ahead of the next frame.
func (c *clientConn) fromUpstream(typ byte, body []byte) (frameAction, []byte) {
	if d := c.divert.Load(); d != nil && !asyncMessage(typ) {
		d.add(typ, body)
		if typ == 'Z' {
			c.sess.pending.Add(-1)
			c.divert.Store(nil)
			c.updateInspectAll()
			close(d.done)
		}
		return dropFrame, nil
	}
	var out []byte
	act := forwardFrame
	switch typ {
	case 'Z':
		if len(body) == 1 {
			c.sess.txStatus.Store(uint32(body[0]))
		}
		if c.sess.pending.Add(-1) == 0 {
			c.signalIdle()
		}
		c.sess.unsynced.Store(false)
	case 'S':
		c.sess.observeParameterStatus(body)
	case 'E':
		if c.stripNextContext.Swap(false) {
			if repl := stripContext(body); repl != nil {
				act, out = replaceFrame, repl
			}
		} else if repl := rewriteGuardError(body); repl != nil {
			act, out = replaceFrame, repl
		}
	case 'C':
		// A rewritten statement's stand-in reports the original's tag.
		if tag := c.tagRewrite.Load(); tag != nil && string(body) == "DO\x00" {
			c.tagRewrite.Store(nil)
			c.updateInspectAll()
			act, out = replaceFrame, appendFrame(nil, 'C', append([]byte(*tag), 0))
		}
	}
	if notices := c.takeNotices(); notices != nil {
		if act == forwardFrame {
			out = appendFrame(notices, typ, body)
		} else {
			out = append(notices, out...)
		}
		act = replaceFrame
	}
	return act, out
}

// asyncMessage: frames the server may send at any time, which belong to the
// client even while ddlguard's own query is in flight.
func asyncMessage(typ byte) bool { return typ == 'A' || typ == 'N' || typ == 'S' }

// pumpFromClient relays client frames upstream. When the client goes away
// mid-statement it cancels the backend's work, and in every case it closes
// the upstream leg so that the backend ends and releases its locks at once.
func (c *clientConn) pumpFromClient() {
	p := pump{r: c.cr, w: c.uw, limit: c.srv.cfg.MaxMessageSize, side: "client",
		inspect: &clientInspect, inspectAll: &c.clientInspectAll, hook: c.fromClient,
		counter: &c.sess.bytesFromClient, obs: c.srv.obs, toUpstream: true, after: c.afterClientFrame}
	c.attachLoop(&p, c.clientIO, c.upstreamIO, c.clientFrameLoopSafe, c.clientMayPark)
	_, _, err := p.run()
	var fe *frameError
	var re *readError
	switch {
	case err == nil:
		// Terminate relayed (see fromClient). The server answers whatever
		// preceded it and then closes; let those answers through, as a
		// direct connection would.
		c.terminateGraceTimer = time.AfterFunc(terminateGrace, c.closeUpstream)
		return
	case errors.As(err, &fe):
		c.end.set(fe.Error())
		c.end.mu.Lock()
		c.end.clientFatal = fatalFrame(codeProtocolViolation, "invalid message length: "+fe.Error())
		c.end.mu.Unlock()
		// The upstream pump delivers the FATAL; do not let a client that
		// stopped reading hold it forever.
		c.raw.SetWriteDeadline(time.Now().Add(5 * time.Second))
		c.cancelIfBusy()
	case errors.As(err, &re):
		c.end.set("client disconnected")
		c.cancelIfBusy()
	default:
		c.end.set("upstream write failed: " + err.Error())
	}
	c.end.mu.Lock()
	c.end.upstreamClosedByUs = true
	c.end.mu.Unlock()
	c.closeUpstream()
}

// cancelIfBusy cancels the backend's running statement, at most once, when
// the upstream owes a ReadyForQuery and is still alive.
func (c *clientConn) cancelIfBusy() {
	c.end.mu.Lock()
	do := !c.end.upstreamDead && !c.end.cancelled && c.sess.Busy()
	if do {
		c.end.cancelled = true
	}
	c.end.mu.Unlock()
	if do {
		c.cancelBackend()
	}
}

// pumpFromUpstream relays upstream frames to the client. When the upstream
// leg ends it tells the client why with a FATAL error (unless the server
// already sent one, or a frame was cut in half), then closes both legs.
func (c *clientConn) pumpFromUpstream() {
	p := pump{r: c.ur, w: c.cw, limit: c.srv.cfg.MaxMessageSize, side: "upstream",
		inspect: &upstreamInspect, inspectAll: &c.inspectAll, hook: c.fromUpstream, counter: &c.sess.bytesToClient,
		obs: c.srv.obs, wmu: &c.cwMu, after: c.afterUpstreamFrame}
	c.attachLoop(&p, c.upstreamIO, c.clientIO, upstreamFrameLoopSafe, upstreamMayPark)
	last, mid, err := p.run()
	close(c.upstreamEndedCh())
	var fe *frameError
	var we *writeError
	c.end.mu.Lock()
	owed, byUs := c.end.clientFatal, c.end.upstreamClosedByUs || c.end.clientTerminated
	if !byUs && !errors.As(err, &we) {
		c.end.upstreamDead = true
	}
	c.end.mu.Unlock()
	switch {
	case errors.As(err, &we):
		c.end.set("client disconnected")
	case owed != nil:
		if !mid {
			c.cw.Write(owed)
		}
	case byUs:
	case errors.As(err, &fe):
		c.end.set(fe.Error())
		if !mid {
			c.cw.Write(fatalFrame(codeProtocolViolation, "ddlguard: "+fe.Error()))
		}
	default:
		c.end.set("upstream closed the connection")
		if !mid && last != 'E' {
			c.cw.Write(fatalFrame(codeConnectionFailure, "ddlguard: the upstream server closed the connection unexpectedly"))
		}
	}
	c.cw.Flush()
	if errors.As(err, &we) {
		c.cancelIfBusy()
	}
	c.closeBoth()
}
