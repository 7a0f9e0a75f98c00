package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/ddlguard/ddlguard/e2e/pgcluster"
	"github.com/ddlguard/ddlguard/guard"
	"github.com/ddlguard/ddlguard/proxy"
)

// cluster is the PostgreSQL server every test in this package talks to.
var cluster *pgcluster.Cluster

func TestMain(m *testing.M) {
	var opts pgcluster.Options
	if major := os.Getenv("E2E_PG_MAJOR"); major != "" {
		// The tests again on another major (make test's pass on
		// PostgreSQL 18), installed by scripts/install-pg-major.sh.
		binDir, _, err := installPGMajor(major)
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			os.Exit(1)
		}
		opts.BinDir = binDir
	}
	c, err := pgcluster.Start(opts)
	if err != nil {
		// A missing server is a failure, never a skip.
		fmt.Fprintln(os.Stderr, "e2e: cannot start PostgreSQL:", err)
		os.Exit(1)
	}
	cluster = c
	if opts.BinDir != "" {
		fmt.Fprintf(os.Stderr, "e2e: PostgreSQL %d from %s\n", c.Version(), opts.BinDir)
	}
	code := m.Run()
	if binPath != "" && buildErr == nil {
		os.RemoveAll(filepath.Dir(binPath)) // the binary built by ddlguardBinary
	}
	if err := c.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: stopping PostgreSQL:", err)
	}
	os.Exit(code)
}

// testProxy is an in-process ddlguard in front of cluster.
type testProxy struct {
	Server *proxy.Server
	Host   string
	Port   int
	logs   *lockedBuffer
}

// Addr is the proxy's listen address.
func (p *testProxy) Addr() string { return net.JoinHostPort(p.Host, strconv.Itoa(p.Port)) }

// Logs returns what the proxy logged so far (JSON lines).
func (p *testProxy) Logs() string { return p.logs.String() }

// DSN is a libpq key=value DSN for role through the proxy.
func (p *testProxy) DSN(user, database string, kv ...string) string {
	return cluster.DSN(user, database, append([]string{"host", p.Host, "port", strconv.Itoa(p.Port)}, kv...)...)
}

// Connect opens a pgx connection through the proxy, closed at test end.
func (p *testProxy) Connect(t testing.TB, user, database string, kv ...string) *pgx.Conn {
	t.Helper()
	return connectDSN(t, "through ddlguard as "+user, p.DSN(user, database, kv...))
}

// connectDirect opens a plaintext pgx connection as user straight to c (not
// through ddlguard), closed at test end.
func connectDirect(t testing.TB, c *pgcluster.Cluster, user, database string) *pgx.Conn {
	t.Helper()
	return connectDSN(t, "directly as "+user, c.DSN(user, database, "sslmode", "disable"))
}

// superConn is a direct superuser connection to cluster (no ddlguard),
// closed at test end.
func superConn(t testing.TB, database string) *pgx.Conn {
	t.Helper()
	return connectDirect(t, cluster, pgcluster.Superuser, database)
}

// connectDSN opens a pgx connection to dsn, closed at test end; how says
// which connection it is when it fails.
func connectDSN(t testing.TB, how, dsn string) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return connectConfig(t, how, cfg)
}

// connectConfig is connectDSN for a parsed configuration.
func connectConfig(t testing.TB, how string, cfg *pgx.ConnConfig) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect %s: %v", how, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// plainRelay (E2E_PLAIN_RELAY=1) makes startProxy's upstream leg plain by
// default, so that every client that does not ask for TLS (sslmode=disable,
// raw protocol tests, psql and pgbench with sslmode=disable) is relayed by
// the event loop (proxy/eventloop_linux.go) rather than by the goroutines
// that relay TLS. Clients that ask for TLS still get it.
var plainRelay = os.Getenv("E2E_PLAIN_RELAY") == "1"

// keepTLS is the option for tests about TLS itself: ddlguard prefers TLS
// upstream, as startProxy does by default, also when plainRelay is set.
func keepTLS(c *proxy.Config) {
	c.ClientTLS = harnessClientTLS()
	c.UpstreamTLSMode = proxy.UpstreamTLSPrefer
}

// harnessClientTLS is the TLS configuration with the harness's proxy
// certificate.
var harnessClientTLS = sync.OnceValue(func() *tls.Config {
	cert, err := tls.LoadX509KeyPair(cluster.ProxyCertFile, cluster.ProxyKeyFile)
	if err != nil {
		panic("loading the harness's proxy certificate: " + err.Error())
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}}
})

// startProxy starts ddlguard in front of cluster with the product defaults
// plus client TLS with the harness's proxy certificate; options adjust the
// config. The proxy is closed when the test ends.
func startProxy(t testing.TB, options ...func(*proxy.Config)) *testProxy {
	t.Helper()
	logs := &lockedBuffer{}
	cfg := proxy.Config{
		Listen:    "127.0.0.1:0",
		Upstream:  cluster.Addr(),
		ClientTLS: harnessClientTLS(),
		Logger:    slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if plainRelay {
		cfg.UpstreamTLSMode = proxy.UpstreamTLSDisable
	}
	for _, o := range options {
		o(&cfg)
	}
	srv, err := proxy.New(cfg)
	if err != nil {
		t.Fatalf("proxy.New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		<-done
		if t.Failed() {
			t.Logf("ddlguard log:\n%s", logs.String())
		}
	})
	return &testProxy{Server: srv, Host: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port, logs: logs}
}

// lockedBuffer is a bytes.Buffer safe for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// freeAddr returns a 127.0.0.1 address no one listens on (at the moment).
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// psycopgPython is Debian's interpreter, the one python3-psycopg is
// installed for (python3 on PATH may be a pyenv build without it).
const psycopgPython = "/usr/bin/python3"

// loadCertPool reads a PEM CA file into a fresh pool.
func loadCertPool(t testing.TB, file string) *x509.CertPool {
	t.Helper()
	pem, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", file)
	}
	return pool
}

// withUpstreamTLS sets ddlguard's upstream TLS mode. caFile, when not empty,
// becomes the root pool; serverName, when not empty, overrides the name
// checked in verify-full.
func withUpstreamTLS(t testing.TB, mode proxy.UpstreamTLSMode, caFile, serverName string) func(*proxy.Config) {
	t.Helper()
	var tc *tls.Config
	if caFile != "" || serverName != "" {
		tc = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
		if caFile != "" {
			tc.RootCAs = loadCertPool(t, caFile)
		}
	}
	return func(c *proxy.Config) {
		c.UpstreamTLSMode = mode
		c.UpstreamTLS = tc
	}
}

// pgErrorOf returns the server-style error inside err, or nil.
func pgErrorOf(err error) *pgconn.PgError {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe
	}
	return nil
}

// queryString runs a one-value query.
func queryString(t testing.TB, conn *pgx.Conn, sql string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var s string
	if err := conn.QueryRow(ctx, sql).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

// sessionByBackendPID finds the proxy session whose upstream backend is pid.
func sessionByBackendPID(t testing.TB, p *testProxy, pid uint32) *proxy.Session {
	t.Helper()
	var pids []uint32
	for _, s := range p.Server.Sessions() {
		if s.BackendPID() == pid {
			return s
		}
		pids = append(pids, s.BackendPID())
	}
	t.Fatalf("no ddlguard session with backend pid %d (sessions have %v)", pid, pids)
	return nil
}

// waitProxyIdle waits until ddlguard has no client connections left.
func waitProxyIdle(t testing.TB, p *testProxy) {
	t.Helper()
	eventually(t, 5*time.Second, "ddlguard to close every connection", func() bool {
		return p.Server.ConnCount() == 0
	})
}

// backendAlive reports whether pid is in pg_stat_activity, as seen by super
// (a direct superuser connection).
func backendAlive(t testing.TB, super *pgx.Conn, pid uint32) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var n int
	if err := super.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", int64(pid)).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}

// waitBackendGone waits until backend pid has left pg_stat_activity.
func waitBackendGone(t testing.TB, super *pgx.Conn, pid uint32, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, fmt.Sprintf("backend %d to exit", pid), func() bool { return !backendAlive(t, super, pid) })
}

// waitBackendIdle waits until backend pid no longer runs a statement: it is
// idle, or gone.
func waitBackendIdle(t testing.TB, super *pgx.Conn, pid uint32, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, fmt.Sprintf("backend %d to stop running its statement", pid), func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var state string
		err := super.QueryRow(ctx, "SELECT coalesce(state, '') FROM pg_stat_activity WHERE pid = $1", int64(pid)).Scan(&state)
		if errors.Is(err, pgx.ErrNoRows) {
			return true
		}
		if err != nil {
			t.Fatal(err)
		}
		return state != "active"
	})
}

// waitActive polls pg_stat_activity on super (a direct superuser
// connection) until backend pid is running query, for at most 10 seconds.
// It returns an error instead of failing the test, so that it can run on a
// goroutine of its own while the test goroutine waits for the query.
func waitActive(ctx context.Context, super *pgx.Conn, pid uint32, query string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		var state, current string
		err := super.QueryRow(ctx, "SELECT coalesce(state, ''), coalesce(query, '') FROM pg_stat_activity WHERE pid = $1", int64(pid)).Scan(&state, &current)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("pg_stat_activity for pid %d: %w", pid, err)
		}
		if state == "active" && current == query {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("backend %d never ran %q (state %q, query %q)", pid, query, state, current)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rawConn is a pgproto3 client on a plain TCP connection, for sequences
// real drivers never send. startup fills in what the server answered.
type rawConn struct {
	net.Conn
	fe *pgproto3.Frontend

	pid      uint32                             // from BackendKeyData
	key      []byte                             // the cancel secret from BackendKeyData
	params   map[string]string                  // ParameterStatus values
	npv      *pgproto3.NegotiateProtocolVersion // nil unless the server sent one
	txStatus byte                               // of the ReadyForQuery that ended startup
	summary  []string                           // the startup messages, without per-session values
}

func newRawConn(conn net.Conn) *rawConn {
	return &rawConn{Conn: conn, fe: pgproto3.NewFrontend(conn, conn)}
}

// dialRaw connects to addr without TLS. The connection has a 20-second
// deadline and is closed at test end.
func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	return newRawConn(conn)
}

// startup logs in with a StartupMessage of version and reads the answer up
// to the first ReadyForQuery. params are added to (or replace) user
// app_trust and database postgres; only trust authentication is expected.
func (r *rawConn) startup(t testing.TB, version uint32, params map[string]string) {
	t.Helper()
	if err := r.handshake(version, params); err != nil {
		t.Fatal(err)
	}
}

// handshake is startup for callers that cannot fail the test themselves.
func (r *rawConn) handshake(version uint32, params map[string]string) error {
	p := map[string]string{"user": pgcluster.RoleTrust, "database": "postgres"}
	maps.Copy(p, params)
	r.params = map[string]string{}
	r.fe.Send(&pgproto3.StartupMessage{ProtocolVersion: version, Parameters: p})
	if err := r.fe.Flush(); err != nil {
		return fmt.Errorf("startup with %s to %s: %w", protocolString(version), r.RemoteAddr(), err)
	}
	for {
		msg, err := r.fe.Receive()
		if err != nil {
			return fmt.Errorf("startup with %s to %s after %v: %w", protocolString(version), r.RemoteAddr(), r.summary, err)
		}
		switch m := msg.(type) {
		case *pgproto3.NegotiateProtocolVersion:
			r.npv = &pgproto3.NegotiateProtocolVersion{
				NewestMinorProtocol: m.NewestMinorProtocol,
				UnrecognizedOptions: slices.Clone(m.UnrecognizedOptions),
			}
			r.summary = append(r.summary, "NegotiateProtocolVersion")
		case *pgproto3.AuthenticationOk:
			r.summary = append(r.summary, "AuthenticationOk")
		case *pgproto3.ParameterStatus:
			r.params[m.Name] = m.Value
			r.summary = append(r.summary, "ParameterStatus "+m.Name+"="+m.Value)
		case *pgproto3.BackendKeyData:
			r.pid, r.key = m.ProcessID, slices.Clone(m.SecretKey)
			r.summary = append(r.summary, fmt.Sprintf("BackendKeyData (%d-byte key)", len(m.SecretKey)))
		case *pgproto3.NoticeResponse:
			r.summary = append(r.summary, "Notice "+m.Code+" "+m.Message)
		case *pgproto3.ReadyForQuery:
			r.txStatus = m.TxStatus
			r.summary = append(r.summary, "ReadyForQuery "+string(m.TxStatus))
			return nil
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("startup with %s to %s: %s %s: %s", protocolString(version), r.RemoteAddr(), m.Severity, m.Code, m.Message)
		default:
			return fmt.Errorf("startup with %s to %s: unexpected %T", protocolString(version), r.RemoteAddr(), msg)
		}
	}
}

// simpleQuery runs sql and returns the first column of each row as text.
func (rc *rawConn) simpleQuery(t testing.TB, sql string) []string {
	t.Helper()
	rc.SetDeadline(time.Now().Add(10 * time.Second))
	defer rc.SetDeadline(time.Time{})
	rc.fe.SendQuery(&pgproto3.Query{String: sql})
	if err := rc.fe.Flush(); err != nil {
		t.Fatal(err)
	}
	var rows []string
	for {
		msg, err := rc.fe.Receive()
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		switch m := msg.(type) {
		case *pgproto3.DataRow:
			if len(m.Values) > 0 {
				rows = append(rows, string(m.Values[0]))
			}
		case *pgproto3.ErrorResponse:
			t.Fatalf("%s: %s %s", sql, m.Code, m.Message)
		case *pgproto3.ReadyForQuery:
			return rows
		}
	}
}

// rawReceive reads backend messages until one of type T arrives, failing on
// an ErrorResponse. Other messages are returned in order for inspection.
func rawReceive[T pgproto3.BackendMessage](t testing.TB, fe *pgproto3.Frontend) (T, []pgproto3.BackendMessage) {
	t.Helper()
	var seen []pgproto3.BackendMessage
	for {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatalf("receive: %v", err)
		}
		if e, ok := msg.(*pgproto3.ErrorResponse); ok {
			t.Fatalf("server error: %s %s %s", e.Severity, e.Code, e.Message)
		}
		if m, ok := msg.(T); ok {
			return m, seen
		}
		seen = append(seen, msg)
	}
}

// protocolString shows a protocol version as major.minor.
func protocolString(v uint32) string { return fmt.Sprintf("%d.%d", v>>16, v&0xffff) }

// fixtureOnce builds a fixture shared by the tests of a file, once per
// test run, and remembers how long that took.
type fixtureOnce struct {
	once sync.Once
	err  error
	took time.Duration
}

// ensure builds the fixture with build on the first call; every call fails
// the test if building it failed. what names the fixture in the failure.
func (f *fixtureOnce) ensure(t *testing.T, what string, build func() error) {
	t.Helper()
	f.once.Do(func() {
		begin := time.Now()
		f.err = build()
		f.took = time.Since(begin)
	})
	if f.err != nil {
		t.Fatalf("%s fixture: %v", what, f.err)
	}
}

// execEach runs sqls on conn in order, stopping at the first error, which
// names the statement.
func execEach(ctx context.Context, conn *pgx.Conn, sqls ...string) error {
	for _, sql := range sqls {
		if _, err := conn.Exec(ctx, sql); err != nil {
			return fmt.Errorf("%s: %w", sql, err)
		}
	}
	return nil
}

// adminExec runs sqls as the superuser on cluster's postgres database,
// directly (not through ddlguard).
func adminExec(ctx context.Context, sqls ...string) error {
	admin, err := pgx.Connect(ctx, cluster.DSN(pgcluster.Superuser, "postgres", "sslmode", "disable"))
	if err != nil {
		return err
	}
	defer admin.Close(context.Background())
	return execEach(ctx, admin, sqls...)
}

// recreateDatabase drops database name (forcibly) if it exists and creates
// it anew, owned by owner.
func recreateDatabase(ctx context.Context, name, owner string) error {
	ident := pgx.Identifier{name}.Sanitize()
	return adminExec(ctx,
		"DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)",
		"CREATE DATABASE "+ident+" OWNER "+owner)
}

// createFixtureDatabase recreates database, owned by owner, and runs sqls
// in it as owner, directly on cluster. It returns owner's connection, for
// the caller's checks; the caller closes it.
func createFixtureDatabase(ctx context.Context, database, owner string, sqls []string) (*pgx.Conn, error) {
	if err := recreateDatabase(ctx, database, owner); err != nil {
		return nil, err
	}
	conn, err := pgx.Connect(ctx, cluster.DSN(owner, database, "sslmode", "disable"))
	if err != nil {
		return nil, err
	}
	if err := execEach(ctx, conn, sqls...); err != nil {
		conn.Close(context.Background())
		return nil, err
	}
	return conn, nil
}

// checkLarge returns an error unless relation rel is larger than the
// guard's default small_table_bytes both on disk (pg_total_relation_size)
// and by the relpages sum of rel and its indexes that ddlguard's catalog
// facts read.
func checkLarge(ctx context.Context, conn *pgx.Conn, rel string) error {
	var total, pages int64
	err := conn.QueryRow(ctx, `SELECT pg_total_relation_size($1::regclass),
		  (SELECT sum(relpages)::bigint * current_setting('block_size')::bigint FROM pg_class
		    WHERE oid = $1::regclass OR oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = $1::regclass))`,
		rel).Scan(&total, &pages)
	if err != nil {
		return err
	}
	if total <= guard.DefaultSmallTableBytes || pages <= guard.DefaultSmallTableBytes {
		return fmt.Errorf("%s is %d bytes (relpages: %d), want more than %d", rel, total, pages, guard.DefaultSmallTableBytes)
	}
	return nil
}

// startGuardProxy starts ddlguard (see startProxy) with a guard built from
// cfg; options adjust the rest of the proxy's config.
func startGuardProxy(t testing.TB, cfg guard.Config, options ...func(*proxy.Config)) *testProxy {
	t.Helper()
	g, err := guard.New(cfg)
	if err != nil {
		t.Fatalf("guard.New: %v", err)
	}
	return startProxy(t, append([]func(*proxy.Config){func(c *proxy.Config) { c.Guard = g }}, options...)...)
}

// noticeLog collects the notices a pgx connection receives.
type noticeLog struct {
	mu   sync.Mutex
	list []pgconn.Notice
}

func (n *noticeLog) add(_ *pgconn.PgConn, no *pgconn.Notice) {
	n.mu.Lock()
	n.list = append(n.list, *no)
	n.mu.Unlock()
}

// take returns the notices received so far and forgets them.
func (n *noticeLog) take() []pgconn.Notice {
	n.mu.Lock()
	defer n.mu.Unlock()
	l := n.list
	n.list = nil
	return l
}

// configNotices parses dsn into a pgx configuration that collects the
// connection's notices.
func configNotices(t testing.TB, dsn string) (*pgx.ConnConfig, *noticeLog) {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	n := &noticeLog{}
	cfg.OnNotice = n.add
	return cfg, n
}

// connectNotices is connectDSN with the connection's notices collected.
func connectNotices(t testing.TB, how, dsn string) (*pgx.Conn, *noticeLog) {
	t.Helper()
	cfg, n := configNotices(t, dsn)
	return connectConfig(t, how, cfg), n
}

// startMonitorFacts opens ddlguard's monitor connection for catalog facts
// as the superuser on cluster, closed at test end.
func startMonitorFacts(t testing.TB) *proxy.MonitorFacts {
	t.Helper()
	monitor, err := proxy.NewMonitorFacts(cluster.DSN(pgcluster.Superuser, "postgres", "sslmode", "disable"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(monitor.Close)
	return monitor
}

// startPG18Cluster starts a PostgreSQL 18 cluster (see pg18BinDir),
// stopped when the test ends, and checks it runs version 18.
func startPG18Cluster(t *testing.T) *pgcluster.Cluster {
	t.Helper()
	binDir := pg18BinDir(t)
	c, err := pgcluster.Start(pgcluster.Options{BinDir: binDir, Logf: t.Logf})
	if err != nil {
		t.Fatalf("start PostgreSQL 18 from %s: %v", binDir, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("PostgreSQL 18 log tail:\n%s", c.LogTail(40))
		}
		if err := c.Stop(); err != nil {
			t.Errorf("stop PostgreSQL 18: %v", err)
		}
	})
	if v := c.Version(); v != 18 {
		t.Fatalf("%s runs PostgreSQL %d, want 18", binDir, v)
	}
	return c
}

// queueWatch samples, on a connection of its own, how many lock requests
// wait in the queue of one relation.
type queueWatch struct {
	stop chan struct{}
	done chan struct{}

	mu      sync.Mutex
	samples []queueSample
	err     error
}

type queueSample struct {
	at      time.Time
	waiting int
}

// watchQueue samples rel's lock queue on conn every interval until
// finish (or the test's end).
func watchQueue(t *testing.T, conn *pgx.Conn, rel string, every time.Duration) *queueWatch {
	t.Helper()
	w := &queueWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.stop:
				return
			case <-time.After(every):
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			var n int
			err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_locks
				WHERE locktype = 'relation' AND relation = $1::regclass AND NOT granted`, rel).Scan(&n)
			cancel()
			w.mu.Lock()
			if err != nil {
				w.err = err
				w.mu.Unlock()
				return
			}
			w.samples = append(w.samples, queueSample{time.Now(), n})
			w.mu.Unlock()
		}
	}()
	t.Cleanup(w.finish)
	return w
}

// finish stops the sampling (once; later calls do nothing).
func (w *queueWatch) finish() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

// between returns, for the samples taken in [from, to), how many there
// were, how many saw requests queued, and the most queued at once.
func (w *queueWatch) between(t *testing.T, from, to time.Time) (samples, queued, most int) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		t.Fatalf("lock queue watch: %v", w.err)
	}
	for _, s := range w.samples {
		if s.at.Before(from) || !s.at.Before(to) {
			continue
		}
		samples++
		if s.waiting > 0 {
			queued++
		}
		most = max(most, s.waiting)
	}
	return samples, queued, most
}
