package e2e

// Real client programs through ddlguard: psql, pgbench and psycopg 3. Each
// test starts its own proxy in front of the shared cluster with the default
// upstream TLS mode (prefer), so both legs are encrypted. SCRAM clients
// therefore connect with channel_binding=disable: ddlguard terminates TLS
// and withdraws SCRAM-SHA-256-PLUS (see proxy/auth.go).

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ddlguard/ddlguard/e2e/pgcluster"
)

// clientRun is what an external program did.
type clientRun struct {
	stdout, stderr string
	code           int
	elapsed        time.Duration
}

func (r clientRun) String() string {
	return fmt.Sprintf("exit %d after %s\n--- stdout ---\n%s\n--- stderr ---\n%s",
		r.code, r.elapsed.Round(time.Millisecond), r.stdout, r.stderr)
}

// clientProgramEnv is the test process's environment without anything that could
// redirect or reconfigure a libpq client or a Python interpreter, with
// English messages and a bounded connect time.
func clientProgramEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "PG") || strings.HasPrefix(k, "PSQL") || strings.HasPrefix(k, "PYTHON") ||
			strings.HasPrefix(k, "LC_") || k == "LANG" || k == "LANGUAGE" {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C", "PGCONNECT_TIMEOUT=10", "PYTHONUNBUFFERED=1")
}

// clientProgramCmd prepares program with the client environment.
func clientProgramCmd(ctx context.Context, program string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, program, args...)
	cmd.Env = clientProgramEnv()
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// run runs program to completion (at most timeout). A program that cannot
// be started, or that is killed by the timeout, fails the test; a non-zero
// exit status is returned for the caller to judge.
func runClientProgram(t *testing.T, timeout time.Duration, stdin io.Reader, program string, args ...string) clientRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := clientProgramCmd(ctx, program, args...)
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	begin := time.Now()
	err := cmd.Run()
	res := clientRun{stdout: stdout.String(), stderr: stderr.String(), elapsed: time.Since(begin)}
	var exitErr *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("%s did not finish within %s\n%s", filepath.Base(program), timeout, res)
	case errors.As(err, &exitErr):
		res.code = exitErr.ExitCode()
	case err != nil:
		t.Fatalf("running %s: %v", program, err)
	}
	return res
}

// psqlClientArgs are the options every psql run gets: no psqlrc, stop at the
// first error, connect with dsn.
func psqlClientArgs(dsn string, more ...string) []string {
	return append([]string{"-X", "-v", "ON_ERROR_STOP=1", "-d", dsn}, more...)
}

// clientSCRAMDSN is a DSN for app_scram through p: TLS to ddlguard, no channel
// binding (it cannot survive TLS termination), UTF-8 client encoding.
func clientSCRAMDSN(p *testProxy, database string, kv ...string) string {
	return p.DSN(pgcluster.RoleSCRAM, database, append([]string{
		"sslmode", "require", "channel_binding", "disable", "client_encoding", "UTF8",
	}, kv...)...)
}

func TestClientPsqlMultiStatement(t *testing.T) {
	p := startProxy(t, keepTLS)
	const script = "CREATE TEMP TABLE t(a int); INSERT INTO t VALUES (1),(2); SELECT sum(a) FROM t"
	// psql 15 shows the result of every statement of a multi-statement
	// string, in order.
	const want = "CREATE TABLE\nINSERT 0 2\n sum \n-----\n   3\n(1 row)\n\n"

	proxied := runClientProgram(t, 20*time.Second, nil, cluster.Psql(), psqlClientArgs(clientSCRAMDSN(p, pgcluster.AppDatabase), "-c", script)...)
	if proxied.code != 0 {
		t.Fatalf("psql through ddlguard failed:\n%s", proxied)
	}
	if proxied.stdout != want {
		t.Errorf("psql through ddlguard printed\n%q\nwant\n%q\n%s", proxied.stdout, want, proxied)
	}
	if proxied.stderr != "" {
		t.Errorf("unexpected stderr: %q", proxied.stderr)
	}

	// The same command straight to the server must print the same.
	directDSN := cluster.DSN(pgcluster.RoleSCRAM, pgcluster.AppDatabase, "sslmode", "require", "client_encoding", "UTF8")
	direct := runClientProgram(t, 20*time.Second, nil, cluster.Psql(), psqlClientArgs(directDSN, "-c", script)...)
	if direct.code != 0 || direct.stdout != proxied.stdout {
		t.Errorf("direct psql differs from psql through ddlguard:\ndirect: %s\nproxied: %s", direct, proxied)
	}
	waitProxyIdle(t, p)
}

// psqlCopyFixture writes a deterministic tab-separated file of rows in COPY text
// format whose canonical form is its own re-export: escapes (\\, \t, \n, \N)
// and multi-byte UTF-8 included. It returns the row count and sum of ids.
func psqlCopyFixture(t *testing.T, path string, rows int) (count, idSum int64) {
	t.Helper()
	rng := rand.New(rand.NewSource(42))
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:-_/()"
	pieces := []string{`\\`, `\t`, `\n`, "é", "ß", "日本", "€"}
	var b bytes.Buffer
	for id := 1; id <= rows; id++ {
		fmt.Fprintf(&b, "%d\t", id)
		if id%97 == 0 {
			b.WriteString(`\N`)
		} else {
			n := 20 + rng.Intn(60)
			for i := 0; i < n; i++ {
				if rng.Intn(25) == 0 {
					b.WriteString(pieces[rng.Intn(len(pieces))])
				} else {
					b.WriteByte(alphabet[rng.Intn(len(alphabet))])
				}
			}
		}
		fmt.Fprintf(&b, "\t%d\n", rng.Int63n(1<<40))
		count++
		idSum += int64(id)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return count, idSum
}

func clientFileSHA256(t *testing.T, path string) (string, int64) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), int64(len(data))
}

func TestClientPsqlCopyRoundTrip(t *testing.T) {
	p := startProxy(t, keepTLS)
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.tsv"), filepath.Join(dir, "out.tsv")
	rows, idSum := psqlCopyFixture(t, in, 60000)
	inSum, inSize := clientFileSHA256(t, in)
	if inSize < 3<<20 {
		t.Fatalf("fixture is only %d bytes; want a few MB", inSize)
	}

	res := runClientProgram(t, 60*time.Second, nil, cluster.Psql(), psqlClientArgs(clientSCRAMDSN(p, pgcluster.AppDatabase),
		"-c", "CREATE TEMP TABLE copy_rt (id int PRIMARY KEY, payload text, n bigint)",
		"-c", fmt.Sprintf(`\copy copy_rt FROM '%s'`, in),
		"-c", "SELECT count(*) || ' rows, id sum ' || sum(id) || ', ' || count(*) FILTER (WHERE payload IS NULL) || ' nulls' AS summary FROM copy_rt",
		"-c", fmt.Sprintf(`\copy (SELECT id, payload, n FROM copy_rt ORDER BY id) TO '%s'`, out),
	)...)
	if res.code != 0 {
		t.Fatalf("psql \\copy through ddlguard failed:\n%s", res)
	}
	copyLine := fmt.Sprintf("COPY %d\n", rows)
	if strings.Count(res.stdout, copyLine) != 2 {
		t.Errorf("want %q twice (in and out) in psql output:\n%s", copyLine, res)
	}
	summary := fmt.Sprintf("%d rows, id sum %d, %d nulls", rows, idSum, rows/97)
	if !strings.Contains(res.stdout, summary) {
		t.Errorf("server-side summary %q missing:\n%s", summary, res)
	}
	outSum, outSize := clientFileSHA256(t, out)
	if outSum != inSum || outSize != inSize {
		t.Fatalf("\\copy round trip through ddlguard changed the data: in %d bytes sha256 %s, out %d bytes sha256 %s",
			inSize, inSum, outSize, outSum)
	}
	t.Logf("\\copy of %d rows (%.1f MiB) in and out through ddlguard in %s, sha256 %s",
		rows, float64(inSize)/(1<<20), res.elapsed.Round(time.Millisecond), inSum[:16])
	waitProxyIdle(t, p)
}

func TestClientPsqlErrorStopsScript(t *testing.T) {
	p := startProxy(t, keepTLS)
	script := filepath.Join(t.TempDir(), "script.sql")
	if err := os.WriteFile(script, []byte(
		"SELECT 'before-' || 'error' AS marker;\n"+
			"SELECT * FROM ddlguard_no_such_table;\n"+
			"SELECT 'after-' || 'error' AS marker;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res := runClientProgram(t, 20*time.Second, nil, cluster.Psql(), psqlClientArgs(clientSCRAMDSN(p, pgcluster.AppDatabase), "-A", "-t", "-f", script)...)
	if res.code != 3 {
		t.Fatalf("psql exit status %d, want 3 (script error with ON_ERROR_STOP)\n%s", res.code, res)
	}
	if !strings.Contains(res.stdout, "before-error") {
		t.Errorf("the statement before the error did not run:\n%s", res)
	}
	if strings.Contains(res.stdout, "after-error") {
		t.Errorf("the statement after the error ran despite ON_ERROR_STOP:\n%s", res)
	}
	wantErr := script + `:2: ERROR:  relation "ddlguard_no_such_table" does not exist`
	if !strings.Contains(res.stderr, wantErr) {
		t.Errorf("stderr lacks the server's error %q:\n%s", wantErr, res)
	}
	waitProxyIdle(t, p)
}

func TestClientPsqlCtrlC(t *testing.T) {
	p := startProxy(t, keepTLS)
	super := superConn(t, "postgres")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	appName := fmt.Sprintf("ddlguard-ctrlc-%d", time.Now().UnixNano())
	cmd := clientProgramCmd(ctx, cluster.Psql(), psqlClientArgs(clientSCRAMDSN(p, pgcluster.AppDatabase, "application_name", appName),
		"-c", "SELECT pg_sleep(30)")...)
	var stdout, stderr lockedBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start psql: %v", err)
	}
	exited, done := make(chan error, 1), make(chan struct{})
	go func() {
		exited <- cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			cmd.Process.Kill()
			<-done
		}
	})

	// Wait for the backend (seen directly, not through ddlguard) to be
	// running the sleep.
	var pid int32
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := super.QueryRow(ctx, `SELECT pid FROM pg_stat_activity
			WHERE application_name = $1 AND state = 'active' AND query = 'SELECT pg_sleep(30)'`, appName).Scan(&pid)
		if err == nil {
			break
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			t.Fatal(err)
		}
		select {
		case err := <-exited:
			t.Fatalf("psql exited before its query started: %v\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("pg_sleep never showed up as active in pg_stat_activity\nstderr: %s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Both legs are TLS: the case in which SCRAM needs channel_binding=disable.
	legsOK := false
	for _, sess := range p.Server.Sessions() {
		if sess.BackendPID() == uint32(pid) {
			legsOK = sess.TLS && sess.UpstreamTLS
		}
	}
	if !legsOK {
		t.Errorf("no ddlguard session for backend %d with TLS on both legs", pid)
	}

	signalled := time.Now()
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatalf("SIGINT: %v", err)
	}
	var waitErr error
	select {
	case waitErr = <-exited:
	case <-time.After(time.Second):
		t.Fatalf("psql still running 1s after SIGINT\nstderr so far: %s", stderr.String())
	}
	took := time.Since(signalled)
	t.Logf("psql exited %s after SIGINT (%v)", took.Round(time.Millisecond), waitErr)
	var exitErr *exec.ExitError
	if !errors.As(waitErr, &exitErr) || exitErr.ExitCode() != 1 {
		t.Errorf("psql ended with %v, want exit status 1 (query failed)", waitErr)
	}
	if !strings.Contains(stderr.String(), "ERROR:  canceling statement due to user request") {
		t.Errorf("stderr lacks the cancel error:\n%s", stderr.String())
	}

	// The backend must have stopped sleeping (it told psql so); it is idle
	// or already gone.
	waitBackendIdle(t, super, uint32(pid), 2*time.Second)
	waitProxyIdle(t, p)
	if !strings.Contains(p.Logs(), `"msg":"cancel request"`) || !strings.Contains(p.Logs(), `"known_key":true`) {
		t.Errorf("ddlguard did not route the cancel request by a key it knew:\n%s", p.Logs())
	}
}

// pgbenchSummary is what pgbench reports after a run.
type pgbenchSummary struct {
	processed, planned int64
	failed             int64
	tpsLine            string
	tps                float64
}

var (
	pgbenchProcessedRE = regexp.MustCompile(`(?m)^number of transactions actually processed: (\d+)(?:/(\d+))?$`)
	pgbenchFailedRE    = regexp.MustCompile(`(?m)^number of failed transactions: (\d+) \(`)
	pgbenchTPSRE       = regexp.MustCompile(`(?m)^tps = ([0-9.]+) .*$`)
)

func parsePgbenchOutput(t *testing.T, res clientRun) pgbenchSummary {
	t.Helper()
	var s pgbenchSummary
	m := pgbenchProcessedRE.FindStringSubmatch(res.stdout)
	if m == nil {
		t.Fatalf("no 'number of transactions actually processed' in pgbench output:\n%s", res)
	}
	s.processed, _ = strconv.ParseInt(m[1], 10, 64)
	if m[2] != "" {
		s.planned, _ = strconv.ParseInt(m[2], 10, 64)
	}
	m = pgbenchFailedRE.FindStringSubmatch(res.stdout)
	if m == nil {
		t.Fatalf("no 'number of failed transactions' in pgbench output:\n%s", res)
	}
	s.failed, _ = strconv.ParseInt(m[1], 10, 64)
	m = pgbenchTPSRE.FindStringSubmatch(res.stdout)
	if m == nil {
		t.Fatalf("no tps line in pgbench output:\n%s", res)
	}
	s.tpsLine = m[0]
	s.tps, _ = strconv.ParseFloat(m[1], 64)
	return s
}

func TestClientPgbench(t *testing.T) {
	p := startProxy(t, keepTLS)
	super := superConn(t, "postgres")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const db = "bench"
	for _, stmt := range []string{
		"DROP DATABASE IF EXISTS " + db + " WITH (FORCE)",
		"CREATE DATABASE " + db + " OWNER " + pgcluster.RoleSCRAM,
	} {
		if _, err := super.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	t.Cleanup(func() {
		super.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)")
	})
	proxied := clientSCRAMDSN(p, db)

	init := runClientProgram(t, 60*time.Second, nil, cluster.PgBench(), "-i", "-s", "1", proxied)
	if init.code != 0 || !strings.Contains(init.stderr, "done in") {
		t.Fatalf("pgbench -i through ddlguard failed:\n%s", init)
	}
	benchConn := superConn(t, db)
	var accounts int64
	if err := benchConn.QueryRow(ctx, "SELECT count(*) FROM pgbench_accounts").Scan(&accounts); err != nil {
		t.Fatal(err)
	}
	if accounts != 100000 {
		t.Fatalf("pgbench_accounts has %d rows after -i -s 1 through ddlguard, want 100000", accounts)
	}
	t.Logf("pgbench -i -s 1 through ddlguard in %s", init.elapsed.Round(time.Millisecond))

	// The default (TPC-B-like) script in every query protocol mode. pgbench
	// truncates pgbench_history before the run, so afterwards it holds one
	// row per transaction that really committed.
	const clients, perClient = 8, 150
	for _, mode := range []string{"simple", "extended", "prepared"} {
		t.Run(mode, func(t *testing.T) {
			res := runClientProgram(t, 60*time.Second, nil, cluster.PgBench(),
				"-c", strconv.Itoa(clients), "-j", "2", "-t", strconv.Itoa(perClient), "-M", mode, proxied)
			if res.code != 0 {
				t.Fatalf("pgbench -M %s through ddlguard failed:\n%s", mode, res)
			}
			s := parsePgbenchOutput(t, res)
			if s.failed != 0 {
				t.Errorf("pgbench -M %s: %d failed transactions\n%s", mode, s.failed, res)
			}
			if want := int64(clients * perClient); s.processed != want || s.planned != want {
				t.Errorf("pgbench -M %s processed %d/%d transactions, want %d/%d\n%s", mode, s.processed, s.planned, want, want, res)
			}
			if !strings.Contains(res.stdout, "query mode: "+mode) || !strings.Contains(res.stdout, `transaction type: <builtin: TPC-B (sort of)>`) {
				t.Errorf("pgbench did not run the TPC-B script in %s mode:\n%s", mode, res)
			}
			var history int64
			if err := benchConn.QueryRow(ctx, "SELECT count(*) FROM pgbench_history").Scan(&history); err != nil {
				t.Fatal(err)
			}
			if history != s.processed {
				t.Errorf("pgbench_history has %d rows, want %d (one per committed transaction)", history, s.processed)
			}
			t.Logf("-M %s: %s (%s wall)", mode, s.tpsLine, res.elapsed.Round(time.Millisecond))
		})
	}

	// One-off comparison of select-only throughput, direct vs through
	// ddlguard, both over TLS. Logged only: timing on a shared machine
	// proves nothing.
	direct := cluster.DSN(pgcluster.RoleSCRAM, db, "sslmode", "require")
	var tps [2]float64
	for i, target := range []struct{ name, dsn string }{{"direct", direct}, {"ddlguard", proxied}} {
		res := runClientProgram(t, 60*time.Second, nil, cluster.PgBench(), "-n", "-S", "-c", "8", "-j", "2", "-T", "3", target.dsn)
		if res.code != 0 {
			t.Fatalf("pgbench -S %s failed:\n%s", target.name, res)
		}
		s := parsePgbenchOutput(t, res)
		if s.failed != 0 {
			t.Errorf("pgbench -S %s: %d failed transactions", target.name, s.failed)
		}
		tps[i] = s.tps
		t.Logf("-S -c 8 -T 3 %-8s: %s", target.name, s.tpsLine)
	}
	if tps[0] > 0 {
		t.Logf("select-only throughput through ddlguard is %.0f%% of direct (ddlguard runs inside this test binary, "+
			"with its build flags such as -race)", 100*tps[1]/tps[0])
	}
	waitProxyIdle(t, p)
}

// psycopgScript exercises psycopg 3 through ddlguard and prints one JSON
// object with what it saw. argv[1] is the DSN.
const psycopgScript = `
import json
import sys
import threading
import time

import psycopg
from psycopg import errors

dsn = sys.argv[1]
out = {"psycopg": psycopg.__version__, "libpq": psycopg.pq.version()}

with psycopg.connect(dsn, autocommit=True) as conn:
    out["client_ssl"] = conn.pgconn.ssl_in_use
    out["upstream_ssl"] = conn.execute(
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()[0]

    # Server-side parameters: psycopg 3 sends %s as $n in Bind.
    row = conn.execute("SELECT %s::int + %s::int, upper(%s), %s::text IS NULL, %s::text",
                       (40, 2, "ddlguard", None, "it's \"quoted\"")).fetchone()
    out["params"] = list(row)

    conn.execute("CREATE TEMP TABLE items (id int PRIMARY KEY, name text NOT NULL)")
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO items (id, name) VALUES (%s, %s)",
                        [(i, "item-%d" % i) for i in range(1, 101)])
    out["executemany"] = list(conn.execute("SELECT count(*), sum(id) FROM items").fetchone())

    # A transaction rolled back on purpose, and one rolled back by an error.
    with conn.transaction():
        conn.execute("INSERT INTO items VALUES (1000, 'doomed')")
        out["in_tx_status"] = conn.info.transaction_status.name
        out["in_tx_count"] = conn.execute("SELECT count(*) FROM items").fetchone()[0]
        raise psycopg.Rollback()
    try:
        with conn.transaction():
            conn.execute("INSERT INTO items VALUES (1001, 'doomed too')")
            conn.execute("SELECT 1 / 0")
        out["tx_error"] = None
    except errors.DivisionByZero as e:
        out["tx_error"] = e.sqlstate
    out["after_rollback_count"] = conn.execute("SELECT count(*) FROM items").fetchone()[0]
    out["after_rollback_status"] = conn.info.transaction_status.name

    # COPY in both directions.
    with conn.cursor() as cur:
        with cur.copy("COPY items (id, name) FROM STDIN") as copy:
            for i in range(101, 1101):
                copy.write_row((i, "copied-%d\t%s" % (i, "x" * (i % 7))))
        out["copy_in_rowcount"] = cur.rowcount
        rows = []
        with cur.copy("COPY (SELECT id, name FROM items WHERE id > 1097 ORDER BY id) TO STDOUT") as copy:
            for r in copy.rows():
                rows.append(list(r))
        out["copy_out"] = rows
    out["count_after_copy"] = conn.execute("SELECT count(*) FROM items").fetchone()[0]

    # LISTEN here, NOTIFY from a second connection through ddlguard.
    conn.execute("LISTEN ddlguard_psycopg")
    with psycopg.connect(dsn, autocommit=True) as other:
        other_pid = other.info.backend_pid
        other.execute("SELECT pg_notify('ddlguard_psycopg', %s)", ("hello from psycopg",))
    for n in conn.notifies():
        out["notify"] = {"channel": n.channel, "payload": n.payload, "from_other": n.pid == other_pid}
        break

    # Protocol-level prepared statements.
    results = [conn.execute("SELECT %s::int * 2", (i,), prepare=True).fetchone()[0] for i in range(4)]
    out["prepared_results"] = results
    out["prepared_statements"] = [r[0] for r in conn.execute(
        "SELECT statement FROM pg_prepared_statements WHERE NOT from_sql ORDER BY statement")]

    # Cancel a running query from another thread, once it is really running.
    pid = conn.info.backend_pid
    cancel_state = {}

    def canceller():
        with psycopg.connect(dsn, autocommit=True) as mon:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                state = mon.execute("SELECT state, query FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
                if state and state[0] == "active" and "pg_sleep" in state[1]:
                    break
                time.sleep(0.02)
            cancel_state["seen_active"] = bool(state and state[0] == "active")
        conn.cancel()

    th = threading.Thread(target=canceller)
    th.start()
    begin = time.monotonic()
    try:
        conn.execute("SELECT pg_sleep(10)")
        out["cancel"] = {"error": None}
    except errors.QueryCanceled as e:
        out["cancel"] = {"error": type(e).__name__, "sqlstate": e.sqlstate, "message": e.diag.message_primary}
    out["cancel"]["elapsed"] = time.monotonic() - begin
    th.join()
    out["cancel"]["seen_active"] = cancel_state.get("seen_active", False)
    out["after_cancel"] = conn.execute("SELECT 'still usable'").fetchone()[0]

print(json.dumps(out))
`

// psycopgResult mirrors the JSON psycopgScript prints.
type psycopgResult struct {
	Psycopg             string     `json:"psycopg"`
	Libpq               int        `json:"libpq"`
	ClientSSL           bool       `json:"client_ssl"`
	UpstreamSSL         bool       `json:"upstream_ssl"`
	Params              []any      `json:"params"`
	Executemany         []int64    `json:"executemany"`
	InTxStatus          string     `json:"in_tx_status"`
	InTxCount           int64      `json:"in_tx_count"`
	TxError             *string    `json:"tx_error"`
	AfterRollbackCount  int64      `json:"after_rollback_count"`
	AfterRollbackStatus string     `json:"after_rollback_status"`
	CopyInRowcount      int64      `json:"copy_in_rowcount"`
	CopyOut             [][]string `json:"copy_out"`
	CountAfterCopy      int64      `json:"count_after_copy"`
	Notify              *struct {
		Channel   string `json:"channel"`
		Payload   string `json:"payload"`
		FromOther bool   `json:"from_other"`
	} `json:"notify"`
	PreparedResults    []int64  `json:"prepared_results"`
	PreparedStatements []string `json:"prepared_statements"`
	Cancel             struct {
		Error      *string `json:"error"`
		SQLState   string  `json:"sqlstate"`
		Message    string  `json:"message"`
		Elapsed    float64 `json:"elapsed"`
		SeenActive bool    `json:"seen_active"`
	} `json:"cancel"`
	AfterCancel string `json:"after_cancel"`
}

func TestClientPsycopg(t *testing.T) {
	p := startProxy(t, keepTLS)
	script := filepath.Join(t.TempDir(), "psycopg_through_ddlguard.py")
	if err := os.WriteFile(script, []byte(psycopgScript), 0o644); err != nil {
		t.Fatal(err)
	}
	dsn := p.DSN(pgcluster.RoleSCRAM, pgcluster.AppDatabase, "sslmode", "require", "channel_binding", "disable")
	res := runClientProgram(t, 60*time.Second, nil, psycopgPython, script, dsn)
	if res.code != 0 {
		t.Fatalf("psycopg script failed:\n%s", res)
	}
	var got psycopgResult
	dec := json.NewDecoder(strings.NewReader(res.stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("psycopg script output is not the expected JSON: %v\n%s", err, res)
	}
	t.Logf("psycopg %s (libpq %d) through ddlguard in %s", got.Psycopg, got.Libpq, res.elapsed.Round(time.Millisecond))

	check := func(what string, got, want any) {
		t.Helper()
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(want)
		if !bytes.Equal(g, w) {
			t.Errorf("%s = %s, want %s", what, g, w)
		}
	}
	check("client_ssl", got.ClientSSL, true)
	check("upstream_ssl", got.UpstreamSSL, true)
	check("params", got.Params, []any{42, "DDLGUARD", true, `it's "quoted"`})
	check("executemany", got.Executemany, []int64{100, 5050})
	check("in_tx_status", got.InTxStatus, "INTRANS")
	check("in_tx_count", got.InTxCount, 101)
	check("tx_error", got.TxError, "22012")
	check("after_rollback_count", got.AfterRollbackCount, 100)
	check("after_rollback_status", got.AfterRollbackStatus, "IDLE")
	check("copy_in_rowcount", got.CopyInRowcount, 1000)
	check("copy_out", got.CopyOut, [][]string{
		{"1098", "copied-1098\txxxxxx"}, {"1099", "copied-1099\t"}, {"1100", "copied-1100\tx"},
	})
	check("count_after_copy", got.CountAfterCopy, 1100)
	if got.Notify == nil {
		t.Errorf("no notification received")
	} else {
		check("notify.channel", got.Notify.Channel, "ddlguard_psycopg")
		check("notify.payload", got.Notify.Payload, "hello from psycopg")
		check("notify.from_other", got.Notify.FromOther, true)
	}
	check("prepared_results", got.PreparedResults, []int64{0, 2, 4, 6})
	found := false
	for _, s := range got.PreparedStatements {
		found = found || s == "SELECT $1::int * 2"
	}
	if !found {
		t.Errorf("psycopg's prepared statement is not in pg_prepared_statements: %q", got.PreparedStatements)
	}
	check("cancel.error", got.Cancel.Error, "QueryCanceled")
	check("cancel.sqlstate", got.Cancel.SQLState, "57014")
	check("cancel.message", got.Cancel.Message, "canceling statement due to user request")
	check("cancel.seen_active", got.Cancel.SeenActive, true)
	if got.Cancel.Elapsed <= 0 || got.Cancel.Elapsed > 5 {
		t.Errorf("cancelled pg_sleep(10) returned after %.2fs, want well under 5s", got.Cancel.Elapsed)
	}
	check("after_cancel", got.AfterCancel, "still usable")
	if t.Failed() {
		t.Logf("psycopg script output:\n%s", res)
	}
	waitProxyIdle(t, p)
}
