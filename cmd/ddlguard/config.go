package main

import (
	"time"

	"github.com/ddlguard/ddlguard/guard"
	"github.com/ddlguard/ddlguard/metrics"
	"github.com/ddlguard/ddlguard/proxy"
)

// Config is the whole configuration of `ddlguard serve`: the YAML file's
// schema, with defaults from defaultConfig. Every leaf can be overridden by
// an environment variable named after its path (upstream_tls.mode ->
// DDLGUARD_UPSTREAM_TLS_MODE), and some by flags. Precedence: defaults, file,
// environment, flags; loadConfig assembles and validates it.
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
