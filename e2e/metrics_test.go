package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/ddlguard/ddlguard/e2e/pgcluster"
)

// The lock-wait metrics, the /locks page and the alert rules against a
// real lock pile-up: a session idle in a transaction holds a lock, a DDL
// (sent directly, as a tool that bypasses ddlguard would) queues behind
// it, readers queue behind the DDL, and the same DDL sent through ddlguard
// waits outside the queue. The ddlguard binary runs with a lock monitor
// whose role has only pg_monitor; a real Prometheus scrapes it with the
// project's alert rules; headless Chromium renders /locks.

// monitorRole is the lock monitor's role: pg_monitor and nothing else.
const monitorRole = "ddlguard_monitor"

func createMonitorRole(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const password = "monitor-secret-e2e"
	if err := adminExec(ctx,
		"DROP ROLE IF EXISTS "+monitorRole,
		"CREATE ROLE "+monitorRole+" LOGIN PASSWORD '"+password+"' IN ROLE pg_monitor"); err != nil {
		t.Fatal(err)
	}
	return password
}

// scrape reads the admin listener's /metrics.
func scrape(t testing.TB, admin string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatalf("scraping /metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

// metricValue is the value of the series of name whose labels include
// labels (summed over the matching series; ok false when none matches).
func metricValue(fams map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
	sum, found := 0.0, false
outer:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, lp := range m.Label {
			have[lp.GetName()] = lp.GetValue()
		}
		for k, v := range labels {
			if have[k] != v {
				continue outer
			}
		}
		found = true
		switch {
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum, found
}

func httpGet(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// startPrometheus runs Debian's prometheus with the project's rules,
// scraping admin every second; it returns its address.
func startPrometheus(t *testing.T, admin string) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("prometheus is not installed (make deps installs Debian's prometheus package): %v", err)
	}
	rules, err := filepath.Abs("../deploy/prometheus/ddlguard-rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	conf := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: ddlguard
    static_configs:
      - targets: [%q]
`, rules, admin)
	confFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	logs := &lockedBuffer{}
	cmd := exec.Command(bin, "--config.file="+confFile, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("prometheus log:\n%s", logs.String())
		}
	})
	eventually(t, 30*time.Second, "prometheus to be ready", func() bool {
		resp, err := http.Get("http://" + addr + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return addr
}

// alertState is the state ("pending", "firing") of alert name in
// Prometheus's API ("" when absent).
func alertState(t testing.TB, prom, name string) string {
	t.Helper()
	_, body := httpGet(t, "http://"+prom+"/api/v1/alerts")
	var out struct {
		Data struct {
			Alerts []struct {
				Labels map[string]string `json:"labels"`
				State  string            `json:"state"`
			} `json:"alerts"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatalf("prometheus alerts: %v: %s", err, body)
	}
	state := ""
	for _, a := range out.Data.Alerts {
		if a.Labels["alertname"] == name && (state == "" || a.State == "firing") {
			state = a.State
		}
	}
	return state
}

// chromium runs Debian's headless Chromium with args plus url and returns
// its standard output.
func chromium(t *testing.T, url string, args ...string) []byte {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is not installed (make deps installs Debian's chromium package): %v", err)
	}
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir()}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append(append(base, args...), url)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	return stdout.Bytes()
}

// artifactDir is where tests leave files for people (screenshots).
func artifactDir(t *testing.T) string {
	dir := os.Getenv("DDLGUARD_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "ddlguard-e2e-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestMetricsLockPileUp(t *testing.T) {
	const db = "metrics_pileup"
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	owner, err := createFixtureDatabase(ctx, db, pgcluster.RoleTrust, []string{
		"CREATE TABLE pile (id int PRIMARY KEY, v text)",
		"INSERT INTO pile SELECT g, 'v' || g FROM generate_series(1, 1000) g",
	})
	if err != nil {
		t.Fatal(err)
	}
	owner.Close(ctx)
	password := createMonitorRole(t)

	config := filepath.Join(t.TempDir(), "ddlguard.yaml")
	monitorDSN := cluster.DSN(monitorRole, db, "password", password, "sslmode", "disable")
	if err := os.WriteFile(config, []byte(fmt.Sprintf(
		"monitor:\n  dsn: %q\n  interval: 250ms\nexecution:\n  retry_budget: 2m\n", monitorDSN)), 0o600); err != nil {
		t.Fatal(err)
	}
	admin := freeAddr(t)
	b := rldStart(t, config, "--admin-listen", admin)
	prom := startPrometheus(t, admin)

	// Before the pile-up: ready, the monitor polls, nothing waits.
	eventually(t, 15*time.Second, "/readyz to be ready with the monitor polling", func() bool {
		code, body := httpGet(t, "http://"+admin+"/readyz")
		return code == 200 && strings.Contains(body, "lock monitor: polling")
	})
	if code, _ := httpGet(t, "http://"+admin+"/healthz"); code != 200 {
		t.Fatalf("/healthz: %d", code)
	}
	fams := scrape(t, admin)
	for name, want := range map[string]float64{
		"ddlguard_monitor_up": 1, "ddlguard_config_last_reload_successful": 1,
		"ddlguard_lock_wait_longest_seconds": 0, "ddlguard_upstream_up": 1,
	} {
		if v, ok := metricValue(fams, name, nil); !ok || v != want {
			t.Errorf("before the pile-up: %s = %v (present %v), want %v", name, v, ok, want)
		}
	}

	holder := connectDirect(t, cluster, pgcluster.RoleTrust, db)
	var holderPID int
	if err := holder.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&holderPID); err != nil {
		t.Fatal(err)
	}
	if _, err := holder.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	if _, err := holder.Exec(ctx, "SELECT count(*) FROM pile"); err != nil {
		t.Fatal(err)
	}
	pileStart := time.Now()
	errs := make(chan error, 4)
	run := func(conn *pgx.Conn, sql string) {
		go func() {
			_, err := conn.Exec(ctx, sql)
			errs <- err
		}()
	}
	run(connectDirect(t, cluster, pgcluster.RoleTrust, db), "ALTER TABLE pile ADD COLUMN direct_col int")
	time.Sleep(200 * time.Millisecond) // the DDL first in the queue
	run(connectDirect(t, cluster, pgcluster.RoleTrust, db), "SELECT count(*) FROM pile")
	run(connectDirect(t, cluster, pgcluster.RoleTrust, db), "SELECT count(*) FROM pile")
	run(connectDSN(t, "through ddlguard", b.dsn(pgcluster.RoleTrust, db, "sslmode", "disable")), "ALTER TABLE pile ADD COLUMN guarded_col int")

	holderLabels := map[string]string{"blocker_pid": strconv.Itoa(holderPID), "blocker_state": "idle in transaction"}
	checks := []struct {
		name   string
		labels map[string]string
		ok     func(float64) bool
		want   string
	}{
		{"ddlguard_lock_waiting_sessions", nil, func(v float64) bool { return v >= 3 }, ">= 3 (the DDL and two readers)"},
		{"ddlguard_lock_waiting_sessions", map[string]string{"mode": "AccessExclusiveLock", "locktype": "relation"}, func(v float64) bool { return v == 1 }, "1 (the direct ALTER)"},
		{"ddlguard_lock_wait_longest_seconds", nil, func(v float64) bool { return v >= 1 }, ">= 1s"},
		{"ddlguard_lock_waiting_ddl_sessions", nil, func(v float64) bool { return v == 1 }, "1"},
		{"ddlguard_blocking_sessions", map[string]string{"state": "idle in transaction"}, func(v float64) bool { return v == 1 }, "1 (the holder)"},
		{"ddlguard_blocked_sessions", map[string]string{"blocker_state": "idle in transaction"}, func(v float64) bool { return v >= 3 }, ">= 3"},
		{"ddlguard_blocker_blocked_sessions", holderLabels, func(v float64) bool { return v >= 3 }, ">= 3"},
		{"ddlguard_lock_waiting_relation_sessions", map[string]string{"relation": "pile"}, func(v float64) bool { return v >= 3 }, ">= 3"},
		{"ddlguard_idle_in_transaction_sessions", nil, func(v float64) bool { return v >= 1 }, ">= 1"},
		{"ddlguard_oldest_transaction_age_seconds", nil, func(v float64) bool { return v >= 1 }, ">= 1s"},
		{"ddlguard_guarded_statements_waiting", nil, func(v float64) bool { return v == 1 }, "1 (the ALTER through ddlguard, held outside the queue)"},
	}
	var last string
	deadline := time.Now().Add(30 * time.Second)
	for {
		fams = scrape(t, admin)
		var bad []string
		for _, c := range checks {
			v, ok := metricValue(fams, c.name, c.labels)
			if !ok || !c.ok(v) {
				bad = append(bad, fmt.Sprintf("%s%v = %v (present %v), want %s", c.name, c.labels, v, ok, c.want))
			}
		}
		if len(bad) == 0 {
			break
		}
		last = strings.Join(bad, "\n  ")
		if time.Now().After(deadline) {
			t.Fatalf("during the pile-up:\n  %s", last)
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("pile-up visible in /metrics %.1fs after it began", time.Since(pileStart).Seconds())

	// The live page, as a browser renders it: the holder is the root of
	// the blocking tree, marked idle in transaction.
	dom := string(chromium(t, "http://"+admin+"/locks", "--dump-dom"))
	for _, want := range []string{fmt.Sprintf(`data-pid="%d"`, holderPID), "idle in transaction", "ALTER TABLE pile ADD COLUMN direct_col", "timeout"} {
		if !strings.Contains(dom, want) {
			t.Errorf("/locks in Chromium lacks %q:\n%s", want, dom)
		}
	}
	if i := strings.Index(dom, `data-pid="`); i < 0 || !strings.HasPrefix(dom[i:], fmt.Sprintf(`data-pid="%d"`, holderPID)) {
		t.Errorf("/locks: the first row of the blocking tree is not the holder %d", holderPID)
	}
	shot := filepath.Join(artifactDir(t), "locks.png")
	chromium(t, "http://"+admin+"/locks", "--screenshot="+shot, "--window-size=1600,900", "--hide-scrollbars")
	f, err := os.Open(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	img, err := png.Decode(f)
	f.Close()
	if err != nil || img.Bounds().Dx() != 1600 {
		t.Fatalf("screenshot %s: %v, bounds %v", shot, err, img)
	}
	t.Logf("screenshot of /locks during the pile-up: %s", shot)

	// The alert rules in a real Prometheus.
	eventually(t, 60*time.Second, "DDLGuardIdleInTransactionBlocking to fire in Prometheus", func() bool {
		return alertState(t, prom, "DDLGuardIdleInTransactionBlocking") == "firing"
	})
	t.Logf("DDLGuardIdleInTransactionBlocking firing %.1fs after the pile-up began", time.Since(pileStart).Seconds())

	// The holder ends: everything goes through, and the gauges return to zero.
	if _, err := holder.Exec(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 4; i++ {
		if err := <-errs; err != nil {
			t.Errorf("a statement of the pile-up failed: %v", err)
		}
	}
	zero := []string{"ddlguard_lock_waiting_sessions", "ddlguard_lock_wait_longest_seconds", "ddlguard_lock_waiting_ddl_sessions",
		"ddlguard_blocking_sessions", "ddlguard_blocked_sessions", "ddlguard_guarded_statements_waiting", "ddlguard_idle_in_transaction_sessions"}
	eventually(t, 10*time.Second, "the lock gauges to return to zero", func() bool {
		fams = scrape(t, admin)
		for _, name := range zero {
			if v, _ := metricValue(fams, name, nil); v != 0 {
				last = fmt.Sprintf("%s = %v", name, v)
				return false
			}
		}
		if _, ok := metricValue(fams, "ddlguard_blocker_blocked_sessions", holderLabels); ok {
			last = "the holder's per-blocker series is still there"
			return false
		}
		return true
	})
	// What ddlguard did itself: one timeout decision, its duration and wait.
	for _, c := range []struct {
		name   string
		labels map[string]string
	}{
		{"ddlguard_statements_total", map[string]string{"decision": "timeout", "rule": ""}},
		{"ddlguard_ddl_duration_seconds", map[string]string{"kind": "ALTER TABLE"}},
		{"ddlguard_blocker_wait_seconds", nil},
		{"ddlguard_client_connections_total", nil},
	} {
		if v, ok := metricValue(fams, c.name, c.labels); !ok || v < 1 {
			t.Errorf("after the pile-up: %s%v = %v (present %v), want >= 1", c.name, c.labels, v, ok)
		}
	}
	if v, _ := metricValue(fams, "ddlguard_relayed_bytes_total", map[string]string{"direction": "upstream_to_client"}); v <= 0 {
		t.Errorf("ddlguard_relayed_bytes_total{direction=upstream_to_client} = %v", v)
	}
}

// The admin listener over HTTPS with a bearer token: /metrics and /readyz
// answer, /locks needs the token, and `ddlguard healthcheck` reads it.
func TestAdminTLSAndToken(t *testing.T) {
	const token = "e2e-admin-token-0123456789"
	config := filepath.Join(t.TempDir(), "ddlguard.yaml")
	os.WriteFile(config, []byte(fmt.Sprintf("admin:\n  cert_file: %s\n  key_file: %s\n  token: %s\n",
		cluster.ProxyCertFile, cluster.ProxyKeyFile, token)), 0o600)
	admin := freeAddr(t)
	rldStart(t, config, "--admin-listen", admin)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: loadCertPool(t, cluster.CAFile), ServerName: "localhost"}}}
	get := func(path, auth string) int {
		req, _ := http.NewRequest("GET", "https://"+admin+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	eventually(t, 10*time.Second, "/readyz over https", func() bool { return get("/readyz", "") == 200 })
	for _, c := range []struct {
		path, auth string
		want       int
	}{
		{"/metrics", "", 200}, {"/healthz", "", 200},
		{"/locks", "", 401}, {"/locks", "Bearer not-the-token-at-all", 401}, {"/locks", "Bearer " + token, 200},
	} {
		if got := get(c.path, c.auth); got != c.want {
			t.Errorf("GET %s (%q): %d, want %d", c.path, c.auth, got, c.want)
		}
	}
	if resp, err := http.Get("http://" + admin + "/metrics"); err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 || strings.Contains(string(body), "ddlguard_") {
			t.Errorf("the HTTPS admin listener served plain HTTP: %s", resp.Status)
		}
	}
	out, err := exec.Command(ddlguardBinary(t), "healthcheck", "--insecure", "--url", "https://"+admin+"/readyz").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "200") {
		t.Errorf("ddlguard healthcheck: %v\n%s", err, out)
	}
	out, err = exec.Command(ddlguardBinary(t), "healthcheck", "--url", "https://"+admin+"/nope").CombinedOutput()
	if err == nil {
		t.Errorf("ddlguard healthcheck of a failing URL exited 0:\n%s", out)
	}
}

// The lock monitor's connection is killed: the poll that finds it dead is
// counted as failed, the next one reconnects, and the relay never notices.
func TestMonitorReconnects(t *testing.T) {
	password := createMonitorRole(t)
	config := filepath.Join(t.TempDir(), "ddlguard.yaml")
	os.WriteFile(config, []byte(fmt.Sprintf("monitor:\n  dsn: %q\n  interval: 200ms\n",
		cluster.DSN(monitorRole, "postgres", "password", password, "sslmode", "disable"))), 0o600)
	admin := freeAddr(t)
	b := rldStart(t, config, "--admin-listen", admin)
	value := func(name string) float64 { v, _ := metricValue(scrape(t, admin), name, nil); return v }
	eventually(t, 10*time.Second, "the monitor to poll", func() bool { return value("ddlguard_monitor_up") == 1 })
	client := connectDSN(t, "through ddlguard", b.dsn(pgcluster.RoleTrust, "postgres", "sslmode", "disable"))
	super := superConn(t, "postgres")
	ctx := context.Background()
	var killed int
	if err := super.QueryRow(ctx, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'ddlguard-monitor'").Scan(&killed); err != nil || killed != 1 {
		t.Fatalf("terminated %d monitor backends: %v", killed, err)
	}
	eventually(t, 10*time.Second, "a failed poll to be counted", func() bool { return value("ddlguard_monitor_poll_errors_total") >= 1 })
	eventually(t, 10*time.Second, "the monitor to reconnect", func() bool { return value("ddlguard_monitor_up") == 1 })
	var n int
	if err := super.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'ddlguard-monitor'").Scan(&n); err != nil || n != 1 {
		t.Errorf("%d monitor backends after the reconnect: %v", n, err)
	}
	if err := client.Ping(ctx); err != nil {
		t.Errorf("the client's session after the monitor's loss: %v", err)
	}
}
