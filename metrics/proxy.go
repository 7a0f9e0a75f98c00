package metrics

import (
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ddlguard/ddlguard/proxy"
)

// Namespace prefixes every metric name.
const Namespace = "ddlguard"

// Proxy collects the proxy's and the guard's events (it is the proxy's
// Observer) and keeps the most recent decisions for the admin page. Counters
// on the relay's hot path are resolved once, so an event costs an atomic add.
type Proxy struct {
	clientConns         prometheus.Gauge
	clientConnsTotal    prometheus.Counter
	clientRejected      *prometheus.CounterVec
	upstreamConnectErrs prometheus.Counter
	bytesToUpstream     prometheus.Counter
	bytesToClient       prometheus.Counter
	statements          *prometheus.CounterVec
	passed              prometheus.Counter // statements{decision="allow",rule=""}
	rewrites            *prometheus.CounterVec
	lockTimeouts        prometheus.Counter
	lockRetries         prometheus.Counter
	budgetExhausted     prometheus.Counter
	waiting             prometheus.Gauge
	blockerWait         prometheus.Histogram
	ddlDuration         *prometheus.HistogramVec
	lockWait            prometheus.Histogram
	reloadOK            prometheus.Gauge
	reloadTime          prometheus.Gauge
	draining            prometheus.Gauge
	loopHandBacks       *prometheus.CounterVec

	recent *Recent
}

// waitBuckets are for waits a lock timeout and a retry budget bound
// (milliseconds to tens of seconds).
var waitBuckets = []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// ddlBuckets are for DDL, from catalog-only changes to long index builds.
var ddlBuckets = []float64{.005, .01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 1800}

// NewProxy registers the proxy's collectors with reg. version is reported in
// ddlguard_build_info; recent keeps the last decisions (nil: none kept).
func NewProxy(reg prometheus.Registerer, version string, recent *Recent) *Proxy {
	f := factory{reg}
	p := &Proxy{
		clientConns: f.gauge("client_connections", "Client connections being served now."),
		clientConnsTotal: f.counter("client_connections_total",
			"Client connections accepted."),
		clientRejected: f.counterVec("client_connections_rejected_total",
			"Client connections ddlguard refused during startup, by reason (startup: malformed, unsupported or timed out; tls_required; replication; draining).", "reason"),
		upstreamConnectErrs: f.counter("upstream_connect_errors_total",
			"Failures to connect to (or secure the connection to) the upstream server for a client."),
		statements: f.counterVec("statements_total",
			"Statements by the guard's decision (allow, timeout, rewrite, reject, warn) and deciding rule. Queries and Parse messages that cannot take a strong lock count once each as allow.", "decision", "rule"),
		rewrites: f.counterVec("rewrites_total",
			"Rewrite sequences run by ddlguard, by rule and outcome (succeeded, failed).", "rule", "outcome"),
		lockTimeouts: f.counter("lock_timeouts_total",
			"Attempts of guarded statements (or rewrite steps) that the server ended with lock_not_available."),
		lockRetries: f.counter("lock_retries_total",
			"New attempts of a guarded statement after a lock timeout."),
		budgetExhausted: f.counter("retry_budget_exhausted_total",
			"Guarded statements ddlguard gave up on because blockers outlasted the retry budget."),
		waiting: f.gauge("guarded_statements_waiting",
			"Guarded statements ddlguard is holding now while it waits for blockers or retries."),
		blockerWait: f.histogram("blocker_wait_seconds",
			"Time ddlguard waited for blocking sessions before an attempt of a guarded statement.", waitBuckets),
		ddlDuration: f.histogramVec("ddl_duration_seconds",
			"Time from the decision to the answer of guarded statements (timeout and rewrite), by statement kind.", ddlBuckets, "kind"),
		lockWait: f.histogram("lock_wait_seconds",
			"Time guarded statements spent in the server's lock queue: attempts that ended in a lock timeout, and the last attempt of a statement that does no work under its lock.", waitBuckets),
		reloadOK: f.gauge("config_last_reload_successful",
			"1 when the last configuration load (start or SIGHUP) succeeded."),
		reloadTime: f.gauge("config_last_reload_success_timestamp_seconds",
			"Unix time of the last successful configuration load."),
		draining: f.gauge("draining",
			"1 while ddlguard drains connections before shutting down."),
		loopHandBacks: f.counterVec("relay_loop_handbacks_total",
			"Times an event loop gave a connection's relay back to its own goroutine, by reason (decision: a statement needs the guard; socket_full; writer_busy; large_frame; invalid_frame; peer_gone; closed).", "reason"),
		recent: recent,
	}
	f.gaugeVec("build_info", "ddlguard's version and the Go version it was built with.", "version", "goversion").
		WithLabelValues(version, runtime.Version()).Set(1)
	bytes := f.counterVec("relayed_bytes_total", "Protocol bytes relayed, by direction (client_to_upstream, upstream_to_client).", "direction")
	p.bytesToUpstream = bytes.WithLabelValues("client_to_upstream")
	p.bytesToClient = bytes.WithLabelValues("upstream_to_client")
	p.passed = p.statements.WithLabelValues("allow", "")
	for _, r := range []string{proxy.RejectStartup, proxy.RejectTLSRequired, proxy.RejectReplication, proxy.RejectDraining} {
		p.clientRejected.WithLabelValues(r) // present at zero, for rate()
	}
	for _, r := range proxy.HandBackReasons {
		p.loopHandBacks.WithLabelValues(r)
	}
	for _, d := range []string{"allow", "timeout", "rewrite", "reject", "warn"} {
		p.statements.WithLabelValues(d, "")
	}
	return p
}

// ConfigLoaded records a configuration load or reload.
func (p *Proxy) ConfigLoaded(ok bool) {
	if ok {
		p.reloadOK.Set(1)
		p.reloadTime.Set(float64(time.Now().UnixNano()) / 1e9)
		return
	}
	p.reloadOK.Set(0)
}

// SetDraining records whether the server is draining.
func (p *Proxy) SetDraining(on bool) {
	if on {
		p.draining.Set(1)
	} else {
		p.draining.Set(0)
	}
}

// The proxy.Observer methods.

func (p *Proxy) ClientAccepted() {
	p.clientConns.Inc()
	p.clientConnsTotal.Inc()
}
func (p *Proxy) ClientClosed()                { p.clientConns.Dec() }
func (p *Proxy) ClientRejected(reason string) { p.clientRejected.WithLabelValues(reason).Inc() }
func (p *Proxy) UpstreamConnectFailed()       { p.upstreamConnectErrs.Inc() }
func (p *Proxy) Relayed(toUpstream bool, n int) {
	if toUpstream {
		p.bytesToUpstream.Add(float64(n))
	} else {
		p.bytesToClient.Add(float64(n))
	}
}
func (p *Proxy) StatementPassed() { p.passed.Inc() }
func (p *Proxy) Decided(ev proxy.DecisionEvent) {
	p.statements.WithLabelValues(ev.Action, ev.Rule).Inc()
	for _, w := range ev.Warnings {
		p.statements.WithLabelValues("warn", w).Inc()
	}
	if p.recent != nil {
		p.recent.add(ev)
	}
}
func (p *Proxy) WaitingChanged(delta int)    { p.waiting.Add(float64(delta)) }
func (p *Proxy) BlockerWait(d time.Duration) { p.blockerWait.Observe(d.Seconds()) }
func (p *Proxy) LockTimeout()                { p.lockTimeouts.Inc() }
func (p *Proxy) LockRetry()                  { p.lockRetries.Inc() }
func (p *Proxy) RetryBudgetExhausted()       { p.budgetExhausted.Inc() }
func (p *Proxy) LoopHandBack(reason string)  { p.loopHandBacks.WithLabelValues(reason).Inc() }
func (p *Proxy) Rewritten(rule string, ok bool) {
	outcome := "succeeded"
	if !ok {
		outcome = "failed"
	}
	p.rewrites.WithLabelValues(rule, outcome).Inc()
}
func (p *Proxy) GuardedDone(kind string, total, lockWait time.Duration) {
	p.ddlDuration.WithLabelValues(kind).Observe(total.Seconds())
	p.lockWait.Observe(lockWait.Seconds())
}

var _ proxy.Observer = (*Proxy)(nil)

// Recent keeps the last decisions other than plain allows, newest last.
type Recent struct {
	mu   sync.Mutex
	buf  []proxy.DecisionEvent
	next int
	full bool
}

// NewRecent keeps the last n decisions.
func NewRecent(n int) *Recent { return &Recent{buf: make([]proxy.DecisionEvent, max(n, 1))} }

func (r *Recent) add(ev proxy.DecisionEvent) {
	if ev.Action == "allow" && len(ev.Warnings) == 0 {
		return
	}
	ev.Warnings = append([]string(nil), ev.Warnings...)
	ev.Relations = append([]string(nil), ev.Relations...)
	r.mu.Lock()
	r.buf[r.next] = ev
	r.next = (r.next + 1) % len(r.buf)
	r.full = r.full || r.next == 0
	r.mu.Unlock()
}

// List returns the kept decisions, newest first.
func (r *Recent) List() []proxy.DecisionEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.next
	if r.full {
		n = len(r.buf)
	}
	out := make([]proxy.DecisionEvent, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, r.buf[(r.next-i+len(r.buf))%len(r.buf)])
	}
	return out
}

// factory creates and registers collectors in the ddlguard namespace.
type factory struct{ reg prometheus.Registerer }

func (f factory) register(c prometheus.Collector) {
	if f.reg != nil {
		f.reg.MustRegister(c)
	}
}

func (f factory) gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help})
	f.register(g)
	return g
}

func (f factory) gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help}, labels)
	f.register(g)
	return g
}

func (f factory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help})
	f.register(c)
	return c
}

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help}, labels)
	f.register(c)
	return c
}

func (f factory) histogram(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: name, Help: help, Buckets: buckets})
	f.register(h)
	return h
}

func (f factory) histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: name, Help: help, Buckets: buckets}, labels)
	f.register(h)
	return h
}
