package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// relayCommand parses the relay flags, runs the matrix and prints the
// report. A run that fails part way prints nothing but the error.
func relayCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ddlguard-bench relay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	opts := relayOptions{}
	fs.DurationVar(&opts.duration, "duration", 10*time.Second, "length of each pgbench run (whole seconds)")
	fs.DurationVar(&opts.warmup, "warmup", 3*time.Second, "one warm-up run per target before measuring (0: none)")
	fs.IntVar(&opts.rounds, "rounds", 1, "how many times to run the whole matrix; figures are medians")
	fs.IntVar(&opts.scale, "scale", 10, "pgbench scale factor (-s)")
	fs.IntVar(&opts.jobs, "jobs", 0, "pgbench threads (-j); 0: min(clients, CPUs)")
	modes := fs.String("modes", "simple,extended,prepared", "pgbench query modes (-M), comma-separated")
	clients := fs.String("clients", "1,16,64", "pgbench client counts (-c), comma-separated")
	targets := fs.String("targets", "direct,ddlguard,pgbouncer", "paths to measure, comma-separated, direct first: direct, ddlguard, pgbouncer, pgbouncer-txn")
	fs.StringVar(&opts.ddlguardBin, "ddlguard-bin", "", "ddlguard binary to run (default: build one with scripts/build.sh into a temp dir)")
	binB := fs.String("ddlguard-bin-b", "", "variant ddlguard binary for target ddlguard-b")
	binC := fs.String("ddlguard-bin-c", "", "variant ddlguard binary for target ddlguard-c")
	envB := fs.String("ddlguard-env-b", "", "settings for target ddlguard-b, comma-separated DDLGUARD_*=VALUE (e.g. DDLGUARD_EVENT_LOOP_SPIN=200us); its binary defaults to --ddlguard-bin's")
	envC := fs.String("ddlguard-env-c", "", "settings for target ddlguard-c, as --ddlguard-env-b")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	jsonFile := fs.String("json-file", "", "also write the report as JSON to this file")
	if !parseArgs(fs, args, stderr, nil) {
		return exitUsage
	}
	opts.modes = splitList(*modes)
	opts.variantBins = map[string]string{targetDDLGuardB: *binB, targetDDLGuardC: *binC}
	opts.variantEnv = map[string][]string{}
	for t, list := range map[string]string{targetDDLGuardB: *envB, targetDDLGuardC: *envC} {
		env, err := settingsList(list)
		if err != nil {
			fmt.Fprintf(stderr, "ddlguard-bench relay: --ddlguard-env-%s: %v\n", strings.TrimPrefix(t, "ddlguard-"), err)
			return exitUsage
		}
		opts.variantEnv[t] = env
	}
	opts.targets = splitList(*targets)
	var err error
	if opts.clients, err = splitInts(*clients); err != nil {
		fmt.Fprintln(stderr, "ddlguard-bench relay: --clients:", err)
		return exitUsage
	}
	if err := opts.validate(); err != nil {
		fmt.Fprintln(stderr, "ddlguard-bench relay:", err)
		return exitUsage
	}

	rep, err := runRelay(ctx, opts, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "ddlguard-bench relay:", err)
		return exitFailed
	}
	if err := printReport(stdout, rep, *asJSON, func(w io.Writer) { printRelayTable(w, rep) }); err != nil {
		fmt.Fprintln(stderr, "ddlguard-bench relay:", err)
		return exitFailed
	}
	if *jsonFile != "" {
		var b bytes.Buffer
		if err := printReport(&b, rep, true, nil); err == nil {
			err = os.WriteFile(*jsonFile, b.Bytes(), 0o644)
		}
		if err != nil {
			fmt.Fprintln(stderr, "ddlguard-bench relay: --json-file:", err)
			return exitFailed
		}
	}
	return exitOK
}

// profileCommand parses the profile flags, runs pgbench once through an
// in-process ddlguard under the profiler and prints what it measured.
func profileCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ddlguard-bench profile", flag.ContinueOnError)
	fs.SetOutput(stderr)
	opts := profileOptions{}
	fs.StringVar(&opts.cpuProfile, "cpuprofile", "", "write a CPU profile of the measured run to this file")
	fs.StringVar(&opts.memProfile, "memprofile", "", "write an allocation profile (since start) to this file at the end")
	fs.StringVar(&opts.mode, "mode", "simple", "pgbench query mode (-M): simple, extended, prepared")
	fs.IntVar(&opts.clients, "clients", 16, "pgbench clients (-c)")
	fs.IntVar(&opts.jobs, "jobs", 0, "pgbench threads (-j); 0: min(clients, CPUs)")
	fs.DurationVar(&opts.duration, "duration", 10*time.Second, "length of the profiled pgbench run (whole seconds)")
	fs.DurationVar(&opts.warmup, "warmup", 3*time.Second, "unprofiled warm-up run first (0: none)")
	fs.IntVar(&opts.scale, "scale", 10, "pgbench scale factor (-s)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if !parseArgs(fs, args, stderr, func() error { return opts.validate() }) { // a closure: opts as parsed, not as now
		return exitUsage
	}
	rep, err := runProfile(ctx, opts, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "ddlguard-bench profile:", err)
		return exitFailed
	}
	if err := printReport(stdout, rep, *asJSON, func(w io.Writer) { printProfile(w, rep) }); err != nil {
		fmt.Fprintln(stderr, "ddlguard-bench profile:", err)
		return exitFailed
	}
	return exitOK
}

// printReport writes rep as indented JSON or with table.
func printReport(w io.Writer, rep any, asJSON bool, table func(io.Writer)) error {
	if !asJSON {
		table(w)
		return nil
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func splitInts(s string) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not a number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// parseArgs parses a command's flags and, when validate is not nil,
// checks the options; it reports false (having said why on stderr) for a
// bad flag, an argument left over or options validate refuses.
func parseArgs(fs *flag.FlagSet, args []string, stderr io.Writer, validate func() error) bool {
	if err := fs.Parse(args); err != nil {
		return false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected arguments %q\n", fs.Name(), fs.Args())
		return false
	}
	if validate != nil {
		if err := validate(); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", fs.Name(), err)
			return false
		}
	}
	return true
}
