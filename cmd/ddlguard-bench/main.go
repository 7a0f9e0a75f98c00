// Command ddlguard-bench runs benchmark scenarios against a throwaway
// PostgreSQL it starts itself (e2e/pgcluster), and prints what they measure
// as a table or as JSON (--json).
//
//	ddlguard-bench seed [--readers N] [--hold 5s] [--rows 400000] [--json]
//	ddlguard-bench relay [--duration 10s] [--rounds 1] [--modes ...] [--clients ...] [--targets ...] [--json] [--json-file FILE]
//	ddlguard-bench profile --cpuprofile FILE [--memprofile FILE] [--mode simple] [--clients 16] [--duration 10s]
//
// The seed scenario is the lock queue stall that motivates ddlguard: a
// session holds ACCESS SHARE on table t in an idle transaction for --hold,
// an ALTER TABLE t ADD COLUMN arrives 0.5 s later, and N readers query t in
// a tight loop throughout (hold + 2 s). Sent directly, the ALTER queues for
// ACCESS EXCLUSIVE behind the idle transaction and every reader queues
// behind the ALTER until the transaction ends. Sent through ddlguard, the
// ALTER waits outside the lock queue and the readers carry on. For each path
// the command reports the readers' query count and latency (p50, p99, max),
// how long the ALTER took and how it ended, and the ratio of the worst
// reader stall through ddlguard to the worst one without it. ddlguard runs
// in this process.
//
// The relay scenario measures what the relay costs: pgbench select-only
// (-S) in each query mode (simple, extended, prepared) with 1, 16 and 64
// clients, against PostgreSQL directly, through the ddlguard binary (built
// with scripts/build.sh, as `make build` builds it, and run with no
// configuration: the production default, every rule on, metrics on) and
// through PgBouncer (pool_mode session; --targets ...,pgbouncer-txn adds
// transaction pooling), all in one run. Each cell runs its targets back to
// back, in an order that rotates from cell to cell and round to round, so
// drift falls on all of them alike; with --rounds N every figure is the
// median of N runs. The table gives TPS and average latency per target, the
// TPS ratios ddlguard/direct, pgbouncer/direct and ddlguard/pgbouncer, the
// latency each proxy adds per query with one client, and the CPU the proxy
// processes spent per transaction (from /proc/PID/stat). PostgreSQL runs
// with ssl off, so every path is plaintext.
//
// The profile scenario runs ddlguard inside this process, wired as the
// binary wires it with no configuration, and writes a CPU profile (and, with
// --memprofile, an allocation profile) of one pgbench run through it, for
// `go tool pprof -top FILE`.
//
// Exit status: non-zero when the benchmark could not run (flags,
// PostgreSQL, PgBouncer, the build, connections), when a pgbench run
// reports an error or a failed transaction, and in seed when a DDL did not
// succeed. Performance itself is reported, never judged. The command wires
// pgcluster, proxy, metrics, pgx, pgbench and pgbouncer together and holds
// no proxy or guard logic.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

const usageText = `usage: ddlguard-bench <scenario> [flags]

scenarios:
  seed   readers vs. an ALTER TABLE stuck behind an idle transaction,
         directly and through ddlguard:
         ddlguard-bench seed [--readers N] [--hold 5s] [--rows 400000] [--json]
  relay  pgbench -S directly, through the ddlguard binary and through
         PgBouncer, modes x clients, interleaved:
         ddlguard-bench relay [--duration 10s] [--rounds 1] [--json] ...
  profile  CPU (and allocation) profile of an in-process ddlguard under
         pgbench -S:
         ddlguard-bench profile --cpuprofile FILE [--memprofile FILE] ...

"ddlguard-bench SCENARIO -h" lists a scenario's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText)
		return exitUsage
	}
	switch args[0] {
	case "seed":
		return seedCommand(ctx, args[1:], stdout, stderr)
	case "relay":
		return relayCommand(ctx, args[1:], stdout, stderr)
	case "profile":
		return profileCommand(ctx, args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usageText)
		return exitOK
	default:
		fmt.Fprintf(stderr, "ddlguard-bench: unknown scenario %q\n\n%s", args[0], usageText)
		return exitUsage
	}
}

// seedCommand parses the seed flags, runs the scenario and prints the report.
func seedCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ddlguard-bench seed", flag.ContinueOnError)
	fs.SetOutput(stderr)
	opts := seedOptions{}
	fs.IntVar(&opts.readers, "readers", 8, "reader connections querying t in a tight loop")
	fs.DurationVar(&opts.hold, "hold", 5*time.Second, "how long the blocking transaction stays open")
	fs.IntVar(&opts.rows, "rows", 400000, "rows in table t (padded so that t is larger than 10 MiB)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if !parseArgs(fs, args, stderr, func() error { return opts.validate() }) { // a closure: opts as parsed, not as now
		return exitUsage
	}

	rep, err := runSeed(ctx, opts, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "ddlguard-bench seed:", err)
		return exitFailed
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintln(stderr, "ddlguard-bench seed:", err)
			return exitFailed
		}
	} else {
		printSeedTable(stdout, rep)
	}
	code := exitOK
	for _, p := range rep.Paths {
		if p.DDL != ddlOK {
			fmt.Fprintf(stderr, "ddlguard-bench seed: the DDL did not succeed on the %s path: %s\n", p.Path, p.DDLError)
			code = exitFailed
		}
	}
	return code
}

// printSeedTable writes the report as a fixed-width table.
func printSeedTable(w io.Writer, rep *seedReport) {
	fmt.Fprintf(w, "scenario: %s (readers=%d, hold=%s, rows=%d, PostgreSQL %s)\n",
		rep.Scenario, rep.Readers, rep.Hold, rep.Rows, rep.PostgreSQL)
	const row = "%-8s  %8s  %8s  %8s  %9s  %11s  %s\n"
	fmt.Fprintf(w, row, "path", "queries", "p50_ms", "p99_ms", "max_ms", "ddl_wait_ms", "ddl")
	for _, p := range rep.Paths {
		fmt.Fprintf(w, row, p.Path, fmt.Sprint(p.Queries),
			fmt.Sprintf("%.3f", p.P50Ms), fmt.Sprintf("%.3f", p.P99Ms), fmt.Sprintf("%.1f", p.MaxMs),
			fmt.Sprintf("%.1f", p.DDLWaitMs), p.DDL)
	}
	fmt.Fprintf(w, "max reader stall ratio (ddlguard/direct): %.3f\n", rep.MaxStallRatio)
}
