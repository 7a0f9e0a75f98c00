package metrics

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/ddlguard/ddlguard/proxy"
)

// everything registers every collector ddlguard has, with a series in
// every vector.
func everything(t *testing.T) (*prometheus.Registry, *Proxy, *LockMonitor) {
	t.Helper()
	reg := prometheus.NewRegistry()
	p := NewProxy(reg, "test", NewRecent(5))
	m, err := NewLockMonitor(reg, MonitorConfig{})
	if err != nil {
		t.Fatal(err)
	}
	NewUpstreamProbe(reg, "127.0.0.1:1")
	p.Decided(proxy.DecisionEvent{Action: "reject", Rule: "create-index-not-concurrently", Warnings: []string{"drop-column"}})
	p.Rewritten("create-index-not-concurrently", true)
	p.GuardedDone("ALTER TABLE", time.Second, 10*time.Millisecond)
	p.BlockerWait(time.Millisecond)
	m.publish(pileUp())
	return reg, p, m
}

// Every metric follows Prometheus's naming conventions, as promlint checks
// them (units, _total counters, base units, no colons or camel case).
func TestPromlint(t *testing.T) {
	reg, _, _ := everything(t)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) < 30 {
		t.Fatalf("only %d metric families registered", len(mfs))
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), Namespace+"_") {
			t.Errorf("%s is outside the %s_ namespace", mf.GetName(), Namespace)
		}
	}
}

func TestProxyCounters(t *testing.T) {
	_, p, _ := everything(t)
	p.ClientAccepted()
	p.ClientAccepted()
	p.ClientClosed()
	p.ClientRejected(proxy.RejectTLSRequired)
	p.UpstreamConnectFailed()
	p.Relayed(true, 100)
	p.Relayed(false, 7)
	p.Relayed(false, 3)
	p.StatementPassed()
	p.StatementPassed()
	p.LockTimeout()
	p.LockRetry()
	p.RetryBudgetExhausted()
	p.WaitingChanged(1)
	p.WaitingChanged(1)
	p.WaitingChanged(-1)
	p.Rewritten("set-not-null", false)
	for _, c := range []struct {
		c    prometheus.Collector
		want float64
	}{
		{p.clientConns, 1}, {p.clientConnsTotal, 2}, {p.clientRejected.WithLabelValues("tls_required"), 1},
		{p.clientRejected.WithLabelValues("startup"), 0}, {p.upstreamConnectErrs, 1},
		{p.bytesToUpstream, 100}, {p.bytesToClient, 10},
		{p.statements.WithLabelValues("allow", ""), 2},
		{p.statements.WithLabelValues("reject", "create-index-not-concurrently"), 1},
		{p.statements.WithLabelValues("warn", "drop-column"), 1},
		{p.lockTimeouts, 1}, {p.lockRetries, 1}, {p.budgetExhausted, 1}, {p.waiting, 1},
		{p.rewrites.WithLabelValues("create-index-not-concurrently", "succeeded"), 1},
		{p.rewrites.WithLabelValues("set-not-null", "failed"), 1},
	} {
		if got := testutil.ToFloat64(c.c); got != c.want {
			t.Errorf("%v = %v, want %v", c.c.(prometheus.Metric).Desc(), got, c.want)
		}
	}
	if n := testutil.CollectAndCount(p.ddlDuration, "ddlguard_ddl_duration_seconds"); n != 1 {
		t.Errorf("ddl_duration_seconds: %d series, want 1", n)
	}
	err := testutil.CollectAndCompare(p.lockWait, strings.NewReader(`
# HELP ddlguard_lock_wait_seconds Time guarded statements spent in the server's lock queue: attempts that ended in a lock timeout, and the last attempt of a statement that does no work under its lock.
# TYPE ddlguard_lock_wait_seconds histogram
ddlguard_lock_wait_seconds_bucket{le="0.001"} 0
ddlguard_lock_wait_seconds_bucket{le="0.005"} 0
ddlguard_lock_wait_seconds_bucket{le="0.01"} 1
ddlguard_lock_wait_seconds_bucket{le="0.025"} 1
ddlguard_lock_wait_seconds_bucket{le="0.05"} 1
ddlguard_lock_wait_seconds_bucket{le="0.1"} 1
ddlguard_lock_wait_seconds_bucket{le="0.25"} 1
ddlguard_lock_wait_seconds_bucket{le="0.5"} 1
ddlguard_lock_wait_seconds_bucket{le="1"} 1
ddlguard_lock_wait_seconds_bucket{le="2.5"} 1
ddlguard_lock_wait_seconds_bucket{le="5"} 1
ddlguard_lock_wait_seconds_bucket{le="10"} 1
ddlguard_lock_wait_seconds_bucket{le="30"} 1
ddlguard_lock_wait_seconds_bucket{le="60"} 1
ddlguard_lock_wait_seconds_bucket{le="+Inf"} 1
ddlguard_lock_wait_seconds_sum 0.01
ddlguard_lock_wait_seconds_count 1
`))
	if err != nil {
		t.Error(err)
	}
}

func TestConfigReloadGauges(t *testing.T) {
	_, p, _ := everything(t)
	p.ConfigLoaded(true)
	if testutil.ToFloat64(p.reloadOK) != 1 || testutil.ToFloat64(p.reloadTime) < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Fatalf("after a good load: successful=%v timestamp=%v", testutil.ToFloat64(p.reloadOK), testutil.ToFloat64(p.reloadTime))
	}
	ts := testutil.ToFloat64(p.reloadTime)
	p.ConfigLoaded(false)
	if testutil.ToFloat64(p.reloadOK) != 0 || testutil.ToFloat64(p.reloadTime) != ts {
		t.Fatalf("after a bad reload: successful=%v, timestamp moved from %v to %v", testutil.ToFloat64(p.reloadOK), ts, testutil.ToFloat64(p.reloadTime))
	}
}

// pileUp is the snapshot of the seed article's outage: 100 idle in a
// transaction holding a lock, 200 (an ALTER) waiting for it, 201 and 202
// (readers) queued behind the ALTER; 300 waits on 301, which is active.
func pileUp() *Snapshot {
	s := &Snapshot{Taken: time.Now(), Sessions: map[int]*Session{
		100: {PID: 100, State: "idle in transaction", XactAge: 42, StateAge: 41, Query: "SELECT * FROM orders"},
		200: {PID: 200, State: "active", XactAge: 5, Query: "/* migration */ ALTER TABLE orders ADD COLUMN x int", Waiting: true,
			WaitMode: "AccessExclusiveLock", WaitType: "relation", Relation: "orders", WaitAge: 5, BlockedBy: []int{100}},
		201: {PID: 201, State: "active", XactAge: 3, Query: "SELECT 1 FROM orders", Waiting: true,
			WaitMode: "AccessShareLock", WaitType: "relation", Relation: "orders", WaitAge: 3, BlockedBy: []int{200}},
		202: {PID: 202, State: "active", XactAge: 2, Query: "SELECT 2 FROM orders", Waiting: true,
			WaitMode: "AccessShareLock", WaitType: "relation", Relation: "orders", WaitAge: 2, BlockedBy: []int{200}},
		300: {PID: 300, State: "active", XactAge: 1, Query: "UPDATE t SET v = 1", Waiting: true,
			WaitMode: "ShareLock", WaitType: "transactionid", WaitAge: 1, BlockedBy: []int{301}},
		301: {PID: 301, State: "active", XactAge: 9, Query: "UPDATE t SET v = 2"},
	}, Blocks: map[int][]int{}}
	s.buildTree()
	return s
}

func TestMonitorGaugesFromPileUp(t *testing.T) {
	_, _, m := everything(t)
	s := pileUp()
	if fmt.Sprint(s.Roots) != "[100 301]" {
		t.Errorf("roots %v, want the idle-in-transaction holder first: [100 301]", s.Roots)
	}
	for _, c := range []struct {
		c    prometheus.Collector
		want float64
	}{
		{m.waitingByMode.WithLabelValues("AccessShareLock", "relation"), 2},
		{m.waitingByMode.WithLabelValues("AccessExclusiveLock", "relation"), 1},
		{m.waitingByMode.WithLabelValues("ShareLock", "transactionid"), 1},
		{m.longest, 5}, {m.ddlWaiting, 1}, {m.ddlLongest, 5},
		{m.blocking.WithLabelValues("idle in transaction"), 1},
		{m.blocking.WithLabelValues("active"), 2}, // 200 (queued ALTER) and 301
		{m.blocked.WithLabelValues("idle in transaction"), 3},
		{m.blocked.WithLabelValues("active"), 1},
		{m.perBlocker.WithLabelValues("100", "idle in transaction"), 3},
		{m.perBlocker.WithLabelValues("200", "active"), 2},
		{m.perRelation.WithLabelValues("orders"), 3},
		{m.oldestXact, 42}, {m.idleInXact, 1}, {m.idleLongest, 41},
	} {
		if got := testutil.ToFloat64(c.c); got != c.want {
			t.Errorf("%v = %v, want %v", c.c.(prometheus.Metric).Desc(), got, c.want)
		}
	}
	// The pile-up ends: the gauges return to zero, the bounded series stay
	// (at zero), the per-blocker and per-relation series go.
	m.publish(&Snapshot{Taken: time.Now(), Sessions: map[int]*Session{}, Blocks: map[int][]int{}})
	for _, c := range []prometheus.Collector{m.waitingByMode.WithLabelValues("AccessShareLock", "relation"), m.longest, m.ddlWaiting,
		m.blocking.WithLabelValues("idle in transaction"), m.blocked.WithLabelValues("idle in transaction"), m.idleInXact} {
		if got := testutil.ToFloat64(c); got != 0 {
			t.Errorf("after the pile-up: %v = %v", c.(prometheus.Metric).Desc(), got)
		}
	}
	if n := testutil.CollectAndCount(m.perBlocker) + testutil.CollectAndCount(m.perRelation); n != 0 {
		t.Errorf("%d per-blocker/per-relation series left", n)
	}
}

func TestMonitorTopN(t *testing.T) {
	m, err := NewLockMonitor(nil, MonitorConfig{TopN: 2})
	if err != nil {
		t.Fatal(err)
	}
	s := &Snapshot{Sessions: map[int]*Session{}, Blocks: map[int][]int{}}
	for i := 0; i < 20; i++ {
		s.Sessions[1000+i] = &Session{PID: 1000 + i, State: "idle in transaction"}
		s.Sessions[2000+i] = &Session{PID: 2000 + i, State: "active", Waiting: true, WaitMode: "AccessShareLock",
			WaitType: "relation", Relation: fmt.Sprintf("t%d", i), BlockedBy: []int{1000 + i}}
	}
	s.buildTree()
	m.publish(s)
	if n := testutil.CollectAndCount(m.perBlocker); n != 2 {
		t.Errorf("per-blocker series: %d, want top_n 2", n)
	}
	if n := testutil.CollectAndCount(m.perRelation); n != 2 {
		t.Errorf("per-relation series: %d, want top_n 2", n)
	}
}

func TestIsDDL(t *testing.T) {
	for q, want := range map[string]bool{
		"ALTER TABLE t ADD COLUMN c int":           true,
		"  /* tool */ -- x\n create index on t(a)": true,
		"(SELECT 1)":              false,
		"SELECT * FROM alter_log": false,
		"truncate t":              true,
		"UPDATE t SET a = 1":      false,
		"/* unterminated":         false,
		"":                        false,
	} {
		if got := isDDL(q); got != want {
			t.Errorf("isDDL(%q) = %v", q, got)
		}
	}
}

// A poll that hangs does not pile up: ticks meanwhile are skipped and
// counted, the hung poll times out and is counted as failed, and the
// monitor keeps running. The "server" accepts TCP and never answers.
func TestMonitorPollsDoNotPileUp(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var held []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	m, err := NewLockMonitor(nil, MonitorConfig{DSN: fmt.Sprintf("host=%s port=%s user=x dbname=y sslmode=disable connect_timeout=10", host, port),
		Interval: 20 * time.Millisecond, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 1100*time.Millisecond)
	defer cancel()
	m.Run(ctx)
	polls, skipped, errs := testutil.ToFloat64(m.polls), testutil.ToFloat64(m.skipped), testutil.ToFloat64(m.pollErrors)
	t.Logf("polls %v, skipped %v, errors %v", polls, skipped, errs)
	if polls > 5 || polls < 2 {
		t.Errorf("%v polls in 1.1s with 300ms hangs: want 2..5", polls)
	}
	if skipped < 20 {
		t.Errorf("%v ticks skipped, want most of ~55", skipped)
	}
	if errs < polls-1 || testutil.ToFloat64(m.up) != 0 {
		t.Errorf("errors %v of %v polls, up %v", errs, polls, testutil.ToFloat64(m.up))
	}
	if s := m.Snapshot(); s == nil || s.Err == "" {
		t.Errorf("snapshot after failures: %+v", s)
	}
	if m.Healthy() {
		t.Error("Healthy() after only failed polls")
	}
}

func TestMonitorConfigValidate(t *testing.T) {
	for _, c := range []struct {
		cfg  MonitorConfig
		want string
	}{
		{MonitorConfig{Interval: -1}, "monitor.interval"},
		{MonitorConfig{TopN: 5000}, "monitor.top_n"},
		{MonitorConfig{DSN: "postgres://u:sekrit@h:notaport/db"}, "monitor.dsn"},
	} {
		err := c.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error naming %s", c.cfg, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "sekrit") {
			t.Errorf("the error shows the password: %v", err)
		}
	}
}

type fixedReady struct{}

func (fixedReady) Ready() (bool, []string) { return true, nil }

// /locks shows query text: on loopback it is open; elsewhere it needs the
// bearer token, and without a configured token it is refused.
func TestLocksPageNeedsTokenOffLoopback(t *testing.T) {
	reg, _, _ := everything(t)
	get := func(cfg AdminConfig, header string) int {
		a, err := NewAdmin(cfg, reg, fixedReady{}, nil, NewRecent(1), nil)
		if err != nil {
			t.Fatal(err)
		}
		r := httptest.NewRequest("GET", "/locks", nil)
		if header != "" {
			r.Header.Set("Authorization", header)
		}
		w := httptest.NewRecorder()
		a.Handler().ServeHTTP(w, r)
		return w.Code
	}
	const token = "0123456789abcdef-token"
	for _, c := range []struct {
		cfg    AdminConfig
		header string
		want   int
	}{
		{AdminConfig{Listen: "127.0.0.1:6433"}, "", http.StatusOK},
		{AdminConfig{Listen: "[::1]:6433"}, "", http.StatusOK},
		{AdminConfig{Listen: "0.0.0.0:6433"}, "", http.StatusForbidden},
		{AdminConfig{Listen: "0.0.0.0:6433", Token: token}, "", http.StatusUnauthorized},
		{AdminConfig{Listen: "0.0.0.0:6433", Token: token}, "Bearer wrong-token-wrong-token", http.StatusUnauthorized},
		{AdminConfig{Listen: "0.0.0.0:6433", Token: token}, "Bearer " + token, http.StatusOK},
		{AdminConfig{Listen: "127.0.0.1:6433", Token: token}, "", http.StatusUnauthorized},
	} {
		if got := get(c.cfg, c.header); got != c.want {
			t.Errorf("%+v with %q: %d, want %d", c.cfg, c.header, got, c.want)
		}
	}
	if err := (AdminConfig{Listen: "0.0.0.0:1", Token: "short"}).Validate(); err == nil || !strings.Contains(err.Error(), "admin.token") {
		t.Errorf("a short token: %v", err)
	}
}

func TestReadiness(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	probe := NewUpstreamProbe(nil, ln.Addr().String())
	r := &Ready{Probe: probe}
	if ok, report := r.Ready(); ok {
		t.Fatalf("ready before the config is loaded and the upstream checked: %v", report)
	}
	r.SetConfigLoaded(true)
	probe.Check(context.Background())
	ok, report := r.Ready()
	if !ok || !strings.Contains(strings.Join(report, "\n"), "lock monitor: not configured") {
		t.Fatalf("ready=%v: %v", ok, report)
	}
	r.SetDraining(true)
	if ok, _ := r.Ready(); ok {
		t.Fatal("ready while draining")
	}
	r.SetDraining(false)
	ln.Close()
	probe.Check(context.Background())
	if ok, report := r.Ready(); ok {
		t.Fatalf("ready with the upstream down: %v", report)
	}
	a, _ := NewAdmin(AdminConfig{Listen: "127.0.0.1:0"}, prometheus.NewRegistry(), r, nil, nil, nil)
	w := httptest.NewRecorder()
	a.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/readyz", nil))
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "unreachable") {
		t.Fatalf("/readyz with the upstream down: %d %q", w.Code, w.Body.String())
	}
}

func TestRecentKeepsNewestFirst(t *testing.T) {
	r := NewRecent(3)
	for i := 1; i <= 5; i++ {
		r.add(proxy.DecisionEvent{Action: "reject", ConnID: uint64(i)})
	}
	r.add(proxy.DecisionEvent{Action: "allow", ConnID: 99}) // plain allows are not kept
	var ids []uint64
	for _, ev := range r.List() {
		ids = append(ids, ev.ConnID)
	}
	if fmt.Sprint(ids) != "[5 4 3]" {
		t.Fatalf("recent: %v, want [5 4 3]", ids)
	}
}

// The page renders the blocking tree root first, escaped.
func TestLocksPageRendersTree(t *testing.T) {
	s := pileUp()
	s.Sessions[100].Query = "SELECT '<script>alert(1)</script>'"
	rows := s.rows()
	var order []int
	for _, r := range rows {
		order = append(order, r.PID)
	}
	if fmt.Sprint(order) != "[100 200 201 202 301 300]" {
		t.Fatalf("row order %v", order)
	}
	if !rows[0].Culprit || rows[1].Depth != 1 || rows[2].Depth != 2 {
		t.Fatalf("rows: %+v", rows[:3])
	}
	var b strings.Builder
	if err := lockTemplate.Execute(&b, lockPage{Rows: rows}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "<script>") || !strings.Contains(b.String(), `data-pid="100"`) {
		t.Fatal("the page does not escape query text or lacks the holder")
	}
}
