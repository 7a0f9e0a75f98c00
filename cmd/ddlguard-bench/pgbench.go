package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// pgbenchRun is one pgbench invocation against one endpoint.
type pgbenchRun struct {
	bin      string // pgbench program
	addr     endpoint
	user     string
	database string
	mode     string // simple, extended, prepared (-M)
	clients  int    // -c
	jobs     int    // -j
	duration time.Duration
}

// endpoint is where a client connects.
type endpoint struct {
	host string
	port int
}

// pgbenchResult is what one pgbench run printed, plus its own CPU time.
type pgbenchResult struct {
	Transactions int64   `json:"transactions"`
	Failed       int64   `json:"failed"`
	TPS          float64 `json:"tps"`
	LatencyMs    float64 `json:"latency_ms"`
	// PgbenchCPUSec is pgbench's own user+system time (its threads).
	PgbenchCPUSec float64 `json:"pgbench_cpu_s"`
}

// args is the pgbench command line of a select-only run: -n (no vacuum
// before the run; the tables are vacuumed once after init), -S, and the
// run's mode, clients, jobs and duration in whole seconds.
func (r pgbenchRun) args() []string {
	return []string{
		"-n", "-S",
		"-M", r.mode,
		"-c", strconv.Itoa(r.clients),
		"-j", strconv.Itoa(r.jobs),
		"-T", strconv.Itoa(int(r.duration / time.Second)),
		"-h", r.addr.host, "-p", strconv.Itoa(r.addr.port),
		"-U", r.user,
		r.database,
	}
}

// pgbenchEnv is the environment of every pgbench and psql the benchmark
// runs: plaintext (no SSLRequest round trip; every path is plaintext
// anyway) and no leftover libpq settings from the caller.
func pgbenchEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "PGSSLMODE=disable", "PGCONNECT_TIMEOUT=10", "LC_ALL=C")
}

// run runs pgbench and parses its report. Any sign of trouble is an error
// carrying pgbench's output: a non-zero exit, a failed or aborted
// transaction, an error message, a report that does not parse.
func (r pgbenchRun) run(ctx context.Context) (pgbenchResult, error) {
	// pgbench -T stops by itself; the margin covers connection setup.
	ctx, cancel := context.WithTimeout(ctx, r.duration+time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, r.bin, r.args()...)
	cmd.Env = pgbenchEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res, perr := parsePgbench(stdout.String(), stderr.String())
	if cmd.ProcessState != nil {
		res.PgbenchCPUSec = (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	}
	switch {
	case err != nil:
		return res, fmt.Errorf("pgbench %s: %w\n%s", strings.Join(r.args(), " "), err, tail(stdout.String()+stderr.String(), 20))
	case perr != nil:
		return res, fmt.Errorf("pgbench %s: %w\n%s", strings.Join(r.args(), " "), perr, tail(stdout.String()+stderr.String(), 20))
	}
	return res, nil
}

var (
	reProcessed = regexp.MustCompile(`(?m)^number of transactions actually processed: (\d+)`)
	reFailed    = regexp.MustCompile(`(?m)^number of failed transactions: (\d+)`)
	reLatency   = regexp.MustCompile(`(?m)^latency average = ([0-9.]+) ms`)
	reTPS       = regexp.MustCompile(`(?m)^tps = ([0-9.]+) \(without initial connection time\)`)
	// pgbench reports client errors on stderr as "client N ... aborted"
	// or "... ERROR: ..." lines; the progress lines of -i are not run here.
	reTrouble = regexp.MustCompile(`(?mi)^.*(aborted|error|fatal|failed).*$`)
)

// parsePgbench reads the summary pgbench (PostgreSQL 15 and later) prints
// and refuses a run with failed transactions or error output.
func parsePgbench(stdout, stderr string) (pgbenchResult, error) {
	var res pgbenchResult
	if m := reTrouble.FindString(stderr); m != "" {
		return res, fmt.Errorf("pgbench reported a problem: %s", strings.TrimSpace(m))
	}
	m := reProcessed.FindStringSubmatch(stdout)
	if m == nil {
		return res, errors.New("no \"number of transactions actually processed\" in the pgbench report")
	}
	res.Transactions, _ = strconv.ParseInt(m[1], 10, 64)
	if m := reFailed.FindStringSubmatch(stdout); m != nil {
		res.Failed, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m = reLatency.FindStringSubmatch(stdout); m == nil {
		return res, errors.New("no \"latency average\" in the pgbench report")
	}
	res.LatencyMs, _ = strconv.ParseFloat(m[1], 64)
	if m = reTPS.FindStringSubmatch(stdout); m == nil {
		return res, errors.New("no \"tps = ... (without initial connection time)\" in the pgbench report")
	}
	res.TPS, _ = strconv.ParseFloat(m[1], 64)
	switch {
	case res.Failed > 0:
		return res, fmt.Errorf("%d failed transactions", res.Failed)
	case res.Transactions == 0:
		return res, errors.New("no transaction completed")
	}
	return res, nil
}

// pgbenchInit creates the pgbench tables at scale through addr (-i, with
// the default steps, which end with VACUUM and primary keys).
func pgbenchInit(ctx context.Context, bin string, addr endpoint, user, database string, scale int) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	args := []string{"-i", "-q", "-s", strconv.Itoa(scale),
		"-h", addr.host, "-p", strconv.Itoa(addr.port), "-U", user, database}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = pgbenchEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("pgbench %s: %w\n%s", strings.Join(args, " "), err, tail(string(out), 20))
	}
	return nil
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
