package proxy

import (
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/ddlguard/ddlguard/guard"
)

// Executed rewrites. A `rewrite` decision replaces the client's statement
// by the guard's safe sequence (e.g. CREATE INDEX -> CREATE INDEX
// CONCURRENTLY; ADD FOREIGN KEY -> ... NOT VALID, then VALIDATE). ddlguard
// runs the steps one by one on the client's connection, each decided by the
// guard in turn, so steps that take strong locks get the blocker check, the
// lock timeout and retries. The client sees what its statement would have
// produced: one CommandComplete with the original tag (or the failing
// step's error), preceded by one NoticeResponse (SQLSTATE 01Z03) listing
// what ran. When step k fails, what steps 1..k-1 created is taken back
// (guard.UndoStatement) and INVALID indexes the failed step left are
// dropped concurrently, so the failure leaves what the original
// statement's failure would have left; what could not be taken back is
// named in the notice.
//
// A client that hangs up mid-sequence (clientwatch.go) is treated like a
// failing step: a step of its running on the server is cancelled, later
// steps never run, and steps 1..k-1 are taken back on the upstream
// connection before the relay closes it. The clean-up waits for blockers
// like any step, but for a departed client all of it ends within one retry
// budget (blocker waits end by then, and each clean-up statement runs with
// statement_timeout = the time left), so its backend does not outlive it
// by more. Nobody is left to read the notice: what was taken back is
// logged, and what could not be (or what is left when the upstream
// connection itself was lost) is logged at WARN with the SQL that removes
// it.

// rewriteOutcome is the result of running a rewrite sequence.
type rewriteOutcome struct {
	ran, undone, kept []string
	errBody           []byte // the failing step's ErrorResponse body, if any
	status            byte   // transaction status at the end
	lockWait          time.Duration
}

// executeRewrite runs d's safe sequence. The caller has waited for a sync
// point and the session is not in an aborted transaction.
func (c *clientConn) executeRewrite(g *guard.Guard, d *guard.Decision) rewriteOutcome {
	out := rewriteOutcome{status: c.sess.TxStatus()}
	steps := d.Deciding.Rewrite
	table := rewriteTable(d)
	invalidBefore, beforeErr := c.invalidIndexes(table)
	c.userCancel.Store(false)
	for i, step := range steps {
		var answer []divertedFrame
		var errBody []byte
		if !c.clientLeft() { // nothing more runs for a client that has gone
			var waited time.Duration
			answer, errBody, waited = c.runStep(g, step, d.Deciding.StepLocks[step], d.LockTimeout)
			out.lockWait += waited
		}
		if errBody == nil && answer != nil {
			out.ran = append(out.ran, step)
			out.status = lastStatus(answer, out.status)
			continue
		}
		out.errBody = errBody
		if errBody != nil {
			out.errBody = originalError(d, errBody)
		}
		if out.errBody == nil {
			out.errBody = errorBody(codeConnectionFailure, "ddlguard: the connection failed during a rewrite step", step, "")
		}
		c.beginCleanup()
		if c.clientGone.Load() {
			// Nobody can cancel the clean-up of a departed client: it ends
			// within the retry budget.
			c.cleanupUntil = time.Now().Add(c.srv.cfg.Exec.RetryBudget)
		}
		for _, u := range guard.UndoSequence(steps[:i], d.Deciding.StepUndo) {
			c.undo(g, u, &out)
		}
		if after, err := c.invalidIndexes(table); err == nil && beforeErr == nil {
			for _, ix := range after {
				if !contains(invalidBefore, ix) {
					c.undo(g, "DROP INDEX CONCURRENTLY IF EXISTS "+ix, &out)
				}
			}
		}
		c.cleanupUntil = time.Time{}
		c.endCleanup()
		return out
	}
	return out
}

// runStep runs one step of a sequence: under the lock timeout, blocker
// check and retries when it takes SHARE or stronger on an existing table
// (whatever the guard would say of the step on its own: steps are the safe
// form already); known are the step's locks when the planner gave them
// (guard.Finding.StepLocks), else the guard reads them from the step. It
// returns the server's answer, or the error to report,
// and the time the step spent in the lock queue (see Observer.GuardedDone).
func (c *clientConn) runStep(g *guard.Guard, step string, known []guard.Lock, lockTimeout time.Duration) ([]divertedFrame, []byte, time.Duration) {
	p := c.stepPlan(g, step, known, lockTimeout)
	var o runOutcome
	if p == nil {
		c.stepRunning.Store(true)
		answer, err := c.internalQuery(step, 24*time.Hour)
		c.stepRunning.Store(false)
		o = runOutcome{answer: answer}
		if err != nil {
			o.answer = nil
		}
	} else {
		o = c.runWithPlan(queryFrame(step), p, true)
	}
	switch {
	case o.cancelled:
		return nil, errorBody("57014", "canceling statement due to user request", "ddlguard was running: "+step, ""), o.lockWait
	case o.blocked != nil:
		return nil, errorBody(codeLockNotAvailable, "ddlguard: could not run "+firstLine(step)+" without queueing in front of other sessions",
			"blocked by: "+describeBlockers(o.blocked), "Retry later, or end the blocking session."), o.lockWait
	case o.answer == nil:
		return nil, nil, o.lockWait
	}
	for _, f := range o.answer {
		if f.typ == 'E' {
			return o.answer, f.body, o.lockWait
		}
	}
	return o.answer, nil, o.lockWait
}

// stepPlan is the lock plan of one step, from its locks alone: known, or
// as the guard reads them (an ALTER DOMAIN step's locks come from the
// domain's facts). A step that locks relations the facts cannot name gets
// the lock timeout and retries with nothing for the blocker check.
func (c *clientConn) stepPlan(g *guard.Guard, step string, known []guard.Lock, lockTimeout time.Duration) *timeoutPlan {
	p := &timeoutPlan{lockTimeout: lockTimeout}
	unknown := false
	decided := []guard.Decision{{Locks: known}}
	if known == nil {
		decided = g.Decide(step, &c.gsess, c.stepFacts(g, step)).Statements
	}
	for _, d := range decided {
		unknown = unknown || d.LocksUnknown
		for _, l := range d.Locks {
			if l.Mode >= guard.Share && !l.Created && !c.gsess.Temp[l.Relation] {
				p.targets = append(p.targets, l)
				p.accessExclusive = p.accessExclusive || l.Mode == guard.AccessExclusive
			}
		}
	}
	if (len(p.targets) == 0 && !unknown) || lockTimeout <= 0 {
		return nil
	}
	return p
}

// undo runs a clean-up statement, recording whether it worked. Past
// c.cleanupUntil it is not run; before, statement_timeout bounds it.
func (c *clientConn) undo(g *guard.Guard, sql string, out *rewriteOutcome) {
	if !c.cleanupUntil.IsZero() {
		left := time.Until(c.cleanupUntil)
		if left < time.Millisecond || c.hidden(fmt.Sprintf("SET statement_timeout = '%dms'", left.Milliseconds())) != nil {
			out.kept = append(out.kept, sql)
			return
		}
	}
	if answer, errBody, _ := c.runStep(g, sql, nil, c.srv.guard.Load().Config().LockTimeout); errBody != nil || answer == nil {
		out.kept = append(out.kept, sql)
		return
	}
	out.undone = append(out.undone, sql)
}

// rewriteTable is the table whose indexes a rewrite may leave INVALID.
func rewriteTable(d *guard.Decision) string {
	for _, l := range d.Locks {
		if l.Work == guard.WorkIndexBuild {
			return l.Relation
		}
	}
	if len(d.Locks) > 0 {
		return d.Locks[0].Relation
	}
	return ""
}

// invalidIndexes lists the INVALID indexes of table and of its partitions
// (qualified, quoted), not those of partitioned tables (dropped with their
// parent index by the undo).
func (c *clientConn) invalidIndexes(table string) ([]string, error) {
	if table == "" {
		return nil, nil
	}
	nsp, rel, err := nameLiterals(table)
	if err != nil {
		return nil, err
	}
	q := `/* ddlguard invalid indexes */ WITH RECURSIVE tree(oid) AS (SELECT c.oid FROM ` + resolveRelationSQL(nsp+"::text", rel+"::name") + `
  UNION ALL SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN tree ON i.inhparent = tree.oid)
SELECT quote_ident(n.nspname) || '.' || quote_ident(i.relname) FROM tree
JOIN pg_catalog.pg_index x ON x.indrelid = tree.oid AND NOT x.indisvalid
JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid AND i.relkind = 'i' JOIN pg_catalog.pg_namespace n ON n.oid = i.relnamespace`
	frames, err := c.internalQuery(q, factsWait)
	if err != nil {
		return nil, err
	}
	rows, err := dataRows(frames, 1)
	var out []string
	for _, row := range rows {
		out = append(out, string(row[0]))
	}
	return out, err
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// lastStatus is the transaction status of the answer's ReadyForQuery.
func lastStatus(frames []divertedFrame, def byte) byte {
	for _, f := range frames {
		if f.typ == 'Z' && len(f.body) == 1 {
			def = f.body[0]
		}
	}
	return def
}

// rewriteNotice is the NoticeResponse that tells the client what ran.
func rewriteNotice(d *guard.Decision, o rewriteOutcome) []byte {
	f := d.Deciding
	msg := "ddlguard: " + f.Rule + ": ran the safe sequence instead of the statement: " + strings.Join(o.ran, "; ")
	if len(o.ran) == 0 {
		msg = "ddlguard: " + f.Rule + ": the safe sequence failed at its first step"
	}
	var detail []string
	if o.errBody != nil {
		detail = append(detail, fmt.Sprintf("step %d of %d failed: %s", len(o.ran)+1, len(f.Rewrite), firstLine(f.Rewrite[len(o.ran)])))
	}
	if len(o.undone) > 0 {
		detail = append(detail, "taken back: "+strings.Join(o.undone, "; "))
	}
	if len(o.kept) > 0 {
		detail = append(detail, "could not be taken back (drop it yourself): "+strings.Join(o.kept, "; "))
	}
	return noticeFrame(codeRewritten, msg, strings.Join(detail, "\n"), f.Message)
}

// rewriteAnswer is the answer to a simple Query whose statement was
// rewritten.
func (c *clientConn) rewriteAnswer(d *guard.Decision, o rewriteOutcome) []byte {
	frames := []divertedFrame{}
	if o.errBody != nil {
		frames = append(frames, divertedFrame{'E', o.errBody})
	} else {
		cc, _ := (&pgproto3.CommandComplete{CommandTag: []byte(d.Kind)}).Encode(nil)
		frames = append(frames, divertedFrame{'C', cc[5:]})
	}
	frames = append(frames, divertedFrame{'Z', []byte{o.status}})
	c.queueNotice(rewriteNotice(d, o))
	return c.answer(frames)
}

// observedRewrite is executeRewrite, reported to the Observer.
func (c *clientConn) observedRewrite(g *guard.Guard, d *guard.Decision) rewriteOutcome {
	start := time.Now()
	stop := c.watchClient()
	o := c.executeRewrite(g, d)
	stop()
	if o.errBody != nil && (c.clientGone.Load() || c.closing() || c.upstreamStopped()) {
		c.logInterruptedRewrite(d, o)
	}
	c.srv.obs.Rewritten(d.Deciding.Rule, o.errBody == nil)
	c.srv.obs.GuardedDone(d.Kind, time.Since(start), o.lockWait)
	return o
}

// logInterruptedRewrite logs how a sequence ended whose client is gone (or
// whose connection was lost): nobody reads the notice.
func (c *clientConn) logInterruptedRewrite(d *guard.Decision, o rewriteOutcome) {
	msg := "client left during an executed rewrite"
	if !c.clientGone.Load() {
		msg = "connection lost during an executed rewrite"
	}
	attrs := []any{"conn_id", c.id, "rule", d.Deciding.Rule, "kind", d.Kind, "ran", o.ran, "taken_back", o.undone}
	if len(o.kept) == 0 {
		c.srv.log.Info(msg+"; what its steps created was taken back", attrs...)
		return
	}
	c.srv.log.Warn(msg+"; some of what its steps created is left: run left_behind to remove it",
		append(attrs, "left_behind", o.kept)...)
}

// rewriteBatch runs the sequence of a held extended-protocol batch, then
// sends the batch with its Parse replaced (see rewriteParse).
func (c *clientConn) rewriteBatch(b *heldBatch) (frameAction, []byte) {
	if !c.waitIdle(factsIdleWait) || c.sess.TxStatus() == TxFailed {
		return replaceFrame, append(queryParse(rejectStatement(b.rewrite), b.params), b.frames...)
	}
	o := c.observedRewrite(b.g, b.rewrite)
	c.queueNotice(rewriteNotice(b.rewrite, o))
	return replaceFrame, append(c.rewriteParse(b.params, b.rewrite, o), b.frames...)
}

// originalError turns a step's error into the one the original statement
// would have raised, where the decision says they differ
// (guard.Finding.StepErrors).
func originalError(d *guard.Decision, body []byte) []byte {
	var e pgproto3.ErrorResponse
	if len(d.Deciding.StepErrors) == 0 || e.Decode(body) != nil {
		return body
	}
	for _, m := range d.Deciding.StepErrors {
		if m.Code != e.Code {
			continue
		}
		out := pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: m.As,
			Message:    fmt.Sprintf(m.Message, m.Column, e.TableName),
			SchemaName: e.SchemaName, TableName: e.TableName, ColumnName: m.Column}
		enc, err := out.Encode(nil)
		if err != nil {
			return body
		}
		return enc[5:]
	}
	return body
}

// rewriteParse returns the Parse that stands in for a rewritten statement
// in an extended-protocol batch: a no-op (its "DO" tag is then reported as
// the original's) or the failing step's error, raised by the server.
func (c *clientConn) rewriteParse(params []byte, d *guard.Decision, o rewriteOutcome) []byte {
	q := "DO $ddlguard$BEGIN END$ddlguard$"
	if o.errBody != nil {
		var e pgproto3.ErrorResponse
		if e.Decode(o.errBody) == nil {
			q = reraiseStatement(&e)
			c.stripNextContext.Store(true) // the re-raise's PL/pgSQL context is ddlguard's, not the client's
		}
	} else {
		tag := d.Kind
		c.tagRewrite.Store(&tag)
	}
	return queryParse(q, params)
}
