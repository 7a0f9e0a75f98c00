package proxy

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// factsIdleWait bounds waiting for the server to finish what the client
// sent before (a client that pipelines and reads late must not stall);
// factsWait bounds the catalog query itself.
const (
	factsIdleWait = time.Second
	factsWait     = 10 * time.Second
)

// waitIdle waits until the server owes the client no ReadyForQuery.
func (c *clientConn) waitIdle(limit time.Duration) bool {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	for c.sess.pending.Load() > 0 {
		select {
		case <-c.idle:
		case <-deadline.C:
			return false
		}
	}
	return true
}

// signalIdle wakes a client pump waiting in waitIdle.
func (c *clientConn) signalIdle() {
	select {
	case c.idle <- struct{}{}:
	default:
	}
}

// divertBuf collects the upstream frames answering ddlguard's own
// frames: one or more segments, each ending in its ReadyForQuery.
type divertBuf struct {
	mu     sync.Mutex
	frames []divertedFrame
	// quiet lists, per segment, whether its notices are ddlguard's own
	// (collected) rather than the client's (relayed as they come).
	quiet []bool
	seg   int // the segment being answered
	done  chan struct{}
}

type divertedFrame struct {
	typ  byte
	body []byte
}

// takes reports whether a frame of type typ is collected: everything but
// the messages the server may send at any time, which go to the client,
// except the notices of a quiet segment.
func (d *divertBuf) takes(typ byte) bool {
	if typ == 'N' {
		return d.quiet[d.seg]
	}
	return !asyncMessage(typ)
}

// add collects a frame; it reports whether it was the last ReadyForQuery.
func (d *divertBuf) add(typ byte, body []byte) (last bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.frames = append(d.frames, divertedFrame{typ, append([]byte(nil), body...)})
	if typ != 'Z' {
		return false
	}
	d.seg++
	return d.seg == len(d.quiet)
}

// internalQuery sends a simple Query of ddlguard's own on the upstream
// connection and returns the frames that answer it, up to ReadyForQuery.
// The caller has made sure the server owes the client nothing.
func (c *clientConn) internalQuery(sql string, limit time.Duration) ([]divertedFrame, error) {
	return c.internalSend(queryFrame(sql), limit)
}

// errUpstreamEnded: the upstream leg ended before ddlguard's own query was
// answered.
var errUpstreamEnded = errors.New("the upstream connection ended before the answer")

// internalSend sends frames that end in exactly one ReadyForQuery (a Query,
// or an extended batch ending in Sync) and collects the answer.
func (c *clientConn) internalSend(frame []byte, limit time.Duration) ([]divertedFrame, error) {
	answers, err := c.internalPipeline([]segment{{frames: frame}}, limit)
	if err != nil {
		return nil, err
	}
	return answers[0], nil
}

// segment is a part of a pipeline of ddlguard's: frames that end in
// exactly one ReadyForQuery; quiet: its notices are not the client's.
type segment struct {
	frames []byte
	quiet  bool
}

// internalPipeline sends the segments in one write and collects the
// answer to each. The caller has made sure the server owes the client
// nothing.
func (c *clientConn) internalPipeline(segs []segment, limit time.Duration) ([][]divertedFrame, error) {
	d := &divertBuf{done: make(chan struct{})}
	var out []byte
	for _, s := range segs {
		out = append(out, s.frames...)
		d.quiet = append(d.quiet, s.quiet)
	}
	c.divert.Store(d)
	c.sess.pending.Add(int64(len(segs)))
	if _, err := c.uw.Write(out); err != nil {
		return nil, err
	}
	if err := c.uw.Flush(); err != nil {
		return nil, err
	}
	select {
	case <-d.done:
	case <-c.upstreamEndedCh():
		return nil, errUpstreamEnded
	case <-time.After(limit):
		// The answer will still come and still be diverted; only this
		// statement goes without facts.
		return nil, fmt.Errorf("no answer to the catalog query within %s", limit)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	answers := make([][]divertedFrame, 0, len(segs))
	start := 0
	for i, f := range d.frames {
		if f.typ == 'Z' {
			answers = append(answers, d.frames[start:i+1])
			start = i + 1
		}
	}
	return answers, nil
}

// dataRows returns the values of the DataRows in an answer to one of
// ddlguard's own queries (each with cols columns), or its error.
func dataRows(frames []divertedFrame, cols int) ([][][]byte, error) {
	var rows [][][]byte
	for _, f := range frames {
		switch f.typ {
		case 'E':
			return nil, upstreamError(f.body)
		case 'D':
			var row pgproto3.DataRow
			if err := row.Decode(f.body); err != nil || len(row.Values) != cols {
				return nil, errors.New("malformed row in the answer to ddlguard's query")
			}
			rows = append(rows, row.Values)
		}
	}
	return rows, nil
}

// hidden runs one of ddlguard's own statements; its answer is consumed.
// Errors are returned for logging only.
func (c *clientConn) hidden(sql string) error {
	answers, err := c.internalPipeline([]segment{{frames: queryFrame(sql), quiet: true}}, factsWait)
	if err != nil {
		return err
	}
	return answerError(answers[0])
}

// answerError is the error in an answer, or nil.
func answerError(frames []divertedFrame) error {
	for _, f := range frames {
		if f.typ == 'E' {
			return upstreamError(f.body)
		}
	}
	return nil
}
