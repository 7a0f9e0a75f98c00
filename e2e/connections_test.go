package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ddlguard/ddlguard/e2e/pgcluster"
)

// 500 client connections at once through the ddlguard binary, most of them
// idle, 100 of them busy for a few seconds with large results (a 1 MiB
// value, result sets of thousands of rows), a 100 KiB bind parameter,
// prepared statements and multi-statement simple queries. The binary runs
// as its own process so that its resident memory (VmRSS in /proc) is its
// own; its goroutines, heap and connection gauge come from its /metrics.
// The test reports the memory and goroutines per connection, and checks
// that everything returns to the baseline once the clients have gone:
// goroutines, the connection gauge, the server's backends, and the live
// heap. A second, identical wave must not need more memory than the first.
//
// The Go runtime frees memory only at a garbage collection, which runs when
// the heap has grown by GOGC (100%) since the last one; nothing collects
// after the clients have left, because nothing allocates. Left alone, the
// second wave would start with the first one's garbage and a GC goal set
// while 500 connections were open, and peak much higher than the first
// without anything leaking (measured: 100 MiB, then 158, 213, 218 MiB over
// four waves, the live heap after each the same). So after each wave, and
// before the baseline, the test makes the binary collect (mcProcess.collect) until the heap goal a collection
// sets (go_memstats_next_gc_bytes: twice the live heap, plus the stacks) is
// back near the baseline's: what the closed connections left behind is
// gone, and every wave starts from a collected heap.

const (
	mcConns   = 500 // client connections open at once
	mcActive  = 100 // of which busy with queries; the rest stay idle
	mcDialers = 32  // connections opened (and closed) at once
	mcBusyFor = 2 * time.Second
	mcAppName = "many-conns"

	mcBigValue   = 1 << 20   // bytes of the one-value result
	mcSeriesRows = 5000      // rows of the large result set (~600 kB on the wire)
	mcBigParam   = 100 << 10 // bytes of the large bind parameter
	// mcGoroutineSlack is how many goroutines above the baseline count as
	// "back to the baseline" (the admin listener's own, timers).
	mcGoroutineSlack = 5
	// mcMaxPeakPerConn bounds the binary's RSS growth from the baseline to
	// the peak while all connections are open, divided by their number;
	// the measured figures are where it is checked.
	mcMaxPeakPerConn = 320 << 10
	// mcMaxHeapGoalGrowth bounds how much the heap goal after a collection
	// may exceed the baseline's once a wave has closed: 16 MiB of goal is
	// 8 MiB of live heap, 16 KiB per connection of the wave (half of one
	// relay buffer).
	mcMaxHeapGoalGrowth = 16 << 20
	// mcReleaseWithin bounds the time from the start of the closing to the
	// collection that finds the connections' memory released: a few
	// collections. (Before the Terminate grace timer was stopped at the
	// end of a connection, it kept each terminated connection reachable
	// for 5 s: 5.6 to 8.3 s in all.)
	mcReleaseWithin = 3 * time.Second
)

// mcProcess is the ddlguard binary as the test sees it from outside.
type mcProcess struct {
	pid    int
	admin  string
	listen string // its client listener
	http   *http.Client
}

// mcSample is one look at the binary.
type mcSample struct {
	rss        int64   // VmRSS, bytes
	goroutines float64 // go_goroutines
	conns      float64 // ddlguard_client_connections
	heap       float64 // go_memstats_heap_inuse_bytes
	stacks     float64 // go_memstats_stack_inuse_bytes
	nextGC     float64 // go_memstats_next_gc_bytes: the heap size that triggers the next GC
	gcs        uint64  // go_gc_duration_seconds_count: GC cycles so far
}

func (s mcSample) String() string {
	return fmt.Sprintf("RSS %.1f MiB (heap in use %.1f MiB, stacks %.1f MiB, next GC at %.1f MiB, %d GCs), %.0f goroutines, %.0f client connections",
		mib(s.rss), s.heap/(1<<20), s.stacks/(1<<20), s.nextGC/(1<<20), s.gcs, s.goroutines, s.conns)
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// rss reads the process's resident set size from /proc/<pid>/status.
func (p *mcProcess) rss() (int64, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("/proc/%d/status: unexpected %q", p.pid, line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/status: %q: %w", p.pid, line, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("/proc/%d/status has no VmRSS line", p.pid)
}

// sample scrapes /metrics and reads the RSS.
func (p *mcProcess) sample() (mcSample, error) {
	resp, err := p.http.Get("http://" + p.admin + "/metrics")
	if err != nil {
		return mcSample{}, fmt.Errorf("scraping /metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return mcSample{}, fmt.Errorf("/metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return mcSample{}, fmt.Errorf("parsing /metrics: %w", err)
	}
	var s mcSample
	for name, v := range map[string]*float64{
		"go_goroutines":                 &s.goroutines,
		"ddlguard_client_connections":   &s.conns,
		"go_memstats_heap_inuse_bytes":  &s.heap,
		"go_memstats_stack_inuse_bytes": &s.stacks,
		"go_memstats_next_gc_bytes":     &s.nextGC,
	} {
		x, ok := metricValue(fams, name, nil)
		if !ok {
			return mcSample{}, fmt.Errorf("/metrics has no %s", name)
		}
		*v = x
	}
	gc := fams["go_gc_duration_seconds"]
	if gc == nil || len(gc.Metric) != 1 || gc.Metric[0].Summary == nil {
		return mcSample{}, fmt.Errorf("/metrics has no go_gc_duration_seconds summary")
	}
	s.gcs = gc.Metric[0].Summary.GetSampleCount()
	if s.rss, err = p.rss(); err != nil {
		return mcSample{}, err
	}
	return s, nil
}

func (p *mcProcess) mustSample(t *testing.T) mcSample {
	t.Helper()
	s, err := p.sample()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// settle waits until the binary serves no client connection and its
// goroutine count has stopped moving, and returns that state.
func (p *mcProcess) settle(t *testing.T) mcSample {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var prev mcSample
	steady := 0
	for {
		s := p.mustSample(t)
		if s.conns == 0 && s.goroutines == prev.goroutines {
			steady++
		} else {
			steady = 0
		}
		if steady == 3 {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("the binary did not settle within 15s: %v", s)
		}
		prev = s
		time.Sleep(100 * time.Millisecond)
	}
}

// collect makes the binary run a complete garbage collection and returns
// its state right after. There is no endpoint for that, so the test gives
// it garbage to make: connections that close before their startup packet
// (each costs ddlguard a goroutine and its client buffers, and reaches
// neither the server nor the log), until two more GC cycles have ended, so
// that one has started after the call.
func (p *mcProcess) collect(t *testing.T) mcSample {
	t.Helper()
	start := p.mustSample(t)
	deadline := time.Now().Add(20 * time.Second)
	for {
		mcParallel(64, 16, func(int) {
			if c, err := net.DialTimeout("tcp", p.listen, 2*time.Second); err == nil {
				c.Close()
			}
		})
		s := p.mustSample(t)
		if s.gcs >= start.gcs+2 {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("the binary ran %d garbage collections in 20s of short connections, want 2: %v", s.gcs-start.gcs, s)
		}
	}
}

// collectUntil has the binary collect (see collect) until ok holds for its
// state right after a collection, or until within has passed. It returns
// that state, how long it took, and whether ok held.
func (p *mcProcess) collectUntil(t *testing.T, within time.Duration, ok func(mcSample) bool) (mcSample, time.Duration, bool) {
	t.Helper()
	begin := time.Now()
	for {
		s := p.collect(t)
		took := time.Since(begin)
		if ok(s) {
			return s, took, true
		}
		if took > within {
			return s, took, false
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// mcErrors collects errors from many goroutines: how many, and the first few.
type mcErrors struct {
	mu    sync.Mutex
	n     int
	first []string
}

func (e *mcErrors) add(format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.n++
	if len(e.first) < 5 {
		e.first = append(e.first, fmt.Sprintf(format, args...))
	}
}

func (e *mcErrors) String() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return fmt.Sprintf("%d errors, first: %s", e.n, strings.Join(e.first, "; "))
}

func (e *mcErrors) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.n
}

// mcParallel runs fn(0) ... fn(n-1), at most workers at a time.
func mcParallel(n, workers int, fn func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				fn(i)
			}
		}()
	}
	wg.Wait()
}

// mcBusy runs the busy connections' query mix on c until the deadline, and
// at least once through. It adds the queries run and the bytes of the
// values received to the counters.
func mcBusy(c *pgconn.PgConn, until time.Time, queries, received *atomic.Int64) error {
	ctx := context.Background()
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	_, err := c.Prepare(pctx, "mc_count", "SELECT count(*) FROM generate_series(1, $1::int)", nil)
	cancel()
	if err != nil {
		return fmt.Errorf("prepare: %w", err)
	}
	bigParam := []byte(strings.Repeat("p", mcBigParam))
	const kinds = 5
	for k := 0; k < kinds || time.Now().Before(until); k++ {
		qctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		var what string
		var rows [][][]byte
		var err error
		var want func() error
		switch k % kinds {
		case 0: // simple protocol, one 1 MiB value (longer than the relay buffer)
			what = "SELECT repeat('x', 1048576)"
			var rs []*pgconn.Result
			rs, err = c.Exec(qctx, what).ReadAll()
			if err == nil && len(rs) == 1 {
				rows = rs[0].Rows
			}
			want = func() error {
				if len(rows) != 1 || len(rows[0]) != 1 || len(rows[0][0]) != mcBigValue {
					return fmt.Errorf("got %d rows, want one value of %d bytes", len(rows), mcBigValue)
				}
				return nil
			}
		case 1: // extended protocol, many rows (many frames)
			what = "SELECT g, repeat('r', 100) FROM generate_series(1, $1::int) g"
			res := c.ExecParams(qctx, what, [][]byte{[]byte(strconv.Itoa(mcSeriesRows))}, nil, nil, nil).Read()
			rows, err = res.Rows, res.Err
			want = func() error {
				if len(rows) != mcSeriesRows || string(rows[mcSeriesRows-1][0]) != strconv.Itoa(mcSeriesRows) {
					return fmt.Errorf("got %d rows, want %d", len(rows), mcSeriesRows)
				}
				return nil
			}
		case 2: // a prepared (named) statement
			what = "EXECUTE mc_count"
			res := c.ExecPrepared(qctx, "mc_count", [][]byte{[]byte("10000")}, nil, nil).Read()
			rows, err = res.Rows, res.Err
			want = func() error {
				if len(rows) != 1 || string(rows[0][0]) != "10000" {
					return fmt.Errorf("got %q, want 10000", rows)
				}
				return nil
			}
		case 3: // a large bind parameter: a big frame from the client
			what = "SELECT length($1::text)"
			res := c.ExecParams(qctx, what, [][]byte{bigParam}, nil, nil, nil).Read()
			rows, err = res.Rows, res.Err
			want = func() error {
				if len(rows) != 1 || string(rows[0][0]) != strconv.Itoa(mcBigParam) {
					return fmt.Errorf("got %q, want %d", rows, mcBigParam)
				}
				return nil
			}
		case 4: // several statements in one simple query
			what = "SELECT 1; SELECT 'two', now()"
			var rs []*pgconn.Result
			rs, err = c.Exec(qctx, what).ReadAll()
			want = func() error {
				if len(rs) != 2 || len(rs[1].Rows) != 1 || string(rs[1].Rows[0][0]) != "two" {
					return fmt.Errorf("got %d results, want 2", len(rs))
				}
				return nil
			}
			if err == nil && len(rs) == 2 {
				rows = append(rs[0].Rows, rs[1].Rows...)
			}
		}
		cancel()
		if err == nil {
			err = want()
		}
		if err != nil {
			return fmt.Errorf("query %d (%s): %w", k, what, err)
		}
		queries.Add(1)
		for _, r := range rows {
			for _, v := range r {
				received.Add(int64(len(v)))
			}
		}
	}
	return nil
}

// mcWaveResult is what one wave saw of the binary.
type mcWaveResult struct {
	idle      mcSample // all connections open, before the busy phase
	peak      mcSample // the highest RSS while all connections were open
	open      mcSample // all connections open, after the busy phase
	closed    mcSample // all connections closed, goroutines back to the baseline
	collected mcSample // then right after the collection that found their memory released
	held      int64    // the highest RSS of all these samples: what the wave had of the OS

	peakGoroutines                            float64
	dialTook, busyTook, goneTook, releaseTook time.Duration
	queries, received                         int64
}

// mcWave opens mcConns connections through the binary, keeps mcActive of
// them busy for mcBusyFor, closes them all, waits until the binary and the
// server are back to base, and has the binary collect its garbage.
func mcWave(t *testing.T, p *mcProcess, dsn string, wave int, base mcSample) mcWaveResult {
	t.Helper()
	var r mcWaveResult
	conns := make([]*pgconn.PgConn, mcConns)
	// closeAll closes half of the connections as a driver does (Terminate)
	// and drops the other half's socket, as a client that dies does.
	closeAll := func() {
		mcParallel(mcConns, mcDialers, func(i int) {
			if conns[i] == nil {
				return
			}
			if i%2 == 1 {
				conns[i].Conn().Close()
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			conns[i].Close(ctx)
			cancel()
		})
	}
	t.Cleanup(closeAll) // when the test stops early; closing twice is harmless

	// Open them all, mcDialers at a time; each idle one runs one query.
	var errs mcErrors
	begin := time.Now()
	mcParallel(mcConns, mcDialers, func(i int) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		c, err := pgconn.Connect(ctx, dsn)
		if err != nil {
			errs.add("connection %d: %v", i, err)
			return
		}
		conns[i] = c
		if i >= mcActive {
			if _, err := c.Exec(ctx, "SELECT 1").ReadAll(); err != nil {
				errs.add("connection %d: SELECT 1: %v", i, err)
			}
		}
	})
	r.dialTook = time.Since(begin)
	if errs.count() > 0 {
		t.Fatalf("wave %d: opening %d connections through ddlguard: %s", wave, mcConns, &errs)
	}
	eventually(t, 10*time.Second, fmt.Sprintf("wave %d: ddlguard_client_connections to reach %d", wave, mcConns), func() bool {
		r.idle = p.mustSample(t)
		return r.idle.conns == mcConns
	})

	// The busy phase; the binary is sampled meanwhile.
	until := time.Now().Add(mcBusyFor)
	var queries, received atomic.Int64
	var wg sync.WaitGroup
	for i := range mcActive {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := mcBusy(conns[i], until, &queries, &received); err != nil {
				errs.add("busy connection %d: %v", i, err)
			}
		}()
	}
	busyDone := make(chan struct{})
	go func() { wg.Wait(); close(busyDone) }()
	begin = time.Now()
	r.peak = r.idle
	r.peakGoroutines = r.idle.goroutines
	tick := time.NewTicker(100 * time.Millisecond)
	for busy := true; busy; {
		select {
		case <-busyDone:
			busy = false
		case <-tick.C:
			s := p.mustSample(t)
			if s.rss > r.peak.rss {
				r.peak = s
			}
			r.peakGoroutines = max(r.peakGoroutines, s.goroutines)
		}
	}
	tick.Stop()
	r.busyTook = time.Since(begin)
	r.queries, r.received = queries.Load(), received.Load()
	if errs.count() > 0 {
		t.Fatalf("wave %d: busy connections: %s", wave, &errs)
	}

	// Every connection, idle or busy, still works.
	mcParallel(mcConns, mcDialers, func(i int) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := conns[i].Exec(ctx, "SELECT 1").ReadAll(); err != nil {
			errs.add("connection %d after the busy phase: %v", i, err)
		}
	})
	if errs.count() > 0 {
		t.Fatalf("wave %d: %s", wave, &errs)
	}
	r.open = p.mustSample(t)
	if r.open.rss > r.peak.rss {
		r.peak = r.open
	}
	if r.open.conns != mcConns {
		t.Fatalf("wave %d: ddlguard_client_connections is %.0f with all %d connections open", wave, r.open.conns, mcConns)
	}

	// Close them all: the binary must come back to its baseline, at once
	// for its goroutines and connection gauge.
	begin = time.Now()
	closeAll()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r.closed = p.mustSample(t)
		if r.closed.conns == 0 && r.closed.goroutines <= base.goroutines+mcGoroutineSlack {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("wave %d: 20s after the clients closed, the binary still has %.0f client connections and %.0f goroutines (baseline %.0f)",
				wave, r.closed.conns, r.closed.goroutines, base.goroutines)
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.goneTook = time.Since(begin)

	// And so must the server: no backend of the wave is left.
	super := superConn(t, "postgres")
	var left int
	eventually(t, 10*time.Second, fmt.Sprintf("wave %d: the server's backends of %s to exit", wave, mcAppName), func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := super.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", mcAppName).Scan(&left); err != nil {
			t.Fatal(err)
		}
		return left == 0
	})
	super.Close(context.Background())

	// The memory of the closed connections must be released: after a
	// collection, the heap goal is back near the baseline's.
	var released bool
	r.collected, r.releaseTook, released = p.collectUntil(t, mcReleaseWithin, func(s mcSample) bool {
		return s.nextGC <= base.nextGC+mcMaxHeapGoalGrowth
	})
	r.releaseTook += r.goneTook
	r.held = max(r.peak.rss, r.closed.rss, r.collected.rss)
	if !released {
		t.Fatalf("wave %d: %s after the connections closed, the heap goal after a collection is still %.1f MiB, the baseline's %.1f MiB: more than %d MiB above (about %.0f KiB per connection stays live)",
			wave, r.releaseTook.Round(time.Millisecond), r.collected.nextGC/(1<<20), base.nextGC/(1<<20), mcMaxHeapGoalGrowth>>20,
			(r.collected.nextGC-base.nextGC)/2/mcConns/1024)
	}
	return r
}

func TestManyConnections(t *testing.T) {
	config := filepath.Join(t.TempDir(), "ddlguard.yaml")
	yaml := "log:\n  level: info\n"
	if plainRelay {
		yaml += "upstream_tls:\n  mode: disable\n" // the event loop relays every connection
	}
	if err := os.WriteFile(config, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	admin := freeAddr(t)
	b := rldStart(t, config, "--admin-listen", admin)
	p := &mcProcess{pid: b.cmd.Process.Pid, admin: admin, listen: b.listen, http: &http.Client{Timeout: 5 * time.Second}}
	eventually(t, 10*time.Second, "the admin listener to serve /metrics", func() bool {
		_, err := p.sample()
		return err == nil
	})
	dsn := b.dsn(pgcluster.RoleTrust, "postgres", "sslmode", "disable", "application_name", mcAppName)

	// Warm-up: one connection runs the busy mix once, so that what the
	// first use of each code path allocates for good (the parser, pools)
	// is in the baseline, not in the per-connection figures.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	warm, err := pgconn.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("warm-up connection through ddlguard: %v", err)
	}
	var q, n atomic.Int64
	if err := mcBusy(warm, time.Now(), &q, &n); err != nil {
		t.Fatalf("warm-up: %v", err)
	}
	warm.Close(ctx)
	p.settle(t)
	collected := p.collect(t)
	base := p.settle(t)            // the goroutines without collect's connections
	base.nextGC = collected.nextGC // the heap goal a collection sets
	t.Logf("baseline:     %v", base)

	perConn := func(s mcSample) string {
		return fmt.Sprintf("%+.0f KiB RSS, %+.2f goroutines per connection",
			float64(s.rss-base.rss)/mcConns/1024, (s.goroutines-base.goroutines)/mcConns)
	}
	var waves [2]mcWaveResult
	for i := range waves {
		r := mcWave(t, p, dsn, i+1, base)
		waves[i] = r
		t.Logf("wave %d: %d connections opened in %s; %d of them busy for %s (%d queries, %.0f MiB of values received); all closed, the binary back to its baseline goroutines %s later, their memory released %s later",
			i+1, mcConns, r.dialTook.Round(time.Millisecond), mcActive, r.busyTook.Round(time.Millisecond),
			r.queries, float64(r.received)/(1<<20), r.goneTook.Round(time.Millisecond), r.releaseTook.Round(time.Millisecond))
		t.Logf("wave %d: open, idle:  %v; %s", i+1, r.idle, perConn(r.idle))
		t.Logf("wave %d: peak:        %v; %s (most goroutines seen: %.0f)", i+1, r.peak, perConn(r.peak), r.peakGoroutines)
		t.Logf("wave %d: open, after: %v; %s", i+1, r.open, perConn(r.open))
		t.Logf("wave %d: closed:      %v", i+1, r.closed)
		t.Logf("wave %d: collected:   %v", i+1, r.collected)
		t.Logf("wave %d: held at most RSS %.1f MiB", i+1, mib(r.held))
	}

	for i, r := range waves {
		// Bounded per connection. Measured (2 CPUs, GOGC 100): idle about
		// 90-110 KiB RSS per connection, the peak with 100 of the 500 busy
		// about 145-160 KiB; the bound is about twice that. Heap-wise an
		// idle connection holds about 130-150 KiB (four 32 KiB relay
		// buffers, the upstream's TLS state) and 20 KiB of goroutine
		// stacks; what of the buffers is never written is never resident.
		// A change that doubles the memory per connection crosses the
		// bound; the GC's timing does not (each wave starts from a
		// collected heap).
		if per := (r.peak.rss - base.rss) / mcConns; per > mcMaxPeakPerConn {
			t.Errorf("wave %d: RSS grew by %.0f KiB per connection (from %.1f MiB to %.1f MiB for %d connections), want at most %d KiB",
				i+1, float64(per)/1024, mib(base.rss), mib(r.peak.rss), mcConns, mcMaxPeakPerConn>>10)
		}
	}
	// No growth from one wave to the next: the second wave fits in the
	// memory the process already held during the first, with 20% and 8
	// MiB of slack. What the test can see of a wave's RSS swings with the
	// GC's timing and with which pages its spans had touched: the first
	// wave's heap is partly fresh pages that the relay buffers never fill,
	// while the second reuses spans that are resident whole. Five waves in
	// a row with the event loop relaying peaked at 73, 90, 84, 76 and 83
	// MiB (the live heap after each the same), and over seventeen runs the
	// second wave's peak was up to 18% above all the first had held. With
	// 10% of slack and the first wave's peak as the reference, the check
	// failed now and then with nothing left behind. A wave
	// that leaves memory live is caught by the heap goal after its
	// collection (mcMaxHeapGoalGrowth, 16 KiB per connection), and one
	// that leaves goroutines by the goroutine count.
	if limit := waves[0].held + waves[0].held/5 + 8<<20; waves[1].peak.rss > limit {
		t.Errorf("the second wave peaked at %.1f MiB RSS; the first held at most %.1f MiB (peak %.1f MiB): more than the %.1f MiB allowed",
			mib(waves[1].peak.rss), mib(waves[0].held), mib(waves[0].peak.rss), mib(limit))
	}
}
