package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"time"
)

// profileOptions are the flags of `ddlguard-bench profile`.
type profileOptions struct {
	cpuProfile string
	memProfile string
	mode       string
	clients    int
	jobs       int
	duration   time.Duration
	warmup     time.Duration
	scale      int
}

func (o profileOptions) validate() error {
	r := relayOptions{duration: o.duration, warmup: o.warmup, rounds: 1, scale: o.scale, jobs: o.jobs,
		modes: []string{o.mode}, clients: []int{o.clients}, targets: []string{targetDirect}}
	if err := r.validate(); err != nil {
		return err
	}
	if o.cpuProfile == "" && o.memProfile == "" {
		return errors.New("--cpuprofile or --memprofile is required")
	}
	return nil
}

// profileReport is what the profile run measured besides the profiles.
type profileReport struct {
	Mode       string        `json:"mode"`
	Clients    int           `json:"clients"`
	Jobs       int           `json:"jobs"`
	DurationS  int           `json:"duration_s"`
	PostgreSQL string        `json:"postgresql"`
	Result     pgbenchResult `json:"result"`
	// ProcessCPUSec is this process's CPU time during the run: the
	// in-process ddlguard and the profiler.
	ProcessCPUSec float64 `json:"process_cpu_s"`
	CPUProfile    string  `json:"cpuprofile,omitempty"`
	MemProfile    string  `json:"memprofile,omitempty"`
}

// runProfile starts PostgreSQL and an in-process ddlguard (wired as the
// binary wires it with no configuration), warms up, then runs pgbench
// once through it with the CPU profiler on. This process does nothing but
// proxy meanwhile (pgbench is a child process), so the CPU profile is
// ddlguard's. The heap profile, written at the end, holds allocations
// since the process started (go tool pprof -sample_index=alloc_space).
func runProfile(ctx context.Context, opts profileOptions, logw io.Writer) (_ *profileReport, err error) {
	progress := func(format string, args ...any) {
		fmt.Fprintf(logw, "ddlguard-bench: "+format+"\n", args...)
	}
	dir, err := os.MkdirTemp("", "ddlguard-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)

	ropts := relayOptions{scale: opts.scale, clients: []int{opts.clients}, targets: []string{targetDirect}, jobs: opts.jobs}
	env, err := startBenchEnv(ctx, ropts, dir, "", "", "", progress)
	if env != nil {
		defer func() {
			if stopErr := env.cluster.Stop(); stopErr != nil {
				err = errors.Join(err, fmt.Errorf("stopping PostgreSQL: %w", stopErr))
			}
		}()
	}
	if err != nil {
		return nil, err
	}
	progress("starting ddlguard in this process")
	g, err := startInProcessDDLGuard(dir, env.cluster.Addr())
	if err != nil {
		return nil, err
	}
	defer func() {
		if stopErr := g.stop(); stopErr != nil {
			err = errors.Join(err, fmt.Errorf("ddlguard: %w", stopErr))
		}
	}()
	env.addrs[targetDDLGuard] = g.addr

	rep := &profileReport{Mode: opts.mode, Clients: opts.clients, Jobs: ropts.jobsFor(opts.clients),
		DurationS: int(opts.duration / time.Second), PostgreSQL: env.postgresVersion(ctx),
		CPUProfile: opts.cpuProfile, MemProfile: opts.memProfile}
	if opts.warmup > 0 {
		progress("warm-up: %s, %d clients, %s", opts.mode, opts.clients, opts.warmup)
		if _, err := env.pgbenchRun(targetDDLGuard, opts.mode, opts.clients, rep.Jobs, opts.warmup).run(ctx); err != nil {
			return nil, fmt.Errorf("warm-up: %w", err)
		}
	}

	clock := newCPUClock()
	cpu0, err := clock.process(os.Getpid())
	if err != nil {
		return nil, err
	}
	if opts.cpuProfile != "" {
		f, err := os.Create(opts.cpuProfile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
	}
	progress("profiling: pgbench -S -M %s -c %d -j %d -T %d through the in-process ddlguard",
		opts.mode, opts.clients, rep.Jobs, rep.DurationS)
	rep.Result, err = env.pgbenchRun(targetDDLGuard, opts.mode, opts.clients, rep.Jobs, opts.duration).run(ctx)
	if opts.cpuProfile != "" {
		pprof.StopCPUProfile()
	}
	if err != nil {
		return nil, err
	}
	cpu1, err := clock.process(os.Getpid())
	if err != nil {
		return nil, err
	}
	rep.ProcessCPUSec = round3(cpu1 - cpu0)
	if opts.memProfile != "" {
		f, err := os.Create(opts.memProfile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		runtime.GC()
		if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

func printProfile(w io.Writer, rep *profileReport) {
	fmt.Fprintf(w, "profile: pgbench -S -M %s -c %d -j %d -T %d through an in-process ddlguard, PostgreSQL %s\n",
		rep.Mode, rep.Clients, rep.Jobs, rep.DurationS, rep.PostgreSQL)
	fmt.Fprintf(w, "tps %.0f, latency %.3f ms, ddlguard CPU %.2f s (%.1f us per transaction)\n",
		rep.Result.TPS, rep.Result.LatencyMs, rep.ProcessCPUSec, perTx(rep.ProcessCPUSec, rep.Result.Transactions))
	if rep.CPUProfile != "" {
		fmt.Fprintf(w, "cpu profile: %s (go tool pprof -top %s)\n", rep.CPUProfile, rep.CPUProfile)
	}
	if rep.MemProfile != "" {
		fmt.Fprintf(w, "allocation profile: %s (go tool pprof -sample_index=alloc_space -top %s)\n", rep.MemProfile, rep.MemProfile)
	}
}
