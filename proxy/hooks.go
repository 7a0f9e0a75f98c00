package proxy

// The two directions' hooks (frameHooks, relay.go). The client hook is
// where policy runs: Query and Parse are decided (decide.go) before the
// frame leaves, and the counters that track what the server owes are
// kept. The upstream hook diverts the answers to ddlguard's own queries
// (internalquery.go), delivers queued notices and keeps the session state
// the relay observes.

// clientHooks are the client pump's hooks.
type clientHooks struct{ c *clientConn }

// upstreamHooks are the upstream pump's hooks.
type upstreamHooks struct{ c *clientConn }

// inspectAll: while a batch is held, the client hook sees every frame.
func (h clientHooks) inspectAll() bool { return h.c.batch != nil }

// mayPark: the client pump has no held batch, no lock timeout to restore
// at a Sync, and the server is not draining.
func (h clientHooks) mayPark() bool {
	c := h.c
	return c.batch == nil && c.restoreOnSync == nil && !c.draining.Load()
}

func (h clientHooks) afterFrame(typ byte) error { return h.c.afterClientFrame(typ) }

func (h clientHooks) onFrame(typ byte, body []byte, inLoop bool) (frameAction, []byte) {
	c := h.c
	if inLoop && (c.batch != nil || c.restoreOnSync != nil || c.draining.Load() || c.divert.Load() != nil) {
		// A held batch, a restore at Sync, a drain or ddlguard's own query
		// may make the hook wait.
		return deferFrame, nil
	}
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
			c.clientTerminates()
		}
		return act, out
	}
	switch typ {
	case 'Q':
		act, out := c.interceptQuery(body, inLoop)
		if act == forwardFrame || act == replaceFrame {
			c.sess.pending.Add(1)
		}
		return act, out
	case 'P':
		act, out := c.interceptParse(body, inLoop)
		if act != deferFrame {
			c.sess.unsynced.Store(true)
		}
		return act, out
	case 'B':
		if inLoop && len(c.stmtTimeouts) > 0 {
			return deferFrame, nil // it may start a held batch
		}
		c.facts.bound(body)
		c.interceptBind(body)
		c.sess.unsynced.Store(true)
		if c.batch != nil { // this Bind starts a held batch
			c.batch.frames = appendFrame(c.batch.frames, 'B', body)
			return dropFrame, nil
		}
	case 'F':
		c.facts.dropKept() // a function call may write rows
		c.sess.pending.Add(1)
	case 'S':
		c.sess.pending.Add(1)
	case 'E':
		c.sess.unsynced.Store(true)
	case 'X':
		if inLoop {
			return deferFrame, nil // it stops the pump
		}
		c.clientTerminates()
		return stopAfter, nil
	}
	return forwardFrame, nil
}

// clientTerminates records the client's Terminate before it leaves: the
// server may close the upstream leg the moment it reads it, and that close
// is expected.
func (c *clientConn) clientTerminates() {
	c.end.set("client terminated")
	c.end.mu.Lock()
	c.end.clientTerminated = true
	c.end.mu.Unlock()
}

// inspectAll: the upstream hook sees every frame while ddlguard diverts
// answers, has notices to deliver or a command tag to report.
func (h upstreamHooks) inspectAll() bool {
	c := h.c
	return c.divert.Load() != nil || c.notices.Load() != nil || c.tagRewrite.Load() != nil
}

func (h upstreamHooks) mayPark() bool { return true }

// afterFrame: a draining session is closed after the ReadyForQuery that
// leaves it idle.
func (h upstreamHooks) afterFrame(typ byte) error {
	if typ == 'Z' && h.c.draining.Load() {
		h.c.closeIfIdle()
	}
	return nil
}

// onFrame never waits. While ddlguard has its own query in flight every
// frame comes here and the answers to it are diverted; queued notices are
// delivered ahead of the next frame.
func (h upstreamHooks) onFrame(typ byte, body []byte, _ bool) (frameAction, []byte) {
	c := h.c
	if d := c.divert.Load(); d != nil && d.takes(typ) {
		last := d.add(typ, body)
		if typ == 'Z' {
			c.sess.pending.Add(-1) // before the waiter wakes: it may look at pending at once
		}
		if last {
			c.divert.Store(nil)
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

// queueNotice hands a notice to the upstream hook, which delivers it ahead
// of the next frame it relays.
func (c *clientConn) queueNotice(frame []byte) {
	c.noticeMu.Lock()
	defer c.noticeMu.Unlock()
	var queued []byte
	if q := c.notices.Load(); q != nil {
		queued = *q
	}
	queued = append(queued, frame...)
	c.notices.Store(&queued)
}

// takeNotices returns and clears the queued notices (nil when none).
func (c *clientConn) takeNotices() []byte {
	if c.notices.Load() == nil {
		return nil
	}
	c.noticeMu.Lock()
	defer c.noticeMu.Unlock()
	q := c.notices.Swap(nil)
	if q == nil {
		return nil
	}
	return *q
}
