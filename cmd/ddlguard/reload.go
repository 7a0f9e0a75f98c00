package main

import (
	"io"
	"log/slog"
	"os"
	"reflect"
	"strings"

	"github.com/ddlguard/ddlguard/proxy"
)

// reload re-reads the configuration on SIGHUP with loadConfig, as serve
// read it at start, and swaps in what can change while connections stay
// open: the guard (rules, modes, overrides, lock timeouts) and TLS (client
// certificate, upstream mode, CA, server name and certificate). Load,
// validate, swap: a configuration that does not load or validate in full
// is refused and the running one kept. Every other setting keeps the value
// it had when the process started (started); those the new configuration
// changes are listed by key, in one warning, as needing a restart.
// reload reports whether the new configuration was taken.
func reload(f serveFlags, started Config, srv *proxy.Server, logger *slog.Logger) bool {
	// The new logger is discarded: log.* needs a restart.
	next, err := loadConfig(f, os.Environ(), io.Discard)
	if err == nil {
		err = srv.SetTLS(next.proxy.ClientTLS, next.proxy.UpstreamTLSMode, next.proxy.UpstreamTLS)
	}
	if err != nil {
		logger.Error("config reload refused; keeping the running configuration", "err", err.Error())
		return false
	}
	srv.SetGuard(next.proxy.Guard)
	logger.Info("config reloaded", "file", f.config)
	if keys := settingsNeedingRestart(started, next.settings); len(keys) > 0 {
		logger.Warn("config reload: these settings changed and take effect only after a restart", "settings", keys)
	}
	return true
}

// reloadedSettings are the key paths of the settings reload applies to the
// running server; a path stands for every setting under it. Any other
// setting, including one added to Config later, needs a restart.
var reloadedSettings = []string{
	"guard",                // srv.SetGuard
	"client_tls.cert_file", // srv.SetTLS
	"client_tls.key_file",  // srv.SetTLS
	"upstream_tls",         // srv.SetTLS
}

// settingsNeedingRestart lists the key paths (in the schema's order) of the
// settings that differ between running and next and that reload does not
// apply. It names settings only and never shows a value: monitor.dsn and
// admin.token hold secrets.
func settingsNeedingRestart(running, next Config) []string {
	var keys []string
	var compare func(path string, a, b reflect.Value)
	compare = func(path string, a, b reflect.Value) {
		if appliedOnReload(path) {
			return
		}
		if a.Kind() == reflect.Struct {
			for i := 0; i < a.NumField(); i++ {
				compare(join(path, a.Type().Field(i).Tag.Get("yaml")), a.Field(i), b.Field(i))
			}
			return
		}
		if !reflect.DeepEqual(a.Interface(), b.Interface()) {
			keys = append(keys, path)
		}
	}
	compare("", reflect.ValueOf(running), reflect.ValueOf(next))
	return keys
}

// appliedOnReload reports whether reload applies the setting at path.
func appliedOnReload(path string) bool {
	for _, p := range reloadedSettings {
		if path == p || strings.HasPrefix(path, p+".") {
			return true
		}
	}
	return false
}
