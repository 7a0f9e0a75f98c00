package proxy

import (
	"syscall"
	"time"
)

// Noticing a client that hangs up while ddlguard works on its behalf.
//
// ddlguard waits for blockers, pauses between lock-timeout retries and runs
// the steps of an executed rewrite inside the client pump's hook, so for
// that time nobody reads the client's socket and a client that goes away
// (closes, is killed, sends a TCP RST) would not be noticed until the work
// is done: the statement would run after its client had left. While such
// work runs, watchClient polls the socket for the peer's FIN or RST (as
// PostgreSQL's own client_connection_check_interval does, with POLLRDHUP
// on Linux). Once seen, the client is gone: nothing more is sent on its
// behalf (waits end at once, retries and later steps do not happen), a
// statement or step of its running on the server is cancelled, and what
// earlier steps of a rewrite created is taken back (rewrite.go) before the
// relay closes the upstream connection.

// clientWatchInterval is how often the client's socket is polled while
// ddlguard works on its behalf.
const clientWatchInterval = 20 * time.Millisecond

// watchClient watches the client's socket until the returned function is
// called; hook goroutine only.
func (c *clientConn) watchClient() (stop func()) {
	sc, ok := c.raw.(syscall.Conn)
	if !ok {
		return func() {}
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return func() {}
	}
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(clientWatchInterval)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			closed, ok := peerClosed(rc)
			if !ok {
				// ddlguard closed the socket: the connection ends for
				// another reason (its upstream went away), which is
				// what gets reported, not a client that left.
				return
			}
			if closed {
				c.clientLeaves()
				return
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// clientLeaves records that the client has hung up and cancels what the
// backend runs for it: a guarded statement or a rewrite step (not ddlguard's
// own preflight, nor the clean-up of a rewrite).
func (c *clientConn) clientLeaves() {
	c.goneMu.Lock()
	defer c.goneMu.Unlock()
	c.end.set("client disconnected")
	c.clientGone.Store(true)
	running := c.stepRunning.Load() && !c.cleaningUp.Load()
	c.srv.log.Info("client hung up while ddlguard worked on its behalf", "conn_id", c.id, "cancel_backend", running)
	if running {
		c.cancelBackend()
	}
}

// clientLeft reports whether nothing more is to be run on the client's
// behalf: the connection is closing, or the client has hung up and ddlguard
// is not cleaning up after a rewrite.
func (c *clientConn) clientLeft() bool {
	return c.closing() || (c.clientGone.Load() && !c.cleaningUp.Load())
}

// beginCleanup marks the start of taking back a rewrite's steps: from now
// on a hang-up does not cancel the backend's work, and a cancel already
// being sent for the client's step has been delivered.
func (c *clientConn) beginCleanup() {
	c.goneMu.Lock()
	c.cleaningUp.Store(true)
	c.goneMu.Unlock()
}

func (c *clientConn) endCleanup() { c.cleaningUp.Store(false) }
