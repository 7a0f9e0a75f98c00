package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

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

// applyTo overrides cfg's settings with the flags given: the last source
// of a configuration, above the file and the environment. An empty flag
// leaves its setting as the other sources made it.
func (f serveFlags) applyTo(cfg *Config) {
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
}
