package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ddlguard/ddlguard/e2e/pgcluster"
)

// relayOptions are the flags of `ddlguard-bench relay`.
type relayOptions struct {
	duration    time.Duration
	warmup      time.Duration
	rounds      int
	scale       int
	jobs        int // 0: min(clients, CPUs)
	modes       []string
	clients     []int
	targets     []string
	ddlguardBin string              // "" = build with scripts/build.sh
	variantBins map[string]string   // ddlguard-b, ddlguard-c -> binary ("": the ddlguard target's)
	variantEnv  map[string][]string // ddlguard-b, ddlguard-c -> DDLGUARD_*=VALUE settings
}

var pgbenchModes = []string{"simple", "extended", "prepared"}

func (o relayOptions) validate() error {
	switch {
	case o.duration < time.Second || o.duration%time.Second != 0:
		return fmt.Errorf("--duration must be whole seconds, at least 1s (pgbench -T; got %s)", o.duration)
	case o.warmup < 0 || o.warmup%time.Second != 0:
		return fmt.Errorf("--warmup must be whole seconds or 0 (got %s)", o.warmup)
	case o.rounds < 1:
		return fmt.Errorf("--rounds must be at least 1 (got %d)", o.rounds)
	case o.scale < 1:
		return fmt.Errorf("--scale must be at least 1 (got %d)", o.scale)
	case o.jobs < 0:
		return fmt.Errorf("--jobs must be 0 (automatic) or more (got %d)", o.jobs)
	case len(o.modes) == 0 || len(o.clients) == 0:
		return errors.New("--modes and --clients must not be empty")
	case len(o.targets) == 0 || o.targets[0] != targetDirect:
		return fmt.Errorf("--targets must start with %s, the baseline of every ratio", targetDirect)
	}
	for _, m := range o.modes {
		if !slices.Contains(pgbenchModes, m) {
			return fmt.Errorf("--modes: %q is not one of %s", m, strings.Join(pgbenchModes, ", "))
		}
	}
	for _, c := range o.clients {
		if c < 1 || c > 200 {
			return fmt.Errorf("--clients: %d is outside 1..200", c)
		}
	}
	for i, t := range o.targets {
		if !slices.Contains(knownTargets, t) {
			return fmt.Errorf("--targets: %q is not one of %s", t, strings.Join(knownTargets, ", "))
		}
		if slices.Contains(o.targets[:i], t) {
			return fmt.Errorf("--targets: %q given twice", t)
		}
	}
	return nil
}

// jobsFor is pgbench's thread count (-j) for a cell. Automatic: one thread
// per client up to the number of CPUs. pgbench's threads compete for the
// same CPUs as PostgreSQL and the proxy; more threads than CPUs only adds
// switching, and one thread for many clients can become the bottleneck on
// the direct path (see the report's pgbench CPU figures).
func (o relayOptions) jobsFor(clients int) int {
	if o.jobs > 0 {
		return min(o.jobs, clients)
	}
	return min(clients, runtime.NumCPU())
}

// targetRun is one pgbench run against one target, with the CPU time its
// proxy process (if any) and the whole machine spent meanwhile.
type targetRun struct {
	pgbenchResult
	// ProxyCPUSec is the proxy process's user+system time during the run
	// (0 for direct).
	ProxyCPUSec float64 `json:"proxy_cpu_s"`
	// MachineBusy is the share of all CPUs' time that was busy (0..1).
	MachineBusy float64 `json:"machine_busy"`
	WallSec     float64 `json:"wall_s"`
}

// targetResult is one target in one cell: the median over rounds of each
// figure, and every run.
type targetResult struct {
	TPS       float64 `json:"tps"`
	LatencyMs float64 `json:"latency_ms"`
	// ProxyCPUUsPerTx: proxy CPU microseconds per transaction.
	ProxyCPUUsPerTx float64 `json:"proxy_cpu_us_per_tx,omitempty"`
	// ProxyCores: proxy CPU time / wall time (1.0 = one core busy).
	ProxyCores        float64     `json:"proxy_cores,omitempty"`
	PgbenchCPUUsPerTx float64     `json:"pgbench_cpu_us_per_tx"`
	MachineBusy       float64     `json:"machine_busy"`
	Runs              []targetRun `json:"runs"`
}

// cell is one (mode, clients) pair of the matrix.
type cell struct {
	Mode    string                   `json:"mode"`
	Clients int                      `json:"clients"`
	Jobs    int                      `json:"jobs"`
	Targets map[string]*targetResult `json:"targets"`
	// Ratios of median TPS, e.g. "ddlguard/direct".
	Ratios map[string]float64 `json:"ratios"`
	// AddedLatencyUs: median latency minus direct's, per target, for one
	// client only (select-only: one query per transaction).
	AddedLatencyUs map[string]float64 `json:"added_latency_us,omitempty"`
	// Skipped targets and why (e.g. prepared statements under PgBouncer's
	// transaction pooling before 1.21).
	Skipped map[string]string `json:"skipped,omitempty"`
}

// relayReport is the whole benchmark's output.
type relayReport struct {
	Scenario   string   `json:"scenario"`
	Workload   string   `json:"workload"`
	Scale      int      `json:"scale"`
	DurationS  int      `json:"duration_s"`
	Rounds     int      `json:"rounds"`
	CPUs       int      `json:"cpus"`
	PostgreSQL string   `json:"postgresql"`
	PgBouncer  string   `json:"pgbouncer"`
	DDLGuard   string   `json:"ddlguard"`
	Targets    []string `json:"targets"`
	Started    string   `json:"started"`
	Cells      []*cell  `json:"cells"`
}

// ratioPairs are the TPS ratios reported, when both targets ran.
var ratioPairs = [][2]string{
	{targetDDLGuard, targetDirect},
	{targetPgBouncer, targetDirect},
	{targetDDLGuard, targetPgBouncer},
	{targetPgBouncerTx, targetDirect},
	{targetDDLGuard, targetPgBouncerTx},
	{targetDDLGuardB, targetDirect},
	{targetDDLGuardC, targetDirect},
	{targetDDLGuardB, targetDDLGuard},
	{targetDDLGuardC, targetDDLGuard},
}

// benchEnv is what a relay run starts: PostgreSQL and the proxies.
type benchEnv struct {
	cluster  *pgcluster.Cluster
	pgbench  string
	addrs    map[string]endpoint
	pids     map[string]int // proxy processes, by target
	services []*service
	// pgBouncerPrepared: PgBouncer keeps prepared statements in
	// transaction mode (1.21+).
	pgBouncerPrepared bool
}

// runRelay sets everything up, runs the matrix and tears everything down.
func runRelay(ctx context.Context, opts relayOptions, logw io.Writer) (_ *relayReport, err error) {
	progress := func(format string, args ...any) {
		fmt.Fprintf(logw, "ddlguard-bench: "+format+"\n", args...)
	}
	rep := &relayReport{
		Scenario: "relay", Workload: "pgbench -S (select only)", Scale: opts.scale,
		DurationS: int(opts.duration / time.Second), Rounds: opts.rounds, CPUs: runtime.NumCPU(),
		Targets: opts.targets, Started: time.Now().UTC().Format(time.RFC3339),
	}

	dir, err := os.MkdirTemp("", "ddlguard-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	// PgBouncer may run as the postgres OS user and reads its files here.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}

	var bin string
	if slices.Contains(opts.targets, targetDDLGuard) {
		bin = opts.ddlguardBin
		if bin == "" {
			progress("building ddlguard with scripts/build.sh")
			if bin, err = buildDDLGuard(ctx, dir); err != nil {
				return nil, err
			}
		}
		rep.DDLGuard = binaryVersion(bin)
	}
	var bouncer string
	if slices.Contains(opts.targets, targetPgBouncer) || slices.Contains(opts.targets, targetPgBouncerTx) {
		if bouncer, err = findPgBouncer(); err != nil {
			return nil, err
		}
		if rep.PgBouncer, err = pgBouncerVersion(bouncer); err != nil {
			return nil, err
		}
	}

	env, err := startBenchEnv(ctx, opts, dir, bin, bouncer, rep.PgBouncer, progress)
	if env != nil {
		defer func() {
			for _, s := range slices.Backward(env.services) {
				if stopErr := s.stop(); stopErr != nil {
					err = errors.Join(err, stopErr)
				}
			}
			if stopErr := env.cluster.Stop(); stopErr != nil {
				err = errors.Join(err, fmt.Errorf("stopping PostgreSQL: %w", stopErr))
			}
		}()
	}
	if err != nil {
		return nil, err
	}
	rep.PostgreSQL = env.postgresVersion(ctx)

	clock := newCPUClock()
	maxClients := slices.Max(opts.clients)
	if opts.warmup > 0 {
		for _, t := range opts.targets {
			progress("warm-up %s: simple, %d clients, %s", t, maxClients, opts.warmup)
			run := env.pgbenchRun(t, "simple", maxClients, opts.jobsFor(maxClients), opts.warmup)
			if _, err := run.run(ctx); err != nil {
				return nil, fmt.Errorf("warm-up %s: %w", t, err)
			}
		}
	}

	for _, mode := range opts.modes {
		for _, clients := range opts.clients {
			c := &cell{Mode: mode, Clients: clients, Jobs: opts.jobsFor(clients), Targets: map[string]*targetResult{}}
			for _, t := range opts.targets {
				if t == targetPgBouncerTx && mode == "prepared" && !env.pgBouncerPrepared {
					if c.Skipped == nil {
						c.Skipped = map[string]string{}
					}
					c.Skipped[t] = "PgBouncer " + rep.PgBouncer + " keeps no prepared statements in transaction mode (1.21+ does)"
					continue
				}
				c.Targets[t] = &targetResult{}
			}
			rep.Cells = append(rep.Cells, c)
		}
	}

	// Interleaved: every round runs every cell, and every cell runs its
	// targets back to back, so that drift (other load, thermal, cache)
	// falls on all targets alike. The targets' order rotates from cell to
	// cell and round to round, so that no target always runs first.
	total := opts.rounds * len(rep.Cells) * len(opts.targets)
	n := 0
	for round := range opts.rounds {
		for i, c := range rep.Cells {
			for k := range opts.targets {
				t := opts.targets[(k+i+round)%len(opts.targets)]
				tr := c.Targets[t]
				if tr == nil {
					continue
				}
				n++
				progress("[%d/%d] round %d: %s, %d clients, -j %d, %s", n, total, round+1, c.Mode, c.Clients, c.Jobs, t)
				run, err := env.measure(ctx, clock, t, c.Mode, c.Clients, c.Jobs, opts.duration)
				if err != nil {
					return rep, fmt.Errorf("%s, %s, %d clients: %w", t, c.Mode, c.Clients, err)
				}
				tr.Runs = append(tr.Runs, run)
			}
		}
	}
	for _, c := range rep.Cells {
		c.summarize()
	}
	return rep, nil
}

// startBenchEnv starts PostgreSQL (ssl off: every path is plaintext, and
// ddlguard's default upstream TLS mode, prefer, falls back to plaintext),
// fills the pgbench tables, then starts the proxies the targets need. The
// returned env, when not nil, must be torn down even with an error.
func startBenchEnv(ctx context.Context, opts relayOptions, dir, bin, bouncer, bouncerVersion string, progress func(string, ...any)) (*benchEnv, error) {
	progress("starting a throwaway PostgreSQL")
	cluster, err := pgcluster.Start(pgcluster.Options{ExtraConf: []string{"ssl = off"}})
	if err != nil {
		return nil, err
	}
	env := &benchEnv{cluster: cluster, pgbench: cluster.PgBench(), addrs: map[string]endpoint{}, pids: map[string]int{}}
	env.addrs[targetDirect] = endpoint{host: cluster.Host, port: cluster.Port}

	progress("pgbench -i -s %d", opts.scale)
	if err := pgbenchInit(ctx, env.pgbench, env.addrs[targetDirect], benchUser, pgcluster.AppDatabase, opts.scale); err != nil {
		return env, err
	}

	poolSize := slices.Max(opts.clients) + 4
	for _, t := range opts.targets {
		var s *service
		switch t {
		case targetDirect:
			continue
		case targetDDLGuard:
			progress("starting ddlguard (%s)", bin)
			s, err = startDDLGuardBinary(bin, dir, cluster.Addr())
		case targetDDLGuardB, targetDDLGuardC:
			vbin := cmp.Or(opts.variantBins[t], bin)
			progress("starting %s (%s %s)", t, strings.Join(opts.variantEnv[t], " "), vbin)
			s, err = startDDLGuardBinaryAs(t, vbin, dir, cluster.Addr(), opts.variantEnv[t]...)
		case targetPgBouncer:
			progress("starting PgBouncer %s, pool_mode session", bouncerVersion)
			s, err = startPgBouncer(bouncer, dir, t, "session", env.addrs[targetDirect], pgcluster.AppDatabase, poolSize, false)
		case targetPgBouncerTx:
			env.pgBouncerPrepared = versionAtLeast(bouncerVersion, 1, 21)
			progress("starting PgBouncer %s, pool_mode transaction", bouncerVersion)
			s, err = startPgBouncer(bouncer, dir, t, "transaction", env.addrs[targetDirect], pgcluster.AppDatabase, poolSize, env.pgBouncerPrepared)
		}
		if err != nil {
			return env, err
		}
		env.services = append(env.services, s)
		env.addrs[t], env.pids[t] = s.addr, s.pid()
	}
	return env, nil
}

// postgresVersion returns e.g. "15.14".
func (e *benchEnv) postgresVersion(ctx context.Context) string {
	conn, err := e.cluster.Connect(ctx, benchUser, pgcluster.AppDatabase, "sslmode", "disable")
	if err != nil {
		return strconv.Itoa(e.cluster.Version())
	}
	defer conn.Close(context.Background())
	var v string
	if err := conn.QueryRow(ctx, "SHOW server_version").Scan(&v); err != nil {
		return strconv.Itoa(e.cluster.Version())
	}
	return strings.Fields(v)[0]
}

func (e *benchEnv) pgbenchRun(target, mode string, clients, jobs int, d time.Duration) pgbenchRun {
	return pgbenchRun{bin: e.pgbench, addr: e.addrs[target], user: benchUser, database: pgcluster.AppDatabase,
		mode: mode, clients: clients, jobs: jobs, duration: d}
}

// measure runs pgbench once against target and reads the CPU clocks
// around it.
func (e *benchEnv) measure(ctx context.Context, clock cpuClock, target, mode string, clients, jobs int, d time.Duration) (targetRun, error) {
	var run targetRun
	pid, proxied := e.pids[target]
	var cpu0 float64
	var err error
	if proxied {
		if cpu0, err = clock.process(pid); err != nil {
			return run, err
		}
	}
	busy0, total0, err := clock.machine()
	if err != nil {
		return run, err
	}
	start := time.Now()
	run.pgbenchResult, err = e.pgbenchRun(target, mode, clients, jobs, d).run(ctx)
	run.WallSec = round3(time.Since(start).Seconds())
	if err != nil {
		for _, s := range e.services {
			err = errors.Join(err, s.alive())
		}
		return run, err
	}
	busy1, total1, err := clock.machine()
	if err != nil {
		return run, err
	}
	if total1 > total0 {
		run.MachineBusy = round3((busy1 - busy0) / (total1 - total0))
	}
	if proxied {
		cpu1, err := clock.process(pid)
		if err != nil {
			return run, err
		}
		run.ProxyCPUSec = round3(cpu1 - cpu0)
	}
	return run, nil
}

// summarize computes the medians, ratios and added latencies of a cell.
func (c *cell) summarize() {
	for _, tr := range c.Targets {
		med := func(f func(targetRun) float64) float64 {
			vals := make([]float64, len(tr.Runs))
			for i, r := range tr.Runs {
				vals[i] = f(r)
			}
			return median(vals)
		}
		tr.TPS = round3(med(func(r targetRun) float64 { return r.TPS }))
		tr.LatencyMs = round3(med(func(r targetRun) float64 { return r.LatencyMs }))
		tr.MachineBusy = round3(med(func(r targetRun) float64 { return r.MachineBusy }))
		tr.PgbenchCPUUsPerTx = round3(med(func(r targetRun) float64 { return perTx(r.PgbenchCPUSec, r.Transactions) }))
		tr.ProxyCPUUsPerTx = round3(med(func(r targetRun) float64 { return perTx(r.ProxyCPUSec, r.Transactions) }))
		// pgbench -T runs for the duration after connecting; the wall
		// time also holds connection setup and exit, a few ms.
		tr.ProxyCores = round3(med(func(r targetRun) float64 {
			if r.WallSec == 0 {
				return 0
			}
			return r.ProxyCPUSec / r.WallSec
		}))
	}
	c.Ratios = map[string]float64{}
	for _, p := range ratioPairs {
		a, b := c.Targets[p[0]], c.Targets[p[1]]
		if a != nil && b != nil && b.TPS > 0 {
			c.Ratios[p[0]+"/"+p[1]] = round3(a.TPS / b.TPS)
		}
	}
	if direct := c.Targets[targetDirect]; c.Clients == 1 && direct != nil {
		c.AddedLatencyUs = map[string]float64{}
		for name, tr := range c.Targets {
			if name != targetDirect {
				c.AddedLatencyUs[name] = math.Round((tr.LatencyMs-direct.LatencyMs)*1000*10) / 10
			}
		}
	}
}

// perTx is CPU microseconds per transaction.
func perTx(sec float64, tx int64) float64 {
	if tx == 0 {
		return 0
	}
	return sec * 1e6 / float64(tx)
}

// median of vals (the mean of the middle two for an even count).
func median(vals []float64) float64 {
	if len(vals) == 0 {
		return 0
	}
	s := slices.Clone(vals)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// versionAtLeast compares a dotted version ("1.18.0") with major.minor.
func versionAtLeast(v string, major, minor int) bool {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}

// printRelayTable writes the report as fixed-width tables: throughput and
// latency with ratios, then CPU. Columns exist for the targets that ran;
// "-" marks a figure that does not apply.
func printRelayTable(w io.Writer, rep *relayReport) {
	fmt.Fprintf(w, "relay: %s, scale %d, %ds per run, %d round(s) (medians), %d CPUs, PostgreSQL %s",
		rep.Workload, rep.Scale, rep.DurationS, rep.Rounds, rep.CPUs, rep.PostgreSQL)
	if rep.DDLGuard != "" {
		fmt.Fprintf(w, ", ddlguard %s", rep.DDLGuard)
	}
	if rep.PgBouncer != "" {
		fmt.Fprintf(w, ", PgBouncer %s", rep.PgBouncer)
	}
	fmt.Fprintln(w)

	var others []string // targets other than direct
	for _, t := range rep.Targets {
		if t != targetDirect {
			others = append(others, t)
		}
	}
	var ratios []string
	for _, p := range ratioPairs {
		if slices.Contains(rep.Targets, p[0]) && slices.Contains(rep.Targets, p[1]) {
			ratios = append(ratios, p[0]+"/"+p[1])
		}
	}

	// Throughput, latency, ratios, added latency.
	head := []string{"mode", "clients", "jobs"}
	for _, t := range rep.Targets {
		head = append(head, "tps_"+t)
	}
	for _, t := range rep.Targets {
		head = append(head, "lat_ms_"+t)
	}
	head = append(head, ratios...)
	for _, t := range others {
		head = append(head, "added_us_"+t)
	}
	rows := [][]string{head}
	for _, c := range rep.Cells {
		row := []string{c.Mode, strconv.Itoa(c.Clients), strconv.Itoa(c.Jobs)}
		for _, t := range rep.Targets {
			row = append(row, fig(c.Targets[t], func(r *targetResult) string { return fmt.Sprintf("%.0f", r.TPS) }))
		}
		for _, t := range rep.Targets {
			row = append(row, fig(c.Targets[t], func(r *targetResult) string { return fmt.Sprintf("%.3f", r.LatencyMs) }))
		}
		for _, r := range ratios {
			if v, ok := c.Ratios[r]; ok {
				row = append(row, fmt.Sprintf("%.3f", v))
			} else {
				row = append(row, "-")
			}
		}
		for _, t := range others {
			if v, ok := c.AddedLatencyUs[t]; ok {
				row = append(row, fmt.Sprintf("%.1f", v))
			} else {
				row = append(row, "-")
			}
		}
		rows = append(rows, row)
	}
	writeColumns(w, rows)

	// CPU: the proxies' CPU per transaction and in cores, pgbench's CPU per
	// transaction, and how busy the machine was, per target.
	fmt.Fprintln(w)
	fmt.Fprintln(w, "cpu: proxy process CPU per transaction (us) and in cores (CPU time / wall time); machine busy share of all CPUs; pgbench CPU per transaction (us)")
	head = []string{"mode", "clients"}
	for _, t := range others {
		head = append(head, "cpu_us_tx_"+t, "cores_"+t)
	}
	for _, t := range rep.Targets {
		head = append(head, "busy_"+t)
	}
	for _, t := range rep.Targets {
		head = append(head, "pgbench_us_tx_"+t)
	}
	rows = [][]string{head}
	for _, c := range rep.Cells {
		row := []string{c.Mode, strconv.Itoa(c.Clients)}
		for _, t := range others {
			row = append(row,
				fig(c.Targets[t], func(r *targetResult) string { return fmt.Sprintf("%.1f", r.ProxyCPUUsPerTx) }),
				fig(c.Targets[t], func(r *targetResult) string { return fmt.Sprintf("%.2f", r.ProxyCores) }))
		}
		for _, t := range rep.Targets {
			row = append(row, fig(c.Targets[t], func(r *targetResult) string { return fmt.Sprintf("%.2f", r.MachineBusy) }))
		}
		for _, t := range rep.Targets {
			row = append(row, fig(c.Targets[t], func(r *targetResult) string { return fmt.Sprintf("%.1f", r.PgbenchCPUUsPerTx) }))
		}
		rows = append(rows, row)
	}
	writeColumns(w, rows)

	for _, c := range rep.Cells {
		for t, why := range c.Skipped {
			fmt.Fprintf(w, "skipped: %s, %s, %d clients: %s\n", t, c.Mode, c.Clients, why)
		}
	}
}

// fig formats a figure of r, or "-" when the target did not run.
func fig(r *targetResult, f func(*targetResult) string) string {
	if r == nil {
		return "-"
	}
	return f(r)
}

// writeColumns prints rows with every column right-aligned to its widest
// cell (the first two columns left-aligned), two spaces apart.
func writeColumns(w io.Writer, rows [][]string) {
	width := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, s := range r {
			width[i] = max(width[i], len(s))
		}
	}
	for _, r := range rows {
		var b strings.Builder
		for i, s := range r {
			if i > 0 {
				b.WriteString("  ")
			}
			pad := strings.Repeat(" ", width[i]-len(s))
			if i == 0 {
				b.WriteString(s + pad)
			} else {
				b.WriteString(pad + s)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}
