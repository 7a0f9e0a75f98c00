package proxy

import (
	"bytes"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/ddlguard/ddlguard/guard"
)

// Asking the guard. The client hook (hooks.go) calls interceptQuery for
// every simple Query and interceptParse for every Parse, before the frame
// leaves. Plain DML costs one lexical pre-check on a view of the read
// buffer: no copy, no parse, no allocation. A statement that may need a
// decision gets its catalog facts (facts.go), a guard.Request saying what
// ddlguard can do with it here, and the guard's final answer, which
// carryOut (dispatch.go) carries out.

// interceptQuery decides a simple Query message.
// inLoop: an event loop runs the client pump; a statement that needs a
// decision is deferred to the pump's goroutine.
func (c *clientConn) interceptQuery(body []byte, inLoop bool) (frameAction, []byte) {
	g := c.srv.guard.Load()
	if g == nil || len(body) == 0 {
		return forwardFrame, nil
	}
	view := unsafe.String(unsafe.SliceData(body), len(body)-1) // body is "sql\x00"
	c.syncSession()
	if !guard.NeedsDecision(view, &c.gsess) {
		c.facts.dropKept() // it may write rows
		c.srv.obs.StatementPassed()
		return forwardFrame, nil
	}
	if inLoop {
		return deferFrame, nil
	}
	sql := strings.Clone(view)
	facts := c.factsFor(g, sql, true)
	// A rewrite runs in the statement's place once the server owes the
	// client nothing, outside an aborted transaction.
	rewritable := c.waitIdle(factsIdleWait) && c.sess.TxStatus() != TxFailed
	res := g.Ask(guard.Request{SQL: sql, Session: &c.gsess, Facts: facts, Rewritable: rewritable})
	return c.carryOut(g, simpleQuery{c: c, sql: sql, g: g}, res)
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

// interceptParse decides the statement of a Parse message, once per
// prepared statement (Executes reuse the decision the server now holds).
// inLoop as for interceptQuery.
func (c *clientConn) interceptParse(body []byte, inLoop bool) (frameAction, []byte) {
	g := c.srv.guard.Load()
	if g == nil {
		return forwardFrame, nil
	}
	view, ok := parseText(body)
	if !ok {
		return forwardFrame, nil // malformed: the server reports it
	}
	nameEnd := bytes.IndexByte(body, 0)
	c.syncSession()
	needed := guard.NeedsDecision(view, &c.gsess)
	if needed && inLoop {
		return deferFrame, nil
	}
	if c.stmtTimeouts != nil {
		delete(c.stmtTimeouts, string(body[:nameEnd]))
	}
	if !needed {
		c.facts.parsed(body[:nameEnd], false)
		c.facts.dropKept() // it may write rows
		c.srv.obs.StatementPassed()
		return forwardFrame, nil
	}
	sql := strings.Clone(view)
	// Facts can be asked only at a sync boundary (nothing of an extended
	// batch sent yet); inside a pipeline the guard gets "unknown".
	atSync := !c.sess.unsynced.Load()
	facts := c.factsFor(g, sql, atSync)
	// Rewrites run for an unnamed statement that starts its batch (a named
	// one could be executed again later, when the sequence has run).
	rewritable := nameEnd == 0 && c.batch == nil && c.restoreOnSync == nil && atSync && c.sess.TxStatus() != TxFailed
	res := g.Ask(guard.Request{SQL: sql, Session: &c.gsess, Facts: facts, Rewritable: rewritable})
	c.facts.parsed(body[:nameEnd], keepsShapes(res))
	return c.carryOut(g, parseMessage{c: c, g: g, body: body, nameEnd: nameEnd, textLen: len(view)}, res)
}

// record applies a result's effects on ddlguard's side: decisions
// counted and logged, notices queued, session context advanced, facts
// invalidated (or kept, where the guard says they outlive the string:
// guard.FactsOutlive). When a statement rejects the string nothing of it
// runs: only the decisions are recorded, the statements after the
// rejecting one as the rules chose them.
func (c *clientConn) record(g *guard.Guard, res guard.Result) {
	rejecting := res.Rejecting()
	keepable := keepsShapes(res)
	if !keepable && rejecting < 0 {
		c.facts.dropKept()
	}
	for i := range res.Statements {
		d := &res.Statements[i]
		normalized := guard.Normalize(d.Statement)
		c.srv.obs.Decided(c.decisionEvent(d, normalized, i == rejecting))
		if d.Action != guard.Allow || len(d.Warnings) > 0 {
			c.audit(d, normalized, i == rejecting)
		}
		if rejecting >= 0 {
			continue
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
			if f := c.facts.m[l.Relation]; keepable && f != nil && g.FactsOutlive(d, l.Relation, *f, &c.gsess) {
				c.facts.keepSize(l.Relation)
			} else {
				c.facts.forget(l.Relation)
			}
		}
	}
}

// keepsShapes: every statement of the string keeps shapes
// (guard.Decision.KeepsShape).
func keepsShapes(res guard.Result) bool {
	for i := range res.Statements {
		if !res.Statements[i].KeepsShape {
			return false
		}
	}
	return true
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

// shownAction is the action a decision is counted and logged under: what
// was carried out for the statement that rejects its string, what the
// rules chose for the others.
func shownAction(d *guard.Decision, rejecting bool) guard.Action {
	if rejecting {
		return d.Action
	}
	return d.Planned
}

// decisionEvent describes a decision for the Observer.
func (c *clientConn) decisionEvent(d *guard.Decision, normalized string, rejecting bool) DecisionEvent {
	ev := DecisionEvent{Time: time.Now(), ConnID: c.id, BackendPID: c.sess.backendPID, User: c.sess.User,
		Database: c.sess.Database, Application: c.sess.ApplicationName, Client: c.sess.ClientAddr,
		Action: shownAction(d, rejecting).String(), Kind: d.Kind, Statement: normalized}
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
		"action", d.Planned.String(),
		"kind", d.Kind,
		"statement", normalized,
	}
	if shown := shownAction(d, rejecting); shown != d.Planned {
		attrs = append(attrs, "executed_as", shown.String())
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
