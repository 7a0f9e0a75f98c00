package proxy

import (
	"bufio"
	"sync"
	"sync/atomic"
)

// The frame loop. The relay runs two pumps per connection, one per
// direction. Each pump copies whole frames from its reader to the other
// side's buffered writer and flushes whenever its reader has nothing more
// buffered, so a burst of messages (a pipeline, a result set) leaves in as
// few writes as possible and nothing waits in a buffer while the pump
// blocks on a read. A pump is run by its own goroutine (run, below) or,
// while it is idle, by an event loop (eventloop_linux.go, loopstep_linux.go);
// both relay each whole frame with the same step, relayFrame.
//
// Frames whose type is marked in a pump's inspect table (and every frame
// while its hooks' inspectAll says so) are read whole and passed to the
// pump's hooks; all others are forwarded without being decoded, straight
// from the read buffer when they fit in it and streamed in pieces when they
// do not, so a 1 GiB row never needs 1 GiB of memory.
//
// The hook contract (frameHooks), for each inspected frame, in this order:
//  1. onFrame sees the frame before anything of it is written, and answers
//     what to write: the frame itself, replacement bytes for the other
//     side, nothing, or a reply for this pump's own side (ddlguard answered
//     the frame itself). onFrame never writes to either side: what it
//     answers is written by the step. With inLoop it must not wait: it
//     either answers without waiting or defers the frame to the pump's
//     goroutine, having changed nothing.
//  2. The answer is written (not flushed) and the frame leaves the reader.
//  3. afterFrame runs.
// mayPark is asked before an idle pump parks in an event loop.

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
	replyFrame                      // forward nothing; write the returned bytes back to the frame's sender, flushed
	deferFrame                      // (inLoop only) nothing happened: the pump's goroutine must relay this frame
)

// frameHooks is one direction's policy (hooks.go), called by the frame
// loop as the contract above says.
type frameHooks interface {
	// inspectAll reports whether every frame, not only those of the
	// inspect table, goes to onFrame now.
	inspectAll() bool
	onFrame(typ byte, body []byte, inLoop bool) (frameAction, []byte)
	afterFrame(typ byte) error
	mayPark() bool
}

// pump is one direction of the relay.
type pump struct {
	r       *bufio.Reader
	w       *flushWriter
	limit   int
	side    string
	inspect *[256]bool
	hooks   frameHooks
	counter *atomic.Int64
	// obs hears of the bytes relayed, once per flush; toUpstream says
	// which direction this pump is.
	obs        Observer
	toUpstream bool
	// wmu, when set, is held while writing each frame (and flushing), so
	// that another goroutine can write whole frames to the same writer.
	wmu *sync.Mutex
	// back writes replies (replyFrame) to the side the pump reads from.
	back *replyWriter
	// last is the type of the last frame relayed whole.
	last byte
	// lp, when set, lets an event loop relay for the pump while it is idle
	// (eventloop_linux.go).
	lp *loopPump
}

// replyWriter is the writer of the other pump, shared for replies.
type replyWriter struct {
	w       *flushWriter
	mu      *sync.Mutex
	counter *atomic.Int64
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

// run relays frames until a read or write fails or the hooks say stop. It
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
		inspect := p.inspects(typ)
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
			size = 0 // read already
		}
		if err != nil {
			return p.last, false, &readError{unexpectedEOF(err)}
		}
		res := p.relayFrame(typ, frame, size, inspect, false)
		unreported += res.wrote
		if !peeked && cap(scratch) > maxKeptScratch {
			scratch = nil // one huge statement must not pin its memory for the connection's life
		}
		switch {
		case res.err != nil:
			return p.last, res.midFrame, res.err
		case res.act == stopAfter:
			return typ, false, flushed(w)
		}
	}
}

// inspects reports whether the hooks see a frame of type typ.
func (p *pump) inspects(typ byte) bool {
	return p.inspect[typ] || (p.hooks != nil && p.hooks.inspectAll())
}

// frameResult is how relayFrame ended.
type frameResult struct {
	act   frameAction
	wrote int  // bytes written to the pump's writer
	full  bool // (inLoop) the writer holds a buffer's worth or more
	// leave: (inLoop) why the pump's goroutine must take over; nothing of
	// the frame happened.
	leave    string
	err      error
	midFrame bool // err left a frame half-written
}

// relayFrame is the one frame step of both the pump goroutine and the
// event loop: it relays the whole frame (header and body) the pump has
// read, as the hook contract at the top of this file says, then discards
// its size bytes from the reader. inLoop: an event loop runs the pump, so
// nothing waits: the writer is taken only when free, writes are buffered,
// and a frame the hooks defer is left unread for the pump goroutine.
func (p *pump) relayFrame(typ byte, frame []byte, size int, inspect, inLoop bool) frameResult {
	if !inLoop {
		p.lock()
	} else if p.wmu != nil && !p.wmu.TryLock() {
		return frameResult{leave: HandBackWriterBusy}
	}
	act, out := forwardFrame, frame
	if inspect {
		var answer []byte
		act, answer = p.hooks.onFrame(typ, frame[5:], inLoop)
		switch act {
		case deferFrame:
			p.unlock()
			return frameResult{act: act, leave: HandBackDecision}
		case replaceFrame, replyFrame:
			out = answer
		}
	}
	res := frameResult{act: act}
	switch act {
	case dropFrame:
	case replyFrame:
		p.unlock()
		p.reply(out)
		p.lock()
	default:
		if inLoop {
			p.w.Buffer(out)
		} else if _, err := p.w.Write(out); err != nil {
			p.unlock()
			return frameResult{act: act, err: &writeError{err}, midFrame: true}
		}
		p.counter.Add(int64(len(out)))
		res.wrote = len(out)
	}
	res.full = inLoop && p.w.Buffered() >= relayBufferSize
	p.unlock()
	if size > 0 {
		p.r.Discard(size)
	}
	if act == stopAfter {
		return res
	}
	p.last = typ
	if inspect {
		if err := p.hooks.afterFrame(typ); err != nil {
			res.err = &writeError{err}
		}
	}
	return res
}

// reply writes frames back to the side the pump reads from and flushes
// them. A failure is left for that side's own pump to find.
func (p *pump) reply(out []byte) {
	b := p.back
	b.mu.Lock()
	b.w.Write(out)
	b.w.Flush()
	b.mu.Unlock()
	b.counter.Add(int64(len(out)))
	p.obs.Relayed(!p.toUpstream, len(out))
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
