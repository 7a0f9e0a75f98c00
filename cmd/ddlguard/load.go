package main

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/ddlguard/ddlguard/guard"
	"github.com/ddlguard/ddlguard/metrics"
	"github.com/ddlguard/ddlguard/proxy"
)

// loadedConfig is one configuration, loaded from its sources and validated
// in full: the settings as written and the runtime form of every section.
// serve starts from one, a SIGHUP reload swaps in parts of a new one, and
// check-config prints one's settings.
type loadedConfig struct {
	// settings are the merged sources: defaults < file < environment <
	// flags.
	settings Config
	// logger writes to the output loadConfig was given, as log.format and
	// log.level ask.
	logger *slog.Logger
	// proxy is the proxy's configuration with its Logger and Guard set;
	// serve adds the Observer.
	proxy proxy.Config
	// admin is the admin listener's configuration.
	admin metrics.AdminConfig
	// monitor is the lock monitor's configuration (its DSN may be empty:
	// no monitor).
	monitor metrics.MonitorConfig
}

// loadConfig loads the configuration that serve, reload and check-config
// use: the defaults, overridden by the file f.config names (if any), then
// by the DDLGUARD_* variables of environ, then by the flags in f. It then
// validates every section, in a fixed order, by resolving it into its
// runtime form (certificates and CA files are read here); the logger
// writes to logOutput. The first problem found is returned: a
// configError, or the guard's or a package's own validation error, whose
// text names the setting; serve and check-config print it after
// "ddlguard: config: ", reload logs it.
func loadConfig(f serveFlags, environ []string, logOutput io.Writer) (*loadedConfig, error) {
	cfg, err := readSettings(f.config, environ)
	if err != nil {
		return nil, err
	}
	f.applyTo(&cfg)

	logger, err := cfg.newLogger(logOutput)
	if err != nil {
		return nil, err
	}
	pc, err := cfg.proxyConfig(logger)
	if err != nil {
		return nil, err
	}
	gc, err := cfg.guardConfig()
	if err != nil {
		return nil, err
	}
	if pc.Guard, err = guard.New(gc); err != nil {
		return nil, err
	}
	ac, mc, err := cfg.observabilityConfigs(logger)
	if err != nil {
		return nil, err
	}
	return &loadedConfig{settings: cfg, logger: logger, proxy: pc, admin: ac, monitor: mc}, nil
}

// configError is a configuration problem; its text names the field.
type configError struct{ msg string }

func (e *configError) Error() string { return e.msg }

func configErrorf(format string, args ...any) error {
	return &configError{fmt.Sprintf(format, args...)}
}

// observabilityConfigs validates the admin and monitor sections, in that
// order.
func (cfg Config) observabilityConfigs(logger *slog.Logger) (metrics.AdminConfig, metrics.MonitorConfig, error) {
	ac, err := cfg.adminConfig()
	if err != nil {
		return ac, metrics.MonitorConfig{}, err
	}
	mc, err := cfg.monitorConfig(logger)
	return ac, mc, err
}
