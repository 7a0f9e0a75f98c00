package pgcluster_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ddlguard/ddlguard/e2e/pgcluster"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestCluster drives one cluster through its whole life: start, every
// authentication method, TLS, restart, stop. One cluster keeps the package
// fast; the subtests run in order and each depends on the previous ones.
func TestCluster(t *testing.T) {
	begin := time.Now()
	c, err := pgcluster.Start(pgcluster.Options{Logf: t.Logf})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("cleanup Stop: %v", err)
		}
	})
	t.Logf("started PostgreSQL %d at %s in %s", c.Version(), c.Addr(), time.Since(begin).Round(time.Millisecond))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	t.Run("Layout", func(t *testing.T) {
		if c.Host != "127.0.0.1" || c.Port <= 0 || c.Addr() != net.JoinHostPort("127.0.0.1", strconv.Itoa(c.Port)) {
			t.Fatalf("bad address: host %q port %d addr %q", c.Host, c.Port, c.Addr())
		}
		if v := c.Version(); v < 10 {
			t.Fatalf("Version() = %d", v)
		}
		for _, f := range []string{c.CAFile, c.CAKeyFile, c.OtherCAFile, c.ServerCertFile, c.ProxyCertFile, c.ProxyKeyFile, c.LogFile} {
			if _, err := os.ReadFile(f); err != nil {
				t.Errorf("caller cannot read %s: %v", f, err)
			}
			if !strings.HasPrefix(f, c.Dir+string(filepath.Separator)) {
				t.Errorf("%s is outside %s", f, c.Dir)
			}
		}
		fi, err := os.Stat(c.ServerKeyFile)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("server key mode %v, want 0600", fi.Mode().Perm())
		}
		if os.Geteuid() == 0 {
			// As root the server must run as, and own its files as, "postgres".
			pg, err := user.Lookup("postgres")
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{c.ServerKeyFile, c.DataDir, c.Dir} {
				st, err := os.Stat(f)
				if err != nil {
					t.Fatal(err)
				}
				if uid := st.Sys().(*syscall.Stat_t).Uid; strconv.Itoa(int(uid)) != pg.Uid {
					t.Errorf("%s owned by uid %d, want postgres (%s)", f, uid, pg.Uid)
				}
			}
			pid, err := os.ReadFile(filepath.Join(c.DataDir, "postmaster.pid"))
			if err != nil {
				t.Fatal(err)
			}
			st, err := os.Stat("/proc/" + strings.SplitN(string(pid), "\n", 2)[0])
			if err != nil {
				t.Fatal(err)
			}
			if uid := st.Sys().(*syscall.Stat_t).Uid; strconv.Itoa(int(uid)) != pg.Uid {
				t.Errorf("postmaster runs as uid %d, want postgres (%s)", uid, pg.Uid)
			}
		}
		for _, p := range []string{c.Psql(), c.PgBench()} {
			if _, err := os.Stat(p); err != nil {
				t.Errorf("client program: %v", err)
			}
		}
		if got := pgcluster.Passwords(); len(got) != len(c.Passwords) || got[pgcluster.Superuser] != c.SuperPassword {
			t.Errorf("Passwords mismatch: %v vs %v", got, c.Passwords)
		}
	})

	t.Run("Certificates", func(t *testing.T) {
		ca := certPool(t, c.CAFile)
		other := certPool(t, c.OtherCAFile)
		for _, f := range []string{c.ServerCertFile, c.ProxyCertFile} {
			cert := readCert(t, f)
			for _, name := range []string{"localhost", "127.0.0.1"} {
				if _, err := cert.Verify(x509.VerifyOptions{Roots: ca, DNSName: name}); err != nil {
					t.Errorf("%s does not verify for %s against CA: %v", f, name, err)
				}
			}
			if _, err := cert.Verify(x509.VerifyOptions{Roots: other, DNSName: "localhost"}); err == nil {
				t.Errorf("%s unexpectedly verifies against the other CA", f)
			}
		}
		if cert := readCert(t, c.OtherCAFile); !cert.IsCA {
			t.Errorf("other CA is not a CA")
		}
	})

	t.Run("Roles", func(t *testing.T) {
		for _, tc := range []struct {
			user string
			kv   []string
			ssl  bool
		}{
			{pgcluster.Superuser, []string{"sslmode", "disable"}, false},
			{pgcluster.RoleTrust, []string{"sslmode", "disable", "password", "wrong"}, false}, // trust ignores the password
			{pgcluster.RolePassword, []string{"sslmode", "disable"}, false},
			{pgcluster.RoleMD5, []string{"sslmode", "disable"}, false},
			{pgcluster.RoleSCRAM, []string{"sslmode", "disable"}, false},
			{pgcluster.RoleSCRAM, []string{"sslmode", "verify-full", "sslrootcert", c.CAFile}, true},
			{pgcluster.RoleSCRAMSSL, []string{"sslmode", "verify-full", "sslrootcert", c.CAFile}, true},
		} {
			t.Run(tc.user+"/"+tc.kv[1], func(t *testing.T) {
				conn, err := c.Connect(ctx, tc.user, "postgres", tc.kv...)
				if err != nil {
					t.Fatalf("connect: %v", err)
				}
				defer conn.Close(ctx)
				var who string
				var ssl bool
				if err := conn.QueryRow(ctx, "SELECT current_user::text, coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)").Scan(&who, &ssl); err != nil {
					t.Fatal(err)
				}
				if who != tc.user {
					t.Errorf("current_user = %q, want %q", who, tc.user)
				}
				if ssl != tc.ssl {
					t.Errorf("ssl = %v, want %v", ssl, tc.ssl)
				}
			})
		}
	})

	t.Run("WrongPasswordRejected", func(t *testing.T) {
		for _, user := range []string{pgcluster.RolePassword, pgcluster.RoleMD5, pgcluster.RoleSCRAM} {
			conn, err := c.Connect(ctx, user, "postgres", "sslmode", "disable", "password", "nope")
			if err == nil {
				conn.Close(ctx)
				t.Errorf("%s: wrong password accepted", user)
				continue
			}
			if code := sqlState(err); code != "28P01" {
				t.Errorf("%s: got %v (SQLSTATE %q), want invalid_password 28P01", user, err, code)
			}
		}
	})

	t.Run("StoredHashes", func(t *testing.T) {
		conn, err := c.Connect(ctx, pgcluster.Superuser, "postgres", "sslmode", "disable")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		for user, prefix := range map[string]string{
			pgcluster.RoleMD5:      "md5",
			pgcluster.RoleSCRAM:    "SCRAM-SHA-256$",
			pgcluster.RolePassword: "SCRAM-SHA-256$",
		} {
			var hash string
			if err := conn.QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = $1", user).Scan(&hash); err != nil {
				t.Fatalf("%s: %v", user, err)
			}
			if !strings.HasPrefix(hash, prefix) {
				t.Errorf("%s: stored hash %.16q..., want prefix %q", user, hash, prefix)
			}
		}
		var owner string
		if err := conn.QueryRow(ctx, "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1", pgcluster.AppDatabase).Scan(&owner); err != nil {
			t.Fatal(err)
		}
		if owner != pgcluster.RoleSCRAM {
			t.Errorf("%s owner = %q, want %q", pgcluster.AppDatabase, owner, pgcluster.RoleSCRAM)
		}
		var hbaErrors int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL").Scan(&hbaErrors); err != nil {
			t.Fatal(err)
		}
		if hbaErrors != 0 {
			t.Errorf("pg_hba.conf has %d bad lines", hbaErrors)
		}
	})

	t.Run("CreatePrivileges", func(t *testing.T) {
		for _, db := range []string{"postgres", pgcluster.AppDatabase} {
			conn, err := c.Connect(ctx, pgcluster.RoleMD5, db, "sslmode", "disable")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Exec(ctx, "CREATE TABLE pgcluster_probe (id int); DROP TABLE pgcluster_probe"); err != nil {
				t.Errorf("%s: create table in public: %v", db, err)
			}
			conn.Close(ctx)
		}
	})

	t.Run("SSLOnlyRoleRefusedWithoutTLS", func(t *testing.T) {
		conn, err := c.Connect(ctx, pgcluster.RoleSCRAMSSL, "postgres", "sslmode", "disable")
		if err == nil {
			conn.Close(ctx)
			t.Fatal("app_scram_ssl connected without TLS")
		}
		if code := sqlState(err); code != "28000" {
			t.Fatalf("got %v (SQLSTATE %q), want pg_hba reject 28000", err, code)
		}
		if !strings.Contains(err.Error(), "no encryption") {
			t.Errorf("error does not mention missing encryption: %v", err)
		}
	})

	t.Run("VerifyFullAgainstOtherCAFails", func(t *testing.T) {
		conn, err := c.Connect(ctx, pgcluster.RoleSCRAMSSL, "postgres", "sslmode", "verify-ca", "sslrootcert", c.OtherCAFile)
		if err == nil {
			conn.Close(ctx)
			t.Fatal("verify-ca against the other CA succeeded")
		}
		var unknown x509.UnknownAuthorityError
		if !errors.As(err, &unknown) {
			t.Errorf("want x509.UnknownAuthorityError, got %v", err)
		}
	})

	t.Run("PsqlWithDSN", func(t *testing.T) {
		dsn := c.DSN(pgcluster.RoleSCRAMSSL, pgcluster.AppDatabase, "sslmode", "verify-full", "sslrootcert", c.CAFile)
		out, err := exec.CommandContext(ctx, c.Psql(), "-X", "-A", "-t", "-d", dsn, "-c", "SELECT current_user || '@' || current_database()").CombinedOutput()
		if err != nil {
			t.Fatalf("psql: %v\n%s", err, out)
		}
		if got, want := strings.TrimSpace(string(out)), pgcluster.RoleSCRAMSSL+"@"+pgcluster.AppDatabase; got != want {
			t.Errorf("psql said %q, want %q", got, want)
		}
	})

	t.Run("Restart", func(t *testing.T) {
		startTime := func() time.Time {
			t.Helper()
			conn, err := c.Connect(ctx, pgcluster.RoleSCRAM, "postgres", "sslmode", "disable")
			if err != nil {
				t.Fatalf("connect: %v", err)
			}
			defer conn.Close(ctx)
			var ts time.Time
			if err := conn.QueryRow(ctx, "SELECT pg_postmaster_start_time()").Scan(&ts); err != nil {
				t.Fatal(err)
			}
			return ts
		}
		before := startTime()
		held, err := c.Connect(ctx, pgcluster.RoleSCRAM, "postgres", "sslmode", "disable")
		if err != nil {
			t.Fatal(err)
		}
		defer held.Close(ctx)
		port := c.Port

		if err := c.Restart("fast"); err != nil {
			t.Fatalf("Restart: %v", err)
		}
		if c.Port != port {
			t.Fatalf("port changed %d -> %d", port, c.Port)
		}
		if err := held.Ping(ctx); err == nil {
			t.Errorf("connection survived a fast restart")
		}
		if after := startTime(); !after.After(before) {
			t.Errorf("postmaster start time did not advance: %v -> %v", before, after)
		}
		if err := c.Restart("bogus"); err == nil {
			t.Errorf("Restart(bogus) succeeded")
		}
	})

	t.Run("Stop", func(t *testing.T) {
		dir, addr := c.Dir, c.Addr()
		if err := c.Stop(); err != nil {
			t.Fatalf("Stop: %v", err)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("%s still exists after Stop (stat err %v)", dir, err)
		}
		if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			conn.Close()
			t.Errorf("%s still accepts connections after Stop", addr)
		}
		if err := c.Stop(); err != nil {
			t.Errorf("second Stop: %v", err)
		}
		if err := c.Restart(""); err == nil {
			t.Errorf("Restart after Stop succeeded")
		}
	})
}

// TestStartFailureShowsLogAndCleansUp starts a cluster whose config the
// server rejects: the error must carry the server log tail and nothing may
// be left behind.
func TestStartFailureShowsLogAndCleansUp(t *testing.T) {
	base := t.TempDir()
	_, err := pgcluster.Start(pgcluster.Options{
		BaseDir:      base,
		ExtraConf:    []string{"shared_buffers = 'not-a-size'"},
		StartTimeout: 20 * time.Second,
	})
	if err == nil {
		t.Fatal("Start succeeded with an invalid shared_buffers")
	}
	t.Logf("Start error (expected):\n%v", err)
	if !strings.Contains(err.Error(), "tail of") || !strings.Contains(err.Error(), "shared_buffers") {
		t.Errorf("error lacks the server log tail:\n%v", err)
	}
	entries, rerr := os.ReadDir(base)
	if rerr != nil {
		t.Fatal(rerr)
	}
	if len(entries) != 0 {
		t.Errorf("left behind in %s: %v", base, entries)
	}
}

func TestDSNQuoting(t *testing.T) {
	c := &pgcluster.Cluster{Host: "127.0.0.1", Port: 5555, Passwords: map[string]string{"u": `it's a \ test`}}
	got := c.DSN("u", "db", "sslmode", "require", "dbname", "", "application_name", "x y")
	want := `host=127.0.0.1 port=5555 user=u password='it\'s a \\ test' dbname='' sslmode=require application_name='x y'`
	if got != want {
		t.Fatalf("DSN:\n got %s\nwant %s", got, want)
	}
	if _, err := pgx.ParseConfig(got); err != nil {
		t.Fatalf("pgx cannot parse %s: %v", got, err)
	}
	if got := c.DSN("stranger", "db"); strings.Contains(got, "password") {
		t.Errorf("password for unknown role: %s", got)
	}
	defer func() {
		if recover() == nil {
			t.Errorf("odd kv did not panic")
		}
	}()
	c.DSN("u", "db", "sslmode")
}

func TestFindBinDirWithBadPGBIN(t *testing.T) {
	t.Setenv("PG_BIN", t.TempDir())
	_, err := pgcluster.FindBinDir()
	if err == nil || !strings.Contains(err.Error(), "initdb") {
		t.Fatalf("want an error naming initdb, got %v", err)
	}
	if _, err := pgcluster.Start(pgcluster.Options{}); err == nil {
		t.Fatal("Start succeeded with a bad PG_BIN")
	}
}

func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("%s: no CERTIFICATE block", path)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func certPool(t *testing.T, path string) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(readCert(t, path))
	return pool
}

// TestBinDirOption: an explicit Options.BinDir beats a (bad) PG_BIN, and a
// BinDir without the server programs is an error naming what is missing.
func TestBinDirOption(t *testing.T) {
	good, err := pgcluster.FindBinDir()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("PG_BIN", t.TempDir())

	_, err = pgcluster.Start(pgcluster.Options{BinDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "BinDir") || !strings.Contains(err.Error(), "initdb") {
		t.Fatalf("Start with an empty BinDir: want an error naming BinDir and initdb, got %v", err)
	}

	c, err := pgcluster.Start(pgcluster.Options{BinDir: good, Logf: t.Logf})
	if err != nil {
		t.Fatalf("Start with BinDir=%s despite a bad PG_BIN: %v", good, err)
	}
	defer func() {
		if err := c.Stop(); err != nil {
			t.Errorf("Stop: %v", err)
		}
	}()
	if c.BinDir != good {
		t.Errorf("BinDir = %s, want %s", c.BinDir, good)
	}
	// A distribution's bin dir keeps libpq and ICU in the system paths.
	if strings.HasPrefix(good, "/usr/") && c.LibDir != "" {
		t.Errorf("LibDir = %q for the system binaries in %s, want empty", c.LibDir, good)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := c.Connect(ctx, pgcluster.RoleTrust, pgcluster.AppDatabase, "sslmode", "disable")
	if err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
}
