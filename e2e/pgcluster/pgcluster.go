package pgcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Host is the address every cluster listens on.
const Host = "127.0.0.1"

// Defaults for Options.
const (
	DefaultStartTimeout = 60 * time.Second
	portAttempts        = 5
	logTailLines        = 40
	// maxSocketPath is the longest unix socket path PostgreSQL accepts
	// (sizeof(sun_path) - 1 on Linux).
	maxSocketPath = 107
	socketName    = "/.s.PGSQL.65535"
)

// Options tune Start. The zero value is a good default.
type Options struct {
	// ExtraConf lines are appended to postgresql.conf after the package's
	// own settings, so they override them (e.g. "log_connections = on").
	// Do not override listen_addresses, port or unix_socket_directories:
	// the Cluster's fields and DSN would no longer match.
	ExtraConf []string

	// ExtraHBA lines are put in pg_hba.conf right after the
	// "local all all trust" line, so they take precedence over the
	// package's host lines.
	ExtraHBA []string

	// BinDir is the directory of initdb, pg_ctl and postgres to use. When
	// set it takes precedence over $PG_BIN and the search of FindBinDir,
	// and must hold all three programs. Default: FindBinDir().
	BinDir string

	// BaseDir is where the cluster's temporary directory is created.
	// Default: os.TempDir() (or /tmp when that path is too long for a
	// unix socket).
	BaseDir string

	// StartTimeout bounds each pg_ctl start/restart/stop wait.
	// Default: DefaultStartTimeout (60s).
	StartTimeout time.Duration

	// Logf, when set, receives progress messages (e.g. t.Logf).
	Logf func(format string, args ...any)
}

// Cluster is a running throwaway PostgreSQL server. Its exported fields are
// set by Start and must be treated as read-only.
type Cluster struct {
	Host string // always "127.0.0.1"
	Port int    // TCP port; unchanged by Restart

	BinDir    string // directory of initdb, pg_ctl, postgres
	LibDir    string // BinDir/../lib of a self-contained tree, else "" (see below)
	Dir       string // the cluster's temporary directory; removed by Stop
	DataDir   string // PGDATA (Dir/data)
	SocketDir string // unix_socket_directories (== Dir)
	LogFile   string // server log (Dir/postgres.log)

	// LibDir is set when BinDir/../lib holds the tree's own libpq or ICU
	// libraries (a self-contained build such as the npm packages that
	// scripts/install-pg-major.sh installs); the server programs run with
	// it first on LD_LIBRARY_PATH. Clients that should use that tree's
	// libpq can do the same. Distribution packages leave it empty.

	// TLS material, PEM files under Dir/tls. All of them are readable by
	// the calling user; ServerKeyFile is owned by the server's OS user.
	CAFile         string // test CA certificate (signed ServerCert and ProxyCert)
	CAKeyFile      string // test CA private key, for issuing more certificates
	OtherCAFile    string // unrelated CA certificate that signed nothing
	ServerCertFile string // PostgreSQL's certificate: localhost, 127.0.0.1, ::1
	ServerKeyFile  string
	ProxyCertFile  string // certificate for ddlguard's client-facing TLS: localhost, 127.0.0.1, ::1
	ProxyKeyFile   string

	Superuser     string            // "postgres"
	SuperPassword string            // SuperPassword
	Passwords     map[string]string // role -> password, including Superuser

	opts     Options
	runAs    *syscall.Credential // non-nil when server programs run as another OS user
	baseConf []byte              // postgresql.conf as written by initdb
	version  int                 // server major version

	mu      sync.Mutex
	stopped bool
}

// Start creates, configures and starts a new cluster, then creates the
// well-known roles (see AppRoles) and the AppDatabase. On error nothing is
// left behind: the server (if started) is stopped and the directory removed.
// Errors from the server side include the tail of its log.
func Start(opts Options) (_ *Cluster, err error) {
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = DefaultStartTimeout
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	begin := time.Now()

	binDir := opts.BinDir
	if binDir != "" {
		if binDir, err = filepath.Abs(binDir); err != nil {
			return nil, fmt.Errorf("pgcluster: %w", err)
		}
		if missing := missingPrograms(binDir); len(missing) > 0 {
			return nil, fmt.Errorf("pgcluster: Options.BinDir=%s lacks %s", binDir, strings.Join(missing, ", "))
		}
	} else if binDir, err = FindBinDir(); err != nil {
		return nil, err
	}
	runAs, err := serverCredential()
	if err != nil {
		return nil, err
	}

	base := opts.BaseDir
	if base == "" {
		base = os.TempDir()
		if len(base)+len("/ddlguard-pg-0123456789")+len(socketName) > maxSocketPath {
			base = "/tmp"
		}
	}
	if base, err = filepath.Abs(base); err != nil {
		return nil, fmt.Errorf("pgcluster: %w", err)
	}
	dir, err := os.MkdirTemp(base, "ddlguard-pg-")
	if err != nil {
		return nil, fmt.Errorf("pgcluster: create temp dir: %w", err)
	}

	c := &Cluster{
		Host:          Host,
		BinDir:        binDir,
		LibDir:        bundledLibDir(binDir),
		Dir:           dir,
		DataDir:       filepath.Join(dir, "data"),
		SocketDir:     dir,
		LogFile:       filepath.Join(dir, "postgres.log"),
		Superuser:     Superuser,
		SuperPassword: SuperPassword,
		Passwords:     Passwords(),
		opts:          opts,
		runAs:         runAs,
	}
	defer func() {
		if err != nil {
			if stopErr := c.Stop(); stopErr != nil {
				err = fmt.Errorf("%w (cleanup also failed: %v)", err, stopErr)
			}
		}
	}()

	if len(dir)+len(socketName) > maxSocketPath {
		return nil, fmt.Errorf("pgcluster: temp dir %s is too long for a unix socket path; set Options.BaseDir", dir)
	}

	if err := c.prepareDir(); err != nil {
		return nil, err
	}
	if err := c.initdb(); err != nil {
		return nil, err
	}
	if err := c.writeHBA(); err != nil {
		return nil, err
	}
	if err := c.startOnFreePort(); err != nil {
		return nil, err
	}
	opts.Logf("pgcluster: server up on %s (dir %s)", c.Addr(), c.Dir)

	ctx, cancel := context.WithTimeout(context.Background(), opts.StartTimeout)
	defer cancel()
	if err := c.setupRoles(ctx); err != nil {
		return nil, c.withLog(err)
	}
	opts.Logf("pgcluster: PostgreSQL %d ready in %s", c.version, time.Since(begin).Round(time.Millisecond))
	return c, nil
}

// serverCredential returns the credential to run server programs with: nil
// for a non-root caller, the "postgres" OS user for root.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("pgcluster: running as root, so the server must run as the \"postgres\" OS user, but looking it up failed: %w (install the postgresql package, see scripts/install-deps.sh)", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("pgcluster: postgres uid %q: %w", u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("pgcluster: postgres gid %q: %w", u.Gid, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

// RunAsServerUser makes cmd run as the OS user the server runs as (the
// "postgres" OS user when the caller is root), for programs that, like
// PostgreSQL, refuse to run as root (PgBouncer).
func (c *Cluster) RunAsServerUser(cmd *exec.Cmd) {
	if c.runAs != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.runAs}
	}
}

// prepareDir makes Dir usable by the server user and writes the TLS files.
func (c *Cluster) prepareDir() error {
	if err := os.Chmod(c.Dir, 0o755); err != nil {
		return fmt.Errorf("pgcluster: chmod %s: %w", c.Dir, err)
	}
	if c.runAs != nil {
		if err := ensureSearchable(filepath.Dir(c.Dir)); err != nil {
			return err
		}
		// The server writes its socket and lock files into Dir.
		if err := c.chown(c.Dir); err != nil {
			return err
		}
	}

	tlsDir := filepath.Join(c.Dir, "tls")
	if err := os.Mkdir(tlsDir, 0o755); err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	if err := os.Chmod(tlsDir, 0o755); err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	files, err := writeTLS(tlsDir)
	if err != nil {
		return err
	}
	c.CAFile, c.CAKeyFile, c.OtherCAFile = files.caCert, files.caKey, files.otherCACert
	c.ServerCertFile, c.ServerKeyFile = files.serverCert, files.serverKey
	c.ProxyCertFile, c.ProxyKeyFile = files.proxyCert, files.proxyKey
	if c.runAs != nil {
		// PostgreSQL wants its key 0600 and owned by the server user.
		if err := c.chown(c.ServerKeyFile); err != nil {
			return err
		}
	}
	return nil
}

// ensureSearchable adds the search (x) bit for group and others to dir and
// each of its ancestors that lacks it, so the server user can reach Dir.
func ensureSearchable(dir string) error {
	for {
		fi, err := os.Stat(dir)
		if err != nil {
			return fmt.Errorf("pgcluster: %w", err)
		}
		if mode := fi.Mode().Perm(); mode&0o011 != 0o011 {
			if err := os.Chmod(dir, mode|0o011); err != nil {
				return fmt.Errorf("pgcluster: make %s reachable by the postgres user: %w", dir, err)
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return nil
		}
		dir = parent
	}
}

func (c *Cluster) chown(path string) error {
	if err := os.Chown(path, int(c.runAs.Uid), int(c.runAs.Gid)); err != nil {
		return fmt.Errorf("pgcluster: chown %s to postgres: %w", path, err)
	}
	return nil
}

// initdb creates DataDir and remembers the generated postgresql.conf.
func (c *Cluster) initdb() error {
	pwFile := filepath.Join(c.Dir, "superuser.pw")
	if err := os.WriteFile(pwFile, []byte(SuperPassword+"\n"), 0o600); err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	defer os.Remove(pwFile)
	if c.runAs != nil {
		if err := c.chown(pwFile); err != nil {
			return err
		}
	}

	out, err := c.run("initdb",
		"-D", c.DataDir,
		"-U", Superuser,
		"--pwfile="+pwFile,
		"--auth-local=trust",
		"--auth-host=scram-sha-256",
		"--encoding=UTF8",
		"--locale=C",
		"--no-sync",
	)
	if err != nil {
		return fmt.Errorf("pgcluster: initdb failed: %w\n%s", err, out)
	}
	conf, err := os.ReadFile(filepath.Join(c.DataDir, "postgresql.conf"))
	if err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	c.baseConf = conf
	return nil
}

// writeConf writes postgresql.conf: initdb's file plus our settings.
func (c *Cluster) writeConf() error {
	var b bytes.Buffer
	b.Write(c.baseConf)
	fmt.Fprintf(&b, "\n# ---- added by ddlguard e2e/pgcluster ----\n")
	for _, line := range []string{
		"listen_addresses = '127.0.0.1'",
		fmt.Sprintf("port = %d", c.Port),
		"unix_socket_directories = " + quoteConf(c.SocketDir),
		"fsync = off",
		"synchronous_commit = off",
		"full_page_writes = off",
		"max_connections = 700", // TestManyConnections holds 500 at once, beside the tests running in parallel
		"shared_buffers = 128MB",
		"logging_collector = off",
		"password_encryption = 'scram-sha-256'",
		"ssl = on",
		"ssl_cert_file = " + quoteConf(c.ServerCertFile),
		"ssl_key_file = " + quoteConf(c.ServerKeyFile),
	} {
		b.WriteString(line + "\n")
	}
	if len(c.opts.ExtraConf) > 0 {
		b.WriteString("# ---- Options.ExtraConf ----\n")
		for _, line := range c.opts.ExtraConf {
			b.WriteString(line + "\n")
		}
	}
	return c.writeDataFile("postgresql.conf", b.Bytes())
}

// writeHBA writes pg_hba.conf (see the package documentation).
func (c *Cluster) writeHBA() error {
	var b bytes.Buffer
	b.WriteString("# Written by ddlguard e2e/pgcluster. First match wins.\n")
	b.WriteString("# TYPE     DATABASE     USER             ADDRESS        METHOD\n")
	b.WriteString("local      all          all                             trust\n")
	b.WriteString("local      replication  all                             trust\n")
	if len(c.opts.ExtraHBA) > 0 {
		b.WriteString("# ---- Options.ExtraHBA ----\n")
		for _, line := range c.opts.ExtraHBA {
			b.WriteString(line + "\n")
		}
		b.WriteString("# ---- defaults ----\n")
	}
	b.WriteString("host       replication  all              127.0.0.1/32   scram-sha-256\n")
	for _, addr := range []string{"127.0.0.1/32", "::1/128"} {
		for _, l := range [][3]string{
			{"host", RoleTrust, "trust"},
			{"host", RolePassword, "password"},
			{"host", RoleMD5, "md5"},
			{"hostssl", RoleSCRAMSSL, "scram-sha-256"},
			{"hostnossl", RoleSCRAMSSL, "reject"},
			{"host", "all", "scram-sha-256"},
		} {
			fmt.Fprintf(&b, "%-10s %-12s %-16s %-14s %s\n", l[0], "all", l[1], addr, l[2])
		}
	}
	return c.writeDataFile("pg_hba.conf", b.Bytes())
}

// writeDataFile replaces a file in DataDir, keeping it owned by the server
// user.
func (c *Cluster) writeDataFile(name string, data []byte) error {
	path := filepath.Join(c.DataDir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("pgcluster: write %s: %w", path, err)
	}
	if c.runAs != nil {
		return c.chown(path)
	}
	return nil
}

// startOnFreePort picks a free port and starts the server, trying another
// port when the chosen one was taken in the meantime.
func (c *Cluster) startOnFreePort() error {
	var lastErr error
	for attempt := 1; attempt <= portAttempts; attempt++ {
		port, err := freePort()
		if err != nil {
			return err
		}
		c.Port = port
		if err := c.writeConf(); err != nil {
			return err
		}
		lastErr = c.pgCtl("start")
		if lastErr == nil {
			return nil
		}
		if !c.portProblem() {
			return lastErr
		}
		c.opts.Logf("pgcluster: port %d unusable (attempt %d/%d), retrying", port, attempt, portAttempts)
		// Make sure a half-started server is gone before retrying.
		if c.pidFileExists() {
			_ = c.pgCtl("stop", "-m", "immediate")
		}
	}
	return fmt.Errorf("pgcluster: no usable port after %d attempts: %w", portAttempts, lastErr)
}

// freePort asks the kernel for an unused TCP port on Host.
func freePort() (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(Host, "0"))
	if err != nil {
		return 0, fmt.Errorf("pgcluster: find free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("pgcluster: find free port: %w", err)
	}
	return port, nil
}

// portProblem reports whether the server log says the last start failed
// because the port (or its socket lock file) was in use.
func (c *Cluster) portProblem() bool {
	tail := c.LogTail(logTailLines)
	for _, s := range []string{"Address already in use", "could not bind", "could not create any TCP/IP sockets", "could not create lock file"} {
		if strings.Contains(tail, s) {
			return true
		}
	}
	return false
}

func (c *Cluster) pidFileExists() bool {
	_, err := os.Stat(filepath.Join(c.DataDir, "postmaster.pid"))
	return err == nil
}

// pgCtl runs `pg_ctl <action> -D DataDir -w -t <timeout> [args]`; start and
// restart also get -l LogFile. Errors carry pg_ctl's output and the log tail.
func (c *Cluster) pgCtl(action string, args ...string) error {
	secs := int(c.opts.StartTimeout / time.Second)
	if secs < 1 {
		secs = 1
	}
	full := []string{action, "-D", c.DataDir, "-w", "-t", strconv.Itoa(secs)}
	if action == "start" || action == "restart" {
		full = append(full, "-l", c.LogFile)
	}
	full = append(full, args...)
	out, err := c.run("pg_ctl", full...)
	if err != nil {
		return c.withLog(fmt.Errorf("pgcluster: pg_ctl %s failed: %w\n%s", strings.Join(full, " "), err, strings.TrimSpace(string(out))))
	}
	return nil
}

// run runs a server program from BinDir as the server OS user and returns
// its combined output.
func (c *Cluster) run(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(c.BinDir, name), args...)
	cmd.Dir = c.Dir
	cmd.Env = c.serverEnv()
	if c.runAs != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.runAs}
	}
	// pg_ctl's server redirects its output to LogFile, but never let a
	// stray inherited pipe hang us.
	cmd.WaitDelay = 5 * time.Second
	return cmd.CombinedOutput()
}

// serverEnv is the caller's environment without PG*/locale variables, with
// LC_ALL=C so server messages are in English, and with HOME fixed up for the
// server user.
func (c *Cluster) serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "PG") || strings.HasPrefix(k, "LC_") || k == "LANG" || k == "LANGUAGE" || (c.runAs != nil && k == "HOME") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "LC_ALL=C")
	if c.LibDir != "" {
		path := c.LibDir
		if old := os.Getenv("LD_LIBRARY_PATH"); old != "" {
			path += string(os.PathListSeparator) + old
		}
		env = append(withoutVar(env, "LD_LIBRARY_PATH"), "LD_LIBRARY_PATH="+path)
	}
	if c.runAs != nil {
		env = append(env, "HOME="+c.Dir)
	}
	return env
}

// setupRoles creates the roles and AppDatabase over the unix socket and
// reads the server version.
func (c *Cluster) setupRoles(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, c.socketDSN("postgres"))
	if err != nil {
		return fmt.Errorf("pgcluster: connect as superuser over %s: %w", c.SocketDir, err)
	}
	defer conn.Close(context.Background())

	others := strings.Join(AppRoles(), ", ")
	stmts := []string{
		"SET password_encryption = 'scram-sha-256'",
		"ALTER ROLE " + Superuser + " PASSWORD " + quoteLiteral(SuperPassword),
		"CREATE ROLE " + RoleTrust + " LOGIN PASSWORD " + quoteLiteral(PasswordTrust),
		"CREATE ROLE " + RolePassword + " LOGIN PASSWORD " + quoteLiteral(PasswordPassword),
		"SET password_encryption = 'md5'",
		"CREATE ROLE " + RoleMD5 + " LOGIN PASSWORD " + quoteLiteral(PasswordMD5),
		"SET password_encryption = 'scram-sha-256'",
		"CREATE ROLE " + RoleSCRAM + " LOGIN PASSWORD " + quoteLiteral(PasswordSCRAM),
		"CREATE ROLE " + RoleSCRAMSSL + " LOGIN PASSWORD " + quoteLiteral(PasswordSCRAMSSL),
		"GRANT CREATE ON DATABASE postgres TO " + others,
		"GRANT CREATE ON SCHEMA public TO " + others,
		"CREATE DATABASE " + AppDatabase + " OWNER " + RoleSCRAM,
	}
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("pgcluster: setup %q: %w", redact(s), err)
		}
	}
	var num int
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&num); err != nil {
		return fmt.Errorf("pgcluster: read server version: %w", err)
	}
	c.version = num / 10000

	appConn, err := pgx.Connect(ctx, c.socketDSN(AppDatabase))
	if err != nil {
		return fmt.Errorf("pgcluster: connect to %s: %w", AppDatabase, err)
	}
	defer appConn.Close(context.Background())
	if _, err := appConn.Exec(ctx, "GRANT CREATE ON SCHEMA public TO "+others); err != nil {
		return fmt.Errorf("pgcluster: setup %s: %w", AppDatabase, err)
	}
	return nil
}

// socketDSN is a superuser DSN over the unix socket (trust).
func (c *Cluster) socketDSN(database string) string {
	return buildDSN([][2]string{
		{"host", c.SocketDir},
		{"port", strconv.Itoa(c.Port)},
		{"user", Superuser},
		{"dbname", database},
		{"sslmode", "disable"},
	})
}

// redact hides passwords in setup statements echoed in errors.
func redact(stmt string) string {
	if i := strings.Index(stmt, " PASSWORD "); i >= 0 {
		return stmt[:i] + " PASSWORD '***'"
	}
	return stmt
}

// Addr returns "127.0.0.1:<port>".
func (c *Cluster) Addr() string {
	return net.JoinHostPort(c.Host, strconv.Itoa(c.Port))
}

// Version returns the server's major version (e.g. 15), as read from
// server_version_num when the cluster started.
func (c *Cluster) Version() (major int) {
	return c.version
}

// Psql returns the path of psql (from BinDir, else PATH).
func (c *Cluster) Psql() string { return clientProgram(c.BinDir, "psql") }

// PgBench returns the path of pgbench (from BinDir, else PATH).
func (c *Cluster) PgBench() string { return clientProgram(c.BinDir, "pgbench") }

// DSN returns a libpq key=value connection string for user and database
// over TCP to Addr, including user's password when user is one of the
// cluster's roles (see Passwords). kv are extra key, value pairs appended in
// order; a key already present (e.g. "host" or "password") is replaced in
// place. sslmode is not set unless given, so the client default applies
// (prefer for libpq and pgx). Values are quoted as libpq requires.
// DSN panics if kv has an odd length.
//
//	c.DSN("app_scram_ssl", "app", "sslmode", "verify-full", "sslrootcert", c.CAFile)
func (c *Cluster) DSN(user, database string, kv ...string) string {
	if len(kv)%2 != 0 {
		panic("pgcluster: DSN needs key, value pairs")
	}
	pairs := [][2]string{
		{"host", c.Host},
		{"port", strconv.Itoa(c.Port)},
		{"user", user},
	}
	if pw, ok := c.Passwords[user]; ok {
		pairs = append(pairs, [2]string{"password", pw})
	}
	pairs = append(pairs, [2]string{"dbname", database})
outer:
	for i := 0; i < len(kv); i += 2 {
		for j := range pairs {
			if pairs[j][0] == kv[i] {
				pairs[j][1] = kv[i+1]
				continue outer
			}
		}
		pairs = append(pairs, [2]string{kv[i], kv[i+1]})
	}
	return buildDSN(pairs)
}

// Connect opens a pgx connection with DSN(user, database, kv...).
func (c *Cluster) Connect(ctx context.Context, user, database string, kv ...string) (*pgx.Conn, error) {
	return pgx.Connect(ctx, c.DSN(user, database, kv...))
}

func buildDSN(pairs [][2]string) string {
	parts := make([]string, 0, len(pairs))
	for _, p := range pairs {
		parts = append(parts, p[0]+"="+quoteDSNValue(p[1]))
	}
	return strings.Join(parts, " ")
}

// quoteDSNValue single-quotes a libpq connection-string value when needed,
// backslash-escaping quotes and backslashes.
func quoteDSNValue(v string) string {
	if v != "" && !strings.ContainsAny(v, " \t\n\r\f\v'\\") {
		return v
	}
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
	return "'" + r.Replace(v) + "'"
}

// quoteLiteral quotes an SQL string literal (standard_conforming_strings).
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// quoteConf quotes a postgresql.conf string value.
func quoteConf(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// Restart restarts the server with `pg_ctl restart -m <mode>` on the same
// port and directory. mode is "smart", "fast" or "immediate"; "" means
// "fast". Connections are cut; the server is accepting again on return.
func (c *Cluster) Restart(mode string) error {
	if mode == "" {
		mode = "fast"
	}
	switch mode {
	case "smart", "fast", "immediate":
	default:
		return fmt.Errorf("pgcluster: bad restart mode %q (want smart, fast or immediate)", mode)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return errors.New("pgcluster: Restart after Stop")
	}
	return c.pgCtl("restart", "-m", mode)
}

// Stop shuts the server down (immediate mode) and removes Dir. It is safe
// to call more than once; later calls do nothing and return nil. Dir is
// removed even if pg_ctl fails.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return nil
	}
	c.stopped = true

	var errs []error
	if c.pidFileExists() {
		if err := c.pgCtl("stop", "-m", "immediate"); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(c.Dir); err != nil {
		errs = append(errs, fmt.Errorf("pgcluster: remove %s: %w", c.Dir, err))
	}
	return errors.Join(errs...)
}

// LogTail returns the last n lines of the server log ("" if there is none).
func (c *Cluster) LogTail(n int) string {
	f, err := os.Open(c.LogFile)
	if err != nil {
		return ""
	}
	defer f.Close()
	const maxRead = 64 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > maxRead {
		if _, err := f.Seek(-maxRead, io.SeekEnd); err != nil {
			return ""
		}
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// withLog appends the server log tail to err.
func (c *Cluster) withLog(err error) error {
	tail := c.LogTail(logTailLines)
	if tail == "" {
		return err
	}
	return fmt.Errorf("%w\n--- tail of %s ---\n%s", err, c.LogFile, tail)
}
