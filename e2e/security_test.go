package e2e

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ddlguard/ddlguard/e2e/pgcluster"
)

// Client-facing TLS accepts TLS 1.2 and 1.3 only, even when the embedding
// program's tls.Config allows less (the test proxy's does).
func TestSecurityTLSVersions(t *testing.T) {
	p := startProxy(t, keepTLS)
	handshake := func(maxVersion uint16) error {
		conn, err := net.DialTimeout("tcp", p.Addr(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		var req [8]byte
		binary.BigEndian.PutUint32(req[0:], 8)
		binary.BigEndian.PutUint32(req[4:], 80877103) // SSLRequest
		if _, err := conn.Write(req[:]); err != nil {
			t.Fatal(err)
		}
		answer := make([]byte, 1)
		if _, err := conn.Read(answer); err != nil || answer[0] != 'S' {
			t.Fatalf("SSLRequest answered %q, %v", answer, err)
		}
		tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: maxVersion})
		return tc.Handshake()
	}
	for _, v := range []struct {
		name    string
		version uint16
		ok      bool
	}{{"TLS 1.0", tls.VersionTLS10, false}, {"TLS 1.1", tls.VersionTLS11, false}, {"TLS 1.2", tls.VersionTLS12, true}, {"TLS 1.3", tls.VersionTLS13, true}} {
		err := handshake(v.version)
		if (err == nil) != v.ok {
			t.Errorf("%s handshake: %v, want accepted=%v", v.name, err, v.ok)
		}
	}
}

// With logging at debug level, neither the password of a password-auth
// role, nor bind parameters, nor literals of logged DDL reach the log.
func TestSecurityNoSecretsInLogs(t *testing.T) {
	config := filepath.Join(t.TempDir(), "ddlguard.yaml")
	os.WriteFile(config, []byte("log:\n  level: debug\n"), 0o600)
	b := rldStart(t, config)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	secrets := []string{"bind-param-secret-4711", "ddl-literal-secret-0815"}
	for _, role := range []string{pgcluster.RolePassword, pgcluster.RoleMD5, pgcluster.RoleSCRAM} {
		secrets = append(secrets, cluster.Passwords[role])
		conn := connectDSN(t, "as "+role, b.dsn(role, pgcluster.AppDatabase, "sslmode", "disable"))
		var got string
		if err := conn.QueryRow(ctx, "SELECT $1::text", secrets[0]).Scan(&got); err != nil || got != secrets[0] {
			t.Fatalf("as %s: %v", role, err)
		}
		table := "sec_" + role
		if _, err := conn.Exec(ctx, fmt.Sprintf("CREATE TEMP TABLE %s (v text DEFAULT '%s')", table, secrets[1])); err != nil {
			t.Fatal(err)
		}
		// A guarded statement, so that a decision is logged with its text.
		conn.Exec(ctx, fmt.Sprintf("ALTER TABLE %s ALTER COLUMN v SET DEFAULT '%s'", table, secrets[1]))
		conn.Close(ctx)
	}
	time.Sleep(200 * time.Millisecond)
	logs := b.logs.String()
	if !strings.Contains(logs, `"msg":"connection opened"`) {
		t.Fatalf("no connection was logged:\n%s", logs)
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(logs, s) {
			t.Errorf("the log contains %q", s)
		}
	}
}

// The admin listener binds loopback unless configured otherwise.
func TestSecurityAdminLoopbackByDefault(t *testing.T) {
	out, err := execDDLGuard(t, "check-config", "--upstream", "db:5432")
	if err != nil {
		t.Fatalf("check-config: %v\n%s", err, out)
	}
	if !strings.Contains(out, `admin.listen: "127.0.0.1:6433"`) {
		t.Errorf("default admin.listen is not loopback:\n%s", out)
	}
}

func execDDLGuard(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(ddlguardBinary(t), args...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}
