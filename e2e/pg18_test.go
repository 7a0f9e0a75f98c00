package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/ddlguard/ddlguard/e2e/pgcluster"
	"github.com/ddlguard/ddlguard/proxy"
)

// PostgreSQL 18 is the first server that speaks protocol 3.2, whose
// BackendKeyData (and so CancelRequest) carries a 32-byte secret instead of
// 4 bytes. The package-level cluster is Debian's PostgreSQL, so these tests
// bring their own PostgreSQL 18 from the npm registry.

const (
	pg18Proto30 = pgproto3.ProtocolVersion30 // 196608
	pg18Proto32 = pgproto3.ProtocolVersion32 // 196610
	// pg18Proto39999 is a minor version no server knows: PostgreSQL answers
	// with NegotiateProtocolVersion and carries on with its newest minor.
	pg18Proto39999 = pg18Proto30 + 9999

	pg18KeyLen        = 32 // PostgreSQL 18's cancel secret under protocol 3.2
	pg18QueryCanceled = "57014"
	pg18SleepQuery    = "SELECT pg_sleep(30)"
)

// pg18Install runs scripts/install-pg-major.sh 18 once per test binary.
var pg18Install struct {
	once   sync.Once
	binDir string
	err    error
}

// pg18BinDir returns the bin directory of PostgreSQL 18, installing it when
// needed. A failed install fails the test with the script's output: a
// missing server is never a reason to skip.
func pg18BinDir(t *testing.T) string {
	t.Helper()
	pg18Install.once.Do(func() {
		begin := time.Now()
		var log string
		pg18Install.binDir, log, pg18Install.err = installPGMajor("18")
		if pg18Install.err == nil {
			t.Logf("install-pg-major.sh 18 (%s): %s", time.Since(begin).Round(time.Millisecond), log)
		}
	})
	if pg18Install.err != nil {
		t.Fatal(pg18Install.err)
	}
	return pg18Install.binDir
}

// installPGMajor runs scripts/install-pg-major.sh for a PostgreSQL major
// and returns the bin directory it printed last, and what it logged.
func installPGMajor(major string) (binDir, log string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	script := filepath.Join("..", "scripts", "install-pg-major.sh")
	cmd := exec.CommandContext(ctx, "bash", script, major)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", "", fmt.Errorf("bash %s %s: %v\nstdout:\n%s\nstderr:\n%s", script, major, err, strings.TrimSpace(stdout.String()), stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	binDir = strings.TrimSpace(lines[len(lines)-1])
	if binDir == "" {
		return "", "", fmt.Errorf("bash %s %s printed no bin directory\nstderr:\n%s", script, major, stderr.String())
	}
	return binDir, strings.TrimSpace(stderr.String()), nil
}

// startPG18 starts a PostgreSQL 18 cluster, stopped when the test ends, and
// a ddlguard in front of it.
func startPG18(t *testing.T) (*pgcluster.Cluster, *testProxy) {
	t.Helper()
	c := startPG18Cluster(t)
	p := startProxy(t, keepTLS, func(cfg *proxy.Config) { cfg.Upstream = c.Addr() })
	return c, p
}

// TestPG18 runs the protocol 3.2 paths through ddlguard against a real
// PostgreSQL 18: long cancel keys (pgx, hand-built CancelRequest, libpq 18)
// and NegotiateProtocolVersion.
func TestPG18(t *testing.T) {
	c, p := startPG18(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// admin watches the server directly (not through ddlguard).
	admin := connectDirect(t, c, pgcluster.Superuser, "postgres")

	t.Run("Layout", func(t *testing.T) {
		// The npm tree carries its own libpq and ICU next to bin.
		if c.LibDir == "" {
			t.Errorf("LibDir is empty for %s; want its ../lib", c.BinDir)
		}
		var v string
		if err := admin.QueryRow(ctx, "SHOW server_version").Scan(&v); err != nil {
			t.Fatal(err)
		}
		t.Logf("PostgreSQL %s from %s", v, c.BinDir)
	})

	t.Run("PgxCancel", func(t *testing.T) { testPG18PgxCancel(t, ctx, p, admin) })
	t.Run("RawStartupAndHandBuiltCancel", func(t *testing.T) { testPG18RawCancel(t, ctx, p, admin) })
	t.Run("DepartedClientCancel", func(t *testing.T) { testPG18Departed(t, ctx, p, admin) })
	t.Run("NegotiateProtocolVersion", func(t *testing.T) { testPG18Negotiate(t, c, p) })
	t.Run("Libpq18CtrlC", func(t *testing.T) { testPG18Libpq(t, ctx, c, p, admin) })
}

// testPG18PgxCancel: pgx asks for exactly protocol 3.2 through ddlguard,
// gets a 32-byte key, and cancelling its context cancels the running
// statement on the server (57014) through ddlguard's cancel routing.
func testPG18PgxCancel(t *testing.T, ctx context.Context, p *testProxy, admin *pgx.Conn) {
	// TLS on both legs and SCRAM. channel_binding=disable: ddlguard
	// terminates TLS, so it withdraws SCRAM-SHA-256-PLUS and refuses pgx's
	// "y" flag (see proxy/auth.go); with sslmode=prefer pgx would quietly
	// retry in plaintext.
	cfg, err := pgx.ParseConfig(p.DSN(pgcluster.RoleSCRAM, pgcluster.AppDatabase,
		"sslmode", "require", "channel_binding", "disable",
		"min_protocol_version", "3.2", "max_protocol_version", "3.2"))
	if err != nil {
		t.Fatal(err)
	}
	// Cancel on the server instead of cutting the socket (pgx's default).
	cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, DeadlineDelay: 10 * time.Second}
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("pgx with protocol 3.2 through ddlguard: %v", err)
	}
	defer conn.Close(context.Background())

	pid := conn.PgConn().PID()
	if n := len(conn.PgConn().SecretKey()); n != pg18KeyLen {
		t.Errorf("pgx got a %d-byte cancel key, want %d (protocol 3.2)", n, pg18KeyLen)
	}
	var serverPID uint32
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&serverPID); err != nil {
		t.Fatal(err)
	}
	if serverPID != pid {
		t.Errorf("BackendKeyData pid %d, pg_backend_pid() %d", pid, serverPID)
	}
	sess := pg18Session(t, p, pid)
	if sess.ProtocolVersion != pg18Proto32 {
		t.Errorf("ddlguard session asked for protocol %s, want 3.2", protocolString(sess.ProtocolVersion))
	}
	if !sess.TLS {
		t.Errorf("client leg is not TLS despite sslmode=require")
	}

	qctx, qcancel := context.WithCancel(ctx)
	defer qcancel()
	var cancelledAt time.Time
	watchDone := make(chan error, 1)
	go func() {
		err := waitActive(ctx, admin, pid, pg18SleepQuery)
		cancelledAt = time.Now()
		qcancel()
		watchDone <- err
	}()
	_, err = conn.Exec(qctx, pg18SleepQuery)
	if werr := <-watchDone; werr != nil {
		t.Fatal(werr)
	}
	took := time.Since(cancelledAt)
	if pe := pgErrorOf(err); pe == nil || pe.Code != pg18QueryCanceled {
		t.Fatalf("pg_sleep after context cancel: err %v, want SQLSTATE %s", err, pg18QueryCanceled)
	}
	if took > 2*time.Second {
		t.Errorf("cancel took %s, want < 2s", took)
	}
	t.Logf("context cancel -> 57014 in %s", took.Round(time.Millisecond))
	if !strings.Contains(p.Logs(), `"known_key":true`) {
		t.Errorf("ddlguard did not log a cancel request with a known key:\n%s", p.Logs())
	}

	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("connection unusable after the cancel: %v", err)
	}
}

// testPG18RawCancel: a raw protocol-3.2 startup through ddlguard gets a
// 32-byte secret; a hand-built CancelRequest carrying it, sent to
// ddlguard's port, cancels the session's pg_sleep, while the same request
// with a wrong or truncated (3.0-sized) key does not.
func testPG18RawCancel(t *testing.T, ctx context.Context, p *testProxy, admin *pgx.Conn) {
	rc := dialRaw(t, p.Addr())
	rc.startup(t, pg18Proto32, map[string]string{
		"user": pgcluster.RoleTrust, "database": pgcluster.AppDatabase, "application_name": "pg18-raw",
	})
	if rc.npv != nil {
		t.Errorf("NegotiateProtocolVersion for 3.2 from PostgreSQL 18: %+v", *rc.npv)
	}
	if len(rc.key) != pg18KeyLen {
		t.Fatalf("BackendKeyData secret is %d bytes, want %d", len(rc.key), pg18KeyLen)
	}
	if !strings.HasPrefix(rc.params["server_version"], "18") {
		t.Errorf("server_version %q", rc.params["server_version"])
	}
	if s := pg18Session(t, p, rc.pid); s.ProtocolVersion != pg18Proto32 || s.ApplicationName != "pg18-raw" {
		t.Errorf("ddlguard session: protocol %s, application_name %q", protocolString(s.ProtocolVersion), s.ApplicationName)
	}

	rc.fe.SendQuery(&pgproto3.Query{String: pg18SleepQuery})
	if err := rc.fe.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := waitActive(ctx, admin, rc.pid, pg18SleepQuery); err != nil {
		t.Fatal(err)
	}

	// Wrong keys first: the statement must keep running.
	wrong := slices.Clone(rc.key)
	wrong[len(wrong)-1] ^= 0xff
	pg18SendCancel(t, p.Addr(), rc.pid, wrong)
	pg18SendCancel(t, p.Addr(), rc.pid, rc.key[:4])
	time.Sleep(300 * time.Millisecond)
	var state string
	if err := admin.QueryRow(ctx, "SELECT state FROM pg_stat_activity WHERE pid = $1", rc.pid).Scan(&state); err != nil {
		t.Fatal(err)
	}
	if state != "active" {
		t.Fatalf("after cancel requests with wrong keys the backend is %q, want still active", state)
	}

	begin := time.Now()
	pg18SendCancel(t, p.Addr(), rc.pid, rc.key)
	rc.SetDeadline(time.Now().Add(5 * time.Second))
	var gotErr *pgproto3.ErrorResponse
	for {
		msg, err := rc.fe.Receive()
		if err != nil {
			t.Fatalf("waiting for the cancelled query's result: %v", err)
		}
		if e, ok := msg.(*pgproto3.ErrorResponse); ok {
			cp := *e
			gotErr = &cp
		}
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			break
		}
	}
	took := time.Since(begin)
	if gotErr == nil || gotErr.Code != pg18QueryCanceled {
		t.Fatalf("query result after a CancelRequest with the 32-byte key: %+v, want SQLSTATE %s", gotErr, pg18QueryCanceled)
	}
	if took > 2*time.Second {
		t.Errorf("cancel took %s, want < 2s", took)
	}
	t.Logf("hand-built 44-byte CancelRequest -> 57014 in %s", took.Round(time.Millisecond))

	// The session goes on.
	rows := rc.simpleQuery(t, "SELECT 42")
	if !slices.Equal(rows, []string{"42"}) {
		t.Errorf("SELECT 42 after the cancel returned %v", rows)
	}
}

// testPG18Departed: a 3.2 client that hangs up in the middle of pg_sleep
// leaves ddlguard to cancel the statement with the session's 32-byte key (a
// busy backend would not notice the closed socket for 30 seconds).
func testPG18Departed(t *testing.T, ctx context.Context, p *testProxy, admin *pgx.Conn) {
	rc := dialRaw(t, p.Addr())
	rc.startup(t, pg18Proto32, map[string]string{
		"user": pgcluster.RoleTrust, "database": pgcluster.AppDatabase, "application_name": "pg18-departed",
	})
	if len(rc.key) != pg18KeyLen {
		t.Fatalf("BackendKeyData secret is %d bytes, want %d", len(rc.key), pg18KeyLen)
	}
	rc.fe.SendQuery(&pgproto3.Query{String: pg18SleepQuery})
	if err := rc.fe.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := waitActive(ctx, admin, rc.pid, pg18SleepQuery); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	rc.Close()
	waitBackendIdle(t, admin, rc.pid, 2*time.Second)
	t.Logf("client gone -> backend stopped in %s", time.Since(begin).Round(time.Millisecond))
}

// testPG18Negotiate: a startup asking for protocol 3.9999 with an unknown
// _pq_ option gets NegotiateProtocolVersion (newest minor 2, the option
// listed) and then a normal session, exactly as when talking to the server
// directly.
func testPG18Negotiate(t *testing.T, c *pgcluster.Cluster, p *testProxy) {
	params := map[string]string{
		"user":                           pgcluster.RoleTrust,
		"database":                       pgcluster.AppDatabase,
		"_pq_.test_protocol_negotiation": "",
	}
	summaries := map[string][]string{}
	for _, via := range []struct{ name, addr string }{{"direct", c.Addr()}, {"ddlguard", p.Addr()}} {
		rc := dialRaw(t, via.addr)
		rc.startup(t, pg18Proto39999, params)
		if rc.npv == nil {
			t.Fatalf("%s: no NegotiateProtocolVersion for protocol 3.9999; got %v", via.name, rc.summary)
		}
		// The field is documented as the newest minor version, but the
		// server sends its whole version number (3<<16 | 2); accept both.
		if got := rc.npv.NewestMinorProtocol; got&0xffff != 2 || (got>>16 != 0 && got>>16 != 3) {
			t.Errorf("%s: NegotiateProtocolVersion names %s (raw %d), want minor 2", via.name, protocolString(got), got)
		}
		if !slices.Equal(rc.npv.UnrecognizedOptions, []string{"_pq_.test_protocol_negotiation"}) {
			t.Errorf("%s: unrecognized options %q, want [_pq_.test_protocol_negotiation]", via.name, rc.npv.UnrecognizedOptions)
		}
		if rc.summary[0] != "NegotiateProtocolVersion" {
			t.Errorf("%s: NegotiateProtocolVersion is not the first message: %v", via.name, rc.summary)
		}
		// Negotiated down to 3.2: the long key.
		if len(rc.key) != pg18KeyLen {
			t.Errorf("%s: BackendKeyData secret is %d bytes after negotiating 3.2, want %d", via.name, len(rc.key), pg18KeyLen)
		}
		if rows := rc.simpleQuery(t, "SELECT current_user"); !slices.Equal(rows, []string{pgcluster.RoleTrust}) {
			t.Errorf("%s: current_user %v", via.name, rows)
		}
		rc.Close()
		summaries[via.name] = rc.summary
	}
	if !slices.Equal(summaries["direct"], summaries["ddlguard"]) {
		t.Errorf("startup differs through ddlguard:\n direct:   %v\n ddlguard: %v", summaries["direct"], summaries["ddlguard"])
	}
	t.Logf("startup with 3.9999: %v", summaries["ddlguard"])
}

// pg18CtrlCScript connects with libpq (through psycopg) using the DSN in
// $DSN, runs pg_sleep(30) and reports what a Ctrl-C does. psycopg answers
// KeyboardInterrupt by sending libpq's cancel request and waiting for the
// statement to end, then re-raises.
const pg18CtrlCScript = `
import os, psycopg
from psycopg import pq
print("libpq", pq.version(), flush=True)
conn = psycopg.connect(os.environ["DSN"], autocommit=True)
print("pid", conn.info.backend_pid, flush=True)
try:
    conn.execute("SELECT pg_sleep(30)")
    print("finished", flush=True)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    # psycopg 3.1 may re-raise before reading the cancelled query's result;
    # drain it so libpq is idle again (nothing to drain otherwise).
    while conn.pgconn.get_result() is not None:
        pass
print("after", conn.execute("SELECT 1").fetchone()[0], flush=True)
conn.close()
`

// testPG18Libpq stands in for psql (the npm package ships no psql, and
// Debian's psql links libpq 15): libpq 18 from the npm tree, loaded by
// psycopg, connects through ddlguard with max_protocol_version=3.2, and
// SIGINT (Ctrl-C) cancels pg_sleep(30) within 1s.
func testPG18Libpq(t *testing.T, ctx context.Context, c *pgcluster.Cluster, p *testProxy, admin *pgx.Conn) {
	if c.LibDir == "" {
		t.Fatalf("no LibDir with libpq 18 next to %s", c.BinDir)
	}
	pctx, pcancel := context.WithTimeout(ctx, 20*time.Second)
	defer pcancel()
	cmd := exec.CommandContext(pctx, psycopgPython, "-c", pg18CtrlCScript)
	env := []string{
		"DSN=" + p.DSN(pgcluster.RoleTrust, pgcluster.AppDatabase, "max_protocol_version", "3.2"),
		"LD_LIBRARY_PATH=" + c.LibDir,
		"PYTHONUNBUFFERED=1",
	}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(k, "PG") && k != "LD_LIBRARY_PATH" {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var waited bool
	defer func() {
		if !waited {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	next := func(prefix string, within time.Duration) string {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				cmd.Wait()
				waited = true
				t.Fatalf("python ended before %q; stderr:\n%s", prefix, stderr.String())
			}
			if !strings.HasPrefix(l, prefix) {
				t.Fatalf("python printed %q, want %q...; stderr:\n%s", l, prefix, stderr.String())
			}
			return strings.TrimSpace(strings.TrimPrefix(l, prefix))
		case <-time.After(within):
			t.Fatalf("no %q from python within %s; stderr:\n%s", prefix, within, stderr.String())
		}
		return ""
	}

	version := next("libpq", 10*time.Second)
	if !strings.HasPrefix(version, "18") {
		t.Fatalf("psycopg loaded libpq %s, want 18xxxx from %s", version, c.LibDir)
	}
	pidText := next("pid", 10*time.Second)
	pid, err := strconv.ParseUint(pidText, 10, 32)
	if err != nil {
		t.Fatalf("pid %q: %v", pidText, err)
	}
	if s := pg18Session(t, p, uint32(pid)); s.ProtocolVersion != pg18Proto32 {
		t.Errorf("libpq 18 with max_protocol_version=3.2 asked for %s", protocolString(s.ProtocolVersion))
	}
	if err := waitActive(ctx, admin, uint32(pid), pg18SleepQuery); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	next("interrupted", 5*time.Second)
	took := time.Since(begin)
	if took > time.Second {
		t.Errorf("Ctrl-C took %s to cancel the statement, want < 1s", took)
	}
	t.Logf("libpq %s: SIGINT -> cancelled in %s", version, took.Round(time.Millisecond))
	if v := next("after", 5*time.Second); v != "1" {
		t.Errorf("SELECT 1 after the cancel printed %q", v)
	}
	err = cmd.Wait()
	waited = true
	if err != nil {
		t.Fatalf("python: %v; stderr:\n%s", err, stderr.String())
	}
}

// pg18SendCancel builds a CancelRequest by hand (length, 80877102, pid, key),
// sends it to addr and waits for the far end to close the connection, as
// both ddlguard and PostgreSQL do once they have acted.
func pg18SendCancel(t *testing.T, addr string, pid uint32, key []byte) {
	t.Helper()
	pkt := make([]byte, 12, 12+len(key))
	binary.BigEndian.PutUint32(pkt[0:4], uint32(12+len(key)))
	binary.BigEndian.PutUint32(pkt[4:8], 80877102)
	binary.BigEndian.PutUint32(pkt[8:12], pid)
	pkt = append(pkt, key...)
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write(pkt); err != nil {
		t.Fatalf("send CancelRequest: %v", err)
	}
	if n, err := io.Copy(io.Discard, conn); err != nil || n != 0 {
		t.Fatalf("after a CancelRequest: read %d bytes, err %v; want a plain close", n, err)
	}
}

// pg18Session returns ddlguard's session whose backend is pid.
func pg18Session(t *testing.T, p *testProxy, pid uint32) *proxy.Session {
	t.Helper()
	var found *proxy.Session
	eventually(t, 5*time.Second, fmt.Sprintf("a ddlguard session for backend %d", pid), func() bool {
		for _, s := range p.Server.Sessions() {
			if s.BackendPID() == pid {
				found = s
				return true
			}
		}
		return false
	})
	return found
}
