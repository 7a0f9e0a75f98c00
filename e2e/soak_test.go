//go:build soak

package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ddlguard/ddlguard/e2e/pgcluster"
)

// TestSoak (make soak; build tag soak): a bounded soak of the ddlguard
// binary. For SOAK_DURATION (default 3m): pgbench's TPC-B-like load through
// ddlguard (extended protocol, 8 clients), a DDL loop through ddlguard
// (ADD/DROP COLUMN, CREATE/DROP INDEX, which ddlguard rewrites or guards),
// and a direct session that opens a transaction on pgbench_history and
// sits idle in it for 3 s every 8 s, so that the DDL has to wait for it.
// Every 10 s it samples the binary's RSS and goroutines from /metrics. It
// fails on any error other than the intended rejections, on pgbench
// failures, and when goroutines or memory keep growing.
func TestSoak(t *testing.T) {
	duration := 3 * time.Minute
	if s := os.Getenv("SOAK_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("SOAK_DURATION: %v", err)
		}
		duration = d
	}
	const db = "soak"
	ctx, cancel := context.WithTimeout(context.Background(), duration+5*time.Minute)
	defer cancel()
	if err := recreateDatabase(ctx, db, pgcluster.RoleTrust); err != nil {
		t.Fatal(err)
	}
	initOut, err := exec.Command(cluster.PgBench(), "-i", "-s", "5", "-q", "-h", cluster.Host, "-p", fmt.Sprint(cluster.Port),
		"-U", pgcluster.RoleTrust, db).CombinedOutput()
	if err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, initOut)
	}
	config := filepath.Join(t.TempDir(), "ddlguard.yaml")
	yaml := "log:\n  level: info\n"
	if plainRelay {
		yaml += "upstream_tls:\n  mode: disable\n" // the event loop relays every connection
	}
	os.WriteFile(config, []byte(yaml), 0o600)
	admin := freeAddr(t)
	b := rldStart(t, config, "--admin-listen", admin)
	host, port := splitHostPort(t, b.listen)

	type sample struct {
		at               time.Duration
		rss, goroutines  float64
		conns, waiting   float64
		decisions        float64
		lockTimeouts     float64
		budgetsExhausted float64
	}
	var samples []sample
	start := time.Now()
	takeSample := func() {
		fams := scrape(t, admin)
		v := func(name string) float64 { x, _ := metricValue(fams, name, nil); return x }
		dec, _ := metricValue(fams, "ddlguard_statements_total", nil)
		samples = append(samples, sample{time.Since(start).Round(time.Second), v("process_resident_memory_bytes"), v("go_goroutines"),
			v("ddlguard_client_connections"), v("ddlguard_guarded_statements_waiting"), dec,
			v("ddlguard_lock_timeouts_total"), v("ddlguard_retry_budget_exhausted_total")})
	}
	takeSample()

	var wg sync.WaitGroup
	var pgbenchOut []byte
	var pgbenchErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		cmd := exec.CommandContext(ctx, cluster.PgBench(), "-c", "8", "-j", "2", "-M", "extended", "-T", fmt.Sprint(int(duration.Seconds())),
			"-h", host, "-p", port, "-U", pgcluster.RoleTrust, db)
		pgbenchOut, pgbenchErr = cmd.CombinedOutput()
	}()

	stop := make(chan struct{})
	var ddlRuns, ddlRejected atomic.Int64
	var unexpected []string
	var mu sync.Mutex
	wg.Add(1)
	go func() { // DDL through ddlguard
		defer wg.Done()
		conn := connectDSN(t, "DDL through ddlguard", b.dsn(pgcluster.RoleTrust, db, "sslmode", "disable"))
		defer conn.Close(context.Background())
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(1000+rand.IntN(1000)) * time.Millisecond):
			}
			stmts := []string{
				fmt.Sprintf("ALTER TABLE pgbench_history ADD COLUMN soak_%d int", i),
				"CREATE INDEX soak_idx ON pgbench_history (mtime)",
				"DROP INDEX soak_idx",
				fmt.Sprintf("ALTER TABLE pgbench_history DROP COLUMN soak_%d", i), // a review rule: runs with a warning
			}
			for _, s := range stmts {
				_, err := conn.Exec(ctx, s)
				ddlRuns.Add(1)
				var pe *pgconn.PgError
				switch {
				case err == nil:
				case asPgError(err, &pe) && pe.Code == "ZG001":
					ddlRejected.Add(1)
				default:
					mu.Lock()
					unexpected = append(unexpected, fmt.Sprintf("%s: %v", s, err))
					mu.Unlock()
				}
			}
		}
	}()
	wg.Add(1)
	go func() { // a blocker that comes and goes
		defer wg.Done()
		conn := connectDirect(t, cluster, pgcluster.RoleTrust, db)
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Second):
			}
			if _, err := conn.Exec(ctx, "BEGIN; SELECT count(*) FROM pgbench_history"); err != nil {
				mu.Lock()
				unexpected = append(unexpected, "blocker: "+err.Error())
				mu.Unlock()
				continue
			}
			time.Sleep(3 * time.Second)
			conn.Exec(ctx, "COMMIT")
		}
	}()

	tick := time.NewTicker(10 * time.Second)
	deadline := time.After(duration)
loop:
	for {
		select {
		case <-tick.C:
			takeSample()
		case <-deadline:
			break loop
		}
	}
	tick.Stop()
	close(stop)
	wg.Wait()
	time.Sleep(2 * time.Second) // connections close
	takeSample()

	t.Logf("%8s %10s %10s %6s %8s %10s %13s %10s", "t", "RSS MiB", "goroutines", "conns", "waiting", "decisions", "lock timeouts", "exhausted")
	for _, s := range samples {
		t.Logf("%8s %10.1f %10.0f %6.0f %8.0f %10.0f %13.0f %10.0f", s.at, s.rss/(1<<20), s.goroutines, s.conns, s.waiting,
			s.decisions, s.lockTimeouts, s.budgetsExhausted)
	}
	t.Logf("DDL statements %d, rejected as intended %d, unexpected errors %d", ddlRuns.Load(), ddlRejected.Load(), len(unexpected))
	for _, u := range unexpected {
		t.Errorf("unexpected error: %s", u)
	}
	if pgbenchErr != nil {
		t.Errorf("pgbench: %v", pgbenchErr)
	}
	out := string(pgbenchOut)
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "number of failed transactions") || strings.HasPrefix(line, "tps") || strings.Contains(line, "processed") {
			t.Logf("pgbench: %s", strings.TrimSpace(line))
		}
	}
	if strings.Contains(out, "number of failed transactions") && !strings.Contains(out, "number of failed transactions: 0 ") {
		t.Errorf("pgbench reported failed transactions:\n%s", out)
	}
	if ddlRuns.Load() < 8 {
		t.Errorf("only %d DDL statements ran", ddlRuns.Load())
	}
	first, last := samples[1], samples[len(samples)-1]
	if last.goroutines > samples[0].goroutines+5 {
		t.Errorf("goroutines: %v at the start, %v after the load ended", samples[0].goroutines, last.goroutines)
	}
	if last.conns != 0 {
		t.Errorf("%v client connections left", last.conns)
	}
	if last.rss > 2*first.rss+32<<20 {
		t.Errorf("RSS grew from %.1f MiB to %.1f MiB", first.rss/(1<<20), last.rss/(1<<20))
	}
}

func asPgError(err error, pe **pgconn.PgError) bool {
	*pe = pgErrorOf(err)
	return *pe != nil
}

func splitHostPort(t *testing.T, addr string) (string, string) {
	t.Helper()
	i := strings.LastIndex(addr, ":")
	if i < 0 {
		t.Fatalf("bad address %q", addr)
	}
	return addr[:i], addr[i+1:]
}
