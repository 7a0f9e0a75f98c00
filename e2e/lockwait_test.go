package e2e

// Lock-aware execution against a real server with real concurrent clients:
// the seed article's outage (a DDL queued behind an idle transaction stalls
// every reader behind it) reproduced directly and then through ddlguard;
// blockers that never end; the statement-only lock_timeout and its
// restoration in every session state; the idle-in-transaction bound after
// ACCESS EXCLUSIVE; a client cancelling while ddlguard waits for it.
//
// Every test uses lwDatabase, whose table t is large enough that the guard
// treats it as large (the size rules do not relax). Column names are unique
// per statement, so the tests can share the table.

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/ddlguard/ddlguard/e2e/pgcluster"
	"github.com/ddlguard/ddlguard/guard"
	"github.com/ddlguard/ddlguard/proxy"
)

const (
	lwDatabase = "ddlguard_lockwait"
	lwRows     = 400000
	// lwReaderSQL is the readers' query: an index range scan, fast, but it
	// needs ACCESS SHARE on t like any read.
	lwReaderSQL   = "SELECT count(*) FROM t WHERE id < 100"
	lwReaderRows  = 99
	lwReaderCount = 8
	// lwLockTimeout is the guard's default lock timeout, the longest a
	// reader may be made to wait behind a guarded statement.
	lwLockTimeout = guard.DefaultLockTimeout
	// lwBlockerRole is the role of the blockers: not the DDL's, whose
	// session (without pg_read_all_stats) sees only part of their
	// pg_stat_activity row.
	lwBlockerRole = pgcluster.RoleMD5
)

var lwFixture fixtureOnce

// lwSetup creates lwDatabase and its table t once per test binary run.
func lwSetup(t *testing.T) {
	t.Helper()
	lwFixture.ensure(t, "lockwait", lwCreateFixture)
}

func lwCreateFixture() error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	owner, err := createFixtureDatabase(ctx, lwDatabase, pgcluster.RoleTrust, []string{
		"CREATE TABLE t (id int PRIMARY KEY, pad text NOT NULL)",
		fmt.Sprintf("INSERT INTO t SELECT g, repeat(md5(g::text), 2) FROM generate_series(1, %d) g", lwRows),
		"GRANT SELECT ON t TO PUBLIC",
		"VACUUM ANALYZE t",
	})
	if err != nil {
		return err
	}
	defer owner.Close(context.Background())
	// Large both on disk and by the relpages sum ddlguard's facts read.
	return checkLarge(ctx, owner, "t")
}

// lwColumnSeq makes column names unique within the test binary run.
var lwColumnSeq atomic.Int64

func lwColumn(tag string) string {
	return fmt.Sprintf("lw_%s_%d", tag, lwColumnSeq.Add(1))
}

// lwProxy starts ddlguard with the default guard (lock timeout 500 ms) and
// exec as its lock-aware execution configuration.
func lwProxy(t *testing.T, exec proxy.ExecConfig) *testProxy {
	t.Helper()
	return startGuardProxy(t, guard.DefaultConfig(), func(c *proxy.Config) { c.Exec = exec })
}

// lwConnect opens a pgx connection as the table's owner through p.
func lwConnect(t *testing.T, p *testProxy, app string) *pgx.Conn {
	t.Helper()
	return p.Connect(t, pgcluster.RoleTrust, lwDatabase, "sslmode", "disable", "application_name", app)
}

// lwDirect opens a pgx connection as the table's owner to the server.
func lwDirect(t *testing.T, app string) *pgx.Conn {
	t.Helper()
	return connectDSN(t, "directly as "+pgcluster.RoleTrust,
		cluster.DSN(pgcluster.RoleTrust, lwDatabase, "sslmode", "disable", "application_name", app))
}

// lwBlocker opens a direct connection as lwBlockerRole named app, and
// leaves it idle in a transaction that read t (ACCESS SHARE held). It is
// closed (releasing the lock) at test end unless the caller ends it first.
func lwBlocker(t *testing.T, app string) (*pgx.Conn, uint32) {
	t.Helper()
	conn := connectDSN(t, "blocker "+app,
		cluster.DSN(lwBlockerRole, lwDatabase, "sslmode", "disable", "application_name", app))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := conn.Exec(ctx, "BEGIN"); err != nil {
		t.Fatalf("blocker BEGIN: %v", err)
	}
	var n int64
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil || n != lwRows {
		t.Fatalf("blocker read of t: %d rows, %v", n, err)
	}
	return conn, conn.PgConn().PID()
}

// lwEnd ends a blocker's transaction.
func lwEnd(t *testing.T, blocker *pgx.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := blocker.Exec(ctx, "ROLLBACK"); err != nil {
		t.Fatalf("blocker ROLLBACK: %v", err)
	}
}

// lwExec runs sql (simple protocol) and says how long it took.
func lwExec(conn *pgx.Conn, sql string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	begin := time.Now()
	_, err := conn.Exec(ctx, sql)
	return time.Since(begin), err
}

// lwMust runs sql and fails the test on an error.
func lwMust(t *testing.T, conn *pgx.Conn, sql string) {
	t.Helper()
	if _, err := lwExec(conn, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// lwShow is SHOW lock_timeout.
func lwShow(t *testing.T, conn *pgx.Conn) string {
	t.Helper()
	return queryString(t, conn, "SHOW lock_timeout")
}

// lwWantCode fails unless err is a server error with code, and returns it.
func lwWantCode(t *testing.T, what string, err error, code string) *pgconn.PgError {
	t.Helper()
	pe := pgErrorOf(err)
	if pe == nil || pe.Code != code {
		t.Fatalf("%s: got %v, want SQLSTATE %s", what, err, code)
	}
	return pe
}

// lwWithin fails unless lo <= d <= hi.
func lwWithin(t *testing.T, what string, d, lo, hi time.Duration) {
	t.Helper()
	if d < lo || d > hi {
		t.Errorf("%s took %s, want between %s and %s", what, d.Round(time.Millisecond), lo, hi)
	}
}

// lwHasColumn reports whether t has column col, asked directly.
func lwHasColumn(t *testing.T, col string) bool {
	t.Helper()
	conn := superConn(t, lwDatabase)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var ok bool
	err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_attribute
		WHERE attrelid = 't'::regclass AND attname = $1 AND NOT attisdropped)`, col).Scan(&ok)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	return ok
}

// lwLoad is lwReaderCount clients running lwReaderSQL back to back, each
// on its own connection, recording every query's latency.
type lwLoad struct {
	start time.Time
	stop  chan struct{}
	wg    sync.WaitGroup
	// query counts rows of a table, rows is the count it must return.
	query string
	rows  int64

	mu      sync.Mutex
	samples []lwSample
	errs    []error
}

type lwSample struct {
	at time.Time // when the query was sent
	d  time.Duration
}

func lwStartLoad(conns []*pgx.Conn) *lwLoad {
	return lwStartQueryLoad(conns, lwReaderSQL, lwReaderRows)
}

// lwStartQueryLoad starts readers on conns that each run query (a count
// that must return rows) in a loop.
func lwStartQueryLoad(conns []*pgx.Conn, query string, rows int64) *lwLoad {
	l := &lwLoad{start: time.Now(), stop: make(chan struct{}), query: query, rows: rows}
	for _, c := range conns {
		l.wg.Add(1)
		go l.read(c)
	}
	return l
}

func (l *lwLoad) read(conn *pgx.Conn) {
	defer l.wg.Done()
	for {
		select {
		case <-l.stop:
			return
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		begin := time.Now()
		var n int64
		err := conn.QueryRow(ctx, l.query).Scan(&n)
		d := time.Since(begin)
		cancel()
		if err == nil && n != l.rows {
			err = fmt.Errorf("reader counted %d rows, want %d", n, l.rows)
		}
		l.mu.Lock()
		l.samples = append(l.samples, lwSample{begin, d})
		if err != nil {
			l.errs = append(l.errs, fmt.Errorf("pid %d: %w", conn.PgConn().PID(), err))
		}
		l.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// lwStats summarises a load's latencies.
type lwStats struct {
	n             int
	p50, p99, max time.Duration
	maxAt         time.Duration // when the slowest query was sent, from the load's start
	errs          []error
}

func (s lwStats) String() string {
	return fmt.Sprintf("%d reader queries: p50 %s, p99 %s, max %s (sent at +%s), %d errors",
		s.n, s.p50.Round(time.Microsecond), s.p99.Round(time.Microsecond), s.max.Round(time.Microsecond),
		s.maxAt.Round(time.Millisecond), len(s.errs))
}

// finish stops the readers, waits for their last queries and returns the
// statistics.
func (l *lwLoad) finish() lwStats {
	close(l.stop)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	s := lwStats{n: len(l.samples), errs: l.errs}
	if s.n == 0 {
		return s
	}
	ds := make([]time.Duration, s.n)
	for i, x := range l.samples {
		ds[i] = x.d
		if x.d > s.max {
			s.max, s.maxAt = x.d, x.at.Sub(l.start)
		}
	}
	slices.Sort(ds)
	s.p50, s.p99 = ds[s.n*50/100], ds[min(s.n*99/100, s.n-1)]
	return s
}

// lwReaders opens lwReaderCount reader connections with connect and starts
// the load after they are all connected.
func lwReaders(t *testing.T, connect func(app string) *pgx.Conn) *lwLoad {
	t.Helper()
	conns := make([]*pgx.Conn, lwReaderCount)
	for i := range conns {
		conns[i] = connect(fmt.Sprintf("lw-reader-%d", i))
	}
	l := lwStartLoad(conns)
	// Stop the readers even when the test fails before it does.
	t.Cleanup(func() {
		select {
		case <-l.stop:
		default:
			l.finish()
		}
	})
	return l
}

// lwWatchLocks watches, from a direct superuser connection, the lock
// queue of t.
func lwWatchLocks(t *testing.T) *queueWatch {
	t.Helper()
	return watchQueue(t, superConn(t, lwDatabase), "t", 50*time.Millisecond)
}

// The seed timeline: the blocker holds ACCESS SHARE for lwSeedHold; the
// DDL arrives lwSeedDDLDelay after it started.
const (
	lwSeedHold     = 5 * time.Second
	lwSeedDDLDelay = 500 * time.Millisecond
	lwWarmup       = 200 * time.Millisecond
)

type lwSeedResult struct {
	column      string
	readers     lwStats
	ddlErr      error
	ddlElapsed  time.Duration
	afterCommit time.Duration // from the blocker's COMMIT (sent) to the DDL's answer
	samples     int           // lock-queue samples while the DDL waited for the blocker
	queued      int           // of which saw sessions queued for t
	most        int           // most sessions queued for t at once
}

// lwSeedRun plays the seed article's timeline once, with readers and the
// DDL connected by connect (the blocker always connects directly).
func lwSeedRun(t *testing.T, connect func(app string) *pgx.Conn) lwSeedResult {
	t.Helper()
	ddl := connect("lw-seed-ddl")
	watch := lwWatchLocks(t)
	load := lwReaders(t, connect)
	time.Sleep(lwWarmup)

	blocker, _ := lwBlocker(t, "lw-seed-blocker")
	held := time.Now()
	type commit struct {
		at  time.Time
		err error
	}
	committed := make(chan commit, 1)
	go func() {
		time.Sleep(time.Until(held.Add(lwSeedHold)))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// The DDL may get its answer before the blocker gets COMMIT's:
		// the time that counts is when the COMMIT was sent.
		sent := time.Now()
		_, err := blocker.Exec(ctx, "COMMIT")
		committed <- commit{sent, err}
	}()

	time.Sleep(time.Until(held.Add(lwSeedDDLDelay)))
	res := lwSeedResult{column: lwColumn("seed")}
	begin := time.Now()
	res.ddlElapsed, res.ddlErr = lwExec(ddl, "ALTER TABLE t ADD COLUMN "+res.column+" int")
	end := begin.Add(res.ddlElapsed)
	c := <-committed
	if c.err != nil {
		t.Fatalf("blocker COMMIT: %v", c.err)
	}
	res.afterCommit = end.Sub(c.at)
	time.Sleep(300 * time.Millisecond) // readers run on after the DDL
	res.readers = load.finish()
	watch.finish()
	// From shortly after the DDL was sent until the blocker committed.
	res.samples, res.queued, res.most = watch.between(t, begin.Add(50*time.Millisecond), c.at)
	return res
}

// TestLockWaitSeedScenario reproduces the outage of the seed article: an
// ALTER TABLE that needs only a moment of ACCESS EXCLUSIVE waits behind a
// transaction left idle after a read, and every reader queues behind the
// ALTER. Directly, the readers stall for the blocker's whole remaining
// time. Through ddlguard the ALTER waits outside the lock queue and runs
// once the blocker is gone; no reader ever waits longer than the lock
// timeout.
func TestLockWaitSeedScenario(t *testing.T) {
	lwSetup(t)
	const budget = 15 * time.Second

	direct := lwSeedRun(t, func(app string) *pgx.Conn { return lwDirect(t, app) })
	t.Logf("direct: DDL %s after %s (%s after the blocker's COMMIT); %s; lock queue of t non-empty in %d/%d samples (up to %d sessions)",
		errString(direct.ddlErr), direct.ddlElapsed.Round(time.Millisecond), direct.afterCommit.Round(time.Millisecond),
		direct.readers, direct.queued, direct.samples, direct.most)

	p := lwProxy(t, proxy.ExecConfig{RetryBudget: budget})
	guarded := lwSeedRun(t, func(app string) *pgx.Conn { return lwConnect(t, p, app) })
	t.Logf("ddlguard: DDL %s after %s (%s after the blocker's COMMIT); %s; lock queue of t non-empty in %d/%d samples (up to %d sessions)",
		errString(guarded.ddlErr), guarded.ddlElapsed.Round(time.Millisecond), guarded.afterCommit.Round(time.Millisecond),
		guarded.readers, guarded.queued, guarded.samples, guarded.most)

	// Directly: the outage.
	if direct.ddlErr != nil {
		t.Errorf("direct DDL failed: %v", direct.ddlErr)
	}
	if direct.afterCommit < 0 {
		t.Errorf("direct DDL finished %s before the blocker committed", -direct.afterCommit)
	}
	if len(direct.readers.errs) > 0 {
		t.Errorf("direct readers failed: %v", direct.readers.errs)
	}
	if direct.readers.max <= 3*time.Second {
		t.Errorf("direct: slowest reader took %s, want more than 3s (the outage did not reproduce)", direct.readers.max)
	}
	if direct.queued == 0 {
		t.Errorf("direct: no session was ever seen queued for t while the DDL waited (%d samples)", direct.samples)
	}
	if !lwHasColumn(t, direct.column) {
		t.Errorf("direct: column %s missing after a successful ALTER", direct.column)
	}

	// Through ddlguard: no outage, and the DDL still gets done.
	if guarded.ddlErr != nil {
		t.Errorf("DDL through ddlguard failed: %v", guarded.ddlErr)
	}
	if guarded.afterCommit < 0 {
		t.Errorf("DDL through ddlguard finished %s before the blocker committed", -guarded.afterCommit)
	}
	if guarded.ddlElapsed >= budget {
		t.Errorf("DDL through ddlguard took %s, beyond the %s budget", guarded.ddlElapsed, budget)
	}
	if len(guarded.readers.errs) > 0 {
		t.Errorf("readers through ddlguard failed: %v", guarded.readers.errs)
	}
	if limit := lwLockTimeout + 100*time.Millisecond; guarded.readers.max >= limit {
		t.Errorf("through ddlguard the slowest reader took %s, want less than %s", guarded.readers.max, limit)
	}
	if guarded.queued > 0 {
		t.Errorf("through ddlguard %d of %d samples saw sessions queued for t (up to %d) while the blocker held it",
			guarded.queued, guarded.samples, guarded.most)
	}
	if !lwHasColumn(t, guarded.column) {
		t.Errorf("through ddlguard: column %s missing after a successful ALTER", guarded.column)
	}
}

func errString(err error) string {
	if err == nil {
		return "succeeded"
	}
	return "failed (" + err.Error() + ")"
}

// lwSend is how a test sends the ALTER: pgx Exec without arguments
// (simple protocol) or an unnamed extended-protocol batch.
type lwSend func(ctx context.Context, conn *pgx.Conn, sql string) error

func lwSimple(ctx context.Context, conn *pgx.Conn, sql string) error {
	_, err := conn.Exec(ctx, sql)
	return err
}

func lwExtended(ctx context.Context, conn *pgx.Conn, sql string) error {
	return conn.PgConn().ExecParams(ctx, sql, nil, nil, nil, nil).Read().Err
}

// lwRun is what one ALTER under reader load came to.
type lwRun struct {
	err     error
	took    time.Duration
	readers lwStats
	samples int // lock-queue samples taken while the ALTER ran
	queued  int // of which saw sessions queued for t
	most    int // most sessions queued for t at once
}

func (r lwRun) String() string {
	return fmt.Sprintf("DDL %s after %s; %s; lock queue of t non-empty in %d/%d samples (up to %d sessions)",
		errString(r.err), r.took.Round(time.Millisecond), r.readers, r.queued, r.samples, r.most)
}

// lwGuardedRun sends one ALTER adding column through p with send, under
// reader load (through p as well), and checks that the session is usable
// and idle afterwards.
func lwGuardedRun(t *testing.T, p *testProxy, app, column string, send lwSend) lwRun {
	t.Helper()
	ddl := lwConnect(t, p, app)
	watch := lwWatchLocks(t)
	load := lwReaders(t, func(app string) *pgx.Conn { return lwConnect(t, p, app) })
	time.Sleep(lwWarmup)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var r lwRun
	begin := time.Now()
	r.err = send(ctx, ddl, "ALTER TABLE t ADD COLUMN "+column+" int")
	end := time.Now()
	r.took = end.Sub(begin)
	time.Sleep(200 * time.Millisecond)
	r.readers = load.finish()
	watch.finish()
	r.samples, r.queued, r.most = watch.between(t, begin, end)
	if got := queryString(t, ddl, "SELECT 'usable'"); got != "usable" {
		t.Errorf("after the DDL: %q", got)
	}
	if st := ddl.PgConn().TxStatus(); st != 'I' {
		t.Errorf("after the DDL the session is in transaction status %q, want I", st)
	}
	if got := lwShow(t, ddl); got != "0" {
		t.Errorf("after the DDL: lock_timeout %q, want 0", got)
	}
	return r
}

// lwDetailLine returns the line of a 55P03 DETAIL about pid ("" if none).
func lwDetailLine(detail string, pid uint32) string {
	for _, l := range strings.Split(detail, "\n") {
		if strings.Contains(l, fmt.Sprintf("pid %d ", pid)) {
			return l
		}
	}
	return ""
}

// TestLockWaitBlockerNeverEnds: transactions left idle for good. With the
// blocker check, ddlguard waits outside the queue for the whole budget and
// then answers 55P03 naming the blockers and how to end them. Without it,
// the ALTER queues with the short lock timeout, fails, and is retried until
// the budget runs out; readers wait at most one lock timeout each time.
//
// Two blockers: one of the DDL's own role (pg_stat_activity shows its state
// to the DDL's session) and one of another role (whose state, query and
// client pg_stat_activity hides from an unprivileged session).
func TestLockWaitBlockerNeverEnds(t *testing.T) {
	lwSetup(t)
	const budget = 3 * time.Second
	const app, otherApp = "lw-never-ends", "lw-never-ends-other"
	own := connectDSN(t, "blocker "+app,
		cluster.DSN(pgcluster.RoleTrust, lwDatabase, "sslmode", "disable", "application_name", app))
	lwMust(t, own, "BEGIN")
	lwMust(t, own, "SELECT count(*) FROM t")
	pid := own.PgConn().PID()
	_, otherPID := lwBlocker(t, otherApp)

	// checkFinal checks the final 55P03 of a guarded ALTER that never got
	// its lock, and keeps it for the checks at the end.
	var finals []*pgconn.PgError
	checkFinal := func(t *testing.T, r lwRun) {
		t.Helper()
		pe := lwWantCode(t, "DDL behind blockers that never end", r.err, "55P03")
		t.Logf("55P03: %s\nDETAIL: %s\nHINT: %s\nCONTEXT: %s", pe.Message, pe.Detail, pe.Hint, pe.Where)
		lwWithin(t, "the DDL", r.took, budget, budget+time.Second)
		line := lwDetailLine(pe.Detail, pid)
		for _, want := range []string{
			"user " + pgcluster.RoleTrust,
			fmt.Sprintf("application %q", app),
			"client 127.0.0.1:",
			"holds AccessShareLock on t",
			"state idle in transaction",
		} {
			if !strings.Contains(line, want) {
				t.Errorf("55P03 DETAIL line for blocker %d lacks %q:\n%s", pid, want, pe.Detail)
			}
		}
		other := lwDetailLine(pe.Detail, otherPID)
		for _, want := range []string{"user " + lwBlockerRole, fmt.Sprintf("application %q", otherApp), "holds AccessShareLock on t"} {
			if !strings.Contains(other, want) {
				t.Errorf("55P03 DETAIL line for blocker %d (another role) lacks %q:\n%s", otherPID, want, pe.Detail)
			}
		}
		for _, b := range []uint32{pid, otherPID} {
			if want := fmt.Sprintf("SELECT pg_terminate_backend(%d);", b); !strings.Contains(pe.Hint, want) {
				t.Errorf("55P03 HINT lacks %q: %q", want, pe.Hint)
			}
		}
		finals = append(finals, pe)
		if len(r.readers.errs) > 0 {
			t.Errorf("readers failed: %v", r.readers.errs)
		}
		if limit := lwLockTimeout + 100*time.Millisecond; r.readers.max >= limit {
			t.Errorf("slowest reader took %s, want less than %s", r.readers.max, limit)
		}
		if r.queued > 0 {
			t.Errorf("%d of %d samples saw sessions queued for t (up to %d): the DDL entered the lock queue", r.queued, r.samples, r.most)
		}
	}

	t.Run("BlockerCheck", func(t *testing.T) {
		p := lwProxy(t, proxy.ExecConfig{RetryBudget: budget})
		col := lwColumn("never")
		r := lwGuardedRun(t, p, "lw-never-ddl", col, lwSimple)
		t.Logf("simple protocol: %s", r)
		checkFinal(t, r)
		if lwHasColumn(t, col) {
			t.Errorf("column %s was added", col)
		}
	})

	// The same ALTER as one extended-protocol batch (Parse, Bind,
	// Describe, Execute, Sync) must not enter the queue either.
	t.Run("BlockerCheckExtended", func(t *testing.T) {
		p := lwProxy(t, proxy.ExecConfig{RetryBudget: budget})
		col := lwColumn("never_ext")
		r := lwGuardedRun(t, p, "lw-never-ext-ddl", col, lwExtended)
		t.Logf("extended protocol: %s", r)
		checkFinal(t, r)
		if lwHasColumn(t, col) {
			t.Errorf("column %s was added", col)
		}
	})

	t.Run("NoBlockerCheck", func(t *testing.T) {
		p := lwProxy(t, proxy.ExecConfig{RetryBudget: budget, NoBlockerCheck: true})
		col := lwColumn("never_nocheck")
		r := lwGuardedRun(t, p, "lw-never-nocheck-ddl", col, lwSimple)
		retries := strings.Count(p.Logs(), `"msg":"lock timeout; retrying"`)
		t.Logf("no blocker check: %s; %d retries", r, retries)

		lwWantCode(t, "DDL behind blockers that never end, no blocker check", r.err, "55P03")
		// The last attempt may start just before the budget runs out.
		lwWithin(t, "the DDL", r.took, budget-lwLockTimeout, budget+lwLockTimeout+time.Second)
		if retries <= 1 {
			t.Errorf("%d retries logged, want more than one", retries)
		}
		if len(r.readers.errs) > 0 {
			t.Errorf("readers failed: %v", r.readers.errs)
		}
		if limit := lwLockTimeout + 200*time.Millisecond; r.readers.max >= limit {
			t.Errorf("slowest reader took %s, want less than %s", r.readers.max, limit)
		}
		if r.queued == 0 {
			t.Errorf("no sample (of %d) saw the DDL queued for t: did it run at all?", r.samples)
		}
		if lwHasColumn(t, col) {
			t.Errorf("column %s was added", col)
		}
	})

	// pg_stat_activity hides the state, query, client and transaction start
	// of another role's session from an unprivileged one (without
	// pg_read_all_stats). The DETAIL must not make them up: the other
	// blocker is an ordinary TCP session idle in a transaction open for
	// seconds, not a prepared transaction of a local client open 0s.
	t.Run("OtherRoleBlockerDescribed", func(t *testing.T) {
		if len(finals) == 0 {
			t.Fatal("no final 55P03 was recorded")
		}
		for _, pe := range finals {
			line := lwDetailLine(pe.Detail, otherPID)
			for _, wrong := range []string{"state prepared transaction", "client local", "transaction open 0s"} {
				if strings.Contains(line, wrong) {
					t.Errorf("55P03 DETAIL says %q of blocker %d:\n%s", wrong, otherPID, line)
				}
			}
		}
	})

	// The 55P03 is ddlguard's own error: like its ZG001 rejections it
	// should not carry the PL/pgSQL context of the DO block that raised it.
	t.Run("PlainError", func(t *testing.T) {
		if len(finals) == 0 {
			t.Fatal("no final 55P03 was recorded")
		}
		for _, pe := range finals {
			if pe.Where != "" || pe.Routine == "exec_stmt_raise" {
				t.Errorf("55P03 raised by ddlguard carries CONTEXT %q (%s:%d, routine %s)", pe.Where, pe.File, pe.Line, pe.Routine)
			}
		}
	})
}

// TestLockWaitTimeoutRestored: whatever the session state and protocol, the
// guarded statement runs with the short lock timeout (or the session's own,
// when shorter) and SHOW lock_timeout afterwards says what it said before.
// A blocker and no blocker check make the timeout observable: the statement
// fails after it instead of hanging. The retry budget is tiny so that an
// autocommit statement fails after its first attempt.
func TestLockWaitTimeoutRestored(t *testing.T) {
	lwSetup(t)
	p := lwProxy(t, proxy.ExecConfig{RetryBudget: time.Millisecond, NoBlockerCheck: true})
	const lo, hi = lwLockTimeout - 50*time.Millisecond, lwLockTimeout + time.Second

	// blocked runs fn while a blocker holds ACCESS SHARE on t.
	blocked := func(t *testing.T, fn func()) {
		t.Helper()
		b, _ := lwBlocker(t, "lw-restore-blocker")
		fn()
		lwEnd(t, b)
	}
	alter := func(tag string) string { return "ALTER TABLE t ADD COLUMN " + lwColumn(tag) + " int" }

	t.Run("SimplePgx", func(t *testing.T) {
		conn := lwConnect(t, p, "lw-restore-simple")
		before := lwShow(t, conn)
		lwMust(t, conn, alter("simple_ok"))
		if got := lwShow(t, conn); got != before {
			t.Errorf("after the ALTER: lock_timeout %q, want %q", got, before)
		}
		blocked(t, func() {
			took, err := lwExec(conn, alter("simple_blocked"))
			lwWantCode(t, "blocked ALTER", err, "55P03")
			lwWithin(t, "blocked ALTER", took, lo, hi)
			t.Logf("blocked ALTER failed after %s: %v", took.Round(time.Millisecond), err)
		})
		if got := lwShow(t, conn); got != before {
			t.Errorf("after the failed ALTER: lock_timeout %q, want %q", got, before)
		}
	})

	t.Run("ErrorPosition", func(t *testing.T) {
		// ddlguard puts its SET LOCAL in the same string as an autocommit
		// statement: the error cursor still points into the client's text.
		const bad = "ALTER TABLE t ADD COLUMN lw_no_such_type_col lw_no_such_type"
		_, viaErr := lwExec(lwConnect(t, p, "lw-restore-position"), bad)
		_, directErr := lwExec(lwDirect(t, "lw-restore-position-direct"), bad)
		via, direct := lwWantCode(t, "through ddlguard", viaErr, "42704"), lwWantCode(t, "direct", directErr, "42704")
		if via == nil || direct == nil || via.Position != direct.Position || direct.Position == 0 {
			t.Errorf("error position: through ddlguard %v, direct %v", viaErr, directErr)
		} else if via.Message != direct.Message {
			t.Errorf("message through ddlguard %q, direct %q", via.Message, direct.Message)
		}
	})

	t.Run("Psql", func(t *testing.T) {
		dsn := p.DSN(pgcluster.RoleTrust, lwDatabase, "sslmode", "disable", "application_name", "lw-restore-psql")
		psql := func(cmds ...string) clientRun {
			args := []string{"-X", "-q", "-A", "-t", "-d", dsn}
			for _, c := range cmds {
				args = append(args, "-c", c)
			}
			return runClientProgram(t, 20*time.Second, nil, cluster.Psql(), args...)
		}
		ok := psql("SHOW lock_timeout", alter("psql_ok"), "SHOW lock_timeout")
		if ok.code != 0 || ok.stdout != "0\n0\n" || ok.stderr != "" {
			t.Errorf("psql: want SHOW 0 before and after a successful ALTER:\n%s", ok)
		}
		blocked(t, func() {
			// The session's own 3s would make the ALTER hang 3s; it fails
			// after the guard's 500ms, and the 3s is back afterwards.
			r := psql("SET lock_timeout = '3s'", "SHOW lock_timeout", alter("psql_blocked"), "SHOW lock_timeout")
			t.Logf("psql with a blocker: %s", r)
			if r.stdout != "3s\n3s\n" || !strings.Contains(r.stderr, "ERROR:  canceling statement due to lock timeout") {
				t.Errorf("psql: want the ALTER to fail with a lock timeout and SHOW 3s before and after:\n%s", r)
			}
			if r.elapsed >= 2500*time.Millisecond {
				t.Errorf("psql took %s: the ALTER did not run with the short lock timeout", r.elapsed)
			}
		})
	})

	t.Run("ExtendedUnnamed", func(t *testing.T) {
		conn := lwConnect(t, p, "lw-restore-extended")
		before := lwShow(t, conn)
		execParams := func(sql string) (time.Duration, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			begin := time.Now()
			res := conn.PgConn().ExecParams(ctx, sql, nil, nil, nil, nil).Read()
			return time.Since(begin), res.Err
		}
		if _, err := execParams(alter("ext_ok")); err != nil {
			t.Fatalf("extended ALTER: %v", err)
		}
		if got := lwShow(t, conn); got != before {
			t.Errorf("after the ALTER: lock_timeout %q, want %q", got, before)
		}
		blocked(t, func() {
			took, err := execParams(alter("ext_blocked"))
			lwWantCode(t, "blocked extended ALTER", err, "55P03")
			lwWithin(t, "blocked extended ALTER", took, lo, hi)
			t.Logf("blocked extended ALTER failed after %s: %v", took.Round(time.Millisecond), err)
		})
		if got := lwShow(t, conn); got != before {
			t.Errorf("after the failed ALTER: lock_timeout %q, want %q", got, before)
		}
	})

	t.Run("Prepared", func(t *testing.T) {
		conn := lwConnect(t, p, "lw-restore-prepared")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := conn.Exec(ctx, "SET lock_timeout = '4s'"); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"lw_ok", "lw_blocked"} {
			if _, err := conn.Prepare(ctx, name, alter("prep_"+name)); err != nil {
				t.Fatalf("prepare %s: %v", name, err)
			}
		}
		if got := lwShow(t, conn); got != "4s" {
			t.Errorf("after Prepare: lock_timeout %q, want 4s", got)
		}
		if _, err := conn.Exec(ctx, "lw_ok"); err != nil {
			t.Fatalf("execute lw_ok: %v", err)
		}
		if got := lwShow(t, conn); got != "4s" {
			t.Errorf("after executing lw_ok: lock_timeout %q, want 4s", got)
		}
		blocked(t, func() {
			begin := time.Now()
			_, err := conn.Exec(ctx, "lw_blocked")
			took := time.Since(begin)
			lwWantCode(t, "blocked prepared ALTER", err, "55P03")
			lwWithin(t, "blocked prepared ALTER", took, lo, hi)
			t.Logf("blocked prepared ALTER failed after %s: %v", took.Round(time.Millisecond), err)
		})
		if got := lwShow(t, conn); got != "4s" {
			t.Errorf("after the failed prepared ALTER: lock_timeout %q, want 4s", got)
		}
	})

	t.Run("InTransaction", func(t *testing.T) {
		conn := lwConnect(t, p, "lw-restore-tx")
		lwMust(t, conn, "SET lock_timeout = '2s'")
		// The transaction's own SET LOCAL is back after the statement; the
		// session's value after COMMIT.
		lwMust(t, conn, "BEGIN")
		lwMust(t, conn, "SET LOCAL lock_timeout = '7s'")
		lwMust(t, conn, alter("tx_ok"))
		if got := lwShow(t, conn); got != "7s" {
			t.Errorf("inside the transaction after the ALTER: lock_timeout %q, want 7s", got)
		}
		lwMust(t, conn, "COMMIT")
		if got := lwShow(t, conn); got != "2s" {
			t.Errorf("after COMMIT: lock_timeout %q, want 2s", got)
		}
		// Without a SET LOCAL the session's value shows inside too.
		lwMust(t, conn, "BEGIN")
		lwMust(t, conn, alter("tx_ok2"))
		if got := lwShow(t, conn); got != "2s" {
			t.Errorf("inside the transaction after the ALTER: lock_timeout %q, want 2s", got)
		}
		lwMust(t, conn, "COMMIT")
		// Blocked inside the transaction: not retried, fails after 500ms
		// (not 7s), aborts the transaction as a lock timeout would.
		blocked(t, func() {
			lwMust(t, conn, "BEGIN")
			lwMust(t, conn, "SET LOCAL lock_timeout = '7s'")
			took, err := lwExec(conn, alter("tx_blocked"))
			lwWantCode(t, "blocked ALTER in a transaction", err, "55P03")
			lwWithin(t, "blocked ALTER in a transaction", took, lo, hi)
			if st := conn.PgConn().TxStatus(); st != 'E' {
				t.Errorf("after the failed ALTER the transaction status is %q, want E", st)
			}
			lwMust(t, conn, "ROLLBACK")
		})
		if got := lwShow(t, conn); got != "2s" {
			t.Errorf("after ROLLBACK: lock_timeout %q, want 2s", got)
		}
	})

	t.Run("Concurrently", func(t *testing.T) {
		conn := lwConnect(t, p, "lw-restore-cic")
		before := lwShow(t, conn)
		idx := lwColumn("cic_idx")
		lwMust(t, conn, "CREATE INDEX CONCURRENTLY "+idx+" ON t (id, pad)")
		if got := lwShow(t, conn); got != before {
			t.Errorf("after CREATE INDEX CONCURRENTLY: lock_timeout %q, want %q", got, before)
		}
		if v := queryString(t, conn, "SELECT indisvalid::text FROM pg_index WHERE indexrelid = '"+idx+"'::regclass"); v != "true" {
			t.Errorf("index %s valid: %s", idx, v)
		}
		super := superConn(t, lwDatabase)
		if _, err := lwExec(super, "DROP INDEX CONCURRENTLY "+idx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("ShorterSession", func(t *testing.T) {
		conn := lwConnect(t, p, "lw-restore-shorter")
		lwMust(t, conn, "SET lock_timeout = '100ms'")
		lwMust(t, conn, alter("short_ok"))
		if got := lwShow(t, conn); got != "100ms" {
			t.Errorf("after the ALTER: lock_timeout %q, want 100ms", got)
		}
		blocked(t, func() {
			took, err := lwExec(conn, alter("short_blocked"))
			lwWantCode(t, "blocked ALTER", err, "55P03")
			lwWithin(t, "blocked ALTER with the session's 100ms", took, 90*time.Millisecond, 400*time.Millisecond)
			t.Logf("blocked ALTER with the session's 100ms failed after %s", took.Round(time.Millisecond))
		})
		if got := lwShow(t, conn); got != "100ms" {
			t.Errorf("after the failed ALTER: lock_timeout %q, want 100ms", got)
		}
	})

	t.Run("LongerSession", func(t *testing.T) {
		conn := lwConnect(t, p, "lw-restore-longer")
		lwMust(t, conn, "SET lock_timeout = '10s'")
		blocked(t, func() {
			took, err := lwExec(conn, alter("long_blocked"))
			lwWantCode(t, "blocked ALTER", err, "55P03")
			lwWithin(t, "blocked ALTER with the session's 10s", took, lo, hi)
			t.Logf("blocked ALTER with the session's 10s failed after %s", took.Round(time.Millisecond))
		})
		if got := lwShow(t, conn); got != "10s" {
			t.Errorf("after the failed ALTER: lock_timeout %q, want 10s", got)
		}
	})

	t.Run("Wire", func(t *testing.T) {
		login := map[string]string{"database": lwDatabase}
		via := dialRaw(t, p.Addr())
		via.startup(t, pgproto3.ProtocolVersion30, login)
		direct := dialRaw(t, cluster.Addr())
		direct.startup(t, pgproto3.ProtocolVersion30, login)

		type step struct {
			name string
			msgs func(col string) []pgproto3.FrontendMessage
			want []string
		}
		query := func(sql string) []pgproto3.FrontendMessage {
			return []pgproto3.FrontendMessage{&pgproto3.Query{String: sql}}
		}
		steps := []step{
			{"simple", func(col string) []pgproto3.FrontendMessage {
				return query("ALTER TABLE t ADD COLUMN " + col + " int")
			}, []string{"CommandComplete ALTER TABLE", "ReadyForQuery I"}},
			{"extended", func(col string) []pgproto3.FrontendMessage {
				return []pgproto3.FrontendMessage{&pgproto3.Parse{Query: "ALTER TABLE t ADD COLUMN " + col + " int"},
					&pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}}
			}, []string{"ParseComplete", "BindComplete", "CommandComplete ALTER TABLE", "ReadyForQuery I"}},
			{"begin", func(string) []pgproto3.FrontendMessage { return query("BEGIN") },
				[]string{"CommandComplete BEGIN", "ReadyForQuery T"}},
			{"in transaction", func(col string) []pgproto3.FrontendMessage {
				return query("ALTER TABLE t ADD COLUMN " + col + " int")
			}, []string{"CommandComplete ALTER TABLE", "ReadyForQuery T"}},
			{"commit", func(string) []pgproto3.FrontendMessage { return query("COMMIT") },
				[]string{"CommandComplete COMMIT", "ReadyForQuery I"}},
		}
		// One session after the other: the transaction of one would
		// block the other's ALTER.
		for _, side := range []struct {
			name string
			rc   *rawConn
		}{{"through ddlguard", via}, {"directly", direct}} {
			for _, s := range steps {
				got := lwRawExchange(t, side.rc, s.msgs(lwColumn("wire")))
				if !slices.Equal(got, s.want) {
					t.Errorf("%s %s: got %q, want exactly %q", s.name, side.name, got, s.want)
				}
			}
		}
		if got := via.simpleQuery(t, "SHOW lock_timeout"); !slices.Equal(got, []string{"0"}) {
			t.Errorf("raw session through ddlguard: lock_timeout %q, want 0", got)
		}
	})
}

// lwRawExchange sends msgs and describes every message received up to
// ReadyForQuery.
func lwRawExchange(t *testing.T, rc *rawConn, msgs []pgproto3.FrontendMessage) []string {
	t.Helper()
	rc.SetDeadline(time.Now().Add(10 * time.Second))
	defer rc.SetDeadline(time.Time{})
	for _, m := range msgs {
		rc.fe.Send(m)
	}
	if err := rc.fe.Flush(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		msg, err := rc.fe.Receive()
		if err != nil {
			t.Fatalf("receive after %q: %v", got, err)
		}
		switch m := msg.(type) {
		case *pgproto3.CommandComplete:
			got = append(got, "CommandComplete "+string(m.CommandTag))
		case *pgproto3.ReadyForQuery:
			return append(got, "ReadyForQuery "+string(m.TxStatus))
		case *pgproto3.ParameterStatus:
			got = append(got, "ParameterStatus "+m.Name+"="+m.Value)
		case *pgproto3.NoticeResponse:
			got = append(got, "Notice "+m.Code+" "+m.Message)
		case *pgproto3.ErrorResponse:
			got = append(got, "Error "+m.Code+" "+m.Message)
		default:
			got = append(got, strings.TrimPrefix(fmt.Sprintf("%T", msg), "*pgproto3."))
		}
	}
}

// TestLockWaitIdleInTransactionBounded: after an ACCESS EXCLUSIVE DDL inside
// a client's transaction, ddlguard bounds how long the transaction may sit
// idle holding the lock: the server ends the session, the lock goes, the
// DDL is rolled back. A transaction without such a lock is not bounded.
func TestLockWaitIdleInTransactionBounded(t *testing.T) {
	lwSetup(t)
	const bound = time.Second
	p := lwProxy(t, proxy.ExecConfig{IdleInTransactionTimeout: bound})
	holder := lwConnect(t, p, "lw-idle-holder")
	plain := lwConnect(t, p, "lw-idle-plain")
	col := lwColumn("idle")

	lwMust(t, plain, "BEGIN")
	lwMust(t, plain, "SELECT 1")
	lwMust(t, holder, "BEGIN")
	lwMust(t, holder, "ALTER TABLE t ADD COLUMN "+col+" int")
	pid := holder.PgConn().PID()
	idleSince := time.Now()

	// The lock is held while the transaction is open, and ends with it.
	super := superConn(t, lwDatabase)
	holds := func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var n int
		if err := super.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'relation'
			AND relation = 't'::regclass AND mode = 'AccessExclusiveLock' AND granted AND pid = $1`, int64(pid)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n > 0
	}
	if !holds() {
		t.Fatalf("backend %d does not hold ACCESS EXCLUSIVE on t after the ALTER", pid)
	}
	waitBackendGone(t, super, pid, bound+3*time.Second)
	t.Logf("backend %d ended %s after the ALTER", pid, time.Since(idleSince).Round(time.Millisecond))
	time.Sleep(time.Until(idleSince.Add(2 * time.Second)))

	_, err := lwExec(holder, "SELECT 1")
	pe := lwWantCode(t, "query after sitting idle in the transaction", err, "25P03")
	if pe.Severity != "FATAL" {
		t.Errorf("idle-in-transaction error has severity %s, want FATAL", pe.Severity)
	}
	t.Logf("holder's next query: %s %s %s", pe.Severity, pe.Code, pe.Message)

	// The lock went with the session: a reader gets through at once.
	reader := lwDirect(t, "lw-idle-reader")
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var n int64
	if err := reader.QueryRow(ctx, lwReaderSQL).Scan(&n); err != nil || n != lwReaderRows {
		t.Errorf("reading t after the session ended: %d rows, %v", n, err)
	}
	if lwHasColumn(t, col) {
		t.Errorf("column %s survived the ended transaction", col)
	}

	// The transaction without ACCESS EXCLUSIVE sat idle as long and lives.
	if got := queryString(t, plain, "SELECT 'alive'"); got != "alive" {
		t.Errorf("plain transaction: %q", got)
	}
	lwMust(t, plain, "COMMIT")
}

// lwCancelConn opens a pgx connection through p whose cancelled contexts
// send a CancelRequest (and keep the connection).
func lwCancelConn(t *testing.T, p *testProxy, app string) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(p.DSN(pgcluster.RoleTrust, lwDatabase, "sslmode", "disable", "application_name", app))
	if err != nil {
		t.Fatal(err)
	}
	cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, DeadlineDelay: 5 * time.Second}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// lwWaitPreflight waits until the backend whose application_name is app
// has run ddlguard's preflight (ddlguard is waiting for a blocker on its
// behalf) and checks that it has no lock on t, granted or awaited.
func lwWaitPreflight(t *testing.T, super *pgx.Conn, app string) int32 {
	t.Helper()
	var pid int32
	eventually(t, 5*time.Second, app+" to run ddlguard's preflight", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := super.QueryRow(ctx, `SELECT pid FROM pg_stat_activity
			WHERE application_name = $1 AND query LIKE '/* ddlguard preflight */%'`, app).Scan(&pid)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			t.Fatal(err)
		}
		return err == nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var n int
	if err := super.QueryRow(ctx, `SELECT count(*) FROM pg_locks
		WHERE locktype = 'relation' AND relation = 't'::regclass AND pid = $1`, pid).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("backend %d (%s) has %d lock(s) on t while ddlguard waits for it", pid, app, n)
	}
	return pid
}

// TestLockWaitCancelWhileWaiting: while ddlguard waits out a blocker on the
// client's behalf (the backend idle, no lock requested), the client's
// cancel ends the wait at once with 57014, and the session goes on.
func TestLockWaitCancelWhileWaiting(t *testing.T) {
	lwSetup(t)
	p := lwProxy(t, proxy.ExecConfig{RetryBudget: 20 * time.Second})
	lwBlocker(t, "lw-cancel-blocker")
	super := superConn(t, lwDatabase)
	var cancels []*pgconn.PgError

	for _, proto := range []struct {
		name string
		send lwSend
	}{{"pgx simple", lwSimple}, {"pgx extended", lwExtended}} {
		t.Run(proto.name, func(t *testing.T) {
			app := "lw-cancel-" + strings.ReplaceAll(proto.name, " ", "-")
			conn := lwCancelConn(t, p, app)
			col := lwColumn("cancel")
			watch := lwWatchLocks(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			type result struct {
				err error
				at  time.Time
			}
			done := make(chan result, 1)
			begin := time.Now()
			go func() {
				err := proto.send(ctx, conn, "ALTER TABLE t ADD COLUMN "+col+" int")
				done <- result{err, time.Now()}
			}()
			lwWaitPreflight(t, super, app)
			time.Sleep(200 * time.Millisecond)
			cancelled := time.Now()
			cancel()
			var r result
			select {
			case r = <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("the ALTER did not return within 5s of the cancel")
			}
			watch.finish()
			samples, queued, most := watch.between(t, begin, r.at)
			took := r.at.Sub(cancelled)
			t.Logf("cancelled ALTER returned %s after the cancel: %v; lock queue of t non-empty in %d/%d samples (up to %d)",
				took.Round(time.Millisecond), r.err, queued, samples, most)
			cancels = append(cancels, lwWantCode(t, "cancelled ALTER", r.err, "57014"))
			if took >= time.Second {
				t.Errorf("the cancelled ALTER returned %s after the cancel, want less than 1s", took)
			}
			if queued > 0 {
				t.Errorf("%d of %d samples saw sessions queued for t (up to %d): the cancelled ALTER entered the lock queue",
					queued, samples, most)
			}
			if conn.IsClosed() {
				t.Fatal("the connection closed after the cancel")
			}
			if got := queryString(t, conn, "SELECT 'usable after cancel'"); got != "usable after cancel" {
				t.Errorf("after the cancel: %q", got)
			}
			if got := lwShow(t, conn); got != "0" {
				t.Errorf("after the cancel: lock_timeout %q, want 0", got)
			}
			if st := conn.PgConn().TxStatus(); st != 'I' {
				t.Errorf("after the cancel: transaction status %q, want I", st)
			}
			if lwHasColumn(t, col) {
				t.Errorf("column %s was added", col)
			}
		})
	}

	t.Run("psql", func(t *testing.T) {
		const app = "lw-cancel-psql"
		col := lwColumn("cancel_psql")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		dsn := p.DSN(pgcluster.RoleTrust, lwDatabase, "sslmode", "disable", "application_name", app)
		cmd := clientProgramCmd(ctx, cluster.Psql(), "-X", "-q", "-A", "-t", "-d", dsn,
			"-c", "ALTER TABLE t ADD COLUMN "+col+" int", "-c", "SELECT 'not reached'")
		var stdout, stderr lockedBuffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatalf("start psql: %v", err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		t.Cleanup(func() {
			cmd.Process.Kill()
			<-exited
		})
		lwWaitPreflight(t, super, app)
		time.Sleep(200 * time.Millisecond)
		signalled := time.Now()
		if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatalf("SIGINT: %v", err)
		}
		eventually(t, 5*time.Second, "psql to print the cancel error", func() bool {
			return strings.Contains(stderr.String(), "canceling statement due to user request")
		})
		took := time.Since(signalled)
		var waitErr error
		select {
		case waitErr = <-exited:
			exited <- waitErr
		case <-time.After(5 * time.Second):
			t.Fatalf("psql still running 5s after SIGINT\nstdout: %s\nstderr: %s", stdout.String(), stderr.String())
		}
		t.Logf("psql printed the cancel %s after SIGINT; exit %v\nstdout: %s\nstderr: %s",
			took.Round(time.Millisecond), waitErr, stdout.String(), stderr.String())
		if took >= time.Second {
			t.Errorf("psql got the cancel error %s after SIGINT, want less than 1s", took)
		}
		var exitErr *exec.ExitError
		if !strings.Contains(stderr.String(), "ERROR:  canceling statement due to user request") {
			t.Errorf("psql stderr lacks the cancel error:\n%s", stderr.String())
		}
		// psql stops its command list after a cancel, as it does directly.
		if !errors.As(waitErr, &exitErr) || exitErr.ExitCode() != 1 || stdout.String() != "" {
			t.Errorf("psql: %v with stdout %q, want exit status 1 (query failed) and nothing printed", waitErr, stdout.String())
		}
		if lwHasColumn(t, col) {
			t.Errorf("column %s was added", col)
		}
	})

	// ddlguard's own 57014 should look like the server's (which has no
	// CONTEXT), not carry the PL/pgSQL context of the DO block raising it.
	t.Run("PlainError", func(t *testing.T) {
		if len(cancels) == 0 {
			t.Fatal("no 57014 was recorded")
		}
		for _, pe := range cancels {
			if pe.Where != "" || pe.Routine == "exec_stmt_raise" {
				t.Errorf("57014 raised by ddlguard carries CONTEXT %q (%s:%d, routine %s)", pe.Where, pe.File, pe.Line, pe.Routine)
			}
		}
	})
}

// A migration transaction that already holds a strong lock is never kept
// waiting for blockers on its next table: `BEGIN; ALTER TABLE lw_hold_a
// ...; ALTER TABLE t ...` while another session sits idle in a transaction
// that read t fails within the lock timeout with 55P03 naming the blocker
// and saying to retry the transaction as a whole, so the readers of
// lw_hold_a (held ACCESS EXCLUSIVE by the first ALTER) wait no longer than
// the lock timeout plus a margin, not the retry budget. A blocker whose
// session the DDL's role can see (idle in transaction) ends it at once; one
// it cannot see (another role's, without pg_read_all_stats) may be a
// passing query, so the ALTER gets its lock timeout. From the simple and
// the extended protocol.
func TestLockWaitInTransactionHoldingLocks(t *testing.T) {
	lwSetup(t)
	owner := lwDirect(t, "lw-hold-setup")
	lwMust(t, owner, "CREATE TABLE IF NOT EXISTS lw_hold_a (id int PRIMARY KEY)")
	lwMust(t, owner, "INSERT INTO lw_hold_a SELECT g FROM generate_series(1, 100) g ON CONFLICT DO NOTHING")
	lwMust(t, owner, "GRANT SELECT ON lw_hold_a TO PUBLIC")
	p := lwProxy(t, proxy.ExecConfig{})
	const margin = 300 * time.Millisecond

	// visibleBlocker is lwBlocker as the DDL's own role, whose session the
	// DDL's role sees idle in transaction.
	visibleBlocker := func(t *testing.T) (*pgx.Conn, uint32) {
		conn := lwDirect(t, "lw-hold-visible-blocker")
		lwMust(t, conn, "BEGIN")
		lwMust(t, conn, "SELECT count(*) FROM t")
		return conn, conn.PgConn().PID()
	}
	hiddenBlocker := func(t *testing.T) (*pgx.Conn, uint32) { return lwBlocker(t, "lw-hold-hidden-blocker") }

	for _, c := range []struct {
		name    string
		send    lwSend
		blocker func(t *testing.T) (*pgx.Conn, uint32)
		atOnce  bool // ddlguard answers without sending the ALTER
	}{
		{"simple/visible", lwSimple, visibleBlocker, true},
		{"extended/visible", lwExtended, visibleBlocker, true},
		{"simple/hidden", lwSimple, hiddenBlocker, false},
		{"extended/hidden", lwExtended, hiddenBlocker, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			blocker, blockerPID := c.blocker(t)
			defer lwEnd(t, blocker)
			readers := make([]*pgx.Conn, lwReaderCount)
			for i := range readers {
				readers[i] = lwDirect(t, fmt.Sprintf("lw-hold-reader-%d", i))
			}
			load := lwStartQueryLoad(readers, "SELECT count(*) FROM lw_hold_a", 100)
			time.Sleep(lwWarmup)

			ddl := lwConnect(t, p, "lw-hold-ddl")
			lwMust(t, ddl, "BEGIN")
			if err := c.send(ctx, ddl, "ALTER TABLE lw_hold_a ADD COLUMN "+lwColumn("hold_a")+" int"); err != nil {
				t.Fatalf("first ALTER (no blocker on lw_hold_a): %v", err)
			}
			begin := time.Now()
			err := c.send(ctx, ddl, "ALTER TABLE t ADD COLUMN "+lwColumn("hold_t")+" int")
			took := time.Since(begin)
			lwMust(t, ddl, "ROLLBACK")
			stats := load.finish()
			t.Logf("second ALTER: %v after %s; readers of lw_hold_a: %s", err, took.Round(time.Millisecond), stats)

			if pgErr := lwWantCode(t, "second ALTER", err, "55P03"); pgErr != nil {
				if c.atOnce != strings.Contains(pgErr.Message, "not kept waiting") {
					t.Errorf("message %q: want ddlguard's own answer %v", pgErr.Message, c.atOnce)
				}
				if !strings.Contains(pgErr.Hint, "run the whole transaction") {
					t.Errorf("hint %q does not say to retry the whole transaction", pgErr.Hint)
				}
				if !strings.Contains(pgErr.Detail, fmt.Sprintf("pid %d", blockerPID)) {
					t.Errorf("DETAIL %q does not name the blocker (pid %d)", pgErr.Detail, blockerPID)
				}
			}
			limit := lwLockTimeout + margin
			if c.atOnce {
				limit = margin
			}
			if took > limit {
				t.Errorf("the second ALTER took %s (limit %s): ddlguard waited while the transaction held ACCESS EXCLUSIVE on lw_hold_a", took, limit)
			}
			if len(stats.errs) > 0 {
				t.Errorf("reader errors: %v", stats.errs)
			}
			if stats.max > lwLockTimeout+margin {
				t.Errorf("a reader of lw_hold_a waited %s, over the lock timeout %s plus %s", stats.max, lwLockTimeout, margin)
			}
		})
	}
}

// TestLockWaitNoDeadlockOutsideQueue: two migration transactions each read
// a table (ACCESS SHARE held) and then ALTER it. Each is the other's
// blocker, and while ddlguard keeps them waiting outside the lock queue
// PostgreSQL's deadlock detector cannot see it: ddlguard must, and fail
// exactly one of them at once with deadlock_detected (40P01), as
// PostgreSQL fails one when the wait is in its queue, so that the other
// goes on.
func TestLockWaitNoDeadlockOutsideQueue(t *testing.T) {
	lwSetup(t)
	owner := lwDirect(t, "lw-deadlock-setup")
	lwMust(t, owner, "CREATE TABLE IF NOT EXISTS lw_deadlock (id int)")
	p := lwProxy(t, proxy.ExecConfig{})
	for _, send := range []struct {
		name string
		fn   lwSend
	}{{"simple", lwSimple}, {"extended", lwExtended}} {
		t.Run(send.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			conns := make([]*pgx.Conn, 2)
			for i := range conns {
				conns[i] = lwConnect(t, p, fmt.Sprintf("lw-deadlock-%d", i))
				lwMust(t, conns[i], "BEGIN")
				lwMust(t, conns[i], "SELECT count(*) FROM lw_deadlock")
			}
			type result struct {
				err  error
				took time.Duration
			}
			results := make([]result, 2)
			var wg sync.WaitGroup
			for i, conn := range conns {
				if i > 0 {
					// The first is waiting outside the queue for the second
					// (idle in its transaction) by now; the second finds
					// the first idle in its transaction too.
					time.Sleep(300 * time.Millisecond)
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					start := time.Now()
					err := send.fn(ctx, conn, "ALTER TABLE lw_deadlock ADD COLUMN "+lwColumn("deadlock")+" int")
					if err != nil {
						// The victim rolls back, as a migration tool does.
						conn.Exec(ctx, "ROLLBACK")
					}
					results[i] = result{err, time.Since(start)}
				}()
			}
			wg.Wait()
			failed := 0
			for i, r := range results {
				t.Logf("transaction %d: %v after %s", i, r.err, r.took.Round(time.Millisecond))
				if r.took > 5*time.Second {
					t.Errorf("transaction %d waited %s (the retry budget is 30s): the wait for each other was not seen", i, r.took)
				}
				if r.err == nil {
					lwMust(t, conns[i], "COMMIT")
					continue
				}
				failed++
				pgErr := lwWantCode(t, fmt.Sprintf("transaction %d", i), r.err, "40P01")
				if !strings.Contains(pgErr.Message, "ddlguard: deadlock detected") || !strings.Contains(pgErr.Hint, "run the whole transaction") ||
					!strings.Contains(pgErr.Detail, "lw-deadlock-") {
					t.Errorf("transaction %d: message %q, detail %q, hint %q: want ddlguard's, naming the other transaction and saying to run this one again",
						i, pgErr.Message, pgErr.Detail, pgErr.Hint)
				}
			}
			if failed != 1 {
				t.Errorf("%d of the two transactions failed, want exactly one", failed)
			}
		})
	}
}

// TestLockWaitWholeStringRetried: a migration sent as one string (an
// implicit transaction, or its own BEGIN ... COMMIT) whose second ALTER
// times out on its lock has taken back everything it did, so ddlguard
// runs the whole string again after a pause, until the blocker is gone,
// and the client gets the answer of the attempt that went through. The
// readers of the first table, which each attempt holds for at most the
// lock timeout, never wait longer; the session's lock_timeout is its own
// afterwards. (The blocker check is off, so that the statements reach the
// lock queue.)
func TestLockWaitWholeStringRetried(t *testing.T) {
	lwSetup(t)
	owner := lwDirect(t, "lw-unit-setup")
	lwMust(t, owner, "CREATE TABLE IF NOT EXISTS lw_unit_a (id int PRIMARY KEY)")
	lwMust(t, owner, "INSERT INTO lw_unit_a SELECT g FROM generate_series(1, 100) g ON CONFLICT DO NOTHING")
	p := lwProxy(t, proxy.ExecConfig{NoBlockerCheck: true})
	for _, tc := range []struct {
		name string
		sql  func(a, b string) string
	}{
		{"implicit transaction", func(a, b string) string {
			return "ALTER TABLE lw_unit_a ADD COLUMN " + a + " int; ALTER TABLE t ADD COLUMN " + b + " int"
		}},
		{"BEGIN ... COMMIT", func(a, b string) string {
			return "BEGIN; ALTER TABLE lw_unit_a ADD COLUMN " + a + " int; ALTER TABLE t ADD COLUMN " + b + " int; COMMIT"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			readers := make([]*pgx.Conn, lwReaderCount)
			for i := range readers {
				readers[i] = lwDirect(t, fmt.Sprintf("lw-unit-reader-%d", i))
			}
			load := lwStartQueryLoad(readers, "SELECT count(*) FROM lw_unit_a", 100)
			time.Sleep(lwWarmup)
			blocker, _ := lwBlocker(t, "lw-unit-blocker")
			const hold = 1200 * time.Millisecond
			released := make(chan struct{})
			go func() {
				defer close(released)
				time.Sleep(hold)
				blocker.Exec(context.Background(), "ROLLBACK")
			}()
			conn := lwConnect(t, p, "lw-unit-ddl")
			before := lwShow(t, conn)
			a, b := lwColumn("unit_a"), lwColumn("unit_b")
			took, err := lwExec(conn, tc.sql(a, b))
			<-released
			stats := load.finish()
			t.Logf("%v after %s; readers of lw_unit_a: %s", err, took.Round(time.Millisecond), stats)
			if err != nil {
				t.Fatalf("the string failed: %v", err)
			}
			if took < hold-100*time.Millisecond {
				t.Errorf("done after %s, before the blocker left (%s)", took, hold)
			}
			for _, col := range []string{"lw_unit_a." + a, "t." + b} {
				table, column, _ := strings.Cut(col, ".")
				if got := queryString(t, owner, fmt.Sprintf(
					"SELECT count(*)::text FROM pg_attribute WHERE attrelid = '%s'::regclass AND attname = '%s' AND NOT attisdropped", table, column)); got != "1" {
					t.Errorf("column %s: %s", col, got)
				}
			}
			if got := lwShow(t, conn); got != before {
				t.Errorf("lock_timeout after the string: %q, want %q", got, before)
			}
			if bound := lwLockTimeout + 300*time.Millisecond; stats.max > bound {
				t.Errorf("a reader of lw_unit_a waited %s, over %s", stats.max, bound)
			}
		})
	}
}
