// Command ddlguard is the ddlguard binary: `serve` runs the proxy,
// `check-config` validates a configuration, `healthcheck` asks a running
// one's admin listener, `demo` runs the proxy in front of
// a throwaway PostgreSQL, and `version` prints the version. It wires packages
// together and holds no protocol or SQL logic of its own.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ddlguard/ddlguard/guard"
	"github.com/ddlguard/ddlguard/proxy"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usageText = `usage: ddlguard <command> [flags]

commands:
  serve         run the proxy: ddlguard serve --listen HOST:PORT --upstream HOST:PORT [--config FILE]
  check-config  validate a configuration: ddlguard check-config --config FILE
  lint          check migration files: ddlguard lint [--pg-version N] [--format text|json|sarif|github] FILE|DIR|-...
  healthcheck   ask a running ddlguard's admin listener: ddlguard healthcheck [--url http://127.0.0.1:6433/readyz]
  demo          start a throwaway PostgreSQL with ddlguard in front of it
  version       print the version
`

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1
	exitConfig = 2 // bad flags or configuration
)

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText)
		return exitConfig
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stderr)
	case "check-config":
		return checkConfig(args[1:], stdout, stderr)
	case "demo":
		return demo(args[1:], stdout, stderr)
	case "lint":
		return lint(args[1:], os.Stdin, stdout, stderr)
	case "healthcheck":
		return healthcheck(args[1:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "ddlguard", version)
		return exitOK
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usageText)
		return exitOK
	}
	fmt.Fprintf(stderr, "ddlguard: unknown command %q\n%s", args[0], usageText)
	return exitConfig
}

// serveFlags are the flags of serve and check-config. --listen, --upstream
// and --config are a public contract.
type serveFlags struct {
	config, listen, upstream, adminListen, logFormat, logLevel string
}

var errUsage = errors.New("usage")

func parseServeFlags(name string, args []string, stderr io.Writer) (serveFlags, error) {
	var f serveFlags
	fs := flag.NewFlagSet("ddlguard "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.config, "config", "", "YAML configuration file (optional)")
	fs.StringVar(&f.listen, "listen", "", "client-facing address HOST:PORT (default 127.0.0.1:6432)")
	fs.StringVar(&f.upstream, "upstream", "", "PostgreSQL server address HOST:PORT")
	fs.StringVar(&f.adminListen, "admin-listen", "", "admin HTTP address HOST:PORT for /metrics, /healthz, /readyz, /locks, or off (default 127.0.0.1:6433)")
	fs.StringVar(&f.logFormat, "log-format", "", "log format: text or json")
	fs.StringVar(&f.logLevel, "log-level", "", "log level: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "ddlguard %s: unexpected argument %q\n", name, fs.Arg(0))
		return f, errUsage
	}
	return f, nil
}

// resolve loads the configuration with flags applied on top.
func (f serveFlags) resolve() (Config, error) {
	cfg, err := loadConfig(f.config, os.Environ())
	if err != nil {
		return cfg, err
	}
	if f.listen != "" {
		cfg.Listen = f.listen
	}
	if f.upstream != "" {
		cfg.Upstream = f.upstream
	}
	if f.adminListen != "" {
		cfg.Admin.Listen = f.adminListen
	}
	if f.logFormat != "" {
		cfg.Log.Format = f.logFormat
	}
	if f.logLevel != "" {
		cfg.Log.Level = f.logLevel
	}
	return cfg, nil
}

func serve(args []string, stderr io.Writer) int {
	f, err := parseServeFlags("serve", args, stderr)
	if err != nil {
		return exitConfig
	}
	cfg, err := f.resolve()
	if err != nil {
		fmt.Fprintln(stderr, "ddlguard: config:", err)
		return exitConfig
	}
	logger, err := cfg.newLogger(os.Stderr)
	if err != nil {
		fmt.Fprintln(stderr, "ddlguard: config:", err)
		return exitConfig
	}
	pc, err := cfg.proxyConfig(logger)
	if err != nil {
		fmt.Fprintln(stderr, "ddlguard: config:", err)
		return exitConfig
	}
	gc, err := cfg.guardConfig()
	if err != nil {
		fmt.Fprintln(stderr, "ddlguard: config:", err)
		return exitConfig
	}
	if pc.Guard, err = guard.New(gc); err != nil {
		fmt.Fprintln(stderr, "ddlguard: config:", err)
		return exitConfig
	}
	// Signals are caught from here on: a SIGTERM that arrives while the
	// listeners start is handled as a drain, not the default exit.
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	obs, err := startObservability(cfg, logger)
	if err != nil {
		fmt.Fprintln(stderr, "ddlguard: config:", err)
		return exitConfig
	}
	defer obs.close()
	pc.Observer = obs.proxy
	srv, err := proxy.New(pc)
	if err != nil {
		fmt.Fprintln(stderr, "ddlguard: config:", err)
		return exitConfig
	}
	obs.configLoaded(true)
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	var drained chan struct{} // set once a shutdown began
	for {
		select {
		case err := <-errc:
			if drained != nil && errors.Is(err, proxy.ErrServerClosed) {
				continue // the drain closed the listener
			}
			logger.Error("serve failed", "err", err)
			return exitFailed
		case <-drained:
			logger.Info("shut down")
			return exitOK
		case s := <-sig:
			if s == syscall.SIGHUP {
				obs.configLoaded(reload(f, srv, logger))
				continue
			}
			if drained != nil {
				logger.Warn("second signal: exiting at once", "signal", s.String())
				srv.Close()
				return exitOK
			}
			drained = make(chan struct{})
			go shutdown(cfg.Shutdown, srv, obs, logger, s, drained)
		}
	}
}

// shutdown drains srv: readiness fails at once, the listener closes after
// shutdown.delay (so load balancers stop routing first), sessions finish
// their statements and transactions for up to shutdown.drain_timeout, and
// the rest are closed with FATAL 57P01.
func shutdown(sc ShutdownConfig, srv *proxy.Server, obs *observability, logger *slog.Logger, s os.Signal, done chan struct{}) {
	defer close(done)
	logger.Info("shutting down: not ready; draining", "signal", s.String(), "delay", sc.Delay, "drain_timeout", sc.DrainTimeout)
	obs.setDraining()
	time.Sleep(sc.Delay)
	ctx, cancel := context.WithTimeout(context.Background(), sc.DrainTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		logger.Warn("drain timeout reached; remaining sessions were closed", "drain_timeout", sc.DrainTimeout)
	}
}

// reload re-reads the configuration and swaps in what can change while
// connections stay open: the guard (rules, modes, overrides, lock
// timeouts) and TLS (certificates, CA, upstream mode). Load, validate,
// swap: a configuration that does not load or validate is refused and
// the running one kept. Listener, upstream address and admin settings need
// a restart.
func reload(f serveFlags, srv *proxy.Server, logger *slog.Logger) bool {
	cfg, err := f.resolve()
	var g *guard.Guard
	var pc proxy.Config
	if err == nil {
		var gc guard.Config
		if gc, err = cfg.guardConfig(); err == nil {
			g, err = guard.New(gc)
		}
	}
	if err == nil {
		pc, err = cfg.proxyConfig(logger)
	}
	if err == nil {
		err = srv.SetTLS(pc.ClientTLS, pc.UpstreamTLSMode, pc.UpstreamTLS)
	}
	if err != nil {
		logger.Error("config reload refused; keeping the running configuration", "err", err.Error())
		return false
	}
	srv.SetGuard(g)
	logger.Info("config reloaded", "file", f.config)
	return true
}

func checkConfig(args []string, stdout, stderr io.Writer) int {
	f, err := parseServeFlags("check-config", args, stderr)
	if err != nil {
		return exitConfig
	}
	cfg, err := f.resolve()
	if err == nil {
		_, err = cfg.newLogger(os.Stderr)
	}
	if err == nil {
		_, err = cfg.proxyConfig(slog.New(slog.DiscardHandler))
	}
	if err == nil {
		_, err = cfg.guardConfig()
	}
	if err == nil {
		_, err = cfg.adminConfig()
	}
	if err == nil {
		_, err = cfg.monitorConfig(slog.New(slog.DiscardHandler))
	}
	if err != nil {
		fmt.Fprintln(stderr, "ddlguard: config:", err)
		return exitConfig
	}
	fmt.Fprintln(stdout, "configuration ok; effective settings:")
	for _, line := range effectiveSettings(cfg) {
		fmt.Fprintln(stdout, "  "+line)
	}
	return exitOK
}
