package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ddlguard/ddlguard/proxy"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ddlguard.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestConfigDefaultsAreTheSafeProductionSetup(t *testing.T) {
	loaded, err := loadConfig(serveFlags{upstream: "db:5432"}, nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	pc := loaded.proxy
	if pc.Exec.RetryBudget != 30*time.Second || pc.Exec.NoBlockerCheck || pc.Exec.IdleInTransactionTimeout != 5*time.Second {
		t.Fatalf("unexpected execution defaults: %+v", pc.Exec)
	}
	if pc.Listen != "127.0.0.1:6432" || pc.UpstreamTLSMode != proxy.UpstreamTLSPrefer ||
		pc.MaxMessageSize != 1<<30 || pc.AllowReplication || pc.ConnectTimeout != 5*time.Second ||
		pc.StartupTimeout != 60*time.Second || pc.ClientTLS != nil {
		t.Fatalf("unexpected defaults: %+v", pc)
	}
}

func TestConfigFileEnvAndFlagPrecedence(t *testing.T) {
	path := writeConfig(t, `
listen: 127.0.0.1:7000
upstream: file-db:5432
connect_timeout: 2s
max_message_size: 64MiB
upstream_tls:
  mode: disable
log:
  format: json
`)
	env := []string{"DDLGUARD_UPSTREAM=env-db:5432", "DDLGUARD_CONNECT_TIMEOUT=750ms", "DDLGUARD_ALLOW_REPLICATION=true",
		"DDLGUARD_EVENT_LOOP_SPIN=50us"}
	cfg, err := readSettings(path, env)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:7000" || cfg.Upstream != "env-db:5432" || cfg.ConnectTimeout != 750*time.Millisecond ||
		cfg.MaxMessageSize != 64<<20 || cfg.UpstreamTLS.Mode != "disable" || !cfg.AllowReplication || cfg.Log.Format != "json" ||
		cfg.EventLoopSpin != 50*time.Microsecond {
		t.Fatalf("file+env resolved to %+v", cfg)
	}
	loaded, err := loadConfig(serveFlags{config: path, upstream: "flag-db:5432"}, env, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got := loaded.settings; got.Upstream != "flag-db:5432" || got.ConnectTimeout != 750*time.Millisecond || got.Listen != "127.0.0.1:7000" {
		t.Fatalf("flag did not win over env, or env over file: %+v", got)
	}
	if loaded.proxy.Upstream != "flag-db:5432" {
		t.Fatalf("the proxy's upstream is %q, not the flag's", loaded.proxy.Upstream)
	}
}

// Every bad configuration is one line that names the field, and exit code 2.
func TestConfigErrorsNameTheField(t *testing.T) {
	cases := []struct {
		name, file string
		env        []string
		args       []string
		want       string
	}{
		{"bad duration", "upstream: db:5432\nconnect_timeout: 5x\n", nil, nil, `connect_timeout (line 2): "5x" is not a duration`},
		{"unknown key", "upstream: db:5432\nupstream_tls:\n  mdoe: x\n", nil, nil, "upstream_tls.mdoe (line 3): unknown setting"},
		{"bad tls mode", "upstream: db:5432\nupstream_tls:\n  mode: sometimes\n", nil, nil, `upstream_tls.mode: "sometimes" is not one of`},
		{"bad size", "upstream: db:5432\nmax_message_size: lots\n", nil, nil, `max_message_size (line 2): "lots" is not a size`},
		{"size too small", "upstream: db:5432\nmax_message_size: 1kB\n", nil, nil, "max_message_size: 1024 is outside"},
		{"spin too long", "upstream: db:5432\nevent_loop_spin: 5ms\n", nil, nil, "event_loop_spin: 5ms is outside 0..1ms"},
		{"spin negative", "upstream: db:5432\nevent_loop_spin: -1us\n", nil, nil, "event_loop_spin: -1µs is outside 0..1ms"},
		{"mapping expected", "upstream_tls: verify-full\nupstream: db:5432\n", nil, nil, "upstream_tls (line 1): expected a mapping"},
		{"list where value", "upstream: [a, b]\n", nil, nil, "upstream (line 1): expected a single value"},
		{"yaml syntax", "upstream: db:5432\n  listen: :x\n", nil, nil, "config file"},
		{"missing upstream", "", nil, nil, "upstream: required"},
		{"bad listen flag", "", nil, []string{"--upstream", "db:5432", "--listen", "nope"}, `listen: "nope" is not host:port`},
		{"bad env", "", []string{"DDLGUARD_UPSTREAM=db:5432", "DDLGUARD_STARTUP_TIMEOUT=soon"}, nil, "startup_timeout (environment DDLGUARD_STARTUP_TIMEOUT)"},
		{"cert without key", "upstream: db:5432\nclient_tls:\n  cert_file: /x.crt\n", nil, nil, "client_tls: cert_file and key_file must be set together"},
		{"missing cert file", "upstream: db:5432\nclient_tls:\n  cert_file: /nonexistent.crt\n  key_file: /nonexistent.key\n", nil, nil, "client_tls.cert_file/key_file: open /nonexistent.crt"},
		{"require without cert", "upstream: db:5432\nclient_tls:\n  require: true\n", nil, nil, "client_tls.require: set, but no certificate"},
		{"missing ca", "upstream: db:5432\nupstream_tls:\n  mode: verify-full\n  ca_file: /nonexistent-ca.crt\n", nil, nil, "upstream_tls.ca_file: open /nonexistent-ca.crt"},
		{"bad log level", "upstream: db:5432\nlog:\n  level: loud\n", nil, nil, `log.level: "loud"`},
		{"bad log format", "upstream: db:5432\nlog:\n  format: xml\n", nil, nil, `log.format: "xml"`},
		{"missing file", "", nil, []string{"--config", "/nonexistent/ddlguard.yaml"}, "config file: open /nonexistent/ddlguard.yaml"},
		{"bad retry budget", "upstream: db:5432\nexecution:\n  retry_budget: 0s\n", nil, nil, "execution.retry_budget: must be greater than zero"},
		{"backoff order", "upstream: db:5432\nexecution:\n  backoff_min: 5s\n  backoff_max: 1s\n", nil, nil, "execution.backoff_max: 1s is below backoff_min 5s"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, kv := range tc.env {
				k, v, _ := strings.Cut(kv, "=")
				t.Setenv(k, v)
			}
			args := tc.args
			if tc.file != "" || args == nil {
				args = append([]string{"--config", writeConfig(t, tc.file)}, args...)
			}
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"check-config"}, args...), &stdout, &stderr)
			msg := stderr.String()
			if code != exitConfig {
				t.Fatalf("exit code %d, want 2; stderr %q", code, msg)
			}
			if strings.Count(strings.TrimSpace(msg), "\n") != 0 {
				t.Fatalf("want one line, got %q", msg)
			}
			if !strings.Contains(msg, tc.want) {
				t.Fatalf("stderr %q does not contain %q", msg, tc.want)
			}
		})
	}
}

func TestConfigByteSizes(t *testing.T) {
	for in, want := range map[string]int64{"1048576": 1 << 20, "64MiB": 64 << 20, "1GB": 1 << 30, "512 kB": 512 << 10, "1GiB": 1 << 30} {
		got, err := parseByteSize(in)
		if err != nil || got != want {
			t.Errorf("parseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1TB", "x", "99999999999GiB"} {
		if _, err := parseByteSize(in); err == nil {
			t.Errorf("parseByteSize(%q) accepted", in)
		}
	}
}

func TestUnknownCommandAndVersion(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"frobnicate"}, &out, &errb); code != exitConfig || !strings.Contains(errb.String(), `unknown command "frobnicate"`) {
		t.Fatalf("unknown command: code %d, %q", code, errb.String())
	}
	if code := run([]string{"version"}, &out, &errb); code != exitOK || !strings.HasPrefix(out.String(), "ddlguard ") {
		t.Fatalf("version: code %d, %q", code, out.String())
	}
}
