package main

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ddlguard/ddlguard/proxy"
)

// check-config prints the settings loadConfig assembles from the same
// flags, file and environment, each source over the one before.
func TestCheckConfigPrintsTheLoadedSettings(t *testing.T) {
	path := writeConfig(t, `
upstream: file-db:5432
listen: 127.0.0.1:7000
execution:
  retry_budget: 20s
  backoff_max: 3s
guard:
  rules:
    create-index-not-concurrently: {mode: warn}
`)
	t.Setenv("DDLGUARD_EXECUTION_RETRY_BUDGET", "7s")
	t.Setenv("DDLGUARD_UPSTREAM", "env-db:5432")
	args := []string{"--config", path, "--upstream", "flag-db:5432", "--log-level", "debug"}

	var stdout, stderr bytes.Buffer
	if code := run(append([]string{"check-config"}, args...), &stdout, &stderr); code != exitOK {
		t.Fatalf("check-config: exit %d, stderr %q", code, stderr.String())
	}
	f, err := parseServeFlags("serve", args, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := loadConfig(f, os.Environ(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var printed []string
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n")[1:] {
		printed = append(printed, strings.TrimPrefix(line, "  "))
	}
	if want := effectiveSettings(loaded.settings); !slices.Equal(printed, want) {
		t.Fatalf("check-config printed\n%s\nthe loader's settings are\n%s", strings.Join(printed, "\n"), strings.Join(want, "\n"))
	}
	for _, want := range []string{
		`upstream: "flag-db:5432"`,   // flag over environment over file
		`listen: "127.0.0.1:7000"`,   // file over default
		`execution.retry_budget: 7s`, // environment over file
		`execution.backoff_max: 3s`,  // file
		`log.level: "debug"`,         // flag over default
		`guard.rules.create-index-not-concurrently.mode: "warn"`,
	} {
		if !slices.Contains(printed, want) {
			t.Errorf("check-config did not print %q:\n%s", want, stdout.String())
		}
	}
	if loaded.proxy.Exec.RetryBudget != 7*time.Second || loaded.proxy.Upstream != "flag-db:5432" || loaded.proxy.Guard == nil ||
		!loaded.logger.Enabled(t.Context(), slog.LevelDebug) {
		t.Fatalf("the runtime forms do not follow the settings: exec %+v, upstream %q, guard %v", loaded.proxy.Exec, loaded.proxy.Upstream, loaded.proxy.Guard)
	}
}

// serve, check-config and a SIGHUP reload refuse a bad configuration with
// the same words, whichever source or section it is in: the loader's.
func TestServeCheckConfigAndReloadRefuseAlike(t *testing.T) {
	cases := []struct {
		name, file string
		env        []string
		flags      []string
		want       string
	}{
		{"yaml", "upstream: db:5432\n  listen: :x\n", nil, nil, "config file"},
		{"unknown key", "upstream: db:5432\nexecution:\n  retry_budgit: 1s\n", nil, nil, "execution.retry_budgit (line 3): unknown setting"},
		{"environment", "upstream: db:5432\n", []string{"DDLGUARD_MONITOR_TOP_N=many"}, nil, "monitor.top_n (environment DDLGUARD_MONITOR_TOP_N)"},
		{"flag", "upstream: db:5432\n", nil, []string{"--listen", "nope"}, `listen: "nope" is not host:port`},
		{"log", "upstream: db:5432\n", nil, []string{"--log-format", "xml"}, `log.format: "xml"`},
		{"execution", "upstream: db:5432\nexecution:\n  blocker_poll: 0s\n", nil, nil, "execution.blocker_poll: must be greater than zero"},
		{"guard", "upstream: db:5432\nguard:\n  rules:\n    no-such-rule: {mode: warn}\n", nil, nil, "guard.rules.no-such-rule: unknown rule"},
		{"admin", "upstream: db:5432\nadmin:\n  token: short\n", nil, nil, "admin.token: use at least 16 characters"},
		{"monitor", "upstream: db:5432\nmonitor:\n  interval: 0s\n", nil, nil, "monitor.interval: must be greater than zero"},
	}
	good, err := loadConfig(serveFlags{upstream: "127.0.0.1:5432"}, nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.New(good.proxy)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, kv := range tc.env {
				k, v, _ := strings.Cut(kv, "=")
				t.Setenv(k, v)
			}
			args := append([]string{"--config", writeConfig(t, tc.file)}, tc.flags...)
			var checkOut, checkErr bytes.Buffer
			if code := run(append([]string{"check-config"}, args...), &checkOut, &checkErr); code != exitConfig {
				// Not refused: serve would start serving; stop here.
				t.Fatalf("check-config: exit %d, want 2; stdout %q", code, checkOut.String())
			}
			msg := checkErr.String()
			if !strings.HasPrefix(msg, "ddlguard: config: ") || !strings.Contains(msg, tc.want) || strings.Count(strings.TrimSpace(msg), "\n") != 0 {
				t.Fatalf("check-config stderr %q, want one line with %q", msg, tc.want)
			}

			var serveErr bytes.Buffer
			if code := run(append([]string{"serve"}, args...), io.Discard, &serveErr); code != exitConfig || serveErr.String() != msg {
				t.Fatalf("serve: exit %d, stderr %q; check-config said %q", code, serveErr.String(), msg)
			}

			f, err := parseServeFlags("serve", args, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			if reload(f, good.settings, srv, slog.New(slog.NewJSONHandler(&logs, nil))) {
				t.Fatal("reload took the configuration")
			}
			records := logRecords(t, &logs)
			wantErr := strings.TrimSuffix(strings.TrimPrefix(msg, "ddlguard: config: "), "\n")
			if len(records) != 1 || records[0]["level"] != "ERROR" || records[0]["err"] != wantErr {
				t.Fatalf("reload logged %v, want one ERROR with err %q", records, wantErr)
			}
		})
	}
}

// logRecords parses a JSON log.
func logRecords(t *testing.T, logs *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, rec)
	}
	return out
}
