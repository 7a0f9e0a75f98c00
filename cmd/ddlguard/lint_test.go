package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runLint(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = lint(args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

const badMigration = `-- 001_add_index.sql
SET lock_timeout = '1s';

CREATE INDEX accounts_email_idx
    ON accounts (email);
`

func TestLintReportsPositionAndHint(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "001.sql")
	os.WriteFile(file, []byte(badMigration), 0o644)
	code, out, errs := runLint(t, "", file)
	if code != exitFailed {
		t.Fatalf("exit %d, want 1; stderr %s", code, errs)
	}
	want := file + ":4:1: create-index-not-concurrently: CREATE INDEX on accounts would hold SHARE lock"
	if !strings.Contains(out, want) {
		t.Fatalf("output lacks %q:\n%s", want, out)
	}
	if !strings.Contains(out, "hint: CREATE INDEX CONCURRENTLY accounts_email_idx ON accounts USING btree (email)") {
		t.Fatalf("output lacks the concrete hint:\n%s", out)
	}
}

func TestLintCleanFileExits0(t *testing.T) {
	code, out, errs := runLint(t, "SET lock_timeout = '1s';\nCREATE INDEX CONCURRENTLY i ON t (a);\nSELECT 1;\n", "-")
	if code != exitOK || out != "" {
		t.Fatalf("exit %d, output %q, stderr %q", code, out, errs)
	}
}

func TestLintIgnoreComment(t *testing.T) {
	sql := "SET lock_timeout = '1s';\n-- ddlguard:ignore create-index-not-concurrently\nCREATE INDEX i ON t (a);\n"
	if code, out, _ := runLint(t, sql, "-"); code != exitOK || strings.Contains(out, "create-index") {
		t.Fatalf("ignored rule still reported: exit %d\n%s", code, out)
	}
}

func TestLintUsageErrorsExit2(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"/nonexistent/migration.sql"},
		{"--format", "xml", "-"},
		{"--pg-version", "9", "-"},
		{"--config", "/nonexistent.yaml", "-"},
	} {
		if code, _, errs := runLint(t, "", args...); code != exitConfig || errs == "" {
			t.Errorf("%v: exit %d, stderr %q; want 2 with an explanation", args, code, errs)
		}
	}
}

func TestLintDirectoryInMigrationOrder(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "002_b.sql"), []byte("SET lock_timeout='1s'; CREATE INDEX b ON t (b);"), 0o644)
	os.WriteFile(filepath.Join(dir, "001_a.sql"), []byte("SET lock_timeout='1s'; CREATE INDEX a ON t (a);"), 0o644)
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("CREATE INDEX x ON t (x);"), 0o644)
	_, out, _ := runLint(t, "", dir)
	a, b := strings.Index(out, "001_a.sql"), strings.Index(out, "002_b.sql")
	if a < 0 || b < 0 || a > b || strings.Contains(out, "notes.txt") {
		t.Fatalf("want 001 then 002 and no .txt:\n%s", out)
	}
}

func TestLintMachineFormats(t *testing.T) {
	code, out, _ := runLint(t, badMigration, "--format", "json", "-")
	var problems []lintProblem
	if err := json.Unmarshal([]byte(out), &problems); err != nil || code != exitFailed {
		t.Fatalf("json: %v (exit %d)\n%s", err, code, out)
	}
	found := false
	for _, p := range problems {
		if p.Rule == "create-index-not-concurrently" && p.Line == 4 && p.Column == 1 && p.Mode == "enforce" && p.Hint != "" {
			found = true
		}
	}
	if !found {
		t.Fatalf("json lacks the finding: %+v", problems)
	}

	_, out, _ = runLint(t, badMigration, "--format", "sarif", "-")
	var sarif struct {
		Version string `json:"version"`
		Runs    []struct {
			Tool struct {
				Driver struct {
					Name  string                `json:"name"`
					Rules []struct{ ID string } `json:"rules"`
				} `json:"driver"`
			} `json:"tool"`
			Results []struct {
				RuleID    string `json:"ruleId"`
				Level     string `json:"level"`
				Locations []struct {
					PhysicalLocation struct {
						Region struct{ StartLine, StartColumn int } `json:"region"`
					} `json:"physicalLocation"`
				} `json:"locations"`
			} `json:"results"`
		} `json:"runs"`
	}
	if err := json.Unmarshal([]byte(out), &sarif); err != nil || sarif.Version != "2.1.0" || len(sarif.Runs) != 1 ||
		sarif.Runs[0].Tool.Driver.Name != "ddlguard" || len(sarif.Runs[0].Tool.Driver.Rules) == 0 {
		t.Fatalf("sarif: %v\n%s", err, out)
	}
	ok := false
	for _, r := range sarif.Runs[0].Results {
		if r.RuleID == "create-index-not-concurrently" && r.Level == "error" && r.Locations[0].PhysicalLocation.Region.StartLine == 4 {
			ok = true
		}
	}
	if !ok {
		t.Fatalf("sarif lacks the result:\n%s", out)
	}

	_, out, _ = runLint(t, badMigration, "--format", "github", "-")
	if !strings.Contains(out, "::error file=-,line=4,col=1,title=ddlguard create-index-not-concurrently::") ||
		!strings.Contains(out, "%0AHint: CREATE INDEX CONCURRENTLY") {
		t.Fatalf("github format:\n%s", out)
	}
}

func TestGuardConfigErrorsNameTheField(t *testing.T) {
	cases := map[string]string{
		"guard:\n  rules:\n    no-such-rule:\n      mode: warn\n":                  "guard.rules.no-such-rule: unknown rule",
		"guard:\n  rules:\n    create-index-not-concurrently:\n      mode: loud\n": "guard.rules.create-index-not-concurrently.mode",
		"guard:\n  lock_timeout: 0s\n":                                             "guard.lock_timeout: must be greater than zero",
		"guard:\n  roles:\n    app:\n      rules:\n        nope: {mode: off}\n":    "guard.roles.app.rules.nope: unknown rule",
		"guard:\n  inline_override_roles: migrator\n":                              "guard.inline_override_roles (line 3): expected a list",
	}
	for body, want := range cases {
		path := writeConfig(t, "upstream: db:5432\n"+body)
		var out, errb bytes.Buffer
		if code := run([]string{"check-config", "--config", path}, &out, &errb); code != exitConfig || !strings.Contains(errb.String(), want) {
			t.Errorf("config %q: exit %d, stderr %q; want 2 and %q", body, code, errb.String(), want)
		}
	}
	path := writeConfig(t, `upstream: db:5432
guard:
  lock_timeout: 2s
  small_table_bytes: 1MiB
  inline_override_roles: [migrator]
  rules:
    create-index-not-concurrently: {mode: warn, lock_timeout: 5s}
  databases:
    analytics:
      small_table_bytes: 0
      rules:
        create-index-not-concurrently: {rewrite: false}
`)
	cfg, err := readSettings(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	gc, err := cfg.guardConfig()
	if err != nil {
		t.Fatal(err)
	}
	if gc.LockTimeout.String() != "2s" || gc.SmallTableBytes != 1<<20 || gc.InlineOverrideRoles[0] != "migrator" ||
		gc.Rules["create-index-not-concurrently"].LockTimeout.String() != "5s" ||
		!gc.Databases["analytics"].Rules["create-index-not-concurrently"].NoRewrite ||
		*gc.Databases["analytics"].SmallTableBytes != 0 {
		t.Fatalf("guard config: %+v", gc)
	}
}
