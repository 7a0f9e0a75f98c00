package proxy

import (
	"bytes"
	"cmp"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/ddlguard/ddlguard/guard"
	"github.com/jackc/pgx/v5/pgproto3"
)

// Lock-aware execution of `timeout` decisions.
//
// A guarded statement must never wait in the lock queue long enough to
// stall the readers queued behind it. Before sending it, ddlguard asks the
// server (on the client's own connection, invisibly, at a sync point;
// often already answered by the facts query, lockstate.go) which other
// sessions hold or wait for locks on the target tables that conflict with
// the lock the statement needs. While there are any, it waits outside the
// queue, polling, within the retry budget. Then it runs the statement with
// a short lock_timeout for that statement only, in one round trip
// (protected.go):
//
//	SET [LOCAL] lock_timeout = '<short>'   -- hidden from the client
//	<the client's statement>               -- its answer relayed as is
//	SET [LOCAL] lock_timeout = '<before>'  -- hidden; restores the session's value
//
// (SET LOCAL inside the client's transaction, so that its own setting comes
// back at COMMIT or ROLLBACK; in autocommit, where the statement allows it,
// set for the statement's own implicit transaction, in the same string or
// in front of the same batch, and no restore; a session whose
// lock_timeout is already as short is left alone.) In autocommit, a single
// statement that still loses the race and fails with lock_not_available
// (55P03) is retried with backoff and jitter; inside a transaction it is
// not (the error has aborted the client's transaction, and ddlguard does
// not own a savepoint there). When the budget runs out, the client gets
// 55P03 naming the blockers, raised by the server itself so the session is
// left as PostgreSQL would leave it.
//
// A transaction that already holds SHARE or stronger is never kept
// waiting: every moment it waits, the sessions queued behind its locks wait
// too. Its statement gets one look for blockers: a session seen idle in a
// transaction (or otherwise holding for long) ends it at once with 55P03,
// anything else gets the lock timeout; either way the error names who was
// in the way and says to run the whole transaction again. Transactions
// that ddlguard keeps waiting for each other (each holds a lock on a table
// the other is to change) form a cycle PostgreSQL's deadlock detector
// cannot see: ddlguard fails one of them with deadlock_detected (40P01)
// at once, as PostgreSQL would (waitgraph.go).
//
// Extended protocol: a batch that starts with a statement that needs the
// lock timeout is held until its Sync and run the same way (heldbatch.go);
// a statement that needs a timeout in the middle of a pipeline is rejected
// with advice to send it in its own batch.

// ExecConfig tunes lock-aware execution. Zero fields take defaults.
type ExecConfig struct {
	// RetryBudget bounds the whole attempt: waiting for blockers, retries.
	RetryBudget time.Duration
	// BackoffMin and BackoffMax bound the (jittered) exponential backoff
	// between retries after a lock timeout.
	BackoffMin, BackoffMax time.Duration
	// BlockerPoll is the interval of the blocker check while waiting.
	BlockerPoll time.Duration
	// NoBlockerCheck sends guarded statements without looking for blockers.
	NoBlockerCheck bool
	// IdleInTransactionTimeout bounds how long a client transaction may sit
	// idle after a statement took ACCESS EXCLUSIVE (SET LOCAL
	// idle_in_transaction_session_timeout); negative disables.
	IdleInTransactionTimeout time.Duration
}

// Execution defaults.
const (
	DefaultRetryBudget              = 30 * time.Second
	DefaultBackoffMin               = 100 * time.Millisecond
	DefaultBackoffMax               = 2 * time.Second
	DefaultBlockerPoll              = 100 * time.Millisecond
	DefaultIdleInTransactionTimeout = 5 * time.Second
)

func (e ExecConfig) withDefaults() ExecConfig {
	e.RetryBudget = cmp.Or(e.RetryBudget, DefaultRetryBudget)
	e.BackoffMin = cmp.Or(e.BackoffMin, DefaultBackoffMin)
	e.BackoffMax = cmp.Or(e.BackoffMax, DefaultBackoffMax)
	e.BlockerPoll = cmp.Or(e.BlockerPoll, DefaultBlockerPoll)
	e.IdleInTransactionTimeout = cmp.Or(e.IdleInTransactionTimeout, DefaultIdleInTransactionTimeout)
	return e
}

// timeoutPlan is what running guarded statements needs: the lock timeout
// and the locks (for the blocker check).
type timeoutPlan struct {
	lockTimeout     time.Duration
	targets         []guard.Lock // existing relations locked SHARE or stronger
	accessExclusive bool
	kind            string // the (first) guarded statement's kind, for metrics
	// blockNeutral: the statements run as one transaction that ends with
	// them (oneTransaction), and they run the same with ddlguard's SET
	// LOCAL in front in that transaction: every one block-neutral
	// (guard.Decision), or the transaction is the client's own BEGIN ...
	// COMMIT block.
	blockNeutral bool
	// oneTransaction: the statements run as one transaction that ends
	// with them, so a failed attempt leaves nothing behind.
	oneTransaction bool
	// holding: the client's transaction already holds SHARE or stronger
	// on some relation (guard.Session.HoldsStrongLock), so every moment
	// ddlguard waits, sessions wait for that transaction: no waiting for
	// blockers, and a failure says to retry the transaction as a whole.
	holding bool
}

// slowWork: a statement of the plan scans, rewrites or builds under its lock.
func (p *timeoutPlan) slowWork() bool {
	for _, l := range p.targets {
		if l.Work.Slow() {
			return true
		}
	}
	return false
}

// planFor builds the plan for a result's timeout statements.
func (c *clientConn) planFor(res guard.Result) *timeoutPlan {
	p := &timeoutPlan{oneTransaction: oneTransaction(res)}
	p.blockNeutral = p.oneTransaction
	explicit := len(res.Statements) > 1 && res.Statements[0].Effects.TxControl == guard.TxBegin
	for _, d := range res.Statements {
		p.blockNeutral = p.blockNeutral && (d.BlockNeutral || explicit)
		if d.Action != guard.Timeout {
			continue
		}
		if p.lockTimeout == 0 || d.LockTimeout < p.lockTimeout {
			p.lockTimeout = d.LockTimeout
		}
		if p.kind == "" {
			p.kind = d.Kind
		}
		for _, l := range d.Locks {
			if l.Mode >= guard.Share && !l.Created && !c.gsess.Temp[l.Relation] {
				p.targets = append(p.targets, l)
				p.accessExclusive = p.accessExclusive || l.Mode == guard.AccessExclusive
			}
		}
	}
	if p.lockTimeout == 0 {
		return nil
	}
	return p
}

// oneTransaction reports whether the statements of a string run as one
// transaction that ends with the string: none is transaction control, or
// a BEGIN comes first, a COMMIT or ROLLBACK last and none between. An
// error anywhere then takes back everything the string did.
func oneTransaction(res guard.Result) bool {
	n := len(res.Statements)
	if n == 0 {
		return false
	}
	explicit := res.Statements[0].Effects.TxControl == guard.TxBegin
	for i, d := range res.Statements {
		switch tc := d.Effects.TxControl; {
		case tc == guard.TxNone:
		case tc == guard.TxBegin && i == 0:
		case tc == guard.TxEnd && i == n-1 && explicit && d.Kind != "PREPARE TRANSACTION":
		default:
			return false
		}
	}
	return !explicit || (n > 1 && res.Statements[n-1].Effects.TxControl == guard.TxEnd)
}

// pgDuration reads a time setting as SHOW prints it ("0", "500ms", "1s",
// "2min"); ok is false for anything else.
func pgDuration(s string) (time.Duration, bool) {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil {
		return 0, false
	}
	unit := map[string]time.Duration{"": time.Millisecond, "us": time.Microsecond, "ms": time.Millisecond, "s": time.Second,
		"min": time.Minute, "h": time.Hour, "d": 24 * time.Hour}[strings.TrimSpace(s[i:])]
	if unit == 0 {
		return 0, false
	}
	return time.Duration(n) * unit, true
}

// timeoutStatements returns the hidden SET before the guarded statement
// and the restore after it ("" when the session's own lock_timeout is
// already as short). local: SET LOCAL, for a statement that runs in a
// transaction.
func timeoutStatements(prev string, want time.Duration, local bool) (set, restore string) {
	if d, ok := pgDuration(prev); ok && d > 0 && d <= want {
		return "", ""
	}
	kw := "SET"
	if local {
		kw = "SET LOCAL"
	}
	return fmt.Sprintf("%s lock_timeout = '%dms'", kw, want.Milliseconds()),
		kw + " lock_timeout = " + sqlLiteral(prev)
}

// closing reports whether the connection is being torn down.
func (c *clientConn) closing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// pause sleeps, waking early when the client cancels or goes away.
func (c *clientConn) pause(d time.Duration) {
	end := time.Now().Add(d)
	for time.Now().Before(end) && !c.userCancel.Load() && !c.clientLeft() {
		time.Sleep(min(10*time.Millisecond, time.Until(end)))
	}
}

// cancelledByUser answers a statement the client cancelled while ddlguard
// was waiting for it, with the error PostgreSQL gives a cancelled statement.
func cancelledByUser() (frameAction, []byte) {
	return replaceFrame, queryFrame(raiseStatement("canceling statement due to user request",
		"ddlguard was waiting for the locks the statement needs (no lock had been requested yet).", "", "57014"))
}

// executeTimeoutQuery runs a simple Query whose statements need the lock
// timeout, and delivers the answer to the client itself. It returns how
// the client's original frame is to be treated.
func (c *clientConn) executeTimeoutQuery(sql string, res guard.Result, p *timeoutPlan) (frameAction, []byte) {
	for _, d := range res.Statements {
		if d.Kind == "COPY" {
			// A COPY's data flows between client and server mid-answer: it
			// cannot be run on the client's behalf. Sent as it is.
			return forwardFrame, nil
		}
	}
	// Retried as a unit when a failed attempt leaves nothing behind (and
	// the client has seen nothing of it: ddlguard holds the answer).
	return c.runGuarded(queryFrame(sql), p, p.oneTransaction)
}

// runGuarded runs frames (a Query, or an extended batch ending in Sync)
// under plan p: blocker check, statement-only lock timeout, retries when
// retryable and in autocommit; then delivers the answer to the client.
func (c *clientConn) runGuarded(frames []byte, p *timeoutPlan, retryable bool) (frameAction, []byte) {
	if !c.waitIdle(factsIdleWait) {
		return replaceFrame, queryFrame(raiseStatement(
			"ddlguard: a statement that needs a lock timeout was pipelined behind unfinished queries",
			"ddlguard runs such statements only when the server owes the client nothing.",
			"Wait for the previous results before sending it.", codeNeedsOwnBatch))
	}
	if c.sess.TxStatus() == TxFailed {
		return replaceFrame, frames // the server refuses it anyway
	}
	c.userCancel.Store(false)
	start := time.Now()
	stop := c.watchClient()
	out := c.runWithPlan(frames, p, retryable)
	stop()
	c.srv.obs.GuardedDone(p.kind, time.Since(start), out.lockWait)
	switch {
	case out.cancelled:
		return cancelledByUser()
	case out.blocked != nil:
		return c.deliverFinal(p, out.blocked, out.attempts)
	case out.answer == nil:
		return dropFrame, nil // the client or the connection is going away
	}
	return replyFrame, c.answer(out.answer)
}

// runOutcome is how running frames under a plan ended.
type runOutcome struct {
	answer    []divertedFrame // the server's answer (nil when nothing was sent or the connection broke)
	blocked   *preflight      // the budget ran out with these blockers
	cancelled bool            // the client cancelled while ddlguard waited
	attempts  int
	lockWait  time.Duration // time spent in the server's lock queue (see Observer.GuardedDone)
}

// runWithPlan runs frames (ending in exactly one ReadyForQuery) under plan
// p: blocker check, statement-only lock timeout, retries when retryable and
// in autocommit. The caller has waited for a sync point.
func (c *clientConn) runWithPlan(frames []byte, p *timeoutPlan, retryable bool) runOutcome {
	cfg := c.srv.cfg.Exec
	inTx := c.sess.TxStatus() == TxInBlock
	retry := !inTx && retryable
	deadline := time.Now().Add(cfg.RetryBudget)
	if !c.cleanupUntil.IsZero() && c.cleanupUntil.Before(deadline) {
		deadline = c.cleanupUntil // the clean-up after a departed client
	}
	if inTx && p.holding {
		deadline = time.Now() // one look for blockers, no waiting
	}
	c.waitingForClient.Store(true)
	defer c.waitingForClient.Store(false)
	obs := c.srv.obs
	obs.WaitingChanged(1)
	defer obs.WaitingChanged(-1)
	var lockWait time.Duration // attempts that ended in a lock timeout
	for attempt := 0; ; attempt++ {
		c.waitingForClient.Store(true)
		waitStart := time.Now()
		pf, err := c.waitForBlockers(p, deadline)
		obs.BlockerWait(time.Since(waitStart))
		if c.clientLeft() {
			return runOutcome{attempts: attempt, lockWait: lockWait} // nothing more runs for a departed client
		}
		if c.userCancel.Swap(false) {
			return runOutcome{cancelled: true, lockWait: lockWait}
		}
		if err != nil {
			c.srv.log.Warn("preflight failed; sending the statement with the lock timeout only", "conn_id", c.id, "err", err)
			pf = &preflight{lockTimeout: "0"}
		}
		if len(pf.blockers) > 0 {
			if !pf.deadlock {
				obs.RetryBudgetExhausted()
			}
			return runOutcome{blocked: pf, attempts: attempt, lockWait: lockWait}
		}
		if c.clientLeft() {
			return runOutcome{attempts: attempt, lockWait: lockWait}
		}
		c.waitingForClient.Store(false) // the statement runs now: cancels go to the server
		sent := time.Now()
		c.stepRunning.Store(true)
		answer, err := c.runProtected(frames, p, pf, inTx)
		c.stepRunning.Store(false)
		if err != nil {
			return runOutcome{lockWait: lockWait}
		}
		ran := time.Since(sent)
		timedOut := lockNotAvailable(answer)
		if timedOut {
			obs.LockTimeout()
			lockWait += ran
		} else if !p.slowWork() {
			lockWait += ran // nothing to do under the lock: the time went to getting it
		}
		if retry && timedOut && time.Now().Before(deadline) {
			if lastStatus(answer, TxIdle) == TxFailed {
				// The string's own transaction block, aborted: ended
				// before the next attempt.
				if err := c.hidden("ROLLBACK"); err != nil {
					return runOutcome{answer: answer, attempts: attempt + 1, lockWait: lockWait}
				}
			}
			c.srv.log.Info("lock timeout; retrying", "conn_id", c.id, "attempt", attempt+1)
			c.waitingForClient.Store(true)
			c.pause(min(backoff(cfg, attempt), time.Until(deadline)))
			if c.clientLeft() {
				return runOutcome{attempts: attempt + 1, lockWait: lockWait}
			}
			if c.userCancel.Load() {
				return runOutcome{answer: answer, attempts: attempt + 1, lockWait: lockWait}
			}
			obs.LockRetry()
			continue
		}
		if timedOut && inTx && p.holding {
			var seen []string
			for _, b := range pf.holders {
				seen = append(seen, b.describe())
			}
			answer = withAdvice(answer, strings.Join(seen, "\n"), retryWholeTransaction)
		}
		if timedOut && retry {
			obs.RetryBudgetExhausted()
			if pf2, err := c.runPreflight(p); err == nil && len(pf2.blockers) > 0 {
				pf2.blockers = longHolders(pf2.blockers, hiddenHolders(pf2.blockers))
				if len(pf2.blockers) > 0 {
					return runOutcome{blocked: pf2, attempts: attempt + 1, lockWait: lockWait}
				}
			}
		}
		return runOutcome{answer: answer, attempts: attempt + 1, lockWait: lockWait}
	}
}

// retryWholeTransaction is the advice when a guarded statement fails
// inside a transaction that holds locks: ddlguard does not wait there (the
// sessions queued behind those locks would wait with it).
const retryWholeTransaction = "The transaction is aborted, so its locks go at its ROLLBACK: roll back and run the whole transaction (the migration) again."

// withAdvice returns the answer with detail (the sessions ddlguard saw in
// the way just before, "" for none) and hint added to its lock-timeout
// error.
func withAdvice(frames []divertedFrame, detail, hint string) []divertedFrame {
	for i, f := range frames {
		if f.typ != 'E' {
			continue
		}
		var e pgproto3.ErrorResponse
		if err := e.Decode(f.body); err != nil || e.Code != codeLockNotAvailable {
			continue
		}
		e.Hint = strings.TrimSpace(e.Hint + " " + hint)
		if detail != "" {
			e.Detail = strings.TrimSpace(e.Detail + "\nddlguard saw in the way just before: " + detail)
		}
		out, err := e.Encode(nil)
		if err != nil {
			continue
		}
		frames[i].body = out[5:]
	}
	return frames
}

// backoff is the jittered exponential delay before retry attempt+1.
func backoff(cfg ExecConfig, attempt int) time.Duration {
	d := cfg.BackoffMin << min(attempt, 10)
	if d > cfg.BackoffMax || d <= 0 {
		d = cfg.BackoffMax
	}
	return d/2 + rand.N(d/2+1)
}

// lockNotAvailable reports whether the answer is a 55P03 error.
func lockNotAvailable(frames []divertedFrame) bool {
	for _, f := range frames {
		if f.typ == 'E' && bytes.Contains(f.body, []byte("C"+codeLockNotAvailable+"\x00")) {
			return true
		}
	}
	return false
}

// boundIdleInTransaction limits how long the client's transaction may now
// sit idle holding ACCESS EXCLUSIVE (for this transaction only).
func (c *clientConn) boundIdleInTransaction(current string) {
	if sql := c.idleBound(current); sql != "" {
		if err := c.hidden(sql); err != nil {
			c.srv.log.Warn("could not bound idle_in_transaction_session_timeout", "conn_id", c.id, "err", err)
		}
	}
}

// idleBound is the SET LOCAL that bounds idle_in_transaction_session_timeout
// for the client's transaction, "" when the current value is already as
// short or the bound is disabled.
func (c *clientConn) idleBound(current string) string {
	limit := c.srv.cfg.Exec.IdleInTransactionTimeout
	if limit <= 0 {
		return ""
	}
	if d, ok := pgDuration(current); ok && d > 0 && d <= limit {
		return ""
	}
	return fmt.Sprintf("SET LOCAL idle_in_transaction_session_timeout = '%dms'", limit.Milliseconds())
}

// deliverFinal answers the client with 55P03 naming the blockers, raised by
// the server (so a transaction is aborted exactly as a real lock timeout
// would abort it).
func (c *clientConn) deliverFinal(p *timeoutPlan, pf *preflight, attempts int) (frameAction, []byte) {
	var rels []string
	for _, l := range p.targets {
		rels = appendUniqueString(rels, l.Mode.String()+" on "+l.Relation)
	}
	msg := fmt.Sprintf("ddlguard: could not get %s within %s without queueing in front of other sessions (%d attempts)",
		strings.Join(rels, ", "), c.srv.cfg.Exec.RetryBudget, attempts+1)
	code := codeLockNotAvailable
	switch {
	case pf.deadlock:
		msg = fmt.Sprintf("ddlguard: deadlock detected: this transaction waits for %s while the sessions in the way wait, through ddlguard, for locks this transaction holds",
			strings.Join(rels, ", "))
		code = codeDeadlock
	case p.holding && c.sess.TxStatus() == TxInBlock:
		msg = fmt.Sprintf("ddlguard: could not get %s at once, and this transaction already holds locks that other sessions wait for: it is not kept waiting",
			strings.Join(rels, ", "))
	}
	var detail, hint []string
	for _, b := range pf.blockers {
		detail = append(detail, b.describe())
		switch {
		case b.GID != nil:
			hint = append(hint, "ROLLBACK PREPARED "+sqlLiteral(*b.GID)+";")
		case b.PID != 0:
			hint = append(hint, fmt.Sprintf("SELECT pg_terminate_backend(%d);", b.PID))
		}
	}
	h := "Retry later, or end the blocking session"
	if (p.holding || pf.deadlock) && c.sess.TxStatus() == TxInBlock {
		h = retryWholeTransaction + " Or end the blocking session"
	}
	if len(hint) > 0 {
		h += " (operators): " + strings.Join(hint, " ")
	}
	c.srv.log.Warn("guarded statement gave up", "conn_id", c.id, "blockers", len(pf.blockers), "budget", c.srv.cfg.Exec.RetryBudget,
		"deadlock", pf.deadlock)
	return replaceFrame, queryFrame(raiseStatement(msg, "blocked by: "+strings.Join(detail, "\n"), h, code))
}

func appendUniqueString(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

// answer encodes ddlguard-collected frames for the client (queued notices
// first), the reply the client hook answers with, and records the
// transaction status they end with.
func (c *clientConn) answer(frames []divertedFrame) []byte {
	out := c.takeNotices()
	for _, f := range frames {
		out = appendFrame(out, f.typ, f.body)
		if f.typ == 'Z' && len(f.body) == 1 {
			c.sess.txStatus.Store(uint32(f.body[0]))
		}
	}
	return out
}
