package proxy

import (
	"bytes"
	"encoding/binary"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/ddlguard/ddlguard/guard"
)

// Interception: the client pump's hook calls interceptQuery for every
// simple Query and interceptParse for every Parse, before the frame leaves.
// Each asks the guard (when one is configured) and carries out its
// decision:
//
//   - allow, timeout: the frame goes on unchanged (timeouts are applied by
//     the lock-aware execution layer);
//   - reject (and, until rewrites are executed, rewrite): the statement is
//     replaced by one that makes the server raise ddlguard's error, so that
//     ordering, transaction abort and skip-to-Sync are PostgreSQL's own;
//   - warnings and unchecked statements: a NoticeResponse is queued for the
//     client, delivered ahead of the statement's first response.
//
// Plain DML costs one lexical pre-check on a view of the read buffer: no
// copy, no parse, no allocation.

// interceptQuery decides a simple Query message.
func (c *clientConn) interceptQuery(body []byte) (frameAction, []byte) {
	g := c.srv.guard.Load()
	if g == nil || len(body) == 0 {
		return forwardFrame, nil
	}
	view := unsafe.String(unsafe.SliceData(body), len(body)-1) // body is "sql\x00"
	c.syncSession()
	if !guard.NeedsDecision(view, &c.gsess) {
		c.srv.obs.StatementPassed()
		return forwardFrame, nil
	}
	sql := strings.Clone(view)
	facts := c.factsFor(g, sql, true)
	res := g.Decide(sql, &c.gsess, facts)
	rejected := c.carryOut(res, sql, true)
	if rejected < 0 {
		if res.Action == guard.Rewrite {
			return c.rewriteQuery(g, &res.Statements[0])
		}
		if p := c.planFor(res); p != nil {
			return c.executeTimeoutQuery(sql, res, p)
		}
		return forwardFrame, nil
	}
	d := res.Statements[rejected]
	q := rejectStatement(d)
	if d.InBlock && !c.gsess.InTransaction {
		// The string opened the transaction block before the rejected
		// statement: PostgreSQL would leave it aborted, not idle.
		q = "BEGIN; " + q
	}
	out, _ := (&pgproto3.Query{String: q}).Encode(nil)
	return replaceFrame, out
}

// parseText returns the statement text of a Parse body (a view into it),
// or false when the body is malformed.
func parseText(body []byte) (string, bool) {
	nameEnd := bytes.IndexByte(body, 0)
	if nameEnd < 0 {
		return "", false
	}
	rest := body[nameEnd+1:]
	qEnd := bytes.IndexByte(rest, 0)
	if qEnd < 0 {
		return "", false
	}
	return unsafe.String(unsafe.SliceData(rest), qEnd), true
}

// needsDecision reports whether sql may need the guard's decision (the
// guard's pure pre-check, with the session brought up to date).
func (c *clientConn) needsDecision(sql string) bool {
	if c.srv.guard.Load() == nil {
		return false
	}
	c.syncSession()
	return guard.NeedsDecision(sql, &c.gsess)
}

// interceptParse decides the statement of a Parse message, once per
// prepared statement (Executes reuse the decision the server now holds).
func (c *clientConn) interceptParse(body []byte) (frameAction, []byte) {
	g := c.srv.guard.Load()
	if g == nil {
		return forwardFrame, nil
	}
	view, ok := parseText(body)
	if !ok {
		return forwardFrame, nil // malformed: the server reports it
	}
	nameEnd := bytes.IndexByte(body, 0)
	rest := body[nameEnd+1:]
	qEnd := len(view)
	if c.stmtTimeouts != nil {
		delete(c.stmtTimeouts, string(body[:nameEnd]))
	}
	c.syncSession()
	if !guard.NeedsDecision(view, &c.gsess) {
		c.srv.obs.StatementPassed()
		return forwardFrame, nil
	}
	sql := strings.Clone(view)
	// Facts can be asked only at a sync boundary (nothing of an extended
	// batch sent yet); inside a pipeline the guard gets "unknown".
	facts := c.factsFor(g, sql, !c.sess.unsynced.Load())
	res := g.Decide(sql, &c.gsess, facts)
	// Rewrites run for an unnamed statement that starts its batch (a named
	// one could be executed again later, when the sequence has run).
	canRewrite := nameEnd == 0 && c.batch == nil && c.restoreOnSync == nil && !c.sess.unsynced.Load()
	rejected := c.carryOut(res, sql, canRewrite)
	replacement := ""
	if rejected >= 0 {
		replacement = rejectStatement(res.Statements[rejected])
	} else if res.Action == guard.Rewrite {
		c.holdBatch(nil)
		c.batch.rewrite = &res.Statements[0]
		c.batch.g = g
		c.batch.params = append([]byte(nil), rest[qEnd+1:]...)
		return dropFrame, nil
	} else if p := c.planFor(res); p != nil {
		// Every execution of this statement needs the lock timeout; this
		// batch is protected now if it starts here, later ones at Bind.
		if c.stmtTimeouts == nil {
			c.stmtTimeouts = make(map[string]*timeoutPlan)
		}
		c.stmtTimeouts[string(body[:nameEnd])] = p
		switch {
		case c.batch != nil || c.restoreOnSync != nil:
			// Part of a batch already held or protected.
		case !c.sess.unsynced.Load():
			c.holdBatch(p) // first message of its batch: hold it until Sync
			c.batch.frames = appendFrame(c.batch.frames, 'P', body)
		default:
			replacement = raiseStatement(
				"ddlguard: "+res.Statements[0].Kind+" needs a lock timeout, which ddlguard cannot apply in the middle of a pipeline",
				"ddlguard sets lock_timeout before a batch starts and restores it after its Sync.",
				"Send this statement as the first message of its own batch (after a Sync).", codeNeedsOwnBatch)
		}
	}
	if c.batch != nil && replacement == "" {
		return dropFrame, nil // held with its batch
	}
	if replacement == "" {
		return forwardFrame, nil
	}
	// Same name and parameter types, statement replaced.
	out := make([]byte, 0, len(body)+512)
	out = append(out, 'P', 0, 0, 0, 0)
	out = append(out, body[:nameEnd+1]...)
	out = append(out, replacement...)
	out = append(out, 0)
	out = append(out, rest[qEnd+1:]...)
	binary.BigEndian.PutUint32(out[1:5], uint32(len(out)-1))
	return replaceFrame, out
}

// carryOut applies a result's effects on ddlguard's side: notices queued,
// decisions logged, session context advanced, facts invalidated. It returns
// the index of the statement that rejects the string, or -1. A rewrite is
// executed only when canRewrite (a single statement, where ddlguard can run
// the sequence in its place); otherwise it rejects with the sequence as its
// hint.
func (c *clientConn) carryOut(res guard.Result, sql string, canRewrite bool) int {
	rejected := -1
	for i := range res.Statements {
		d := &res.Statements[i]
		if d.Action == guard.Reject || (d.Action == guard.Rewrite && !(canRewrite && len(res.Statements) == 1)) {
			rejected = i
			break
		}
	}
	for i := range res.Statements {
		d := &res.Statements[i]
		normalized := guard.Normalize(d.Statement)
		c.srv.obs.Decided(c.decisionEvent(d, normalized, i == rejected))
		if d.Action != guard.Allow || len(d.Warnings) > 0 {
			c.audit(d, normalized, i == rejected)
		}
		if rejected >= 0 {
			continue // nothing of the string runs
		}
		for _, w := range d.Warnings {
			c.queueNotice(noticeFrame(codeWarn, "ddlguard: "+w.Rule+": "+w.Message, w.Detail, w.Hint))
		}
		if d.Unchecked {
			c.queueNotice(noticeFrame(codeUnchecked,
				"ddlguard: this statement could not be checked (the guard's parser does not know its syntax); it runs with lock_timeout "+d.LockTimeout.String(),
				firstLine(d.ParseError), ""))
		}
		c.gsess.Observe(d)
		for _, l := range d.Locks {
			c.facts.forget(l.Relation)
		}
	}
	return rejected
}

// queueNotice hands a notice to the upstream pump, which delivers it
// ahead of the next frame it relays.
func (c *clientConn) queueNotice(frame []byte) {
	c.noticeMu.Lock()
	c.notices = append(c.notices, frame...)
	c.noticeMu.Unlock()
	c.updateInspectAll()
}

// takeNotices returns and clears the queued notices (nil when none).
func (c *clientConn) takeNotices() []byte {
	c.noticeMu.Lock()
	defer c.noticeMu.Unlock()
	n := c.notices
	c.notices = nil
	if n != nil {
		c.inspectAll.Store(c.divert.Load() != nil || c.tagRewrite.Load() != nil)
	}
	return n
}

// updateInspectAll makes the upstream pump look at every frame while there
// are notices to deliver or responses to divert.
func (c *clientConn) updateInspectAll() {
	c.noticeMu.Lock()
	c.inspectAll.Store(c.notices != nil || c.divert.Load() != nil || c.tagRewrite.Load() != nil)
	c.noticeMu.Unlock()
}

// syncSession brings the guard's view of the session up to date from what
// the relay observed: transaction status (when nothing is in flight),
// server version, TimeZone, user and database.
func (c *clientConn) syncSession() {
	s := &c.gsess
	if s.ServerMajor == 0 {
		s.ServerMajor = serverMajor(c.sess.ServerVersion())
		s.Role, s.Database = c.sess.User, c.sess.Database
	}
	if tz := c.sess.TimeZone(); tz != "" {
		s.TimeZone = tz
	}
	if c.sess.pending.Load() == 0 && !c.sess.unsynced.Load() {
		switch c.sess.TxStatus() {
		case TxIdle:
			s.EndTransaction()
		case TxInBlock, TxFailed:
			s.InTransaction = true
		}
	}
}

// serverMajor reads the major version from server_version ("15.18 (Debian...)", "18beta1").
func serverMajor(v string) int {
	end := 0
	for end < len(v) && v[end] >= '0' && v[end] <= '9' {
		end++
	}
	n, _ := strconv.Atoi(v[:end])
	return n
}

// decisionEvent describes a decision for the Observer.
func (c *clientConn) decisionEvent(d *guard.Decision, normalized string, rejecting bool) DecisionEvent {
	ev := DecisionEvent{Time: time.Now(), ConnID: c.id, BackendPID: c.sess.backendPID, User: c.sess.User,
		Database: c.sess.Database, Application: c.sess.ApplicationName, Client: c.sess.ClientAddr,
		Action: d.Action.String(), Kind: d.Kind, Statement: normalized}
	if rejecting && d.Action == guard.Rewrite {
		ev.Action = guard.Reject.String()
	}
	if f := d.Deciding; f != nil {
		ev.Rule = f.Rule
	}
	for _, w := range d.Warnings {
		ev.Warnings = append(ev.Warnings, w.Rule)
	}
	for _, l := range d.Locks {
		ev.Relations = append(ev.Relations, l.Relation+" "+l.Mode.String())
	}
	return ev
}

// audit logs one decision other than a plain allow.
func (c *clientConn) audit(d *guard.Decision, normalized string, rejecting bool) {
	attrs := []any{
		"conn_id", c.id,
		"user", c.sess.User,
		"database", c.sess.Database,
		"application_name", c.sess.ApplicationName,
		"client", c.sess.ClientAddr,
		"action", d.Action.String(),
		"kind", d.Kind,
		"statement", normalized,
	}
	if rejecting && d.Action == guard.Rewrite {
		attrs = append(attrs, "executed_as", "reject")
	}
	if f := d.Deciding; f != nil {
		attrs = append(attrs, "rule", f.Rule)
	}
	var rules, overrides []string
	for _, w := range d.Warnings {
		rules = append(rules, w.Rule)
		if w.Override != "" {
			overrides = append(overrides, w.Rule+": "+w.Override)
		}
	}
	if len(rules) > 0 {
		attrs = append(attrs, "warnings", strings.Join(rules, ","))
	}
	if len(overrides) > 0 {
		attrs = append(attrs, "overrides", strings.Join(overrides, "; "))
	}
	if d.Unchecked {
		attrs = append(attrs, "unchecked", true)
	}
	if len(d.Locks) > 0 {
		var locks []string
		for _, l := range d.Locks {
			locks = append(locks, l.Relation+" "+l.Mode.String())
		}
		attrs = append(attrs, "locks", strings.Join(locks, "; "))
	}
	c.srv.log.Info("decision", attrs...)
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
