package metrics

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The admin listener: HTTP(S) on its own address, serving
//
//	/metrics  Prometheus exposition of every registered collector
//	/healthz  200 while the process serves
//	/readyz   200 when the upstream is reachable, the configuration is
//	          loaded and ddlguard is not draining; 503 otherwise; the body
//	          says why, and whether the lock monitor is configured
//	/locks    the live lock page (lockpage.go)
//
// /locks shows query text, so on an address other than loopback it needs
// the configured bearer token (and is refused when none is configured).

// DefaultAdminListen is where the admin listener binds by default.
const DefaultAdminListen = "127.0.0.1:6433"

// AdminConfig configures the admin listener.
type AdminConfig struct {
	// Listen is host:port ("" or "off": no admin listener).
	Listen string
	// TLS, when set, serves HTTPS.
	TLS *tls.Config
	// Token is the bearer token /locks requires when Listen is not loopback.
	Token string
}

// Enabled reports whether an admin listener is configured.
func (c AdminConfig) Enabled() bool { return c.Listen != "" && c.Listen != "off" }

// Validate names the first bad field.
func (c AdminConfig) Validate() error {
	if !c.Enabled() {
		return nil
	}
	host, port, err := net.SplitHostPort(c.Listen)
	if err != nil || port == "" {
		return fmt.Errorf("admin.listen: %q is not host:port", c.Listen)
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("admin.listen: bad port in %q", c.Listen)
	}
	_ = host
	if c.Token != "" && len(c.Token) < 16 {
		return errors.New("admin.token: use at least 16 characters")
	}
	return nil
}

// loopback reports whether a listen address accepts only local connections.
func loopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Readiness answers /readyz.
type Readiness interface {
	// Ready reports whether ddlguard should receive traffic, with one line
	// per check.
	Ready() (ok bool, report []string)
}

// Admin is the admin listener's handler and server.
type Admin struct {
	cfg      AdminConfig
	gatherer prometheus.Gatherer
	ready    Readiness
	monitor  *LockMonitor // nil without a monitor DSN
	recent   *Recent
	log      *slog.Logger
	srv      *http.Server
	addr     atomic.Pointer[string]
}

// NewAdmin builds the admin handler. monitor and recent may be nil.
func NewAdmin(cfg AdminConfig, g prometheus.Gatherer, ready Readiness, monitor *LockMonitor, recent *Recent, log *slog.Logger) (*Admin, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	return &Admin{cfg: cfg, gatherer: g, ready: ready, monitor: monitor, recent: recent, log: log}, nil
}

// Handler serves the admin endpoints.
func (a *Admin) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.gatherer, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelWarn)}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", a.serveReady)
	mux.HandleFunc("GET /locks", a.serveLocks)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><title>ddlguard</title><h1>ddlguard</h1><ul>`+
			`<li><a href="/metrics">/metrics</a><li><a href="/healthz">/healthz</a><li><a href="/readyz">/readyz</a><li><a href="/locks">/locks</a></ul>`)
	})
	return mux
}

func (a *Admin) serveReady(w http.ResponseWriter, r *http.Request) {
	ok, report := a.ready.Ready()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "not ready")
	} else {
		fmt.Fprintln(w, "ready")
	}
	for _, line := range report {
		fmt.Fprintln(w, line)
	}
}

// authorized checks the bearer token for pages that show query text.
func (a *Admin) authorized(w http.ResponseWriter, r *http.Request) bool {
	if loopback(a.cfg.Listen) && a.cfg.Token == "" {
		return true
	}
	if a.cfg.Token == "" {
		http.Error(w, "this page shows query text: on an admin address other than loopback it needs admin.token configured", http.StatusForbidden)
		return false
	}
	got := r.Header.Get("Authorization")
	want := "Bearer " + a.cfg.Token
	if subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="ddlguard"`)
		http.Error(w, "unauthorized: send Authorization: Bearer <admin.token>", http.StatusUnauthorized)
		return false
	}
	return true
}

// Start listens and serves in the background.
func (a *Admin) Start() error {
	ln, err := net.Listen("tcp", a.cfg.Listen)
	if err != nil {
		return fmt.Errorf("admin.listen: %w", err)
	}
	if a.cfg.TLS != nil {
		ln = tls.NewListener(ln, a.cfg.TLS)
	}
	addr := ln.Addr().String()
	a.addr.Store(&addr)
	a.srv = &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelDebug)}
	go func() {
		if err := a.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("admin listener failed", "err", err)
		}
	}()
	scheme := "http"
	if a.cfg.TLS != nil {
		scheme = "https"
	}
	a.log.Info("admin listener", "addr", addr, "url", scheme+"://"+addr+"/")
	return nil
}

// Addr is the address the listener bound ("" before Start).
func (a *Admin) Addr() string {
	if p := a.addr.Load(); p != nil {
		return *p
	}
	return ""
}

// Close stops the listener.
func (a *Admin) Close() error {
	if a.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return a.srv.Shutdown(ctx)
}

// UpstreamProbe checks that the upstream accepts TCP connections, every
// Interval, and exports ddlguard_upstream_up.
type UpstreamProbe struct {
	Addr     string
	Interval time.Duration
	Timeout  time.Duration
	up       prometheus.Gauge
	ok       atomic.Bool
	checked  atomic.Bool
	lastErr  atomic.Pointer[string]
}

// NewUpstreamProbe registers ddlguard_upstream_up.
func NewUpstreamProbe(reg prometheus.Registerer, addr string) *UpstreamProbe {
	return &UpstreamProbe{Addr: addr, Interval: 5 * time.Second, Timeout: 3 * time.Second,
		up: factory{reg}.gauge("upstream_up", "1 when the last probe reached the upstream server (a TCP connection).")}
}

// Check probes once.
func (p *UpstreamProbe) Check(ctx context.Context) bool {
	d := net.Dialer{Timeout: p.Timeout}
	c, err := d.DialContext(ctx, "tcp", p.Addr)
	if err == nil {
		c.Close()
		p.up.Set(1)
		p.ok.Store(true)
	} else {
		msg := err.Error()
		p.lastErr.Store(&msg)
		p.up.Set(0)
		p.ok.Store(false)
	}
	p.checked.Store(true)
	return err == nil
}

// Run probes until ctx ends.
func (p *UpstreamProbe) Run(ctx context.Context) {
	t := time.NewTicker(p.Interval)
	defer t.Stop()
	for {
		p.Check(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Status is the probe's last result for /readyz.
func (p *UpstreamProbe) Status() (bool, string) {
	if !p.checked.Load() {
		return false, "upstream " + p.Addr + ": not checked yet"
	}
	if p.ok.Load() {
		return true, "upstream " + p.Addr + ": reachable"
	}
	msg := ""
	if e := p.lastErr.Load(); e != nil {
		msg = ": " + *e
	}
	return false, "upstream " + p.Addr + ": unreachable" + strings.TrimSpace(msg)
}

// Ready is the Readiness of a running ddlguard: the upstream is
// reachable, a configuration is loaded, and it is not draining. The lock
// monitor is reported but does not decide readiness (without it, only the
// lock-wait metrics are missing).
type Ready struct {
	Probe    *UpstreamProbe
	Monitor  *LockMonitor // nil: not configured
	draining atomic.Bool
	loaded   atomic.Bool
}

// SetDraining marks the server as draining (not ready from now on).
func (r *Ready) SetDraining(on bool) { r.draining.Store(on) }

// SetConfigLoaded records that a configuration is in force.
func (r *Ready) SetConfigLoaded(on bool) { r.loaded.Store(on) }

// Ready implements Readiness.
func (r *Ready) Ready() (bool, []string) {
	ok := true
	var report []string
	if r.draining.Load() {
		ok = false
		report = append(report, "draining: shutting down, not taking new connections")
	}
	if r.loaded.Load() {
		report = append(report, "config: loaded")
	} else {
		ok = false
		report = append(report, "config: not loaded")
	}
	if r.Probe != nil {
		up, line := r.Probe.Status()
		ok = ok && up
		report = append(report, line)
	}
	switch {
	case r.Monitor == nil:
		report = append(report, "lock monitor: not configured (set monitor.dsn or DDLGUARD_MONITOR_DSN); lock-wait metrics are absent")
	case r.Monitor.Healthy():
		report = append(report, "lock monitor: polling")
	default:
		report = append(report, "lock monitor: failing (see ddlguard_monitor_poll_errors_total and the log)")
	}
	return ok, report
}
