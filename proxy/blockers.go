package proxy

import (
	"fmt"
	"strings"
	"time"

	"github.com/ddlguard/ddlguard/guard"
)

// preflight is what ddlguard reads before a guarded statement.
type preflight struct {
	lockTimeout, idleTimeout string // current settings, as SHOW prints them
	blockers                 []blocker
	// holders are all the sessions the last look found holding or
	// awaiting a conflicting lock, those that pass quickly too.
	holders []blocker
	// pid is the client's backend as the server gives it (pg_backend_pid()
	// on the client's connection; 0 when the facts query answered).
	pid int
	// deadlock: the client's transaction and the blockers wait for each
	// other (waitGraph); it is the one to give up.
	deadlock bool
}

// transientHold is how long a lock holder's transaction may have been open
// and still count as a passing query: such holders release within moments,
// so a guarded statement may queue behind them without stalling anyone for
// long. Sessions idle in a transaction, older transactions, and sessions
// already waiting in the queue are blockers.
const transientHold = 100 * time.Millisecond

// blocks reports whether a holder will hold its lock for long. A holder
// whose session details the role may not see (another role's session,
// without pg_read_all_stats) counts once it has been seen holding in two
// polls in a row.
func (b blocker) blocks(seenBefore map[int]bool) bool {
	switch {
	case !b.Granted, b.State == "prepared transaction":
		return true
	case b.Hidden:
		return seenBefore[b.PID]
	}
	return strings.HasPrefix(b.State, "idle in transaction") ||
		(b.XactAge != nil && time.Duration(*b.XactAge*float64(time.Second)) > transientHold)
}

// longHolders keeps the blockers that will hold their lock for long.
func longHolders(bs []blocker, seenBefore map[int]bool) []blocker {
	out := bs[:0:0]
	for _, b := range bs {
		if b.blocks(seenBefore) {
			out = append(out, b)
		}
	}
	return out
}

// hiddenHolders lists the holders whose details were hidden.
func hiddenHolders(bs []blocker) map[int]bool {
	m := map[int]bool{}
	for _, b := range bs {
		if b.Hidden {
			m[b.PID] = true
		}
	}
	return m
}

// describe renders a blocker for the final error's DETAIL.
func (b blocker) describe() string {
	how := "holds"
	if !b.Granted {
		how = "waits for"
	}
	if b.GID != nil {
		return fmt.Sprintf("prepared transaction %q %s %s on %s", *b.GID, how, b.Mode, b.Relation)
	}
	if b.Hidden {
		return fmt.Sprintf("pid %d (user %s, application %q) %s %s on %s; its state, client and transaction are not visible to this role (grant pg_read_all_stats, or configure the monitor connection)",
			b.PID, b.User, b.App, how, b.Mode, b.Relation)
	}
	age := "unknown"
	if b.XactAge != nil {
		age = fmt.Sprintf("%.0fs", *b.XactAge)
	}
	return fmt.Sprintf("pid %d (user %s, application %q, client %s) %s %s on %s; state %s, transaction open %s; query: %s",
		b.PID, b.User, b.App, b.Client, how, b.Mode, b.Relation, b.State, age, firstLine(b.Query))
}

type blocker struct {
	PID      int      `json:"pid"`
	User     string   `json:"user"`
	App      string   `json:"app"`
	Client   string   `json:"client"`
	State    string   `json:"state"`
	Hidden   bool     `json:"hidden"`
	XactAge  *float64 `json:"xact_age"`
	Query    string   `json:"query"`
	Mode     string   `json:"mode"`
	Granted  bool     `json:"granted"`
	Relation string   `json:"relation"`
	GID      *string  `json:"gid"` // prepared transaction holding the lock
}

// conflicting lists the pg_locks mode names that conflict with m.
func conflicting(m guard.LockMode) []string {
	var out []string
	for o := guard.AccessShare; o <= guard.AccessExclusive; o++ {
		if m.Conflicts(o) {
			out = append(out, o.PgLocksName())
		}
	}
	return out
}

// preflightQuery reads the session's timeouts, the sessions holding or
// waiting for conflicting locks on the targets, and the backend's pid.
// Like the facts query it takes no lock on user tables and cannot raise an
// error. With no targets it reads the timeouts and the pid alone.
func preflightQuery(targets []guard.Lock, self string) (string, error) {
	if len(targets) == 0 {
		return `/* ddlguard preflight */ SELECT current_setting('lock_timeout'), current_setting('idle_in_transaction_session_timeout'), NULL::json, pg_catalog.pg_backend_pid()`, nil
	}
	values, err := targetValues(targets)
	if err != nil {
		return "", err
	}
	return `/* ddlguard preflight */ SELECT current_setting('lock_timeout'), current_setting('idle_in_transaction_session_timeout'),
 (SELECT json_agg(json_build_object('pid', l.pid, 'user', a.usename, 'app', a.application_name,
     'client', CASE WHEN a.client_port = -1 THEN 'local' ELSE host(a.client_addr) || ':' || a.client_port END,
     'state', CASE WHEN l.pid IS NULL THEN 'prepared transaction' ELSE a.state END,
     'hidden', l.pid IS NOT NULL AND a.state IS NULL,
     'xact_age', extract(epoch FROM clock_timestamp() - a.xact_start), 'query', left(a.query, 200),
     'mode', l.mode, 'granted', l.granted, 'relation', t.name, 'gid', px.gid) ORDER BY l.granted DESC, a.xact_start)
  ` + conflictingLocksSQL(values, self) + `
  LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
  LEFT JOIN pg_catalog.pg_prepared_xacts px ON l.pid IS NULL
      AND px.transaction::text = split_part(l.virtualtransaction, '/', 2)),
 pg_catalog.pg_backend_pid()`, nil
}

// conflictsQuery reads the session's timeouts, whether any lock held or
// awaited by another session conflicts with the targets (third column
// true), and the backend's pid, without the activity views: the usual
// answer, none, costs a fraction of preflightQuery's planning, on a fresh
// connection most of all.
func conflictsQuery(targets []guard.Lock, self string) (string, error) {
	values, err := targetValues(targets)
	if err != nil {
		return "", err
	}
	return `/* ddlguard preflight */ SELECT current_setting('lock_timeout'), current_setting('idle_in_transaction_session_timeout'),
 EXISTS (SELECT 1 ` + conflictingLocksSQL(values, self) + `), pg_catalog.pg_backend_pid()`, nil
}

// targetValues is a VALUES list of (name, oid, conflicting pg_locks modes)
// for the targets.
func targetValues(targets []guard.Lock) (string, error) {
	rows := []string{"(NULL::text, NULL::oid, '{}'::text[])"}
	for _, l := range targets {
		oid, err := relationOIDSQL(l.Relation)
		if err != nil {
			return "", err
		}
		modes := make([]string, 0, 8)
		for _, m := range conflicting(l.Mode) {
			modes = append(modes, sqlLiteral(m))
		}
		rows = append(rows, fmt.Sprintf("(%s, %s, ARRAY[%s]::text[])", sqlLiteral(l.Relation), oid, strings.Join(modes, ",")))
	}
	return strings.Join(rows, ", "), nil
}

// conflictingLocksSQL is the FROM clause of the locks (l) other sessions
// hold or await that conflict with a target (t) in this database; self is
// an SQL expression for the client's backend pid (pg_backend_pid() on the
// client's own connection, which a pooler in between cannot make wrong).
func conflictingLocksSQL(values string, self string) string {
	return `FROM (VALUES ` + values + `) AS t(name, oid, modes)
  JOIN pg_catalog.pg_locks l ON l.locktype = 'relation' AND l.relation = t.oid AND l.mode = ANY (t.modes)
      AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = current_database())
      AND l.pid IS DISTINCT FROM ` + self
}

// waitForBlockers polls until no session blocks the plan's locks or the
// deadline passes; it returns the last preflight (sessionCatalog.preflight:
// on the client's connection, the blockers described by the monitor
// connection when one is configured).
func (c *clientConn) waitForBlockers(p *timeoutPlan, deadline time.Time) (*preflight, error) {
	targets := c.checkedTargets(p)
	if pf := c.lockState.take(targets); pf != nil {
		return pf, nil // the facts query has answered it
	}
	var seen map[int]bool
	waiting := 0 // the backend pid recorded in the wait graph
	defer func() {
		if waiting != 0 {
			c.srv.waits.done(waiting)
		}
	}()
	for {
		pf, err := c.sessionCatalog().preflight(targets)
		if err != nil {
			return pf, err
		}
		all := pf.blockers
		pf.holders = all
		bs := longHolders(all, seen)
		// Holders whose details are hidden: look once more before deciding.
		waitForHidden := len(bs) == 0 && len(hiddenHolders(all)) > 0 && seen == nil
		seen = hiddenHolders(all)
		if (len(bs) > 0 || waitForHidden) && time.Now().Before(deadline) && !c.clientLeft() && !c.userCancel.Load() {
			if len(bs) > 0 && c.sess.TxStatus() == TxInBlock {
				waiting = pf.pid
				if c.srv.waits.wait(waiting, blockerPIDs(bs)) {
					pf.blockers, pf.deadlock = bs, true
					return pf, nil
				}
			}
			c.pause(min(c.srv.cfg.Exec.BlockerPoll, time.Until(deadline)))
			continue
		}
		pf.blockers = bs
		return pf, nil
	}
}

// blockerPIDs lists the backends of blockers (not prepared transactions).
func blockerPIDs(bs []blocker) []int {
	var out []int
	for _, b := range bs {
		if b.PID != 0 {
			out = append(out, b.PID)
		}
	}
	return out
}

func describeBlockers(pf *preflight) string {
	var parts []string
	for _, b := range pf.blockers {
		parts = append(parts, b.describe())
	}
	return strings.Join(parts, "\n")
}

// checkedTargets are the plan's locks the blocker check looks at: none
// when it is off, and none the transaction already holds (no other session
// can hold a conflicting lock on those).
func (c *clientConn) checkedTargets(p *timeoutPlan) []guard.Lock {
	if c.srv.cfg.Exec.NoBlockerCheck {
		return nil
	}
	var out []guard.Lock
	for _, l := range p.targets {
		if !l.Held {
			out = append(out, l)
		}
	}
	return out
}

// runPreflight asks the client's connection for the session's settings
// and the plan's blockers; the caller has waited for a sync point.
func (c *clientConn) runPreflight(p *timeoutPlan) (*preflight, error) {
	return c.sessionCatalog().preflight(c.checkedTargets(p))
}
