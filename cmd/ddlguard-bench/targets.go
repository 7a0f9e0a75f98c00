package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ddlguard/ddlguard/guard"
	"github.com/ddlguard/ddlguard/metrics"
	"github.com/ddlguard/ddlguard/proxy"
)

// A target is a path from pgbench to PostgreSQL. Names are stable: they
// appear in the table's column names and as JSON keys.
const (
	targetDirect      = "direct"        // straight to PostgreSQL
	targetDDLGuard    = "ddlguard"      // the ddlguard binary, default configuration
	targetPgBouncer   = "pgbouncer"     // PgBouncer, pool_mode = session
	targetPgBouncerTx = "pgbouncer-txn" // PgBouncer, pool_mode = transaction (opt-in)
	// Variant binaries (--ddlguard-bin-b, --ddlguard-bin-c), measured
	// interleaved with the others to compare changes to the relay.
	targetDDLGuardB = "ddlguard-b"
	targetDDLGuardC = "ddlguard-c"
)

var knownTargets = []string{targetDirect, targetDDLGuard, targetPgBouncer, targetPgBouncerTx, targetDDLGuardB, targetDDLGuardC}

// benchUser is the role every path connects as. Its pg_hba method is trust,
// so no password exchange differs between paths (PgBouncer's auth_type is
// trust as well); pgbench connects once per client before measuring.
const benchUser = "app_trust"

// service is a process started by the benchmark (ddlguard or PgBouncer).
type service struct {
	name string
	addr endpoint
	cmd  *exec.Cmd
	log  string // file holding the process's stdout and stderr
	exit chan error
}

// pid is the process id whose CPU time the benchmark reads.
func (s *service) pid() int { return s.cmd.Process.Pid }

// startService starts cmd with its output in logPath and waits until addr
// accepts TCP connections. The child runs in its own process group (a
// terminal's Ctrl-C reaches only the benchmark, which stops it in order)
// and gets SIGTERM should the benchmark die first.
func startService(name string, cmd *exec.Cmd, addr endpoint, logPath string) (*service, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own copy
	cmd.Stdout, cmd.Stderr = logf, logf
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGTERM
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	s := &service{name: name, addr: addr, cmd: cmd, log: logPath, exit: make(chan error, 1)}
	go func() { s.exit <- cmd.Wait() }()

	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr.String(), time.Second)
		if err == nil {
			c.Close()
			return s, nil
		}
		select {
		case werr := <-s.exit:
			s.exit <- werr
			return nil, fmt.Errorf("%s exited during startup (%v):\n%s", name, werr, tailFile(logPath, 20))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("%s does not accept connections on %s after 30s:\n%s", name, addr, tailFile(logPath, 20))
		}
	}
}

// stop ends the process: SIGTERM, then SIGKILL after 10 s. An exit caused
// by the signal is not an error.
func (s *service) stop() error {
	select {
	case err := <-s.exit:
		s.exit <- err
		return fmt.Errorf("%s had exited before the end (%v):\n%s", s.name, err, tailFile(s.log, 20))
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exit:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.exit
	}
	return nil
}

// alive reports an error when the process has exited.
func (s *service) alive() error {
	select {
	case err := <-s.exit:
		s.exit <- err
		return fmt.Errorf("%s exited (%v):\n%s", s.name, err, tailFile(s.log, 20))
	default:
		return nil
	}
}

func (e endpoint) String() string { return net.JoinHostPort(e.host, strconv.Itoa(e.port)) }

// freeEndpoint asks the kernel for an unused port on 127.0.0.1. Another
// process could take it before the service binds it; startService then
// reports the service's own error.
func freeEndpoint() (endpoint, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return endpoint{}, err
	}
	defer l.Close()
	return endpoint{host: "127.0.0.1", port: l.Addr().(*net.TCPAddr).Port}, nil
}

// repoRoot finds the ddlguard checkout the command runs in (make and
// `go run` start in it), by walking up to the directory with go.mod and
// scripts/build.sh.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if fileExists(filepath.Join(dir, "go.mod")) && fileExists(filepath.Join(dir, "scripts", "build.sh")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the ddlguard repository (no go.mod with scripts/build.sh above the working directory); pass --ddlguard-bin")
		}
		dir = parent
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// buildDDLGuard builds the binary into dir with scripts/build.sh, the same
// flags as `make build` and the image.
func buildDDLGuard(ctx context.Context, dir string) (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "ddlguard")
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "scripts", "build.sh"), out)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("scripts/build.sh: %w\n%s", err, tail(string(b), 20))
	}
	return out, nil
}

// startDDLGuardBinary runs `ddlguard serve` with nothing but addresses on
// the command line: the zero-configuration production setup (every rule
// enforced, metrics observer on, admin listener on, info logs). DDLGUARD_*
// variables are removed from its environment so that the caller's cannot
// change that; startDDLGuardBinaryAs adds back the settings it is given.
func startDDLGuardBinary(bin, dir, upstream string) (*service, error) {
	return startDDLGuardBinaryAs(targetDDLGuard, bin, dir, upstream)
}

func startDDLGuardBinaryAs(name, bin, dir, upstream string, settings ...string) (*service, error) {
	addr, err := freeEndpoint()
	if err != nil {
		return nil, err
	}
	admin, err := freeEndpoint()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve", "--listen", addr.String(), "--upstream", upstream, "--admin-listen", admin.String())
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DDLGUARD_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, settings...)
	return startService(name, cmd, addr, filepath.Join(dir, name+".log"))
}

// settingsList parses a comma-separated list of DDLGUARD_*=VALUE settings.
func settingsList(list string) ([]string, error) {
	var out []string
	for _, kv := range splitList(list) {
		key, _, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(key, "DDLGUARD_") || key == "DDLGUARD_" {
			return nil, fmt.Errorf("%q is not DDLGUARD_NAME=VALUE", kv)
		}
		out = append(out, kv)
	}
	return out, nil
}

// binaryVersion returns what `ddlguard version` prints after the name.
func binaryVersion(bin string) string {
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), "ddlguard"))
}

// pgBouncerVersion returns e.g. "1.18.0".
func pgBouncerVersion(bin string) (string, error) {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", bin, err)
	}
	first, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(strings.TrimPrefix(first, "PgBouncer")), nil
}

// findPgBouncer returns the pgbouncer program (Debian installs it in
// /usr/sbin, which a non-root PATH may lack).
func findPgBouncer() (string, error) {
	if p, err := exec.LookPath("pgbouncer"); err == nil {
		return p, nil
	}
	if fileExists("/usr/sbin/pgbouncer") {
		return "/usr/sbin/pgbouncer", nil
	}
	return "", errors.New("pgbouncer not found (run scripts/install-deps.sh or make deps)")
}

// startPgBouncer runs PgBouncer in front of upstream with poolMode. The
// pool holds poolSize server connections, enough for every client of the
// largest cell, so no client waits for a server connection. Authentication
// is trust (benchUser must be listed in the auth_file even so). PgBouncer
// refuses to run as root: then it runs as the postgres OS user, as the
// cluster does. In transaction mode, PgBouncer 1.21 and later keep
// protocol-level prepared statements (max_prepared_statements); older ones
// cannot run pgbench -M prepared in that mode, and the caller skips it.
func startPgBouncer(bin, dir, name, poolMode string, upstream endpoint, database string, poolSize int, preparedStatements bool) (*service, error) {
	addr, err := freeEndpoint()
	if err != nil {
		return nil, err
	}
	authFile := filepath.Join(dir, name+".users")
	if err := os.WriteFile(authFile, []byte(fmt.Sprintf("%q %q\n", benchUser, "")), 0o644); err != nil {
		return nil, err
	}
	conf := []string{
		"[databases]",
		fmt.Sprintf("%s = host=%s port=%d dbname=%s", database, upstream.host, upstream.port, database),
		"",
		"[pgbouncer]",
		"listen_addr = " + addr.host,
		"listen_port = " + strconv.Itoa(addr.port),
		"unix_socket_dir =",
		"auth_type = trust",
		"auth_file = " + authFile,
		"pool_mode = " + poolMode,
		"max_client_conn = " + strconv.Itoa(2*poolSize+10),
		"default_pool_size = " + strconv.Itoa(poolSize),
		"max_db_connections = 0",
		"server_tls_sslmode = disable",
		"ignore_startup_parameters = extra_float_digits",
	}
	if preparedStatements {
		conf = append(conf, "max_prepared_statements = 200")
	}
	ini := filepath.Join(dir, name+".ini")
	if err := os.WriteFile(ini, []byte(strings.Join(conf, "\n")+"\n"), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, ini)
	if os.Geteuid() == 0 {
		cred, err := postgresCredential()
		if err != nil {
			return nil, err
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	return startService(name, cmd, addr, filepath.Join(dir, name+".log"))
}

// postgresCredential is the postgres OS user, for PgBouncer under root.
func postgresCredential() (*syscall.Credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("PgBouncer refuses to run as root and there is no postgres OS user to run it as: %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, err
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

// inProcessDDLGuard is ddlguard running inside this process, wired as
// `ddlguard serve` wires it with no configuration (default guard, the
// metrics observer on its own registry, info logs to a file), so that a CPU
// profile of this process is a profile of the proxy.
type inProcessDDLGuard struct {
	srv     *proxy.Server
	addr    endpoint
	logFile *os.File
	done    chan error
}

func startInProcessDDLGuard(dir, upstream string) (*inProcessDDLGuard, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	logFile, err := os.Create(filepath.Join(dir, "ddlguard-inprocess.log"))
	if err != nil {
		ln.Close()
		return nil, err
	}
	g, err := guard.New(guard.DefaultConfig())
	if err == nil {
		reg := prometheus.NewRegistry()
		var srv *proxy.Server
		srv, err = proxy.New(proxy.Config{
			Listen:   ln.Addr().String(),
			Upstream: upstream,
			Logger:   slog.New(slog.NewTextHandler(logFile, &slog.HandlerOptions{Level: slog.LevelInfo})),
			Guard:    g,
			Observer: metrics.NewProxy(reg, "bench", metrics.NewRecent(50)),
		})
		if err == nil {
			p := &inProcessDDLGuard{srv: srv, logFile: logFile, done: make(chan error, 1),
				addr: endpoint{host: "127.0.0.1", port: ln.Addr().(*net.TCPAddr).Port}}
			go func() { p.done <- srv.Serve(ln) }()
			return p, nil
		}
	}
	ln.Close()
	logFile.Close()
	return nil, err
}

func (p *inProcessDDLGuard) stop() error {
	p.srv.Close()
	err := <-p.done
	p.logFile.Close()
	if err != nil && !errors.Is(err, proxy.ErrServerClosed) {
		return err
	}
	return nil
}

// cpuClock reads CPU time from /proc.
type cpuClock struct{ ticksPerSecond float64 }

// newCPUClock asks getconf for the kernel's clock tick (USER_HZ), 100 on
// every common Linux build, which is also the fallback.
func newCPUClock() cpuClock {
	c := cpuClock{ticksPerSecond: 100}
	if out, err := exec.Command("getconf", "CLK_TCK").Output(); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && n > 0 {
			c.ticksPerSecond = float64(n)
		}
	}
	return c
}

// process returns the user+system CPU seconds of process pid, all its
// threads included (fields 14 and 15 of /proc/PID/stat).
func (c cpuClock) process(pid int) (float64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields resume after ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	utime, err1 := strconv.ParseFloat(f[11], 64)
	stime, err2 := strconv.ParseFloat(f[12], 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return (utime + stime) / c.ticksPerSecond, nil
}

// machine returns the busy and total CPU time of all CPUs so far, in
// ticks, from the first line of /proc/stat (idle and iowait are not busy).
func (c cpuClock) machine() (busy, total float64, err error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	buf := make([]byte, 512)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(buf[:n]), "\n")
	fields := strings.Fields(line)
	if len(fields) < 6 || fields[0] != "cpu" {
		return 0, 0, errors.New("/proc/stat: unexpected format")
	}
	for i, s := range fields[1:] {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %w", err)
		}
		if i >= 7 { // guest and guest_nice are already in user and nice
			break
		}
		total += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, total, nil
}

// tailFile returns the last n lines of a file, or a note why it cannot.
func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	return tail(string(b), n)
}
