package main

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/ddlguard/ddlguard/proxy"
)

const restartWarning = "config reload: these settings changed and take effect only after a restart"

// A reload names, in one warning, each changed setting it cannot apply
// (compared with what the process started with), never their values; the
// settings it applies (a rule's mode, the upstream TLS mode) are not named.
func TestReloadNamesSettingsThatNeedARestart(t *testing.T) {
	const started = `
listen: 127.0.0.1:7001
upstream: 127.0.0.1:5432
monitor:
  dsn: postgres://monitor:first-secret-pw@127.0.0.1:5432/postgres
execution:
  retry_budget: 30s
guard:
  rules:
    create-index-not-concurrently: {mode: enforce}
`
	const changed = `
listen: 127.0.0.1:7002
upstream: 127.0.0.1:5432
upstream_tls:
  mode: disable
monitor:
  dsn: postgres://monitor:second-secret-pw@db.example:5432/postgres
execution:
  retry_budget: 10s
guard:
  lock_timeout: 2s
  rules:
    create-index-not-concurrently: {mode: warn}
`
	path := writeConfig(t, started)
	f := serveFlags{config: path}
	first, err := loadConfig(f, nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.New(first.proxy)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	reloadWith := func(body string) []map[string]any {
		t.Helper()
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		if !reload(f, first.settings, srv, slog.New(slog.NewJSONHandler(&logs, nil))) {
			t.Fatalf("reload refused:\n%s", logs.String())
		}
		for _, secret := range []string{"first-secret-pw", "second-secret-pw", "db.example"} {
			if strings.Contains(logs.String(), secret) {
				t.Fatalf("the reload log shows %q:\n%s", secret, logs.String())
			}
		}
		return logRecords(t, &logs)
	}
	restartKeys := func(records []map[string]any) []string {
		t.Helper()
		var warnings []map[string]any
		for _, rec := range records {
			if rec["msg"] == restartWarning {
				warnings = append(warnings, rec)
			}
		}
		switch {
		case len(warnings) == 0:
			return nil
		case len(warnings) > 1:
			t.Fatalf("%d restart warnings, want one: %v", len(warnings), warnings)
		}
		if warnings[0]["level"] != "WARN" {
			t.Fatalf("restart warning at level %v", warnings[0]["level"])
		}
		var keys []string
		for _, k := range warnings[0]["settings"].([]any) {
			keys = append(keys, k.(string))
		}
		return keys
	}

	records := reloadWith(changed)
	if records[0]["msg"] != "config reloaded" {
		t.Fatalf("first line %v, want config reloaded", records[0])
	}
	want := []string{"listen", "monitor.dsn", "execution.retry_budget"}
	if got := restartKeys(records); !slices.Equal(got, want) {
		t.Fatalf("settings needing a restart: %q, want %q", got, want)
	}
	// Still not in force: the same file warns again.
	if got := restartKeys(reloadWith(changed)); !slices.Equal(got, want) {
		t.Fatalf("second reload: settings needing a restart: %q, want %q", got, want)
	}
	// Back to the start values, only the applied guard change remains.
	if got := restartKeys(reloadWith(strings.Replace(started, "{mode: enforce}", "{mode: off}", 1))); got != nil {
		t.Fatalf("a reload that changes only a rule's mode warned of %q", got)
	}
}

// Every setting of the schema is either applied by reload or reported when
// it changes; the applied ones are exactly the guard section and TLS (but
// client_tls.require, which the running server keeps).
func TestSettingsNeedingRestartCoversEverySetting(t *testing.T) {
	var applied, restart []string
	forEachSetting(reflect.TypeFor[Config](), "", nil, func(path string, index []int) {
		next := defaultConfig()
		changeSetting(t, path, reflect.ValueOf(&next).Elem().FieldByIndex(index))
		got := settingsNeedingRestart(defaultConfig(), next)
		switch {
		case len(got) == 0:
			applied = append(applied, path)
		case slices.Equal(got, []string{path}):
			restart = append(restart, path)
		default:
			t.Errorf("changing %s reports %q", path, got)
		}
	})
	wantApplied := []string{
		"client_tls.cert_file", "client_tls.key_file",
		"upstream_tls.mode", "upstream_tls.ca_file", "upstream_tls.server_name", "upstream_tls.cert_file", "upstream_tls.key_file",
		"guard.lock_timeout", "guard.small_table_bytes", "guard.rules", "guard.databases", "guard.roles", "guard.inline_override_roles",
	}
	if !slices.Equal(applied, wantApplied) {
		t.Errorf("settings reload applies: %q, want %q", applied, wantApplied)
	}
	for _, key := range []string{"listen", "upstream", "event_loop", "client_tls.require", "log.level", "monitor.dsn", "monitor.top_n",
		"execution.retry_budget", "execution.backoff_min", "execution.blocker_poll", "admin.listen", "admin.token", "shutdown.drain_timeout"} {
		if !slices.Contains(restart, key) {
			t.Errorf("%s is not reported as needing a restart (reported: %q)", key, restart)
		}
	}
	if !slices.Equal(settingsNeedingRestart(defaultConfig(), defaultConfig()), nil) {
		t.Error("identical configurations differ")
	}
	// Each entry of reloadedSettings names a part of the schema.
	var paths []string
	forEachPath(reflect.TypeFor[Config](), "", func(path string) { paths = append(paths, path) })
	for _, p := range reloadedSettings {
		if !slices.Contains(paths, p) {
			t.Errorf("reloadedSettings names %q, which is not a key of the configuration", p)
		}
	}
}

// forEachSetting calls fn with the key path and field index of each leaf
// setting of t (a struct with yaml tags); maps, lists and pointers are
// leaves.
func forEachSetting(t reflect.Type, path string, index []int, fn func(path string, index []int)) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		p, idx := join(path, f.Tag.Get("yaml")), append(slices.Clone(index), i)
		if f.Type.Kind() == reflect.Struct {
			forEachSetting(f.Type, p, idx, fn)
			continue
		}
		fn(p, idx)
	}
}

// forEachPath calls fn with each key path of t, sections included.
func forEachPath(t reflect.Type, path string, fn func(path string)) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		p := join(path, f.Tag.Get("yaml"))
		fn(p)
		if f.Type.Kind() == reflect.Struct {
			forEachPath(f.Type, p, fn)
		}
	}
}

// changeSetting gives v a value other than the one it has.
func changeSetting(t *testing.T, path string, v reflect.Value) {
	t.Helper()
	switch v.Kind() {
	case reflect.String:
		v.SetString(v.String() + "x")
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.Int, reflect.Int64:
		v.SetInt(v.Int() + 1)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		m.SetMapIndex(reflect.ValueOf("x"), reflect.Zero(v.Type().Elem()))
		v.Set(m)
	case reflect.Slice:
		v.Set(reflect.Append(v, reflect.Zero(v.Type().Elem())))
	case reflect.Ptr:
		v.Set(reflect.New(v.Type().Elem()))
	default:
		t.Fatalf("%s: no way to change a %s", path, v.Type())
	}
}
