package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ddlguard/ddlguard/e2e/pgcluster"
)

// Graceful shutdown of the binary (SIGTERM): /readyz fails at once, new
// connections are refused, a running statement and an open transaction
// finish, idle sessions get FATAL 57P01 at once, sessions still busy at the
// drain timeout get it then, and the process exits.
func TestShutdownDrains(t *testing.T) {
	const db = "shutdown_drain"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	owner, err := createFixtureDatabase(ctx, db, pgcluster.RoleTrust, []string{"CREATE TABLE t (id int PRIMARY KEY)"})
	if err != nil {
		t.Fatal(err)
	}
	owner.Close(ctx)
	config := filepath.Join(t.TempDir(), "ddlguard.yaml")
	os.WriteFile(config, []byte("shutdown:\n  drain_timeout: 6s\n"), 0o600)
	admin := freeAddr(t)
	b := rldStart(t, config, "--admin-listen", admin)
	eventually(t, 10*time.Second, "/readyz", func() bool { code, _ := httpGet(t, "http://"+admin+"/readyz"); return code == 200 })

	dsn := b.dsn(pgcluster.RoleTrust, db, "sslmode", "disable")
	idle := connectDSN(t, "idle session", dsn)
	sleeper := connectDSN(t, "running pg_sleep(2)", dsn)
	inTx := connectDSN(t, "open transaction", dsn)
	stuck := connectDSN(t, "transaction left open past the drain timeout", dsn)
	for _, c := range []*pgx.Conn{inTx, stuck} {
		if _, err := c.Exec(ctx, "BEGIN"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := inTx.Exec(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	if _, err := stuck.Exec(ctx, "INSERT INTO t VALUES (2)"); err != nil {
		t.Fatal(err)
	}
	sleepDone := make(chan error, 1)
	go func() {
		var v int
		sleepDone <- sleeper.QueryRow(ctx, "SELECT 7 FROM pg_sleep(2)").Scan(&v)
	}()
	time.Sleep(300 * time.Millisecond) // pg_sleep is running
	start := time.Now()
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}

	// At once: not ready, listener closed, the idle session closed with 57P01.
	eventually(t, 2*time.Second, "/readyz to fail", func() bool {
		code, body := httpGet(t, "http://"+admin+"/readyz")
		return code == 503 && strings.Contains(body, "draining")
	})
	t.Logf("/readyz failed %v after SIGTERM", time.Since(start).Round(time.Millisecond))
	eventually(t, 2*time.Second, "new connections to be refused", func() bool {
		c, err := net.DialTimeout("tcp", b.listen, time.Second)
		if err == nil {
			c.Close()
			return false
		}
		return true
	})
	err = idle.Ping(ctx)
	if pe := pgErrorOf(err); pe == nil || pe.Code != "57P01" {
		t.Errorf("the idle session after SIGTERM: %v, want FATAL 57P01", err)
	}

	// The running statement completes; the open transaction commits.
	if err := <-sleepDone; err != nil {
		t.Errorf("pg_sleep(2) running at SIGTERM: %v", err)
	}
	if _, err := inTx.Exec(ctx, "INSERT INTO t VALUES (3)"); err != nil {
		t.Errorf("a statement in the open transaction during the drain: %v", err)
	}
	if _, err := inTx.Exec(ctx, "COMMIT"); err != nil {
		t.Errorf("COMMIT during the drain: %v", err)
	}
	// Once idle, those sessions are closed too.
	for name, c := range map[string]*pgx.Conn{"the sleeper": sleeper, "the committed session": inTx} {
		if pe := pgErrorOf(c.Ping(ctx)); pe == nil || pe.Code != "57P01" {
			t.Errorf("%s after it went idle: %v, want FATAL 57P01", name, pe)
		}
	}

	// The stuck transaction is closed at the drain timeout, and the
	// process exits.
	select {
	case <-b.exited:
	case <-time.After(15 * time.Second):
		t.Fatal("ddlguard did not exit within the drain timeout")
	}
	elapsed := time.Since(start)
	t.Logf("exited %v after SIGTERM (drain_timeout 6s): %v", elapsed.Round(time.Millisecond), b.err)
	if b.err != nil {
		t.Errorf("exit: %v, want 0", b.err)
	}
	if elapsed < 5*time.Second {
		t.Errorf("exited after %v, before the drain timeout, with a transaction open", elapsed)
	}
	if pe := pgErrorOf(stuck.Ping(ctx)); pe == nil || pe.Code != "57P01" {
		// pgx may report the closed socket instead when the FATAL and the
		// close arrive together; the row must be gone either way.
		t.Logf("the stuck session: %v", stuck.Ping(ctx))
	}
	super := superConn(t, db)
	var ids []int32
	rows, _ := super.Query(ctx, "SELECT id FROM t ORDER BY id")
	ids, err = pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil || fmt.Sprint(ids) != "[1 3]" {
		t.Errorf("rows after the drain: %v %v, want [1 3] (the committed transaction kept, the stuck one rolled back)", ids, err)
	}
	if !strings.Contains(b.logs.String(), `drain timeout`) {
		t.Errorf("no drain-timeout log line")
	}
}

// A second SIGTERM during the drain exits at once.
func TestShutdownSecondSignal(t *testing.T) {
	config := filepath.Join(t.TempDir(), "ddlguard.yaml")
	os.WriteFile(config, []byte("shutdown:\n  drain_timeout: 60s\n"), 0o600)
	b := rldStart(t, config)
	conn := connectDSN(t, "through ddlguard", b.dsn(pgcluster.RoleTrust, "postgres", "sslmode", "disable"))
	ctx := context.Background()
	if _, err := conn.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	b.cmd.Process.Signal(syscall.SIGTERM)
	b.waitLog(t, "shutting down", 1)
	start := time.Now()
	b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.exited:
	case <-time.After(5 * time.Second):
		t.Fatal("a second SIGTERM did not exit at once")
	}
	t.Logf("exited %v after the second SIGTERM", time.Since(start).Round(time.Millisecond))
}

// SIGHUP swaps the client-facing certificate for new connections while
// existing ones go on; a reload that names a missing key file is refused
// (the running certificate stays) and the reload gauge says so.
func TestReloadTLSCertificate(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	copyFile(t, cluster.ProxyCertFile, cert)
	copyFile(t, cluster.ProxyKeyFile, key)
	config := filepath.Join(dir, "ddlguard.yaml")
	tlsConfig := fmt.Sprintf("client_tls:\n  cert_file: %s\n  key_file: %s\n", cert, key)
	os.WriteFile(config, []byte(tlsConfig), 0o600)
	admin := freeAddr(t)
	b := rldStart(t, config, "--admin-listen", admin)
	ctx := context.Background()

	peerCert := func(c *pgx.Conn) []byte {
		tc, ok := c.PgConn().Conn().(*tls.Conn)
		if !ok {
			t.Fatal("not a TLS connection")
		}
		return tc.ConnectionState().PeerCertificates[0].Raw
	}
	dsn := b.dsn(pgcluster.RoleTrust, "postgres", "sslmode", "require")
	before := connectDSN(t, "before the reload", dsn)
	if !bytes.Equal(peerCert(before), pemCert(t, cluster.ProxyCertFile)) {
		t.Fatal("the first connection does not see the configured certificate")
	}

	// Renew: the same paths now hold another certificate.
	copyFile(t, cluster.ServerCertFile, cert)
	copyFile(t, cluster.ServerKeyFile, key)
	b.reload(t, tlsConfig)
	b.waitLog(t, `"msg":"config reloaded"`, 1)
	after := connectDSN(t, "after the reload", dsn)
	if !bytes.Equal(peerCert(after), pemCert(t, cluster.ServerCertFile)) {
		t.Error("a connection after SIGHUP does not see the renewed certificate")
	}
	if err := before.Ping(ctx); err != nil {
		t.Errorf("the connection opened before the reload: %v", err)
	}

	// A broken reload keeps the renewed certificate.
	b.reload(t, fmt.Sprintf("client_tls:\n  cert_file: %s\n  key_file: %s\n", cert, filepath.Join(dir, "missing.pem")))
	b.waitLog(t, "config reload refused", 1)
	again := connectDSN(t, "after the refused reload", dsn)
	if !bytes.Equal(peerCert(again), pemCert(t, cluster.ServerCertFile)) {
		t.Error("a refused reload changed the certificate")
	}
	fams := scrape(t, admin)
	if v, _ := metricValue(fams, "ddlguard_config_last_reload_successful", nil); v != 0 {
		t.Errorf("ddlguard_config_last_reload_successful = %v after a refused reload", v)
	}
	if v, _ := metricValue(fams, "ddlguard_config_last_reload_success_timestamp_seconds", nil); v < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("ddlguard_config_last_reload_success_timestamp_seconds = %v", v)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func pemCert(t *testing.T, file string) []byte {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatal(errors.New("no PEM block in " + file))
	}
	return block.Bytes
}
