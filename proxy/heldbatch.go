package proxy

import (
	"bytes"
	"strings"
	"time"
	"unsafe"

	"github.com/ddlguard/ddlguard/guard"
)

// restorePlan is armed when an extended-protocol batch runs with an
// injected lock_timeout: after the batch's Sync, restore it.
type restorePlan struct {
	restore         string
	accessExclusive bool
	idleTimeout     string
}

// protectBatch prepares the batch that starts with the current message to
// run plan p: waits out blockers, sets the lock timeout, and arms the
// restore after the batch's Sync. It reports false when it could not.
func (c *clientConn) protectBatch(p *timeoutPlan) bool {
	if !c.waitIdle(factsIdleWait) {
		return false
	}
	if c.sess.TxStatus() == TxFailed {
		return true
	}
	inTx := c.sess.TxStatus() == TxInBlock
	c.waitingForClient.Store(true)
	stop := c.watchClient()
	deadline := time.Now().Add(c.srv.cfg.Exec.RetryBudget)
	if inTx && p.holding {
		deadline = time.Now() // the transaction holds locks: no waiting
	}
	pf, err := c.waitForBlockers(p, deadline)
	stop()
	c.waitingForClient.Store(false)
	if c.clientLeft() {
		return false
	}
	if err != nil {
		pf = &preflight{lockTimeout: "0"}
	}
	set, restore := timeoutStatements(pf.lockTimeout, p.lockTimeout, inTx)
	if set != "" {
		c.hidden(set)
	}
	c.restoreOnSync = &restorePlan{restore: restore, accessExclusive: p.accessExclusive && inTx, idleTimeout: pf.idleTimeout}
	return true
}

// afterClientFrame runs after each inspected client frame has been written
// upstream: once the Sync of a protected batch has left, it waits for the
// batch's answer and restores the lock timeout.
func (c *clientConn) afterClientFrame(typ byte) error {
	rp := c.restoreOnSync
	if typ != 'S' || rp == nil {
		return nil
	}
	c.restoreOnSync = nil
	if err := c.uw.Flush(); err != nil {
		return err
	}
	for c.sess.pending.Load() > 0 && !c.closing() {
		c.waitIdle(time.Second)
	}
	if c.closing() {
		return nil
	}
	if rp.restore != "" {
		c.hidden(rp.restore)
	}
	if rp.accessExclusive && c.sess.TxStatus() == TxInBlock {
		c.boundIdleInTransaction(rp.idleTimeout)
	}
	return nil
}

// heldBatch is an extended-protocol batch that needs the lock timeout,
// held back until its Sync so that it can be run (and retried) as a whole.
type heldBatch struct {
	plan     *timeoutPlan
	frames   []byte
	executes int
	// parses counts the Parses after the batch's first message: statements
	// the plan was not made from.
	parses int
	// rewrite: the batch's (unnamed) statement is to be replaced by its
	// safe sequence; its Parse is rebuilt at Sync. The decision was made
	// and recorded at the Parse; a batch the client breaks off before its
	// Sync (a Flush, a Query), or that reaches no sync point, cannot have
	// the sequence run in its place and is refused with it as the hint.
	rewrite *guard.Decision
	g       *guard.Guard
	params  []byte // the Parse's parameter types
}

// holdBatch starts holding the batch whose first message is being decided.
func (c *clientConn) holdBatch(p *timeoutPlan) {
	c.batch = &heldBatch{plan: p}
}

// batchFrame takes a client frame while a batch is held.
func (c *clientConn) batchFrame(typ byte, body []byte) (frameAction, []byte) {
	b := c.batch
	switch typ {
	case 'P':
		// Decided like any Parse (a rejection replaces the statement).
		b.parses++
		act, out := c.interceptParse(body, false)
		if act == replaceFrame {
			b.frames = append(b.frames, out...)
		} else {
			b.frames = appendFrame(b.frames, typ, body)
		}
		return dropFrame, nil
	case 'B':
		c.facts.bound(body)
	case 'E':
		b.executes++
	case 'S':
		b.frames = appendFrame(b.frames, typ, body)
		c.batch = nil
		if b.rewrite != nil {
			return c.rewriteBatch(b)
		}
		p := b.plan
		if b.parses > 0 && p.blockNeutral {
			// Not known to be block-neutral: the other statements were not
			// planned with it.
			whole := *p
			whole.blockNeutral = false
			p = &whole
		}
		return c.runGuarded(b.frames, p, b.executes == 1)
	case 'H', 'Q', 'X', 'F', 'd', 'c', 'f':
		// The client wants answers before its Sync (Flush), or steps out
		// of the batch: send what was held with the lock timeout set, no
		// retries.
		c.batch = nil
		held := appendFrame(b.frames, typ, body)
		if b.rewrite != nil {
			// The client wants answers before the Sync: the sequence cannot
			// be run in its place; refuse with it as the hint.
			held = append(queryParse(rejectStatement(b.rewrite), b.params), held...)
			return replaceFrame, held
		}
		if !c.protectBatch(b.plan) {
			if c.clientLeft() {
				return dropFrame, nil // the client has gone: its batch is not sent
			}
			c.srv.log.Warn("batch that needs a lock timeout could not be protected", "conn_id", c.id)
		}
		if typ == 'X' {
			return stopAfter, nil
		}
		return replaceFrame, held
	}
	b.frames = appendFrame(b.frames, typ, body)
	return dropFrame, nil
}

// boundStatement is the prepared statement name a Bind body binds ("" for
// the unnamed one); ok is false for a malformed body.
func boundStatement(body []byte) (name string, ok bool) {
	portalEnd := bytes.IndexByte(body, 0)
	if portalEnd < 0 {
		return "", false
	}
	rest := body[portalEnd+1:]
	stmtEnd := bytes.IndexByte(rest, 0)
	if stmtEnd < 0 {
		return "", false
	}
	return unsafe.String(unsafe.SliceData(rest), stmtEnd), true
}

// interceptBind protects a batch that starts by binding a prepared
// statement whose execution needs the lock timeout.
func (c *clientConn) interceptBind(body []byte) {
	if len(c.stmtTimeouts) == 0 || c.restoreOnSync != nil {
		return
	}
	name, ok := boundStatement(body)
	if !ok {
		return
	}
	p := c.stmtTimeouts[name]
	if p == nil {
		return
	}
	now := *p
	now.holding = c.gsess.HoldsStrongLock()
	p = &now
	if c.sess.unsynced.Load() {
		c.srv.log.Warn("prepared statement that needs a lock timeout executed mid-pipeline; it runs without it",
			"conn_id", c.id, "statement", strings.Clone(name))
		return
	}
	c.holdBatch(p)
}
