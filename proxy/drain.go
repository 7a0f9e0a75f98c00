package proxy

import (
	"context"
	"time"
)

// Graceful shutdown. Shutdown stops accepting (the listeners close, so new
// connections are refused) and lets every session finish what it is doing:
// a session is closed, with FATAL 57P01 (admin_shutdown, the code
// PostgreSQL's own smart/fast shutdown uses), at the first moment it is
// idle: outside a transaction block with nothing owed by the server. A
// session that is idle when the drain starts is closed at once; one running
// a statement or holding a transaction open is closed after the
// ReadyForQuery that ends it ('I'); a client that starts new work on an
// idle session while draining gets the FATAL instead, and its message is
// never sent. When the drain deadline passes, the remaining sessions are
// closed the same way (their backends roll back).
//
// The race between "the session is idle" and "the client sends a new
// statement" is settled with two flags, in a fixed order: the client pump
// marks the session busy before it looks at draining; the drain sets
// draining before it looks at busy. Whichever comes second sees the other.

const drainMessage = "terminating connection because ddlguard is shutting down (administrator command)"

// Shutdown drains the server (see above) and returns when every connection
// has ended, or closes the rest when ctx ends and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	conns := s.stopAccepting()
	s.log.Info("draining", "connections", len(conns))
	markAll := func(conns []*clientConn) {
		for _, c := range conns {
			c.draining.Store(true)
			c.closeIfIdle()
		}
	}
	markAll(conns)
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			s.log.Info("drained")
			return nil
		case <-tick.C:
			// Sessions that were in startup when the drain began, and
			// sessions whose last answer raced with the flag.
			markAll(s.connections())
		case <-ctx.Done():
			rest := s.connections()
			s.log.Warn("drain timeout: closing the remaining sessions", "connections", len(rest))
			for _, c := range rest {
				c.closeForDrain()
			}
			<-done
			return ctx.Err()
		}
	}
}

// idleNow: the session is relaying, outside a transaction block, and the
// server owes it nothing.
func (c *clientConn) idleNow() bool {
	return c.relaying.Load() && c.sess.TxStatus() == TxIdle && !c.sess.Busy()
}

// closeIfIdle closes a draining session that is idle.
func (c *clientConn) closeIfIdle() {
	if c.draining.Load() && c.idleNow() {
		c.closeForDrain()
	}
}

// closeForDrain tells the client why and closes both legs, once.
func (c *clientConn) closeForDrain() {
	if !c.drainClosed.CompareAndSwap(false, true) {
		return
	}
	c.end.set("ddlguard shutdown")
	c.end.mu.Lock()
	c.end.upstreamClosedByUs = true
	c.end.mu.Unlock()
	c.cwMu.Lock()
	c.mu.Lock()
	raw := c.raw
	c.mu.Unlock()
	raw.SetWriteDeadline(time.Now().Add(time.Second))
	c.cw.Write(fatalFrame(codeAdminShutdown, drainMessage))
	c.cw.Flush()
	c.cwMu.Unlock()
	c.closeBoth()
}

// drainCheckClient runs in the client pump before a frame is handled: new
// work on an idle draining session is refused (the frame is dropped).
// It reports whether the connection was closed.
func (c *clientConn) drainCheckClient() bool {
	c.sess.pending.Add(1) // busy first (see the comment at the top)
	refuse := c.draining.Load() && c.sess.TxStatus() == TxIdle && c.sess.pending.Load() == 1 && !c.sess.unsynced.Load()
	c.sess.pending.Add(-1)
	if refuse {
		c.closeForDrain()
	}
	return refuse
}
