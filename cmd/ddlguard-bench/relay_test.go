package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"
)

const pgbenchReport = `pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: <builtin: select only>
scaling factor: 10
query mode: simple
number of clients: 1
number of threads: 1
maximum number of tries: 1
duration: 3 s
number of transactions actually processed: 26683
number of failed transactions: 0 (0.000%)
latency average = 0.112 ms
initial connection time = 2.345 ms
tps = 8894.123456 (without initial connection time)
`

func TestParsePgbench(t *testing.T) {
	res, err := parsePgbench(pgbenchReport, "")
	if err != nil {
		t.Fatal(err)
	}
	if res.Transactions != 26683 || res.Failed != 0 || res.LatencyMs != 0.112 || res.TPS != 8894.123456 {
		t.Fatalf("parsed %+v", res)
	}
}

func TestParsePgbenchRefusesTrouble(t *testing.T) {
	for name, tc := range map[string][2]string{
		"failed transactions": {strings.Replace(pgbenchReport, "failed transactions: 0 (0.000%)", "failed transactions: 3 (0.011%)", 1), ""},
		"client aborted":      {pgbenchReport, "pgbench: error: client 0 aborted in command 1 (SQL) of script 0; ERROR:  relation \"pgbench_accounts\" does not exist\n"},
		"no tps":              {strings.Replace(pgbenchReport, "tps = ", "tps: ", 1), ""},
		"no transactions":     {strings.Replace(pgbenchReport, "processed: 26683", "processed: 0", 1), ""},
		"empty":               {"", ""},
	} {
		if _, err := parsePgbench(tc[0], tc[1]); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestPgbenchArgs(t *testing.T) {
	r := pgbenchRun{bin: "pgbench", addr: endpoint{"127.0.0.1", 5432}, user: "u", database: "d",
		mode: "prepared", clients: 16, jobs: 2, duration: 10 * time.Second}
	got := strings.Join(r.args(), " ")
	want := "-n -S -M prepared -c 16 -j 2 -T 10 -h 127.0.0.1 -p 5432 -U u d"
	if got != want {
		t.Fatalf("args %q, want %q", got, want)
	}
}

func TestRelayOptionsValidate(t *testing.T) {
	ok := relayOptions{duration: 10 * time.Second, warmup: 3 * time.Second, rounds: 1, scale: 10,
		modes: pgbenchModes, clients: []int{1, 16, 64}, targets: []string{"direct", "ddlguard", "pgbouncer"}}
	if err := ok.validate(); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*relayOptions){
		"fractional duration": func(o *relayOptions) { o.duration = 1500 * time.Millisecond },
		"no rounds":           func(o *relayOptions) { o.rounds = 0 },
		"bad mode":            func(o *relayOptions) { o.modes = []string{"simple", "copy"} },
		"direct not first":    func(o *relayOptions) { o.targets = []string{"ddlguard", "direct"} },
		"unknown target":      func(o *relayOptions) { o.targets = []string{"direct", "odyssey"} },
		"twice":               func(o *relayOptions) { o.targets = []string{"direct", "ddlguard", "ddlguard"} },
		"zero clients":        func(o *relayOptions) { o.clients = []int{0} },
	} {
		o := ok
		mutate(&o)
		if err := o.validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if j := ok.jobsFor(1); j != 1 {
		t.Errorf("jobsFor(1) = %d", j)
	}
	ok.jobs = 4
	if j := ok.jobsFor(2); j != 2 {
		t.Errorf("jobsFor(2) with --jobs 4 = %d, want 2 (never more threads than clients)", j)
	}
}

func TestSummarizeAndTable(t *testing.T) {
	run := func(tps, lat, proxyCPU float64, tx int64) targetRun {
		return targetRun{pgbenchResult: pgbenchResult{TPS: tps, LatencyMs: lat, Transactions: tx, PgbenchCPUSec: 1},
			ProxyCPUSec: proxyCPU, WallSec: 10, MachineBusy: 0.5}
	}
	c := &cell{Mode: "simple", Clients: 1, Jobs: 1, Targets: map[string]*targetResult{
		"direct":    {Runs: []targetRun{run(9000, 0.110, 0, 90000), run(8000, 0.125, 0, 80000), run(10000, 0.100, 0, 100000)}},
		"ddlguard":  {Runs: []targetRun{run(5000, 0.200, 4, 50000)}},
		"pgbouncer": {Runs: []targetRun{run(6000, 0.170, 2, 60000), run(7000, 0.140, 2, 70000)}},
	}}
	c.summarize()
	if d := c.Targets["direct"]; d.TPS != 9000 || d.LatencyMs != 0.110 {
		t.Errorf("direct medians %+v", d)
	}
	if p := c.Targets["pgbouncer"]; p.TPS != 6500 || p.LatencyMs != 0.155 {
		t.Errorf("pgbouncer medians (even count: mean of the middle two) %+v", p)
	}
	if g := c.Targets["ddlguard"]; g.ProxyCPUUsPerTx != 80 || g.ProxyCores != 0.4 {
		t.Errorf("ddlguard CPU %+v", g)
	}
	if r := c.Ratios["ddlguard/direct"]; r != 0.556 {
		t.Errorf("ddlguard/direct %v", r)
	}
	if r := c.Ratios["ddlguard/pgbouncer"]; r != 0.769 {
		t.Errorf("ddlguard/pgbouncer %v", r)
	}
	if a := c.AddedLatencyUs["ddlguard"]; a != 90 {
		t.Errorf("added latency %v, want 90 us", a)
	}

	rep := &relayReport{Workload: "pgbench -S (select only)", Scale: 10, DurationS: 10, Rounds: 3, CPUs: 2,
		PostgreSQL: "15.18", Targets: []string{"direct", "ddlguard", "pgbouncer"}, Cells: []*cell{c}}
	var out bytes.Buffer
	printRelayTable(&out, rep)
	lines := strings.Split(out.String(), "\n")
	wantHead := "mode    clients  jobs  tps_direct  tps_ddlguard  tps_pgbouncer  lat_ms_direct  lat_ms_ddlguard  lat_ms_pgbouncer  ddlguard/direct  pgbouncer/direct  ddlguard/pgbouncer  added_us_ddlguard  added_us_pgbouncer"
	if lines[1] != wantHead {
		t.Fatalf("header\n%q\nwant\n%q", lines[1], wantHead)
	}
	if fields := strings.Fields(lines[2]); strings.Join(fields, " ") != "simple 1 1 9000 5000 6500 0.110 0.200 0.155 0.556 0.722 0.769 90.0 45.0" {
		t.Fatalf("row %q", lines[2])
	}
}

func TestVersionAtLeast(t *testing.T) {
	for v, want := range map[string]bool{"1.18.0": false, "1.21.0": true, "1.24.1": true, "2.0": true, "x": false} {
		if versionAtLeast(v, 1, 21) != want {
			t.Errorf("versionAtLeast(%q, 1, 21) != %v", v, want)
		}
	}
}

func TestProcessCPU(t *testing.T) {
	clock := newCPUClock()
	busy, total, err := clock.machine()
	if err != nil || busy <= 0 || total < busy {
		t.Fatalf("machine: busy %v total %v err %v", busy, total, err)
	}
	if sec, err := clock.process(os.Getpid()); err != nil || sec < 0 {
		t.Fatalf("own CPU time: %v, %v", sec, err)
	}
	if _, err := clock.process(1 << 30); err == nil {
		t.Fatal("no error for a process that does not exist")
	}
}
