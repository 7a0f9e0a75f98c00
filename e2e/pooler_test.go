package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ddlguard/ddlguard/e2e/pgcluster"
	"github.com/ddlguard/ddlguard/guard"
	"github.com/ddlguard/ddlguard/proxy"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// pgBouncer is a PgBouncer process in front of cluster.
type pgBouncer struct {
	Host string
	Port int
}

// Addr is PgBouncer's listen address.
func (b *pgBouncer) Addr() string { return net.JoinHostPort(b.Host, strconv.Itoa(b.Port)) }

// startPgBouncer runs PgBouncer (scripts/install-deps.sh installs it) in
// front of upstream (host:port: cluster, or a ddlguard in front of it) for
// database, in poolMode with poolSize server connections, trust
// authentication for pgcluster.RoleTrust (the role the server trusts on
// TCP). It is stopped when the test ends; its log is
// printed when the test failed.
func startPgBouncer(t *testing.T, upstream, database, poolMode string, poolSize int) *pgBouncer {
	t.Helper()
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		bin = "/usr/sbin/pgbouncer"
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("pgbouncer is not installed (scripts/install-deps.sh installs it): %v", err)
	}
	dir, err := os.MkdirTemp("", "ddlguard-pgbouncer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil { // PgBouncer may run as the server's OS user
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	upHost, upPort, err := net.SplitHostPort(upstream)
	if err != nil {
		t.Fatal(err)
	}
	auth := filepath.Join(dir, "users.txt")
	if err := os.WriteFile(auth, []byte(fmt.Sprintf("%q %q\n", pgcluster.RoleTrust, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := strings.Join([]string{
		"[databases]",
		fmt.Sprintf("%s = host=%s port=%s dbname=%s", database, upHost, upPort, database),
		"[pgbouncer]",
		"listen_addr = 127.0.0.1",
		"listen_port = " + strconv.Itoa(port),
		"unix_socket_dir =",
		"auth_type = trust",
		"auth_file = " + auth,
		"pool_mode = " + poolMode,
		"default_pool_size = " + strconv.Itoa(poolSize),
		"max_client_conn = 200",
		"server_tls_sslmode = disable",
		"ignore_startup_parameters = extra_float_digits",
	}, "\n") + "\n"
	ini := filepath.Join(dir, "pgbouncer.ini")
	if err := os.WriteFile(ini, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	cmd := exec.Command(bin, ini)
	cmd.Stdout, cmd.Stderr = &log, &log
	cluster.RunAsServerUser(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting pgbouncer: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("pgbouncer log:\n%s", log.String())
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
		if err == nil {
			c.Close()
			return &pgBouncer{Host: "127.0.0.1", Port: port}
		}
		select {
		case err := <-exited:
			t.Fatalf("pgbouncer exited: %v\n%s", err, log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("pgbouncer did not listen on %d: %v\n%s", port, err, log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestPoolerKeepsSessionsClean runs guarded statements through ddlguard and
// PgBouncer, in the topologies users run: ddlguard in front of PgBouncer in
// transaction pooling (each transaction may run on another server
// connection) and in session pooling, and PgBouncer in transaction pooling
// in front of ddlguard. A setting ddlguard gives a statement (lock_timeout,
// idle_in_transaction_session_timeout) must end with the statement's own
// transaction, never be left on a server connection for the next client:
// four migrators run autocommit statements (simple and extended protocol,
// single and multi-statement) and explicit transactions while four other
// clients keep reading the settings; every value anyone sees must be the
// server default. Behind PgBouncer, the blocker check leaves out the
// transaction's own locks (by the backend pid the server gives, not the one
// in BackendKeyData), and a blocked statement still gets its lock timeout.
func TestPoolerKeepsSessionsClean(t *testing.T) {
	const db = "pooler"
	ctx := context.Background()
	super := superConn(t, "postgres")
	if _, err := super.Exec(ctx, "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)"); err != nil {
		t.Fatal(err)
	}
	if _, err := super.Exec(ctx, "CREATE DATABASE "+db+" OWNER "+pgcluster.RoleTrust); err != nil {
		t.Fatal(err)
	}
	owner := connectDirect(t, cluster, pgcluster.RoleTrust, db)
	if _, err := owner.Exec(ctx, "CREATE TABLE pool_t (id int, c int); INSERT INTO pool_t SELECT g, g FROM generate_series(1, 100) g"); err != nil {
		t.Fatal(err)
	}
	bouncer := startPgBouncer(t, cluster.Addr(), db, "transaction", 2)
	p := startGuardProxy(t, guard.DefaultConfig(), func(c *proxy.Config) {
		c.Upstream = bouncer.Addr()
		c.UpstreamTLSMode = proxy.UpstreamTLSDisable
	})
	viaBouncer := func(t *testing.T, app string) *pgx.Conn {
		return connectDSN(t, "through PgBouncer", fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable application_name=%s",
			bouncer.Host, bouncer.Port, pgcluster.RoleTrust, db, app))
	}
	simple := pgx.QueryExecModeSimpleProtocol

	// Topologies: ddlguard in front of PgBouncer in transaction and in
	// session pooling, and PgBouncer in transaction pooling in front of
	// ddlguard (its server connections are ddlguard's clients, shared by
	// PgBouncer's clients one transaction at a time).
	sessionBouncer := startPgBouncer(t, cluster.Addr(), db, "session", 8)
	viaSession := startGuardProxy(t, guard.DefaultConfig(), func(c *proxy.Config) {
		c.Upstream = sessionBouncer.Addr()
		c.UpstreamTLSMode = proxy.UpstreamTLSDisable
	})
	behindGuard := startGuardProxy(t, guard.DefaultConfig(), func(c *proxy.Config) { c.UpstreamTLSMode = proxy.UpstreamTLSDisable })
	inFront := startPgBouncer(t, behindGuard.Addr(), db, "transaction", 2)
	dial := func(t *testing.T, host string, port int, app string) *pgx.Conn {
		return connectDSN(t, "through "+app, fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable application_name=%s",
			host, port, pgcluster.RoleTrust, db, app))
	}
	for _, topo := range []struct {
		name              string
		migrator, watcher func(t *testing.T, app string) *pgx.Conn
	}{
		{"ddlguard then PgBouncer transaction pooling",
			func(t *testing.T, app string) *pgx.Conn { return dial(t, p.Host, p.Port, app) }, viaBouncer},
		{"ddlguard then PgBouncer session pooling",
			func(t *testing.T, app string) *pgx.Conn { return dial(t, viaSession.Host, viaSession.Port, app) },
			func(t *testing.T, app string) *pgx.Conn {
				return dial(t, sessionBouncer.Host, sessionBouncer.Port, app)
			}},
		{"PgBouncer transaction pooling then ddlguard",
			func(t *testing.T, app string) *pgx.Conn { return dial(t, inFront.Host, inFront.Port, app) },
			func(t *testing.T, app string) *pgx.Conn { return dial(t, inFront.Host, inFront.Port, app) }},
	} {
		t.Run("NoLeak/"+topo.name, func(t *testing.T) { poolerNoLeak(t, topo.migrator, topo.watcher) })
	}

	t.Run("MonitorSeesOwnLocksAsOwn", func(t *testing.T) {
		// The monitor connection describes blockers; the client's backend
		// pid it must leave out is the server's (pg_backend_pid() on the
		// client's connection), not the one PgBouncer put in
		// BackendKeyData. The transaction's own ROW EXCLUSIVE on pool_t is
		// then no blocker of its ALTER.
		withMonitor := startGuardProxy(t, guard.DefaultConfig(), func(c *proxy.Config) {
			c.Upstream = bouncer.Addr()
			c.UpstreamTLSMode = proxy.UpstreamTLSDisable
			c.MonitorFacts = startMonitorFacts(t)
			c.Exec = proxy.ExecConfig{RetryBudget: 5 * time.Second}
		})
		// Another session reads pool_t for 600 ms, so that the blocker
		// check finds a conflict and asks the monitor who is in the way.
		reader := connectDirect(t, cluster, pgcluster.RoleTrust, db)
		if err := execEach(ctx, reader, "BEGIN", "SELECT count(*) FROM pool_t"); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			time.Sleep(600 * time.Millisecond)
			reader.Exec(context.Background(), "COMMIT")
		}()
		defer func() { <-done }()
		conn := withMonitor.Connect(t, pgcluster.RoleTrust, db, "sslmode", "disable")
		start := time.Now()
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "INSERT INTO pool_t VALUES (0, 0)"); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "ALTER TABLE pool_t ALTER COLUMN c SET DEFAULT 5", simple)
			return err
		})
		took := time.Since(start)
		if err != nil {
			t.Fatalf("INSERT then ALTER in one transaction through PgBouncer, monitor configured: %v (after %s)", err, took)
		}
		if took < 400*time.Millisecond || took > 3*time.Second {
			t.Errorf("the transaction took %s: want it to wait for the reader (600 ms), and for nothing else", took)
		}
	})

	t.Run("TimeoutApplies", func(t *testing.T) {
		blocked := startGuardProxy(t, guard.DefaultConfig(), func(c *proxy.Config) {
			c.Upstream = bouncer.Addr()
			c.UpstreamTLSMode = proxy.UpstreamTLSDisable
			c.Exec = proxy.ExecConfig{RetryBudget: time.Millisecond, NoBlockerCheck: true}
		})
		holder := connectDirect(t, cluster, pgcluster.RoleTrust, db)
		if _, err := holder.Exec(ctx, "BEGIN; SELECT count(*) FROM pool_t"); err != nil {
			t.Fatal(err)
		}
		defer holder.Exec(ctx, "ROLLBACK")
		conn := blocked.Connect(t, pgcluster.RoleTrust, db, "sslmode", "disable")
		for _, mode := range []string{"simple", "extended"} {
			start := time.Now()
			var err error
			if mode == "simple" {
				_, err = conn.Exec(ctx, "ALTER TABLE pool_t ALTER COLUMN c DROP DEFAULT", simple)
			} else {
				err = conn.PgConn().ExecParams(ctx, "ALTER TABLE pool_t ALTER COLUMN c DROP DEFAULT", nil, nil, nil, nil).Read().Err
			}
			took := time.Since(start)
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "55P03" {
				t.Fatalf("%s: blocked ALTER: %v, want 55P03", mode, err)
			}
			if took > guard.DefaultConfig().LockTimeout+2*time.Second {
				t.Errorf("%s: the blocked ALTER failed after %s", mode, took)
			}
		}
	})
}

// poolerNoLeak runs four migrators (guarded statements in autocommit,
// simple and extended protocol, a multi-statement string, an explicit
// transaction) while four watchers keep reading the three settings
// ddlguard may change; every value a watcher or a migrator sees must be
// the server default (none of these clients sets them).
func poolerNoLeak(t *testing.T, migrator, watcher func(t *testing.T, app string) *pgx.Conn) {
	ctx := context.Background()
	simple := pgx.QueryExecModeSimpleProtocol
	const settings = "SELECT current_setting('lock_timeout') || ' ' || current_setting('idle_in_transaction_session_timeout') || ' ' || current_setting('statement_timeout')"
	var guarded atomic.Int64
	var leaks []string
	var mu sync.Mutex
	leak := func(who, value string) {
		mu.Lock()
		defer mu.Unlock()
		leaks = append(leaks, who+" saw lock_timeout, idle_in_transaction_session_timeout, statement_timeout "+value)
	}
	stop := make(chan struct{})
	var watchers sync.WaitGroup
	for i := range 4 {
		conn := watcher(t, fmt.Sprintf("watcher-%d", i))
		watchers.Add(1)
		go func() {
			defer watchers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				var v string
				if err := conn.QueryRow(ctx, settings, simple).Scan(&v); err != nil {
					leak(fmt.Sprintf("watcher %d", i), "error "+err.Error())
					return
				}
				if v != "0 0 0" {
					leak(fmt.Sprintf("watcher %d", i), v)
				}
			}
		}()
	}
	var workers sync.WaitGroup
	errs := make(chan error, 4)
	for w := range 4 {
		conn := migrator(t, fmt.Sprintf("migrator-%d", w))
		workers.Add(1)
		go func() {
			defer workers.Done()
			for i := range 40 {
				alter := fmt.Sprintf("ALTER TABLE pool_t ALTER COLUMN c SET DEFAULT %d", w*100+i)
				var err error
				switch i % 4 {
				case 0: // simple protocol, autocommit
					_, err = conn.Exec(ctx, alter, simple)
				case 1: // extended protocol, autocommit
					err = conn.PgConn().ExecParams(ctx, alter, nil, nil, nil, nil).Read().Err
				case 2: // one string, two statements
					_, err = conn.Exec(ctx, alter+"; COMMENT ON TABLE pool_t IS 'w"+strconv.Itoa(w)+"'", simple)
				case 3: // explicit transaction, extended protocol
					err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
						return tx.Conn().PgConn().ExecParams(ctx, alter, nil, nil, nil, nil).Read().Err
					})
				}
				if err != nil {
					errs <- fmt.Errorf("worker %d, statement %d: %w", w, i, err)
					return
				}
				guarded.Add(1)
				var v string
				if err := conn.QueryRow(ctx, settings, simple).Scan(&v); err != nil {
					errs <- err
					return
				}
				if v != "0 0 0" {
					leak(fmt.Sprintf("worker %d after statement %d", w, i), v)
				}
			}
		}()
	}
	workers.Wait()
	close(stop)
	watchers.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(leaks) > 0 {
		t.Errorf("%d reads of the settings saw a value no client set, e.g. %s", len(leaks), leaks[0])
	}
	if guarded.Load() != 4*40 {
		t.Errorf("%d guarded statements ran, want %d", guarded.Load(), 4*40)
	}
	t.Logf("%d guarded statements; no setting of ddlguard's seen outside them", guarded.Load())
}
