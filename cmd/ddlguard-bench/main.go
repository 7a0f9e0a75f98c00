// Command ddlguard-bench runs benchmark scenarios against a throwaway
// PostgreSQL, directly and through an in-process ddlguard, and prints what
// they measure.
//
//	ddlguard-bench seed [--readers N] [--hold 5s] [--rows 400000] [--json]
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
// reader stall through ddlguard to the worst one without it.
//
// Performance is reported, never judged: the exit status is non-zero only
// when the benchmark itself could not run (flags, PostgreSQL, connections,
// an unexpected error or a DDL that did not succeed). The command wires
// pgcluster, proxy and pgx together and holds no proxy or guard logic.
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
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "ddlguard-bench seed: unexpected arguments %q\n", fs.Args())
		return exitUsage
	}
	if err := opts.validate(); err != nil {
		fmt.Fprintln(stderr, "ddlguard-bench seed:", err)
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
