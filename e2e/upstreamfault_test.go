package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ddlguard/ddlguard/e2e/pgcluster"
	"github.com/ddlguard/ddlguard/guard"
	"github.com/ddlguard/ddlguard/proxy"
)

// Faults on the upstream side: the server restarted under load, the server
// unreachable, a backend killed mid-transaction, the monitor's side
// connection lost. ddlguard stays up throughout, clients get errors they
// can read, and new connections work once the server does.

// startThrowawayCluster starts a PostgreSQL server of this test's own, for
// faults that would disturb the tests sharing the package's cluster; it is
// stopped when the test ends.
func startThrowawayCluster(t *testing.T) *pgcluster.Cluster {
	t.Helper()
	c, err := pgcluster.Start(pgcluster.Options{Logf: t.Logf})
	if err != nil {
		t.Fatalf("start a throwaway PostgreSQL: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("throwaway PostgreSQL log tail:\n%s", c.LogTail(40))
		}
		if err := c.Stop(); err != nil {
			t.Errorf("stop the throwaway PostgreSQL: %v", err)
		}
	})
	return c
}

// startProxyFor starts ddlguard (see startProxy) in front of c.
func startProxyFor(t *testing.T, c *pgcluster.Cluster, options ...func(*proxy.Config)) *testProxy {
	t.Helper()
	return startProxy(t, append([]func(*proxy.Config){func(cfg *proxy.Config) { cfg.Upstream = c.Addr() }}, options...)...)
}

// proxiedDSN is a DSN for user through p to c (plaintext to ddlguard).
func proxiedDSN(c *pgcluster.Cluster, p *testProxy, user, database string, kv ...string) string {
	return c.DSN(user, database, append([]string{"host", p.Host, "port", fmt.Sprint(p.Port), "sslmode", "disable"}, kv...)...)
}

// readableConnectError reports whether a failed connect carries a FATAL
// the client can show (the server's or ddlguard's), not a bare network
// error.
func readableConnectError(err error) bool {
	pe := pgErrorOf(err)
	return pe != nil && pe.Severity == "FATAL" && pe.Message != ""
}

// pgbench clients aborted by a lost connection say why, in one line each.
var pgbenchAbortRE = regexp.MustCompile(`(?m)^pgbench: error: client \d+ (?:script \d+ )?aborted in command \d+ .*$`)

// The server restarted (fast) in the middle of a pgbench run through
// ddlguard: each pgbench client reports the server's own FATAL (relayed
// unchanged) or ddlguard's, connections attempted while the server is down
// or starting get a FATAL too, and once it is back new runs succeed through
// the same ddlguard.
func TestUpstreamRestartUnderPgbench(t *testing.T) {
	pg := startThrowawayCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin, err := pg.Connect(ctx, pgcluster.Superuser, "postgres", "sslmode", "disable")
	if err != nil {
		t.Fatal(err)
	}
	if err := execEach(ctx, admin, "CREATE TABLE restart_t (id bigserial, v int)", "GRANT ALL ON restart_t, restart_t_id_seq TO PUBLIC"); err != nil {
		t.Fatal(err)
	}
	admin.Close(ctx)
	p := startProxyFor(t, pg)
	script := filepath.Join(t.TempDir(), "restart.sql")
	if err := os.WriteFile(script, []byte("\\set v random(1, 1000)\nINSERT INTO restart_t (v) VALUES (:v);\nSELECT count(*) FROM restart_t WHERE v = :v;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dsn := proxiedDSN(pg, p, pgcluster.RoleTrust, "postgres", "application_name", "restart-bench")

	benchDone := make(chan clientRun, 1)
	go func() {
		benchDone <- runClientProgram(t, 60*time.Second, nil, pg.PgBench(), "-n", "-c", "4", "-j", "2", "-T", "6", "-f", script, dsn)
	}()

	// Let the load run, then restart in its middle while a prober keeps
	// opening connections through ddlguard.
	eventually(t, 10*time.Second, "pgbench's four sessions", func() bool { return p.Server.ConnCount() >= 4 })
	time.Sleep(1500 * time.Millisecond)
	var probeMu sync.Mutex
	var probeOK, probeReadable int
	var probeBad []string
	stopProbe := make(chan struct{})
	probeDone := make(chan struct{})
	go func() {
		defer close(probeDone)
		for {
			select {
			case <-stopProbe:
				return
			default:
			}
			pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
			conn, err := pgx.Connect(pctx, dsn)
			if err == nil {
				_, err = conn.Exec(pctx, "SELECT 1")
				conn.Close(pctx)
			}
			pcancel()
			probeMu.Lock()
			switch {
			case err == nil:
				probeOK++
			case readableConnectError(err):
				probeReadable++
			default:
				probeBad = append(probeBad, err.Error())
			}
			probeMu.Unlock()
			time.Sleep(20 * time.Millisecond)
		}
	}()
	restartBegan := time.Now()
	if err := pg.Restart("fast"); err != nil {
		t.Fatalf("restart: %v", err)
	}
	restartTook := time.Since(restartBegan)
	time.Sleep(300 * time.Millisecond)
	close(stopProbe)
	<-probeDone

	res := <-benchDone
	aborts := pgbenchAbortRE.FindAllString(res.stderr, -1)
	t.Logf("restart (fast) took %s; pgbench exit %d, %d client(s) aborted:\n%s", restartTook.Round(time.Millisecond), res.code, len(aborts), res.stderr)
	if len(aborts) == 0 {
		t.Errorf("no pgbench client reported the restart:\n%s", res)
	}
	// A client in the middle of a command prints the server's FATAL on its
	// abort line. One between commands (the FATAL arrived while libpq was
	// idle: more likely through a proxy, whose round trip leaves the
	// backend idle longer) gets the FATAL printed by libpq on a line of its
	// own and pgbench's generic "perhaps the backend died" abort line.
	const serverFatal = "FATAL:  terminating connection due to administrator command"
	for _, line := range aborts {
		if !strings.Contains(line, serverFatal) && !strings.Contains(line, "ddlguard") &&
			!strings.Contains(line, "perhaps the backend died while processing") {
			t.Errorf("pgbench client aborted without a readable reason: %s", line)
		}
	}
	if n := strings.Count(res.stderr, serverFatal) + strings.Count(res.stderr, "ddlguard"); n < len(aborts) {
		t.Errorf("%d clients aborted, but only %d saw why:\n%s", len(aborts), n, res.stderr)
	}
	if strings.Contains(res.stderr, "lost synchronization") || strings.Contains(res.stderr, "invalid message") ||
		strings.Contains(res.stderr, "unexpected message type") {
		t.Errorf("pgbench saw a protocol error:\n%s", res)
	}
	probeMu.Lock()
	t.Logf("connections during the restart: %d succeeded, %d refused with a FATAL, %d otherwise", probeOK, probeReadable, len(probeBad))
	if len(probeBad) > 0 {
		t.Errorf("connections during the restart failed without a readable FATAL: %s", strings.Join(probeBad[:min(len(probeBad), 5)], "; "))
	}
	if probeReadable == 0 {
		t.Log("no connection attempt fell into the restart window this time")
	}
	probeMu.Unlock()

	// The same ddlguard serves the restarted server.
	after := runClientProgram(t, 30*time.Second, nil, pg.PgBench(), "-n", "-c", "4", "-j", "2", "-T", "2", "-f", script, dsn)
	if after.code != 0 {
		t.Fatalf("pgbench after the restart failed:\n%s", after)
	}
	s := parsePgbenchOutput(t, after)
	if s.failed != 0 || s.processed == 0 {
		t.Errorf("pgbench after the restart: %d processed, %d failed\n%s", s.processed, s.failed, after)
	}
	t.Logf("after the restart: %s", s.tpsLine)
	waitProxyIdle(t, p)
}

// A server that is not there: the client gets FATAL 08006 naming the
// upstream at once, every time, and ddlguard keeps no trace of the
// attempts.
func TestUpstreamUnreachableStorm(t *testing.T) {
	dead := freeAddr(t)
	p := startProxy(t, func(c *proxy.Config) { c.Upstream = dead })
	const attempts = 200
	var wg sync.WaitGroup
	errs := make(chan error, attempts)
	begin := time.Now()
	for i := range attempts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			mode := []string{"disable", "require"}[i%2] // plaintext and TLS to ddlguard
			_, err := pgx.Connect(ctx, p.DSN(pgcluster.RoleTrust, "postgres", "sslmode", mode))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	took := time.Since(begin)
	n := 0
	for err := range errs {
		pe := pgErrorOf(err)
		if pe == nil || pe.Severity != "FATAL" || pe.Code != "08006" || !strings.Contains(pe.Message, "could not connect to the upstream server "+dead) {
			t.Errorf("got %v, want FATAL 08006 naming %s", err, dead)
			continue
		}
		n++
	}
	t.Logf("%d connections to an unreachable upstream refused with FATAL 08006 in %s", n, took.Round(time.Millisecond))
	waitProxyIdle(t, p)
}

// A backend terminated in the middle of a transaction: the client gets the
// server's FATAL 57P01, what the transaction wrote is gone, and the next
// connection through the same ddlguard works.
func TestUpstreamBackendTerminatedMidTransaction(t *testing.T) {
	p := startProxy(t)
	super := superConn(t, "postgres")
	ctx := context.Background()
	if err := execEach(ctx, super, "DROP TABLE IF EXISTS upfault_tx", "CREATE TABLE upfault_tx (a int)",
		"GRANT ALL ON upfault_tx TO PUBLIC"); err != nil {
		t.Fatal(err)
	}
	conn := p.Connect(t, pgcluster.RoleTrust, "postgres", "sslmode", "disable")
	pid := conn.PgConn().PID()
	if err := execEach(ctx, conn, "BEGIN", "INSERT INTO upfault_tx VALUES (1), (2)", "SELECT count(*) FROM upfault_tx"); err != nil {
		t.Fatal(err)
	}
	var terminated bool
	if err := super.QueryRow(ctx, "SELECT pg_terminate_backend($1)", int64(pid)).Scan(&terminated); err != nil || !terminated {
		t.Fatalf("pg_terminate_backend(%d): %v %v", pid, terminated, err)
	}
	_, err := conn.Exec(ctx, "INSERT INTO upfault_tx VALUES (3)")
	if pe := pgErrorOf(err); pe == nil || pe.Code != "57P01" || pe.Severity != "FATAL" {
		t.Fatalf("statement after pg_terminate_backend: %v, want the server's FATAL 57P01", err)
	}
	if !conn.IsClosed() {
		t.Error("the client's connection is still open after the FATAL")
	}
	var rows int
	if err := super.QueryRow(ctx, "SELECT count(*) FROM upfault_tx").Scan(&rows); err != nil || rows != 0 {
		t.Fatalf("the terminated transaction left %d rows (%v)", rows, err)
	}
	next := p.Connect(t, pgcluster.RoleTrust, "postgres", "sslmode", "disable")
	if err := execEach(ctx, next, "BEGIN", "INSERT INTO upfault_tx VALUES (4)", "COMMIT"); err != nil {
		t.Fatalf("the next connection: %v", err)
	}
	// (Which end ddlguard logs as the reason is a race: the server closed
	// after its FATAL, and the client closes as soon as it reads it.)
	eventually(t, 5*time.Second, "the dead session to leave ddlguard", func() bool { return p.Server.ConnCount() == 1 })
}

// ddlguard's own side connections (MonitorFacts, application_name
// ddlguard-facts) terminated by an operator: the next guarded statement
// still gets its facts (the pool reconnects), and the client's session,
// relayed on its own connection, never notices.
func TestUpstreamMonitorConnectionLost(t *testing.T) {
	super := superConn(t, "postgres")
	ctx := context.Background()
	var tables []string
	for i := range 3 {
		name := fmt.Sprintf("upfault_small_%d", i)
		tables = append(tables, name)
		if err := execEach(ctx, super, "DROP TABLE IF EXISTS "+name,
			"CREATE TABLE "+name+" AS SELECT g AS id FROM generate_series(1, 100) g",
			"GRANT ALL ON "+name+" TO PUBLIC", "ANALYZE "+name); err != nil {
			t.Fatal(err)
		}
	}
	monitor := startMonitorFacts(t)
	p := startGuardProxy(t, guard.DefaultConfig(), func(c *proxy.Config) { c.MonitorFacts = monitor })
	conn := p.Connect(t, pgcluster.Superuser, "postgres", "sslmode", "disable", "application_name", "upfault-client")
	pid := conn.PgConn().PID()

	// Mid-pipeline only the monitor can give facts: a small table makes
	// the CREATE INDEX a timeout decision, refused there with ZG002 (without
	// facts it would be taken as large and refused with ZG001).
	wantFacts := func(table string) {
		t.Helper()
		err := pipelineCreateIndex(t, conn.PgConn(), "CREATE INDEX ON "+table+" (id)")
		if pe := pgErrorOf(err); pe == nil || pe.Code != "ZG002" {
			t.Fatalf("CREATE INDEX on %s mid-pipeline: %v, want ZG002 (facts from the monitor: small)", table, err)
		}
	}
	wantFacts(tables[0])

	for round, table := range tables[1:] {
		var killed int
		if err := super.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE application_name = 'ddlguard-facts'`).Scan(&killed); err != nil {
			t.Fatal(err)
		}
		if killed == 0 {
			t.Fatalf("round %d: no ddlguard-facts backend to terminate", round)
		}
		eventually(t, 5*time.Second, "the monitor's backends to exit", func() bool {
			var n int
			super.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = 'ddlguard-facts'`).Scan(&n)
			return n == 0
		})
		t.Logf("round %d: terminated %d ddlguard-facts backend(s)", round, killed)
		wantFacts(table)
	}

	// The client's own session went on as if nothing happened.
	if got := conn.PgConn().PID(); got != pid {
		t.Fatalf("backend pid changed from %d to %d", pid, got)
	}
	if s := queryString(t, conn, "SELECT 'still here'"); s != "still here" {
		t.Fatalf("client session: %q", s)
	}
	if !backendAlive(t, super, pid) || p.Server.ConnCount() != 1 {
		t.Fatalf("client session lost (backend alive %v, ddlguard sessions %d)", backendAlive(t, super, pid), p.Server.ConnCount())
	}
	if bytes.Contains([]byte(p.Logs()), []byte(`"msg":"connection closed"`)) {
		t.Errorf("a relayed session ended:\n%s", p.Logs())
	}
}
