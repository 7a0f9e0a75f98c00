package e2e

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ddlguard/ddlguard/e2e/pgcluster"
)

// rldBinary is the ddlguard binary serving with a config file, its JSON
// log captured.
type rldBinary struct {
	cmd    *exec.Cmd
	config string
	listen string
	logs   *lockedBuffer
	exited chan struct{} // closed when the process has exited
	err    error         // cmd.Wait's result, once exited is closed
}

// rldStart runs `ddlguard serve --config config --listen ...
// --upstream cluster --log-format json [extra...]` and waits until it
// listens. It is killed at test end if still running.
func rldStart(t *testing.T, config string, extra ...string) *rldBinary {
	t.Helper()
	b := &rldBinary{config: config, listen: freeAddr(t), logs: &lockedBuffer{}, exited: make(chan struct{})}
	args := append([]string{"serve", "--config", config, "--listen", b.listen, "--admin-listen", "127.0.0.1:0",
		"--upstream", cluster.Addr(), "--log-format", "json"}, extra...)
	b.cmd = exec.Command(ddlguardBinary(t), args...)
	b.cmd.Stderr = b.logs
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		b.err = b.cmd.Wait()
		close(b.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-b.exited:
		default:
			b.cmd.Process.Kill()
			<-b.exited
		}
		if t.Failed() {
			t.Logf("ddlguard binary log:\n%s", b.logs.String())
		}
	})
	b.waitLog(t, `"msg":"listening"`, 1)
	return b
}

// waitLog waits until the log holds n lines containing s.
func (b *rldBinary) waitLog(t *testing.T, s string, n int) {
	t.Helper()
	eventually(t, 10*time.Second, "ddlguard to log "+s, func() bool {
		select {
		case <-b.exited:
			t.Fatalf("ddlguard exited (%v) while waiting for %s", b.err, s)
		default:
		}
		return strings.Count(b.logs.String(), s) >= n
	})
}

// reload writes config to the file and sends SIGHUP.
func (b *rldBinary) reload(t *testing.T, config string) {
	t.Helper()
	if err := os.WriteFile(b.config, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := b.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
}

// dsn is a DSN through the binary (no client TLS is configured).
func (b *rldBinary) dsn(user, database string, kv ...string) string {
	host, port, _ := net.SplitHostPort(b.listen)
	return cluster.DSN(user, database, append([]string{"host", host, "port", port}, kv...)...)
}

// rldIndexExists reports whether index name exists in database (asked
// directly, as the superuser).
func rldIndexExists(t *testing.T, database, name string) bool {
	t.Helper()
	conn := superConn(t, database)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_indexes WHERE indexname = $1", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

// SIGHUP reloads the guard section of the config file: a rule switched to
// warn applies at once to connections opened before the reload (nothing is
// dropped); a broken file is refused and the running configuration kept;
// SIGTERM still exits 0.
func TestReloadGuardConfig(t *testing.T) {
	const db = "reload_guard"
	audDatabase(t, db)
	audBigTable(t, db, "big")
	config := filepath.Join(t.TempDir(), "ddlguard.yaml")
	// The defaults, but for the rule's rewrite (which would run CREATE
	// INDEX CONCURRENTLY in place of the statement): off, so that it
	// rejects.
	initial := "guard:\n  lock_timeout: 500ms\n  rules:\n    create-index-not-concurrently: {rewrite: false}\n"
	if err := os.WriteFile(config, []byte(initial), 0o600); err != nil {
		t.Fatal(err)
	}
	b := rldStart(t, config)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	conn, notices := connectNotices(t, "through ddlguard", b.dsn(pgcluster.RoleSCRAM, db, "application_name", "reload-test"))
	var pid int32
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	samePID := func(when string) {
		t.Helper()
		var now int32
		if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&now); err != nil {
			t.Fatalf("%s: the connection opened before the reload is broken: %v", when, err)
		}
		if now != pid {
			t.Fatalf("%s: backend pid %d, was %d", when, now, pid)
		}
	}
	const createIndex = "CREATE INDEX big_v_idx ON big (v)"

	// (a) Enforce, rewrite off: a plain CREATE INDEX on a large table is
	// refused.
	audWantRejected(t, "CREATE INDEX with rewrite: false", audExec(t, conn, createIndex), "create-index-not-concurrently")
	if rldIndexExists(t, db, "big_v_idx") {
		t.Fatal("the rejected CREATE INDEX ran")
	}

	// (b) The rule switched to warn; SIGHUP.
	b.reload(t, "guard:\n  rules:\n    create-index-not-concurrently: {mode: warn}\n")
	b.waitLog(t, `"msg":"config reloaded"`, 1)
	notices.take()
	if pe := audExec(t, conn, createIndex); pe != nil {
		t.Fatalf("CREATE INDEX after the reload to warn, on the connection opened before it: rejected: %s", pe.Message)
	}
	audWantWarned(t, "CREATE INDEX after the reload to warn", notices.take(), "create-index-not-concurrently")
	if !rldIndexExists(t, db, "big_v_idx") {
		t.Fatal("the warned CREATE INDEX did not build the index")
	}
	samePID("after the reload")
	rldDropIndex(t, db, "big_v_idx")

	// (c) Broken files: an unknown rule id, then bad YAML. Each is refused;
	// the warn mode stays.
	b.reload(t, "guard:\n  rules:\n    no-such-rule: {mode: warn}\n")
	b.waitLog(t, "config reload refused", 1)
	b.reload(t, "guard:\n  rules: [create-index-not-concurrently: {mode: enforce}\n")
	b.waitLog(t, "config reload refused", 2)
	var refusals []map[string]any
	for _, rec := range audLogRecords(t, b.logs.String()) {
		if strings.HasPrefix(audField(rec, "msg"), "config reload refused") {
			refusals = append(refusals, rec)
		}
	}
	for _, rec := range refusals {
		t.Logf("refused: %s", audField(rec, "err"))
	}
	if len(refusals) != 2 || !strings.Contains(audField(refusals[0], "err"), "no-such-rule") || audField(refusals[0], "level") != "ERROR" {
		t.Errorf("refusal log lines: %v", refusals)
	}
	if n := strings.Count(b.logs.String(), `"msg":"config reloaded"`); n != 1 {
		t.Errorf("%d \"config reloaded\" lines, want 1 (the broken files must not count as reloads)", n)
	}
	if pe := audExec(t, conn, createIndex); pe != nil {
		t.Fatalf("CREATE INDEX after the refused reloads: rejected (the previous warn configuration was lost): %s", pe.Message)
	}
	audWantWarned(t, "CREATE INDEX after the refused reloads", notices.take(), "create-index-not-concurrently")
	samePID("after the refused reloads")

	// Still serving new connections, with the same configuration.
	fresh, freshNotices := connectNotices(t, "through ddlguard", b.dsn(pgcluster.RoleSCRAM, db, "application_name", "reload-fresh"))
	if pe := audExec(t, fresh, "CREATE INDEX big_c_idx ON big (c)"); pe != nil {
		t.Fatalf("CREATE INDEX on a new connection after the refused reloads: %s", pe.Message)
	}
	audWantWarned(t, "CREATE INDEX on a new connection", freshNotices.take(), "create-index-not-concurrently")

	// The binary's own decision log follows the configuration in force.
	var actions []string
	for _, rec := range audDecisions(t, b.logs.String()) {
		actions = append(actions, audField(rec, "action")+"/"+audField(rec, "executed_as")+"/"+audField(rec, "warnings"))
	}
	want := []string{
		"reject//",
		"timeout//create-index-not-concurrently",
		"timeout//create-index-not-concurrently",
		"timeout//create-index-not-concurrently",
	}
	if strings.Join(actions, " ") != strings.Join(want, " ") {
		t.Errorf("decision lines (action/executed_as/warnings): got %v, want %v", actions, want)
	}

	// (d) SIGTERM: exit 0.
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.exited:
		if b.err != nil {
			t.Fatalf("exit after SIGTERM: %v", b.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no exit within 5s of SIGTERM")
	}
}

// rldDropIndex drops an index directly, as the superuser.
func rldDropIndex(t *testing.T, database, name string) {
	t.Helper()
	conn := superConn(t, database)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := conn.Exec(ctx, "DROP INDEX "+name); err != nil {
		t.Fatal(err)
	}
}
