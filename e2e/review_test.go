package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ddlguard/ddlguard/e2e/pgcluster"
	"github.com/ddlguard/ddlguard/guard"
)

// With zero configuration the proxy leaves to review what only a review can
// decide (is a dropped or renamed column still used? must writers wait
// behind an explicit lock?): drop-column, drop-table, rename, truncate and
// lock-table warn and their statements run with the lock timeout, from the
// simple and the extended protocol alike. A DROP INDEX that cannot be made
// CONCURRENTLY (inside a transaction block) is brief under its lock: it
// runs with the lock timeout, with the concurrent form as a warning.
func TestProxyLeavesReviewRulesToReview(t *testing.T) {
	const db = "review_rules"
	setup := freshDatabase(t, db)
	for _, table := range []string{"big", "doomed", "emptied", "renamed"} {
		audBigTable(t, db, table)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := execEach(ctx, setup, "CREATE INDEX big_c_idx ON big (c)", "CREATE INDEX big_v_idx ON big (v)"); err != nil {
		t.Fatal(err)
	}

	p := startGuardProxy(t, guard.DefaultConfig())
	conn, notices := connectNotices(t, "through ddlguard", p.DSN(pgcluster.RoleSCRAM, db, "sslmode", "disable"))
	cases := []struct {
		rule, sql, extended string // extended: run with the extended protocol instead
		tx                  bool
		probe, want         string
	}{
		{rule: "drop-column", sql: "ALTER TABLE big DROP COLUMN c",
			probe: "SELECT count(*) FROM pg_attribute WHERE attrelid = 'big'::regclass AND attname = 'c' AND NOT attisdropped", want: "0"},
		{rule: "rename", extended: "ALTER TABLE renamed RENAME COLUMN v TO v_new",
			probe: "SELECT count(*) FROM pg_attribute WHERE attrelid = 'renamed'::regclass AND attname = 'v_new'", want: "1"},
		{rule: "truncate", sql: "TRUNCATE emptied", probe: "SELECT count(*) FROM emptied", want: "0"},
		{rule: "drop-table", extended: "DROP TABLE doomed", probe: "SELECT to_regclass('doomed') IS NULL", want: "true"},
		{rule: "lock-table", tx: true, sql: "LOCK TABLE big IN SHARE MODE",
			probe: "SELECT 1", want: "1"},
		{rule: "drop-index-not-concurrently", tx: true, sql: "DROP INDEX big_v_idx",
			probe: "SELECT to_regclass('big_v_idx') IS NULL", want: "true"},
	}
	for _, c := range cases {
		notices.take()
		if c.tx {
			enfMustExec(t, conn, "BEGIN")
		}
		sql := c.sql
		var err error
		if c.extended != "" {
			sql = c.extended
			_, err = conn.PgConn().ExecParams(ctx, sql, nil, nil, nil, nil).Close()
		} else {
			_, err = conn.Exec(ctx, sql)
		}
		if err != nil {
			t.Fatalf("%s: %v (with zero configuration the proxy must let it run)", sql, err)
		}
		if c.tx {
			enfMustExec(t, conn, "COMMIT")
		}
		n := audWantWarned(t, sql, notices.take(), c.rule)
		if c.rule != "drop-index-not-concurrently" && !strings.Contains(n.Message, "ddlguard lint enforces it") {
			t.Errorf("%s: the warning does not say that lint enforces %s: %q", sql, c.rule, n.Message)
		}
		if got := enfValue(t, setup, c.probe); got != c.want {
			t.Errorf("after %s: %s = %q, want %q", sql, c.probe, got, c.want)
		}
	}
	// Every statement ran with the lock timeout: the session's own
	// setting is what it was.
	if got := enfValue(t, conn, "current_setting('lock_timeout')"); got != "0" {
		t.Errorf("lock_timeout after the statements: %q, want the session's own 0", got)
	}
}

// A DROP ... IF EXISTS of a table that does not exist protects nothing: it
// passes even with the rule enforced, with no warning of ddlguard's (the
// server's own notice says it was skipped).
func TestDropIfExistsOfAbsentTablePasses(t *testing.T) {
	const db = "review_absent"
	audDatabase(t, db)
	p := enfGuardProxy(t, enfEnforce(enfReviewRules...))
	conn, notices := connectNotices(t, "through ddlguard", p.DSN(pgcluster.RoleSCRAM, db, "sslmode", "disable"))
	for _, sql := range []string{"DROP TABLE IF EXISTS no_such_table", "ALTER TABLE IF EXISTS no_such_table DROP COLUMN c",
		"TRUNCATE no_such_table"} {
		notices.take()
		_, err := conn.Exec(enfCtx(t), sql)
		if sql == "TRUNCATE no_such_table" {
			// No IF EXISTS: the server's own error, not ddlguard's.
			if pe := pgErrorOf(err); pe == nil || pe.Code != "42P01" {
				t.Errorf("%s: %v, want the server's 42P01", sql, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		for _, n := range notices.take() {
			if strings.HasPrefix(n.Message, "ddlguard") {
				t.Errorf("%s: ddlguard notice %q for a table that does not exist", sql, n.Message)
			}
		}
	}
}
