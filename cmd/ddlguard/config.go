package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ddlguard/ddlguard/guard"
	"github.com/ddlguard/ddlguard/metrics"
	"github.com/ddlguard/ddlguard/proxy"
)

// Config is the whole configuration of `ddlguard serve`: the YAML file's
// schema, with defaults from defaultConfig. Every leaf can be overridden by
// an environment variable named after its path (upstream_tls.mode ->
// DDLGUARD_UPSTREAM_TLS_MODE), and some by flags. Precedence: defaults, file,
// environment, flags.
type Config struct {
	Listen           string         `yaml:"listen"`
	Upstream         string         `yaml:"upstream"`
	ConnectTimeout   time.Duration  `yaml:"connect_timeout"`
	StartupTimeout   time.Duration  `yaml:"startup_timeout"`
	MaxMessageSize   ByteSize       `yaml:"max_message_size"`
	AllowReplication bool           `yaml:"allow_replication"`
	EventLoop        bool           `yaml:"event_loop"`
	EventLoopSpin    time.Duration  `yaml:"event_loop_spin"`
	ClientTLS        ClientTLS      `yaml:"client_tls"`
	UpstreamTLS      UpstreamTLS    `yaml:"upstream_tls"`
	Log              LogConfig      `yaml:"log"`
	Guard            GuardConfig    `yaml:"guard"`
	Monitor          MonitorConfig  `yaml:"monitor"`
	Execution        Execution      `yaml:"execution"`
	Admin            AdminConfig    `yaml:"admin"`
	Shutdown         ShutdownConfig `yaml:"shutdown"`
}

// ShutdownConfig is the graceful shutdown on SIGTERM or SIGINT.
type ShutdownConfig struct {
	// Delay: time between /readyz failing and the listener closing (for
	// load balancers to stop routing).
	Delay time.Duration `yaml:"delay"`
	// DrainTimeout bounds the wait for sessions to finish.
	DrainTimeout time.Duration `yaml:"drain_timeout"`
}

// DefaultDrainTimeout is shutdown.drain_timeout's default.
const DefaultDrainTimeout = 30 * time.Second

// AdminConfig is the HTTP admin listener (/metrics, /healthz, /readyz,
// /locks).
type AdminConfig struct {
	// Listen is host:port, or "off" (--admin-listen).
	Listen   string `yaml:"listen"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// Token is the bearer token /locks requires off loopback
	// (DDLGUARD_ADMIN_TOKEN).
	Token string `yaml:"token"`
}

// Execution tunes how guarded statements run (lock-aware execution).
type Execution struct {
	// RetryBudget bounds waiting for blockers plus retries.
	RetryBudget time.Duration `yaml:"retry_budget"`
	BackoffMin  time.Duration `yaml:"backoff_min"`
	BackoffMax  time.Duration `yaml:"backoff_max"`
	// BlockerCheck looks for conflicting lock holders before sending.
	BlockerCheck bool          `yaml:"blocker_check"`
	BlockerPoll  time.Duration `yaml:"blocker_poll"`
	// IdleInTransactionTimeout bounds an idle transaction that holds
	// ACCESS EXCLUSIVE after a guarded statement (0 disables).
	IdleInTransactionTimeout time.Duration `yaml:"idle_in_transaction_timeout"`
}

// MonitorConfig is ddlguard's own connection to the server: catalog facts
// and the blocker check (on each client's database), and the lock monitor
// (on the DSN's database). Without a DSN, facts are asked on each client's
// own connection and there are no lock-wait metrics.
type MonitorConfig struct {
	// DSN is a libpq URL or key=value string (DDLGUARD_MONITOR_DSN) for a
	// role with pg_monitor.
	DSN string `yaml:"dsn"`
	// Interval between lock monitor polls; Timeout bounds one poll.
	Interval time.Duration `yaml:"interval"`
	Timeout  time.Duration `yaml:"timeout"`
	// TopN bounds the per-relation and per-blocker series.
	TopN int `yaml:"top_n"`
}

// GuardConfig is the guard's section: how statements are decided.
type GuardConfig struct {
	LockTimeout         time.Duration               `yaml:"lock_timeout"`
	SmallTableBytes     ByteSize                    `yaml:"small_table_bytes"`
	Rules               map[string]RuleSettings     `yaml:"rules"`
	Databases           map[string]OverrideSettings `yaml:"databases"`
	Roles               map[string]OverrideSettings `yaml:"roles"`
	InlineOverrideRoles []string                    `yaml:"inline_override_roles"`
}

// RuleSettings configures one rule.
type RuleSettings struct {
	Mode        string        `yaml:"mode"`
	Rewrite     *bool         `yaml:"rewrite"`
	LockTimeout time.Duration `yaml:"lock_timeout"`
}

// OverrideSettings configures a database or role.
type OverrideSettings struct {
	LockTimeout     time.Duration           `yaml:"lock_timeout"`
	SmallTableBytes *ByteSize               `yaml:"small_table_bytes"`
	Rules           map[string]RuleSettings `yaml:"rules"`
}

// ClientTLS is TLS toward clients, with ddlguard's own certificate.
type ClientTLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	Require  bool   `yaml:"require"`
}

// UpstreamTLS is TLS toward the PostgreSQL server.
type UpstreamTLS struct {
	Mode       string `yaml:"mode"`
	CAFile     string `yaml:"ca_file"`
	ServerName string `yaml:"server_name"`
	CertFile   string `yaml:"cert_file"`
	KeyFile    string `yaml:"key_file"`
}

// LogConfig selects the log format and level.
type LogConfig struct {
	Format string `yaml:"format"`
	Level  string `yaml:"level"`
}

// ByteSize is a size in bytes, written as a number or with a unit (kB, MB,
// GB as PostgreSQL writes them, or KiB, MiB, GiB; all binary).
type ByteSize int64

func defaultConfig() Config {
	return Config{
		Listen:         proxy.DefaultListen,
		ConnectTimeout: proxy.DefaultConnectTimeout,
		StartupTimeout: proxy.DefaultStartupTimeout,
		MaxMessageSize: proxy.DefaultMaxMessageSize,
		EventLoop:      true,
		UpstreamTLS:    UpstreamTLS{Mode: string(proxy.UpstreamTLSPrefer)},
		Log:            LogConfig{Format: "text", Level: "info"},
		Admin:          AdminConfig{Listen: metrics.DefaultAdminListen},
		Shutdown:       ShutdownConfig{DrainTimeout: DefaultDrainTimeout},
		Monitor: MonitorConfig{Interval: metrics.DefaultMonitorInterval, Timeout: metrics.DefaultMonitorTimeout,
			TopN: metrics.DefaultMonitorTopN},
		Guard: GuardConfig{
			LockTimeout:     guard.DefaultLockTimeout,
			SmallTableBytes: guard.DefaultSmallTableBytes,
		},
		Execution: Execution{
			RetryBudget:              proxy.DefaultRetryBudget,
			BackoffMin:               proxy.DefaultBackoffMin,
			BackoffMax:               proxy.DefaultBackoffMax,
			BlockerCheck:             true,
			BlockerPoll:              proxy.DefaultBlockerPoll,
			IdleInTransactionTimeout: proxy.DefaultIdleInTransactionTimeout,
		},
	}
}

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

// configError is a configuration problem; its text names the field.
type configError struct{ msg string }

func (e *configError) Error() string { return e.msg }

func configErrorf(format string, args ...any) error {
	return &configError{fmt.Sprintf(format, args...)}
}

// loadConfig builds the configuration from defaults, the file (if path is
// not empty) and the environment.
func loadConfig(path string, environ []string) (Config, error) {
	cfg := defaultConfig()
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return cfg, configErrorf("config file: %v", err)
		}
		var doc yaml.Node
		dec := yaml.NewDecoder(bytes.NewReader(data))
		if err := dec.Decode(&doc); err != nil && err.Error() != "EOF" {
			return cfg, configErrorf("config file %s: %v", path, strings.TrimPrefix(err.Error(), "yaml: "))
		}
		if len(doc.Content) > 0 {
			if err := decodeNode("", doc.Content[0], reflect.ValueOf(&cfg).Elem()); err != nil {
				return cfg, configErrorf("config file %s: %v", path, err)
			}
		}
	}
	if err := applyEnv(reflect.ValueOf(&cfg).Elem(), "", environ); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// decodeNode copies a YAML node into v, naming the offending field on error.
func decodeNode(path string, n *yaml.Node, v reflect.Value) error {
	switch v.Kind() {
	case reflect.Ptr:
		if n.Tag == "!!null" {
			return nil
		}
		p := reflect.New(v.Type().Elem())
		if err := decodeNode(path, n, p.Elem()); err != nil {
			return err
		}
		v.Set(p)
		return nil
	case reflect.Map:
		if n.Tag == "!!null" {
			return nil
		}
		if n.Kind != yaml.MappingNode {
			return fmt.Errorf("%s (line %d): expected a mapping", path, n.Line)
		}
		if v.IsNil() {
			v.Set(reflect.MakeMap(v.Type()))
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			elem := reflect.New(v.Type().Elem()).Elem()
			if err := decodeNode(join(path, key), n.Content[i+1], elem); err != nil {
				return err
			}
			v.SetMapIndex(reflect.ValueOf(key), elem)
		}
		return nil
	case reflect.Slice:
		if n.Tag == "!!null" {
			return nil
		}
		if n.Kind != yaml.SequenceNode {
			return fmt.Errorf("%s (line %d): expected a list", path, n.Line)
		}
		out := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			if err := decodeNode(fmt.Sprintf("%s[%d]", path, i), item, out.Index(i)); err != nil {
				return err
			}
		}
		v.Set(out)
		return nil
	}
	if v.Kind() == reflect.Struct {
		if n.Kind != yaml.MappingNode {
			if n.Tag == "!!null" {
				return nil
			}
			return fmt.Errorf("%s (line %d): expected a mapping of settings", orTop(path), n.Line)
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			f, ok := fieldByTag(v, key)
			if !ok {
				return fmt.Errorf("%s (line %d): unknown setting (known: %s)", join(path, key), n.Content[i].Line, strings.Join(tags(v.Type()), ", "))
			}
			if err := decodeNode(join(path, key), n.Content[i+1], f); err != nil {
				return err
			}
		}
		return nil
	}
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("%s (line %d): expected a single value", path, n.Line)
	}
	if err := setLeaf(v, n.Value); err != nil {
		return fmt.Errorf("%s (line %d): %v", path, n.Line, err)
	}
	return nil
}

// applyEnv overrides leaves from DDLGUARD_* variables.
func applyEnv(v reflect.Value, path string, environ []string) error {
	for i := 0; i < v.NumField(); i++ {
		tag := v.Type().Field(i).Tag.Get("yaml")
		p := join(path, tag)
		switch v.Field(i).Kind() {
		case reflect.Struct:
			if err := applyEnv(v.Field(i), p, environ); err != nil {
				return err
			}
			continue
		case reflect.Map, reflect.Slice, reflect.Ptr:
			continue // file only
		}
		name := envName(p)
		if val, ok := lookupEnv(environ, name); ok {
			if err := setLeaf(v.Field(i), val); err != nil {
				return configErrorf("%s (environment %s): %v", p, name, err)
			}
		}
	}
	return nil
}

func envName(path string) string {
	return "DDLGUARD_" + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
}

func lookupEnv(environ []string, name string) (string, bool) {
	for i := len(environ) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(environ[i], "="); ok && k == name {
			return v, true
		}
	}
	return "", false
}

// setLeaf parses s into a leaf setting.
func setLeaf(v reflect.Value, s string) error {
	switch v.Interface().(type) {
	case time.Duration:
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("%q is not a duration (write it like 500ms, 5s or 1m)", s)
		}
		v.SetInt(int64(d))
	case ByteSize:
		n, err := parseByteSize(s)
		if err != nil {
			return err
		}
		v.SetInt(n)
	case bool:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("%q is not true or false", s)
		}
		v.SetBool(b)
	case string:
		v.SetString(s)
	case int:
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("%q is not a whole number", s)
		}
		v.SetInt(int64(n))
	default:
		return fmt.Errorf("unsupported setting type %s", v.Type())
	}
	return nil
}

func parseByteSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"kB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<40)/mult {
		return 0, fmt.Errorf("%q is not a size (write it like 1048576, 64MiB or 1GiB)", s)
	}
	return n * mult, nil
}

func fieldByTag(v reflect.Value, tag string) (reflect.Value, bool) {
	for i := 0; i < v.NumField(); i++ {
		if v.Type().Field(i).Tag.Get("yaml") == tag {
			return v.Field(i), true
		}
	}
	return reflect.Value{}, false
}

func tags(t reflect.Type) []string {
	out := make([]string, t.NumField())
	for i := range out {
		out[i] = t.Field(i).Tag.Get("yaml")
	}
	return out
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func orTop(path string) string {
	if path == "" {
		return "top level"
	}
	return path
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

// newLogger builds the slog logger the config asks for.
func (cfg Config) newLogger(w *os.File) (*slog.Logger, error) {
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
