package main

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/ddlguard/ddlguard/guard"
	"github.com/ddlguard/ddlguard/metrics"
	"github.com/ddlguard/ddlguard/proxy"
)

// Each section of a Config resolves, validated, into the runtime form of
// the package that runs it (guard, proxy, metrics, the logger). Errors are
// configErrors that name the field; loadConfig calls these in turn.

// guardConfig resolves the guard section; errors name the field.
func (cfg Config) guardConfig() (guard.Config, error) {
	gc := guard.DefaultConfig()
	g := cfg.Guard
	gc.LockTimeout = g.LockTimeout
	gc.SmallTableBytes = int64(g.SmallTableBytes)
	gc.InlineOverrideRoles = g.InlineOverrideRoles
	var err error
	if gc.Rules, err = ruleConfigs("guard.rules", g.Rules); err != nil {
		return gc, err
	}
	overrides := func(path string, in map[string]OverrideSettings) (map[string]guard.Override, error) {
		if len(in) == 0 {
			return nil, nil
		}
		out := make(map[string]guard.Override, len(in))
		for name, o := range in {
			rules, err := ruleConfigs(path+"."+name+".rules", o.Rules)
			if err != nil {
				return nil, err
			}
			ov := guard.Override{Rules: rules, LockTimeout: o.LockTimeout}
			if o.SmallTableBytes != nil {
				n := int64(*o.SmallTableBytes)
				ov.SmallTableBytes = &n
			}
			out[name] = ov
		}
		return out, nil
	}
	if gc.Databases, err = overrides("guard.databases", g.Databases); err != nil {
		return gc, err
	}
	if gc.Roles, err = overrides("guard.roles", g.Roles); err != nil {
		return gc, err
	}
	if err := gc.Validate(); err != nil {
		return gc, configErrorf("guard.%v", err)
	}
	return gc, nil
}

func ruleConfigs(path string, in map[string]RuleSettings) (map[string]guard.RuleConfig, error) {
	if len(in) == 0 {
		return nil, nil
	}
	out := make(map[string]guard.RuleConfig, len(in))
	for id, rs := range in {
		rc := guard.RuleConfig{LockTimeout: rs.LockTimeout}
		if rs.Mode != "" {
			m, err := guard.ParseMode(rs.Mode)
			if err != nil {
				return nil, configErrorf("%s.%s.mode: %v", path, id, err)
			}
			rc.Mode = m
		}
		if rs.Rewrite != nil {
			rc.NoRewrite = !*rs.Rewrite
		}
		out[id] = rc
	}
	return out, nil
}

// proxyConfig validates cfg and resolves it into the proxy's runtime form,
// loading certificates. Errors name the field.
func (cfg Config) proxyConfig(logger *slog.Logger) (proxy.Config, error) {
	pc := proxy.Config{
		Listen:           cfg.Listen,
		Upstream:         cfg.Upstream,
		RequireClientTLS: cfg.ClientTLS.Require,
		UpstreamTLSMode:  proxy.UpstreamTLSMode(cfg.UpstreamTLS.Mode),
		ConnectTimeout:   cfg.ConnectTimeout,
		StartupTimeout:   cfg.StartupTimeout,
		MaxMessageSize:   int(cfg.MaxMessageSize),
		AllowReplication: cfg.AllowReplication,
		DisableEventLoop: !cfg.EventLoop,
		EventLoopSpin:    cfg.EventLoopSpin,
		Logger:           logger,
	}
	if cfg.ConnectTimeout <= 0 {
		return pc, configErrorf("connect_timeout: must be greater than zero")
	}
	if cfg.StartupTimeout <= 0 {
		return pc, configErrorf("startup_timeout: must be greater than zero")
	}
	if (cfg.ClientTLS.CertFile == "") != (cfg.ClientTLS.KeyFile == "") {
		return pc, configErrorf("client_tls: cert_file and key_file must be set together")
	}
	if cfg.ClientTLS.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.ClientTLS.CertFile, cfg.ClientTLS.KeyFile)
		if err != nil {
			return pc, configErrorf("client_tls.cert_file/key_file: %v", err)
		}
		pc.ClientTLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	ut := cfg.UpstreamTLS
	mode := proxy.UpstreamTLSMode(ut.Mode)
	if !mode.Valid() {
		return pc, configErrorf("upstream_tls.mode: %q is not one of disable, prefer, require, verify-ca, verify-full", ut.Mode)
	}
	if mode == proxy.UpstreamTLSDisable && (ut.CAFile != "" || ut.CertFile != "") {
		return pc, configErrorf("upstream_tls.mode: disable, but upstream_tls.ca_file or cert_file is set")
	}
	if (ut.CertFile == "") != (ut.KeyFile == "") {
		return pc, configErrorf("upstream_tls: cert_file and key_file must be set together")
	}
	if mode != proxy.UpstreamTLSDisable {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: ut.ServerName}
		if ut.CAFile != "" {
			pem, err := os.ReadFile(ut.CAFile)
			if err != nil {
				return pc, configErrorf("upstream_tls.ca_file: %v", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return pc, configErrorf("upstream_tls.ca_file: %s holds no PEM certificate", ut.CAFile)
			}
			tc.RootCAs = pool
		}
		if ut.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(ut.CertFile, ut.KeyFile)
			if err != nil {
				return pc, configErrorf("upstream_tls.cert_file/key_file: %v", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		pc.UpstreamTLS = tc
	}
	if cfg.Shutdown.Delay < 0 {
		return pc, configErrorf("shutdown.delay: must not be negative")
	}
	if cfg.Shutdown.DrainTimeout <= 0 {
		return pc, configErrorf("shutdown.drain_timeout: must be greater than zero")
	}
	e := cfg.Execution
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"retry_budget", e.RetryBudget}, {"backoff_min", e.BackoffMin}, {"backoff_max", e.BackoffMax}, {"blocker_poll", e.BlockerPoll}} {
		if d.v <= 0 {
			return pc, configErrorf("execution.%s: must be greater than zero", d.name)
		}
	}
	if e.BackoffMax < e.BackoffMin {
		return pc, configErrorf("execution.backoff_max: %s is below backoff_min %s", e.BackoffMax, e.BackoffMin)
	}
	if e.IdleInTransactionTimeout < 0 {
		return pc, configErrorf("execution.idle_in_transaction_timeout: must not be negative (0 disables)")
	}
	pc.Exec = proxy.ExecConfig{RetryBudget: e.RetryBudget, BackoffMin: e.BackoffMin, BackoffMax: e.BackoffMax,
		BlockerPoll: e.BlockerPoll, NoBlockerCheck: !e.BlockerCheck, IdleInTransactionTimeout: e.IdleInTransactionTimeout}
	if pc.Exec.IdleInTransactionTimeout == 0 {
		pc.Exec.IdleInTransactionTimeout = -1 // disabled
	}
	if cfg.Monitor.DSN != "" {
		m, err := proxy.NewMonitorFacts(cfg.Monitor.DSN) // pgx masks passwords in its errors
		if err != nil {
			return pc, &configError{err.Error()}
		}
		pc.MonitorFacts = m
	}
	if err := pc.Validate(); err != nil {
		return pc, &configError{err.Error()}
	}
	return pc, nil
}

// adminConfig resolves the admin section; errors name the field.
func (cfg Config) adminConfig() (metrics.AdminConfig, error) {
	a := cfg.Admin
	ac := metrics.AdminConfig{Listen: a.Listen, Token: a.Token}
	if (a.CertFile == "") != (a.KeyFile == "") {
		return ac, configErrorf("admin: cert_file and key_file must be set together")
	}
	if a.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(a.CertFile, a.KeyFile)
		if err != nil {
			return ac, configErrorf("admin.cert_file/key_file: %v", err)
		}
		ac.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if err := ac.Validate(); err != nil {
		return ac, &configError{err.Error()}
	}
	return ac, nil
}

// monitorConfig resolves the lock monitor's settings.
func (cfg Config) monitorConfig(logger *slog.Logger) (metrics.MonitorConfig, error) {
	m := cfg.Monitor
	mc := metrics.MonitorConfig{DSN: m.DSN, Interval: m.Interval, Timeout: m.Timeout, TopN: m.TopN, Logger: logger}
	switch {
	case m.Interval <= 0:
		return mc, configErrorf("monitor.interval: must be greater than zero")
	case m.Timeout <= 0:
		return mc, configErrorf("monitor.timeout: must be greater than zero")
	}
	if err := mc.Validate(); err != nil {
		return mc, &configError{err.Error()}
	}
	return mc, nil
}

// newLogger builds the slog logger log.format and log.level ask for,
// writing to w.
func (cfg Config) newLogger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.Log.Level)); err != nil {
		return nil, configErrorf("log.level: %q is not one of debug, info, warn, error", cfg.Log.Level)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch cfg.Log.Format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, configErrorf("log.format: %q is not one of text, json", cfg.Log.Format)
}
