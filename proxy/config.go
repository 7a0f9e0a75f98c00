package proxy

import (
	"cmp"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/ddlguard/ddlguard/guard"
)

// UpstreamTLSMode says how ddlguard secures its connection to the upstream
// server. The names and meanings follow libpq's sslmode.
type UpstreamTLSMode string

const (
	// UpstreamTLSDisable never asks the upstream for TLS.
	UpstreamTLSDisable UpstreamTLSMode = "disable"
	// UpstreamTLSPrefer uses TLS when the upstream offers it, plaintext otherwise.
	UpstreamTLSPrefer UpstreamTLSMode = "prefer"
	// UpstreamTLSRequire insists on TLS; the certificate is verified against
	// the CA file when one is configured (as libpq does), not otherwise.
	UpstreamTLSRequire UpstreamTLSMode = "require"
	// UpstreamTLSVerifyCA insists on TLS and a certificate chain that leads to
	// the configured (or system) CA; the host name is not checked.
	UpstreamTLSVerifyCA UpstreamTLSMode = "verify-ca"
	// UpstreamTLSVerifyFull is verify-ca plus a host name check.
	UpstreamTLSVerifyFull UpstreamTLSMode = "verify-full"
)

// Valid reports whether m is one of the known modes.
func (m UpstreamTLSMode) Valid() bool {
	switch m {
	case UpstreamTLSDisable, UpstreamTLSPrefer, UpstreamTLSRequire, UpstreamTLSVerifyCA, UpstreamTLSVerifyFull:
		return true
	}
	return false
}

// Defaults for Config fields left zero.
const (
	DefaultListen         = "127.0.0.1:6432"
	DefaultConnectTimeout = 5 * time.Second
	// DefaultStartupTimeout matches PostgreSQL's authentication_timeout.
	DefaultStartupTimeout = 60 * time.Second
	// DefaultMaxMessageSize matches the server's own limit (1 GiB).
	DefaultMaxMessageSize = 1 << 30
)

// Config is the resolved runtime configuration of a Server. Loading it from
// files, environment and flags is the binary's job; this struct only holds
// values and checks that they can work together.
type Config struct {
	// Listen is the client-facing address (host:port).
	Listen string
	// Upstream is the PostgreSQL server address (host:port).
	Upstream string

	// ClientTLS, when non-nil, lets clients upgrade with SSLRequest using
	// ddlguard's own certificate. When nil, SSLRequest is answered 'N'.
	ClientTLS *tls.Config
	// RequireClientTLS refuses plaintext client sessions (cancel requests
	// excepted, as in PostgreSQL).
	RequireClientTLS bool

	// UpstreamTLSMode is the TLS policy toward the upstream.
	UpstreamTLSMode UpstreamTLSMode
	// UpstreamTLS carries roots, client certificates and server name for
	// the upstream handshake. ServerName defaults to the upstream host.
	UpstreamTLS *tls.Config

	// ConnectTimeout bounds dialing the upstream (TCP and TLS).
	ConnectTimeout time.Duration
	// StartupTimeout bounds the whole startup and authentication phase.
	StartupTimeout time.Duration
	// MaxMessageSize is the largest frame (length word included) accepted
	// from either side after startup.
	MaxMessageSize int
	// AllowReplication lets replication connections through.
	AllowReplication bool
	// DisableEventLoop relays every connection with its own two pump
	// goroutines only, never through the shared event loops
	// (eventloop_linux.go). For comparison and as a fallback.
	DisableEventLoop bool
	// EventLoopSpin is how long an event loop keeps polling, without
	// sleeping, after it has relayed for a connection of this server
	// (0: it sleeps at once). Spinning answers the next message sooner at
	// the cost of a CPU while it spins; it is for hosts with a core to
	// spare. Loops spin only with more than one P (GOMAXPROCS > 1).
	EventLoopSpin time.Duration

	// Logger receives structured logs; nil means slog.Default().
	Logger *slog.Logger

	// Guard decides statements; nil relays every statement untouched.
	Guard *guard.Guard
	// Exec tunes lock-aware execution (blocker check, retries).
	Exec ExecConfig

	// Observer hears what the proxy does (metrics); nil: nobody.
	Observer Observer

	// MonitorFacts, when set, answers catalog facts from side connections;
	// otherwise they are asked on the client's own connection.
	MonitorFacts *MonitorFacts
}

// MaxEventLoopSpin bounds Config.EventLoopSpin: longer than that, a loop
// spins through the gaps between a client's transactions, not only while
// the server works on one.
const MaxEventLoopSpin = time.Millisecond

// withDefaults returns c with zero fields replaced by their defaults.
func (c Config) withDefaults() Config {
	c.Listen = cmp.Or(c.Listen, DefaultListen)
	c.UpstreamTLSMode = cmp.Or(c.UpstreamTLSMode, UpstreamTLSPrefer)
	c.ConnectTimeout = cmp.Or(c.ConnectTimeout, DefaultConnectTimeout)
	c.StartupTimeout = cmp.Or(c.StartupTimeout, DefaultStartupTimeout)
	c.MaxMessageSize = cmp.Or(c.MaxMessageSize, DefaultMaxMessageSize)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Observer == nil {
		c.Observer = nopObserver{}
	}
	c.ClientTLS = modernTLS(c.ClientTLS)
	c.UpstreamTLS = modernTLS(c.UpstreamTLS)
	c.Exec = c.Exec.withDefaults()
	return c
}

// Validate reports the first problem that would stop the server from working,
// naming the field.
func (c Config) Validate() error {
	c = c.withDefaults()
	if err := validAddr(c.Listen); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if c.Upstream == "" {
		return errors.New("upstream: required (host:port of the PostgreSQL server)")
	}
	if err := validAddr(c.Upstream); err != nil {
		return fmt.Errorf("upstream: %w", err)
	}
	if !c.UpstreamTLSMode.Valid() {
		return fmt.Errorf("upstream_tls.mode: %q is not one of disable, prefer, require, verify-ca, verify-full", c.UpstreamTLSMode)
	}
	if c.RequireClientTLS && c.ClientTLS == nil {
		return errors.New("client_tls.require: set, but no certificate is configured (client_tls.cert_file, client_tls.key_file)")
	}
	if c.ConnectTimeout < 0 {
		return errors.New("connect_timeout: must be positive")
	}
	if c.StartupTimeout < 0 {
		return errors.New("startup_timeout: must be positive")
	}
	if c.EventLoopSpin < 0 || c.EventLoopSpin > MaxEventLoopSpin {
		return fmt.Errorf("event_loop_spin: %s is outside 0..%s", c.EventLoopSpin, MaxEventLoopSpin)
	}
	if c.MaxMessageSize < minMaxMessageSize || c.MaxMessageSize > maxFrameLength {
		return fmt.Errorf("max_message_size: %d is outside %d..%d bytes", c.MaxMessageSize, minMaxMessageSize, maxFrameLength)
	}
	return nil
}

// modernTLS returns cfg with TLS 1.2 as the lowest version allowed (a
// copy when it allowed less); nil stays nil.
func modernTLS(cfg *tls.Config) *tls.Config {
	if cfg == nil || cfg.MinVersion >= tls.VersionTLS12 {
		return cfg
	}
	cfg = cfg.Clone()
	cfg.MinVersion = tls.VersionTLS12
	return cfg
}

func validAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %w", addr, err)
	}
	_ = host
	if port == "" {
		return fmt.Errorf("%q has no port", addr)
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("%q has a bad port: %w", addr, err)
	}
	return nil
}
