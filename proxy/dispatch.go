package proxy

import (
	"encoding/binary"

	"github.com/ddlguard/ddlguard/guard"
)

// Carrying out a decision. The guard's answer is final when it arrives
// (the guard.Request told it what ddlguard can do with the statement
// here), and carryOut is the one place that switches over its actions,
// as a closed set:
//
//   - allow: the frame goes on unchanged;
//   - timeout: the statement runs under a short lock timeout for itself
//     only, after the blocker check (lockwait.go; a Parse holds its batch
//     until Sync, heldbatch.go);
//   - rewrite: the guard's safe sequence runs in its place (rewrite.go);
//   - reject: the statement is replaced by one that makes the server raise
//     ddlguard's error (raise.go), so that ordering, transaction abort and
//     skip-to-Sync are PostgreSQL's own.
//
// A statement arrives in one of two forms, a simple Query or the Parse of
// an extended-protocol batch; each form says how it does each of the four.

// clientStatement is a decided statement in the form it arrived in. Its
// methods return what the client hook returns for the frame.
type clientStatement interface {
	allow() (frameAction, []byte)
	timeout(p *timeoutPlan, res guard.Result) (frameAction, []byte)
	rewrite(d *guard.Decision) (frameAction, []byte)
	reject(d *guard.Decision) (frameAction, []byte)
}

// carryOut records the guard's answer and carries it out.
func (c *clientConn) carryOut(g *guard.Guard, st clientStatement, res guard.Result) (frameAction, []byte) {
	holding := c.gsess.HoldsStrongLock() // before the string: record advances the session
	c.record(g, res)
	switch res.Action {
	case guard.Allow:
		return st.allow()
	case guard.Timeout:
		p := c.planFor(res)
		if p == nil {
			return st.allow()
		}
		p.holding = holding
		return st.timeout(p, res)
	case guard.Rewrite:
		return st.rewrite(&res.Statements[0])
	case guard.Reject:
		return st.reject(&res.Statements[res.Rejecting()])
	}
	panic("proxy: the guard answered an unknown action " + res.Action.String())
}

// simpleQuery is a statement string of a simple Query message.
type simpleQuery struct {
	c   *clientConn
	g   *guard.Guard
	sql string
}

func (q simpleQuery) allow() (frameAction, []byte) { return forwardFrame, nil }

func (q simpleQuery) timeout(p *timeoutPlan, res guard.Result) (frameAction, []byte) {
	return q.c.executeTimeoutQuery(q.sql, res, p)
}

func (q simpleQuery) rewrite(d *guard.Decision) (frameAction, []byte) {
	return replyFrame, q.c.rewriteAnswer(d, q.c.observedRewrite(q.g, d))
}

func (q simpleQuery) reject(d *guard.Decision) (frameAction, []byte) {
	sql := rejectStatement(d)
	if d.InBlock && !q.c.gsess.InTransaction {
		// The string opened the transaction block before the rejected
		// statement: PostgreSQL would leave it aborted, not idle.
		sql = "BEGIN; " + sql
	}
	return replaceFrame, queryFrame(sql)
}

// parseMessage is the statement of a Parse message: body is the Parse's
// body (statement name, text, parameter types).
type parseMessage struct {
	c       *clientConn
	g       *guard.Guard
	body    []byte
	nameEnd int // the statement name's terminating zero
	textLen int
}

// params is the Parse's parameter-type part.
func (m parseMessage) params() []byte { return m.body[m.nameEnd+1+m.textLen+1:] }

func (m parseMessage) allow() (frameAction, []byte) {
	if m.c.batch != nil {
		return dropFrame, nil // held with its batch
	}
	return forwardFrame, nil
}

func (m parseMessage) timeout(p *timeoutPlan, res guard.Result) (frameAction, []byte) {
	c := m.c
	// Every execution of this statement needs the lock timeout; this
	// batch is protected now if it starts here, later ones at Bind.
	if c.stmtTimeouts == nil {
		c.stmtTimeouts = make(map[string]*timeoutPlan)
	}
	c.stmtTimeouts[string(m.body[:m.nameEnd])] = p
	switch {
	case c.batch != nil || c.restoreOnSync != nil:
		return m.allow() // part of a batch already held or protected
	case !c.sess.unsynced.Load():
		c.holdBatch(p) // first message of its batch: hold it until Sync
		c.batch.frames = appendFrame(c.batch.frames, 'P', m.body)
		return dropFrame, nil
	}
	return replaceFrame, m.replaced(raiseStatement(
		"ddlguard: "+res.Statements[0].Kind+" needs a lock timeout, which ddlguard cannot apply in the middle of a pipeline",
		"ddlguard sets lock_timeout before a batch starts and restores it after its Sync.",
		"Send this statement as the first message of its own batch (after a Sync).", codeNeedsOwnBatch))
}

func (m parseMessage) rewrite(d *guard.Decision) (frameAction, []byte) {
	m.c.holdBatch(nil)
	b := m.c.batch
	b.rewrite, b.g = d, m.g
	b.params = append([]byte(nil), m.params()...)
	return dropFrame, nil
}

func (m parseMessage) reject(d *guard.Decision) (frameAction, []byte) {
	return replaceFrame, m.replaced(rejectStatement(d))
}

// replaced is the Parse with the same name and parameter types and the
// statement replaced by sql.
func (m parseMessage) replaced(sql string) []byte {
	out := make([]byte, 0, len(m.body)+len(sql)+8)
	out = append(out, 'P', 0, 0, 0, 0)
	out = append(out, m.body[:m.nameEnd+1]...)
	out = append(out, sql...)
	out = append(out, 0)
	out = append(out, m.params()...)
	binary.BigEndian.PutUint32(out[1:5], uint32(len(out)-1))
	return out
}
