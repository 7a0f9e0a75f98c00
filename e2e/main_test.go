package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ddlguard/ddlguard/e2e/pgcluster"
	"github.com/ddlguard/ddlguard/proxy"
)

// cluster is the PostgreSQL server every test in this package talks to.
var cluster *pgcluster.Cluster

func TestMain(m *testing.M) {
	c, err := pgcluster.Start(pgcluster.Options{})
	if err != nil {
		// A missing server is a failure, never a skip.
		fmt.Fprintln(os.Stderr, "e2e: cannot start PostgreSQL:", err)
		os.Exit(1)
	}
	cluster = c
	code := m.Run()
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
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.DSN(user, database, kv...))
	if err != nil {
		t.Fatalf("connect through ddlguard as %s: %v", user, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// startProxy starts ddlguard in front of cluster with the product defaults
// plus client TLS with the harness's proxy certificate; options adjust the
// config. The proxy is closed when the test ends.
func startProxy(t testing.TB, options ...func(*proxy.Config)) *testProxy {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(cluster.ProxyCertFile, cluster.ProxyKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	cfg := proxy.Config{
		Listen:    "127.0.0.1:0",
		Upstream:  cluster.Addr(),
		ClientTLS: &tls.Config{Certificates: []tls.Certificate{cert}},
		Logger:    slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
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
