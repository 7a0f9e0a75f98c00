package proxy

import (
	"errors"
	"sync"
	"time"
)

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

// pumpFromClient relays client frames upstream. When the client goes away
// mid-statement it cancels the backend's work, and in every case it closes
// the upstream leg so that the backend ends and releases its locks at once.
func (c *clientConn) pumpFromClient() {
	p := pump{r: c.cr, w: c.uw, limit: c.srv.cfg.MaxMessageSize, side: "client",
		inspect: &clientInspect, hooks: clientHooks{c}, counter: &c.sess.bytesFromClient, obs: c.srv.obs, toUpstream: true,
		back: &replyWriter{w: c.cw, mu: &c.cwMu, counter: &c.sess.bytesToClient}}
	c.attachLoop(&p, c.clientIO, c.upstreamIO)
	_, _, err := p.run()
	var fe *frameError
	var re *readError
	switch {
	case err == nil:
		// Terminate relayed (see clientHooks.onFrame). The server answers whatever
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
		inspect: &upstreamInspect, hooks: upstreamHooks{c}, counter: &c.sess.bytesToClient,
		obs: c.srv.obs, wmu: &c.cwMu}
	c.attachLoop(&p, c.upstreamIO, c.clientIO)
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
