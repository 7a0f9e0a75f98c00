package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ddlguard/ddlguard/e2e/pgcluster"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// ddlguardBinary builds cmd/ddlguard once per test run.
func ddlguardBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ddlguard-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "ddlguard")
		out, err := exec.Command("go", "build", "-o", binPath, "../cmd/ddlguard").CombinedOutput()
		if err != nil {
			buildErr = err
			binPath = string(out)
		}
	})
	if buildErr != nil {
		t.Fatalf("building ddlguard: %v\n%s", buildErr, binPath)
	}
	return binPath
}

// The binary serves with only --listen and --upstream, logs each
// connection as JSON without secrets, and exits 0 on SIGTERM.
func TestBinaryServe(t *testing.T) {
	bin := ddlguardBinary(t)
	listen := freeAddr(t)
	cmd := exec.Command(bin, "serve", "--listen", listen, "--admin-listen", "127.0.0.1:0", "--upstream", cluster.Addr(), "--log-format", "json")
	var logs lockedBuffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	eventually(t, 5*time.Second, "listening", func() bool { return strings.Contains(logs.String(), `"msg":"listening"`) })

	host, port, _ := net.SplitHostPort(listen)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, cluster.DSN(pgcluster.RoleSCRAM, "app", "host", host, "port", port, "application_name", "binary-test"))
	if err != nil {
		t.Fatal(err)
	}
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("query through the binary: %v", err)
	}
	conn.Close(ctx)
	eventually(t, 5*time.Second, "connection closed log", func() bool { return strings.Contains(logs.String(), `"msg":"connection closed"`) })

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no exit within 5s of SIGTERM")
	}

	all := logs.String()
	if strings.Contains(all, pgcluster.PasswordSCRAM) {
		t.Fatal("a password reached the log")
	}
	var closed map[string]any
	sc := bufio.NewScanner(strings.NewReader(all))
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) != nil {
			t.Fatalf("log line is not JSON: %s", sc.Text())
		}
		if rec["msg"] == "connection closed" {
			closed = rec
		}
	}
	for _, k := range []string{"client", "user", "database", "application_name", "duration", "bytes_from_client", "bytes_to_client"} {
		if _, ok := closed[k]; !ok {
			t.Errorf("connection closed log lacks %q: %v", k, closed)
		}
	}
	if closed["user"] != pgcluster.RoleSCRAM || closed["database"] != "app" || closed["application_name"] != "binary-test" {
		t.Errorf("connection closed log: %v", closed)
	}
	if strings.Contains(all, "SELECT 1") {
		t.Error("message contents reached the log")
	}
}

func TestBinaryBadConfigExits2(t *testing.T) {
	bin := ddlguardBinary(t)
	path := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(path, []byte("upstream: db:5432\nconnect_timeout: soon\n"), 0o600)
	for _, args := range [][]string{
		{"serve", "--config", path},
		{"serve", "--listen", "127.0.0.1:0"},
		{"serve", "--upstream", "db:5432", "--bogus-flag"},
	} {
		cmd := exec.Command(bin, args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 2 {
			t.Errorf("%v: got %v, want exit code 2; stderr %q", args, err, stderr.String())
		}
		if stderr.Len() == 0 {
			t.Errorf("%v: no explanation on stderr", args)
		}
	}
}

// The README's demo: it prints a psql command that works through ddlguard,
// and cleans up on SIGINT.
func TestBinaryDemo(t *testing.T) {
	bin := ddlguardBinary(t)
	cmd := exec.Command(bin, "demo", "--listen", "127.0.0.1:0", "--duration", "60s")
	var out, errb lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	re := regexp.MustCompile(`psql "([^"]+)"`)
	eventually(t, 30*time.Second, "demo to print the psql command", func() bool { return re.MatchString(out.String()) })
	dsn := re.FindStringSubmatch(out.String())[1]
	psql := exec.Command(cluster.Psql(), "-X", "-At", "-c", "SELECT current_user || ':' || current_database()", dsn)
	got, err := psql.CombinedOutput()
	if err != nil || strings.TrimSpace(string(got)) != pgcluster.RoleSCRAM+":"+pgcluster.AppDatabase {
		t.Fatalf("psql through the demo: %v %s\ndemo stderr: %s", err, got, errb.String())
	}
	cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("demo exit: %v\n%s", err, errb.String())
	}
	if !strings.Contains(out.String(), "stopping") {
		t.Fatalf("demo output: %s", out.String())
	}
}
