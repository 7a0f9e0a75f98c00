package e2e

// Faults in the middle of ddlguard's own work: the client hangs up (close,
// or a TCP RST) or cancels while ddlguard waits on its behalf for a blocker
// to go away, while it pauses between lock-timeout retries, and between or
// during the steps of an executed rewrite; and the client's backend is
// terminated while a rewrite step runs. In every case no statement of the
// client runs afterwards, nothing is left half-done that ddlguard does not
// take back or log, no backend of the departed client survives, and
// ddlguard goes on serving other clients.
//
// Clients are raw protocol connections (rawConn) so that the test owns the
// socket: it sends the statement and hangs up without reading the answer,
// as a killed process would. Every test uses mwDatabase, whose table t is
// large enough that the guard treats it as large; names are unique per
// statement so the tests can share it.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/ddlguard/ddlguard/e2e/pgcluster"
	"github.com/ddlguard/ddlguard/guard"
	"github.com/ddlguard/ddlguard/proxy"
)

const (
	mwDatabase = "ddlguard_midwork"
	mwRows     = 200000
	// mwGone is how soon after it is released the departed client's
	// backend must have left pg_stat_activity.
	mwGone = 2 * time.Second
	// mwQuiet is how long a statement that must never run is watched after
	// whatever held it up has gone.
	mwQuiet = time.Second
	// mwSleep is how long mw_slow sleeps on the row with id 1: far longer
	// than any test waits, so a step that calls it runs until cancelled.
	mwSleep = 20 * time.Second
)

var mwFixture fixtureOnce

// mwSetup creates mwDatabase once per test binary run.
func mwSetup(t *testing.T) {
	t.Helper()
	mwFixture.ensure(t, "midwork", mwCreateFixture)
}

func mwCreateFixture() error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	owner, err := createFixtureDatabase(ctx, mwDatabase, pgcluster.RoleTrust, []string{
		"CREATE TABLE t (id int PRIMARY KEY, pad text NOT NULL) WITH (autovacuum_enabled = false)",
		fmt.Sprintf("INSERT INTO t SELECT g, repeat(md5(g::text), 2) FROM generate_series(1, %d) g", mwRows),
		// A CHECK calling it makes VALIDATE CONSTRAINT run (on the server)
		// for as long as the test needs.
		fmt.Sprintf(`CREATE FUNCTION mw_slow(id int) RETURNS boolean LANGUAGE plpgsql AS
		   $$BEGIN IF id = 1 THEN PERFORM pg_sleep(%d); END IF; RETURN true; END$$`, int(mwSleep/time.Second)),
		"VACUUM ANALYZE t",
	})
	if err != nil {
		return err
	}
	defer owner.Close(context.Background())
	return checkLarge(ctx, owner, "t")
}

var mwSeq atomic.Int64

// mwName is a column, constraint or index name unique in the run.
func mwName(tag string) string { return fmt.Sprintf("mw_%s_%d", tag, mwSeq.Add(1)) }

// mwProxy starts ddlguard with the default guard (lock timeout lockTimeout,
// or the default when 0) and exec as its execution configuration.
func mwProxy(t *testing.T, exec proxy.ExecConfig, lockTimeout time.Duration) *testProxy {
	t.Helper()
	cfg := guard.DefaultConfig()
	if lockTimeout > 0 {
		cfg.LockTimeout = lockTimeout
	}
	return startGuardProxy(t, cfg, func(c *proxy.Config) { c.Exec = exec })
}

// mwClient logs in through p as the table's owner on a raw connection named
// app.
func mwClient(t *testing.T, p *testProxy, app string) *rawConn {
	t.Helper()
	rc := dialRaw(t, p.Addr())
	rc.startup(t, pgproto3.ProtocolVersion30, map[string]string{"database": mwDatabase, "application_name": app})
	return rc
}

// mwSend sends sql without waiting for its answer: as a simple Query, or as
// one extended-protocol batch (Parse, Bind, Describe, Execute, Sync).
func mwSend(t *testing.T, rc *rawConn, sql string, extended bool) {
	t.Helper()
	if extended {
		rc.fe.Send(&pgproto3.Parse{Query: sql})
		rc.fe.Send(&pgproto3.Bind{})
		rc.fe.Send(&pgproto3.Describe{ObjectType: 'P'})
		rc.fe.Send(&pgproto3.Execute{})
		rc.fe.Send(&pgproto3.Sync{})
	} else {
		rc.fe.Send(&pgproto3.Query{String: sql})
	}
	if err := rc.fe.Flush(); err != nil {
		t.Fatalf("send %s: %v", sql, err)
	}
}

// mwHangUp closes the client's socket without a Terminate: an orderly FIN,
// or with reset a TCP RST (SO_LINGER 0). It returns when it happened.
func mwHangUp(t *testing.T, rc *rawConn, reset bool) time.Time {
	t.Helper()
	if reset {
		if err := rc.Conn.(*net.TCPConn).SetLinger(0); err != nil {
			t.Fatal(err)
		}
	}
	rc.Conn.Close()
	return time.Now()
}

// mwBlocker opens a direct connection named app and leaves it idle in a
// transaction that read t (ACCESS SHARE held). Closed at test end.
func mwBlocker(t *testing.T, app string) *pgx.Conn {
	t.Helper()
	conn := connectDSN(t, "blocker "+app,
		cluster.DSN(pgcluster.RoleTrust, mwDatabase, "sslmode", "disable", "application_name", app))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := execEach(ctx, conn, "BEGIN", "SELECT count(*) FROM t"); err != nil {
		t.Fatalf("blocker: %v", err)
	}
	return conn
}

// mwQuery runs a one-value query on super with args.
func mwQuery[T any](t *testing.T, super *pgx.Conn, sql string, args ...any) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var v T
	if err := super.QueryRow(ctx, sql, args...).Scan(&v); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return v
}

// mwHasColumn reports whether t has column col.
func mwHasColumn(t *testing.T, super *pgx.Conn, col string) bool {
	t.Helper()
	return mwQuery[bool](t, super, `SELECT EXISTS (SELECT 1 FROM pg_attribute
		WHERE attrelid = 't'::regclass AND attname = $1 AND NOT attisdropped)`, col)
}

// mwConstraint describes constraint name on t: "" when there is none, else
// "validated" or "not valid".
func mwConstraint(t *testing.T, super *pgx.Conn, name string) string {
	t.Helper()
	return mwQuery[string](t, super, `SELECT coalesce((SELECT CASE WHEN convalidated THEN 'validated' ELSE 'not valid' END
		FROM pg_constraint WHERE conrelid = 't'::regclass AND conname = $1), '')`, name)
}

// mwIndex describes index name: "" when there is none, else "valid" or
// "invalid".
func mwIndex(t *testing.T, super *pgx.Conn, name string) string {
	t.Helper()
	return mwQuery[string](t, super, `SELECT coalesce((SELECT CASE WHEN x.indisvalid THEN 'valid' ELSE 'invalid' END
		FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid WHERE i.relname = $1), '')`, name)
}

// mwBackendGone reports (failing the test otherwise) whether backend pid
// leaves pg_stat_activity within limit, and how long it took.
func mwBackendGone(t *testing.T, super *pgx.Conn, pid uint32, since time.Time, limit time.Duration) (time.Duration, bool) {
	t.Helper()
	for {
		if !backendAlive(t, super, pid) {
			return time.Since(since), true
		}
		if time.Since(since) > limit {
			state := mwQuery[string](t, super, `SELECT coalesce((SELECT coalesce(state, '') || ': ' || coalesce(query, '')
				FROM pg_stat_activity WHERE pid = $1), 'gone')`, int64(pid))
			t.Errorf("backend %d of the departed client still alive %s later (%s)", pid, limit, state)
			return time.Since(since), false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// mwNever fails the test if cond holds at any time within d.
func mwNever(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if cond() {
			t.Errorf("%s", what)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// mwStillServes checks that p has dropped every session (the departed
// client's among them) and serves a new client.
func mwStillServes(t *testing.T, p *testProxy) {
	t.Helper()
	eventually(t, mwGone, "ddlguard to drop the departed client's session", func() bool { return p.Server.ConnCount() == 0 })
	conn := p.Connect(t, pgcluster.RoleTrust, mwDatabase, "sslmode", "disable", "application_name", "mw-after")
	if got := queryString(t, conn, "SELECT 'served'"); got != "served" {
		t.Errorf("a new client after the fault: %q", got)
	}
	conn.Close(context.Background())
}

// mwWaitActive waits until backend pid runs a statement whose text
// contains part, and returns how long that took.
func mwWaitActive(t *testing.T, super *pgx.Conn, pid uint32, part string) {
	t.Helper()
	eventually(t, 10*time.Second, fmt.Sprintf("backend %d to run %q", pid, part), func() bool {
		return mwQuery[bool](t, super, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			WHERE pid = $1 AND state = 'active' AND strpos(query, $2) > 0)`, int64(pid), part)
	})
}

// mwLogLines returns the lines of p's log that contain every one of parts.
func mwLogLines(p *testProxy, parts ...string) []string {
	var out []string
next:
	for _, line := range strings.Split(p.Logs(), "\n") {
		for _, part := range parts {
			if !strings.Contains(line, part) {
				continue next
			}
		}
		out = append(out, line)
	}
	return out
}

// mwRewriteLog is ddlguard's log line about a rewrite whose client left (or
// whose connection was lost) mid-sequence.
type mwRewriteLog struct {
	Level      string   `json:"level"`
	Msg        string   `json:"msg"`
	Rule       string   `json:"rule"`
	Ran        []string `json:"ran"`
	TakenBack  []string `json:"taken_back"`
	LeftBehind []string `json:"left_behind"`
}

// mwInterrupted returns p's one log line about an interrupted rewrite,
// failing the test unless there is exactly one.
func mwInterrupted(t *testing.T, p *testProxy) mwRewriteLog {
	t.Helper()
	lines := mwLogLines(p, "during an executed rewrite")
	if len(lines) != 1 {
		t.Fatalf("%d log lines about an interrupted rewrite, want 1\nlog:\n%s", len(lines), p.Logs())
	}
	var l mwRewriteLog
	if err := json.Unmarshal([]byte(lines[0]), &l); err != nil {
		t.Fatalf("%s: %v", lines[0], err)
	}
	t.Logf("logged: %s", lines[0])
	return l
}

// TestMidworkDisconnectDuringBlockerWait: the client hangs up while
// ddlguard waits, on its behalf and outside the lock queue, for an idle
// transaction holding t to end. Its backend goes at once (it is idle: it
// ran only ddlguard's preflight), and the ALTER never runs, not even once
// the blocker has gone.
func TestMidworkDisconnectDuringBlockerWait(t *testing.T) {
	mwSetup(t)
	super := superConn(t, mwDatabase)
	for _, c := range []struct {
		name            string
		extended, reset bool
	}{
		{"close", false, false},
		{"reset", false, true},
		{"extended close", true, false},
		{"extended reset", true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := mwProxy(t, proxy.ExecConfig{RetryBudget: 20 * time.Second}, 0)
			app := "mw-bw-" + strings.ReplaceAll(c.name, " ", "-")
			blocker := mwBlocker(t, app+"-blocker")
			rc := mwClient(t, p, app)
			col := mwName("bw")
			mwSend(t, rc, "ALTER TABLE t ADD COLUMN "+col+" int", c.extended)
			lwWaitPreflight(t, super, app) // ddlguard waits for the blocker; the backend holds nothing on t
			time.Sleep(200 * time.Millisecond)

			hungUp := mwHangUp(t, rc, c.reset)
			took, _ := mwBackendGone(t, super, rc.pid, hungUp, mwGone)
			t.Logf("backend %d gone %s after the client hung up", rc.pid, took.Round(time.Millisecond))
			lwEnd(t, blocker)
			mwNever(t, mwQuiet, "column "+col+" was added after the client had gone", func() bool { return mwHasColumn(t, super, col) })
			mwStillServes(t, p)
		})
	}
}

// TestMidworkDisconnectDuringRetryBackoff: with the blocker check off, the
// ALTER runs, loses to the idle transaction after the lock timeout (55P03)
// and ddlguard pauses before retrying; the client hangs up during the
// pause. No further attempt is made, the backend goes at once, and the
// ALTER never runs once the blocker has gone.
func TestMidworkDisconnectDuringRetryBackoff(t *testing.T) {
	mwSetup(t)
	super := superConn(t, mwDatabase)
	// backoff() draws the first pause from [BackoffMin/2, BackoffMin].
	const backoff = 3 * time.Second
	for _, reset := range []bool{false, true} {
		name := map[bool]string{false: "close", true: "reset"}[reset]
		t.Run(name, func(t *testing.T) {
			p := mwProxy(t, proxy.ExecConfig{RetryBudget: 20 * time.Second, NoBlockerCheck: true,
				BackoffMin: backoff, BackoffMax: backoff}, 200*time.Millisecond)
			app := "mw-backoff-" + name
			blocker := mwBlocker(t, app+"-blocker")
			rc := mwClient(t, p, app)
			col := mwName("backoff")
			mwSend(t, rc, "ALTER TABLE t ADD COLUMN "+col+" int", false)
			eventually(t, 5*time.Second, "the first lock timeout and retry pause", func() bool {
				return len(mwLogLines(p, `"msg":"lock timeout; retrying"`)) > 0
			})
			waitBackendIdle(t, super, rc.pid, time.Second) // paused: nothing of the client's runs
			time.Sleep(100 * time.Millisecond)

			hungUp := mwHangUp(t, rc, reset)
			took, _ := mwBackendGone(t, super, rc.pid, hungUp, mwGone)
			t.Logf("backend %d gone %s after the client hung up in the backoff pause", rc.pid, took.Round(time.Millisecond))
			lwEnd(t, blocker)
			// A retry would come at the latest one backoff after the hang-up.
			mwNever(t, backoff+mwQuiet-time.Since(hungUp), "column "+col+" was added after the client had gone",
				func() bool { return mwHasColumn(t, super, col) })
			if n := len(mwLogLines(p, `"msg":"lock timeout; retrying"`)); n != 1 {
				t.Errorf("%d lock-timeout retries logged, want 1 (none after the client hung up)", n)
			}
			mwStillServes(t, p)
		})
	}
}

// TestMidworkDisconnectBetweenRewriteSteps: ADD CONSTRAINT ... UNIQUE runs
// as CREATE UNIQUE INDEX CONCURRENTLY (step 1, which an idle reader does
// not hold up) and ADD CONSTRAINT ... USING INDEX (step 2, ACCESS
// EXCLUSIVE: ddlguard waits for the reader before sending it). The client
// goes away while ddlguard waits before step 2: step 2 never runs, and
// ddlguard takes back step 1 (DROP INDEX CONCURRENTLY, which waits for the
// reader like any DROP INDEX CONCURRENTLY) before it closes the backend, as
// it does when a step fails; it logs what it took back. When the reader
// outlasts the retry budget, the index cannot be dropped in time: ddlguard
// gives up, closes the backend, and logs at WARN what is left and the SQL
// that removes it. A client that cancels instead gets 57014 with the
// notice saying what was taken back, and keeps its session.
func TestMidworkDisconnectBetweenRewriteSteps(t *testing.T) {
	mwSetup(t)
	super := superConn(t, mwDatabase)

	// start sends the ADD UNIQUE behind a blocker and waits until step 1
	// is done and ddlguard waits before step 2.
	start := func(t *testing.T, p *testProxy, app string) (blocker *pgx.Conn, rc *rawConn, uq string) {
		t.Helper()
		blocker = mwBlocker(t, app+"-blocker")
		rc = mwClient(t, p, app)
		uq = mwName("uq")
		mwSend(t, rc, "ALTER TABLE t ADD CONSTRAINT "+uq+" UNIQUE (id)", false)
		lwWaitPreflight(t, super, app) // only step 2 has a blocker check
		if got := mwIndex(t, super, uq); got != "valid" {
			t.Fatalf("ddlguard waits before step 2 but index %s is %q, want valid (step 1 done)", uq, got)
		}
		if got := mwConstraint(t, super, uq); got != "" {
			t.Fatalf("constraint %s is %q before step 2 ran", uq, got)
		}
		time.Sleep(200 * time.Millisecond)
		return blocker, rc, uq
	}

	t.Run("blocker ends", func(t *testing.T) {
		p := mwProxy(t, proxy.ExecConfig{RetryBudget: 20 * time.Second}, 0)
		const app = "mw-rw-gone"
		blocker, rc, uq := start(t, p, app)
		mwHangUp(t, rc, false)
		mwNever(t, 300*time.Millisecond, "constraint "+uq+" was added after the client had gone",
			func() bool { return mwConstraint(t, super, uq) != "" })
		lwEnd(t, blocker)
		released := time.Now()
		took, _ := mwBackendGone(t, super, rc.pid, released, mwGone)
		t.Logf("backend %d gone %s after the blocker ended", rc.pid, took.Round(time.Millisecond))
		if got := mwIndex(t, super, uq); got != "" {
			t.Errorf("index %s of step 1 is still there (%s): not taken back", uq, got)
		}
		mwNever(t, mwQuiet, "constraint "+uq+" was added after the client had gone",
			func() bool { return mwConstraint(t, super, uq) != "" })
		l := mwInterrupted(t, p)
		if want := []string{"DROP INDEX CONCURRENTLY IF EXISTS " + uq}; l.Level != "INFO" || !strings.HasPrefix(l.Msg, "client left") ||
			!slices.Equal(l.TakenBack, want) || len(l.LeftBehind) != 0 {
			t.Errorf("logged %+v, want INFO \"client left ...\" with taken_back %q and nothing left behind", l, want)
		}
		mwStillServes(t, p)
	})

	t.Run("blocker stays", func(t *testing.T) {
		const budget = 2 * time.Second
		p := mwProxy(t, proxy.ExecConfig{RetryBudget: budget}, 0)
		const app = "mw-rw-stays"
		blocker, rc, uq := start(t, p, app)
		t.Cleanup(func() { adminExecIn(t, mwDatabase, "DROP INDEX IF EXISTS "+uq) })
		hungUp := mwHangUp(t, rc, false)
		took, _ := mwBackendGone(t, super, rc.pid, hungUp, budget+mwGone)
		t.Logf("backend %d gone %s after the client hung up (retry budget %s)", rc.pid, took.Round(time.Millisecond), budget)
		l := mwInterrupted(t, p)
		if l.Level != "WARN" || len(l.LeftBehind) == 0 || l.LeftBehind[0] != "DROP INDEX CONCURRENTLY IF EXISTS "+uq {
			t.Errorf("logged %+v, want WARN with left_behind starting with the SQL that drops index %s", l, uq)
		}
		if got := mwIndex(t, super, uq); got == "" {
			t.Errorf("index %s is gone, but the log says it was left", uq)
		}
		lwEnd(t, blocker)
		mwNever(t, mwQuiet, "constraint "+uq+" was added after the client had gone",
			func() bool { return mwConstraint(t, super, uq) != "" })
		mwStillServes(t, p)
	})

	t.Run("cancel", func(t *testing.T) {
		p := mwProxy(t, proxy.ExecConfig{RetryBudget: 20 * time.Second}, 0)
		const app = "mw-rw-cancel"
		cfg, notices := configNotices(t, p.DSN(pgcluster.RoleTrust, mwDatabase, "sslmode", "disable", "application_name", app))
		conn := connectConfig(t, "client "+app, cfg)
		blocker := mwBlocker(t, app+"-blocker")
		uq := mwName("uq")
		done := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			_, err := conn.Exec(ctx, "ALTER TABLE t ADD CONSTRAINT "+uq+" UNIQUE (id)")
			done <- err
		}()
		lwWaitPreflight(t, super, app)
		if got := mwIndex(t, super, uq); got != "valid" {
			t.Fatalf("ddlguard waits before step 2 but index %s is %q", uq, got)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := conn.PgConn().CancelRequest(ctx); err != nil {
			t.Fatal(err)
		}
		// Taking step 1 back (DROP INDEX CONCURRENTLY) waits for the reader.
		time.Sleep(300 * time.Millisecond)
		lwEnd(t, blocker)
		var err error
		select {
		case err = <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("the cancelled ALTER did not return within 5s of the blocker's end")
		}
		lwWantCode(t, "cancelled ADD UNIQUE", err, "57014")
		n := rwWantNotice(t, "cancelled ADD UNIQUE", notices.take(), "add-unique-constraint")
		if !strings.Contains(n.Detail, "taken back: DROP INDEX CONCURRENTLY IF EXISTS "+uq) {
			t.Errorf("notice DETAIL %q does not say the index was taken back", n.Detail)
		}
		if got := mwIndex(t, super, uq); got != "" {
			t.Errorf("index %s is still there (%s)", uq, got)
		}
		if got := queryString(t, conn, "SELECT 'usable'"); got != "usable" {
			t.Errorf("after the cancel: %q", got)
		}
		if got := mwConstraint(t, super, uq); got != "" {
			t.Errorf("constraint %s is %q", uq, got)
		}
	})
}

// TestMidworkDisconnectDuringRewriteStep: ADD CHECK runs as ADD ... NOT
// VALID and VALIDATE CONSTRAINT; the client hangs up while VALIDATE runs on
// the server (mw_slow sleeps). ddlguard cancels the step, drops the NOT
// VALID constraint of step 1 and closes the backend.
func TestMidworkDisconnectDuringRewriteStep(t *testing.T) {
	mwSetup(t)
	super := superConn(t, mwDatabase)
	for _, reset := range []bool{false, true} {
		name := map[bool]string{false: "close", true: "reset"}[reset]
		t.Run(name, func(t *testing.T) {
			p := mwProxy(t, proxy.ExecConfig{RetryBudget: 20 * time.Second}, 0)
			app := "mw-step-" + name
			rc := mwClient(t, p, app)
			ck := mwName("ck")
			mwSend(t, rc, "ALTER TABLE t ADD CONSTRAINT "+ck+" CHECK (mw_slow(id))", false)
			mwWaitActive(t, super, rc.pid, "VALIDATE CONSTRAINT "+ck)
			if got := mwConstraint(t, super, ck); got != "not valid" {
				t.Fatalf("VALIDATE runs but constraint %s is %q, want not valid (step 1 done)", ck, got)
			}
			hungUp := mwHangUp(t, rc, reset)
			took, _ := mwBackendGone(t, super, rc.pid, hungUp, mwGone)
			t.Logf("backend %d gone %s after the client hung up mid-VALIDATE", rc.pid, took.Round(time.Millisecond))
			if got := mwConstraint(t, super, ck); got != "" {
				t.Errorf("constraint %s is %q after the client left mid-sequence, want it taken back", ck, got)
				adminExecIn(t, mwDatabase, "ALTER TABLE t DROP CONSTRAINT IF EXISTS "+ck)
			}
			l := mwInterrupted(t, p)
			if want := []string{"ALTER TABLE t DROP CONSTRAINT IF EXISTS " + ck}; l.Level != "INFO" || !strings.HasPrefix(l.Msg, "client left") ||
				!slices.Equal(l.TakenBack, want) || len(l.LeftBehind) != 0 {
				t.Errorf("logged %+v, want INFO \"client left ...\" with taken_back %q and nothing left behind", l, want)
			}
			mwStillServes(t, p)
		})
	}
}

// TestMidworkBackendTerminatedDuringRewriteStep: the client's backend is
// terminated while a rewrite step runs on it. ddlguard ends the session
// (it does not wait for an answer that will never come), tells nobody a
// lie, logs at WARN what step 1 left (the NOT VALID constraint, which no
// connection can take back now) with the SQL to drop it, and serves on.
func TestMidworkBackendTerminatedDuringRewriteStep(t *testing.T) {
	mwSetup(t)
	super := superConn(t, mwDatabase)
	p := mwProxy(t, proxy.ExecConfig{RetryBudget: 20 * time.Second}, 0)
	const app = "mw-terminated"
	rc := mwClient(t, p, app)
	ck := mwName("ck")
	t.Cleanup(func() { adminExecIn(t, mwDatabase, "ALTER TABLE t DROP CONSTRAINT IF EXISTS "+ck) })
	mwSend(t, rc, "ALTER TABLE t ADD CONSTRAINT "+ck+" CHECK (mw_slow(id))", false)
	mwWaitActive(t, super, rc.pid, "VALIDATE CONSTRAINT "+ck)
	if !mwQuery[bool](t, super, "SELECT pg_terminate_backend($1)", int64(rc.pid)) {
		t.Fatal("pg_terminate_backend returned false")
	}
	killed := time.Now()
	// The client's connection ends (with an error, never a success).
	rc.SetDeadline(time.Now().Add(5 * time.Second))
	var got []string
	for {
		msg, err := rc.fe.Receive()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("the client's connection still open 5s after its backend was terminated (got %v)", got)
			}
			break
		}
		switch m := msg.(type) {
		case *pgproto3.ErrorResponse:
			got = append(got, m.Severity+" "+m.Code+" "+m.Message)
		case *pgproto3.CommandComplete:
			t.Errorf("the client got CommandComplete %q though its backend was terminated mid-sequence", m.CommandTag)
		default:
			got = append(got, fmt.Sprintf("%T", m))
		}
	}
	t.Logf("client got %v, then the end of the connection, %s after the backend was terminated", got, time.Since(killed).Round(time.Millisecond))
	mwStillServes(t, p)
	l := mwInterrupted(t, p)
	if want := []string{"ALTER TABLE t DROP CONSTRAINT IF EXISTS " + ck}; l.Level != "WARN" || !strings.HasPrefix(l.Msg, "connection lost") ||
		!slices.Equal(l.LeftBehind, want) || len(l.TakenBack) != 0 {
		t.Errorf("logged %+v, want WARN \"connection lost ...\" with left_behind %q", l, want)
	}
	if got := mwConstraint(t, super, ck); got != "not valid" {
		t.Errorf("constraint %s is %q, want the NOT VALID one the log says was left", ck, got)
	}
}

// TestMidworkCancelDuringBlockerWait: the client cancels (CancelRequest)
// while ddlguard waits for the blocker: it gets 57014 at once, its session
// goes on with its own settings, and the ALTER never runs. A cancel during
// the pause between lock-timeout retries stops the retries: the client
// gets the last attempt's 55P03.
func TestMidworkCancelDuringBlockerWait(t *testing.T) {
	mwSetup(t)
	super := superConn(t, mwDatabase)
	for _, c := range []struct {
		name string
		exec proxy.ExecConfig
		code string
	}{
		{"blocker wait", proxy.ExecConfig{RetryBudget: 20 * time.Second}, "57014"},
		{"retry backoff", proxy.ExecConfig{RetryBudget: 20 * time.Second, NoBlockerCheck: true,
			BackoffMin: 3 * time.Second, BackoffMax: 3 * time.Second}, "55P03"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := mwProxy(t, c.exec, 200*time.Millisecond)
			app := "mw-cancel-" + strings.ReplaceAll(c.name, " ", "-")
			blocker := mwBlocker(t, app+"-blocker")
			conn := p.Connect(t, pgcluster.RoleTrust, mwDatabase, "sslmode", "disable", "application_name", app)
			pid := conn.PgConn().PID()
			col := mwName("cancel")
			done := make(chan error, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				defer cancel()
				_, err := conn.Exec(ctx, "ALTER TABLE t ADD COLUMN "+col+" int")
				done <- err
			}()
			if c.exec.NoBlockerCheck {
				eventually(t, 5*time.Second, "the first lock timeout and retry pause", func() bool {
					return len(mwLogLines(p, `"msg":"lock timeout; retrying"`)) > 0
				})
				waitBackendIdle(t, super, pid, time.Second)
			} else {
				lwWaitPreflight(t, super, app)
			}
			time.Sleep(200 * time.Millisecond)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			cancelled := time.Now()
			if err := conn.PgConn().CancelRequest(ctx); err != nil {
				t.Fatal(err)
			}
			var err error
			select {
			case err = <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("the ALTER did not return within 5s of the cancel")
			}
			took := time.Since(cancelled)
			pe := lwWantCode(t, "cancelled ALTER", err, c.code)
			t.Logf("cancelled ALTER returned %s %q %s after the cancel", pe.Code, pe.Message, took.Round(time.Millisecond))
			if took > time.Second {
				t.Errorf("the cancelled ALTER returned %s after the cancel, want less than 1s", took)
			}
			if got := queryString(t, conn, "SELECT 'usable'"); got != "usable" {
				t.Errorf("after the cancel: %q", got)
			}
			if got := lwShow(t, conn); got != "0" {
				t.Errorf("after the cancel: lock_timeout %q, want 0", got)
			}
			if st := conn.PgConn().TxStatus(); st != 'I' {
				t.Errorf("after the cancel: transaction status %q, want I", st)
			}
			lwEnd(t, blocker)
			mwNever(t, mwQuiet, "column "+col+" was added after the cancel", func() bool { return mwHasColumn(t, super, col) })
			if got := queryString(t, conn, "SELECT 'still usable'"); got != "still usable" {
				t.Errorf("after the blocker ended: %q", got)
			}
			if !backendAlive(t, super, pid) {
				t.Errorf("backend %d of the cancelling client is gone", pid)
			}
			if n := len(mwLogLines(p, `"msg":"lock timeout; retrying"`)); c.exec.NoBlockerCheck && n != 1 {
				t.Errorf("%d lock-timeout retries logged, want 1 (none after the cancel)", n)
			}
		})
	}
}

// adminExecIn runs sqls as the superuser in database, directly; for
// clean-up after a failed check.
func adminExecIn(t *testing.T, database string, sqls ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, cluster.DSN(pgcluster.Superuser, database, "sslmode", "disable"))
	if err != nil {
		t.Error(err)
		return
	}
	defer conn.Close(context.Background())
	if err := execEach(ctx, conn, sqls...); err != nil && !errors.Is(err, context.Canceled) {
		t.Error(err)
	}
}
