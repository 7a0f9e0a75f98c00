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

// divertBuf collects the upstream frames answering ddlguard's own query.
type divertBuf struct {
	mu     sync.Mutex
	frames []divertedFrame
	done   chan struct{}
}

type divertedFrame struct {
	typ  byte
	body []byte
}

func (d *divertBuf) add(typ byte, body []byte) {
	d.mu.Lock()
	d.frames = append(d.frames, divertedFrame{typ, append([]byte(nil), body...)})
	d.mu.Unlock()
}

// internalQuery sends a simple Query of ddlguard's own on the upstream
// connection and returns the frames that answer it, up to ReadyForQuery.
// The caller has made sure the server owes the client nothing.
func (c *clientConn) internalQuery(sql string, limit time.Duration) ([]divertedFrame, error) {
	frame, _ := (&pgproto3.Query{String: sql}).Encode(nil)
	return c.internalSend(frame, limit)
}

// errUpstreamEnded: the upstream leg ended before ddlguard's own query was
// answered.
var errUpstreamEnded = errors.New("the upstream connection ended before the answer")

// internalSend sends frames that end in exactly one ReadyForQuery (a Query,
// or an extended batch ending in Sync) and collects the answer.
func (c *clientConn) internalSend(frame []byte, limit time.Duration) ([]divertedFrame, error) {
	d := &divertBuf{done: make(chan struct{})}
	c.divert.Store(d)
	c.sess.pending.Add(1)
	if _, err := c.uw.Write(frame); err != nil {
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
	return d.frames, nil
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
	frames, err := c.internalQuery(sql, factsWait)
	if err != nil {
		return err
	}
	for _, f := range frames {
		if f.typ == 'E' {
			return upstreamError(f.body)
		}
	}
	return nil
}
