package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ddlguard/ddlguard/e2e/pgcluster"
	"github.com/ddlguard/ddlguard/guard"
	"github.com/ddlguard/ddlguard/proxy"
)

// Helpers shared by the guard tests (audit, reload, migrate): a database of
// the test's own with a table large enough for the size rules, notices
// collected from a real pgx connection, and ddlguard's JSON log read back.

// audDatabase creates database name, owned by app_scram (dropped at test
// end, after the proxies and connections of the test are gone).
func audDatabase(t *testing.T, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := recreateDatabase(ctx, name, pgcluster.RoleSCRAM); err != nil {
		t.Fatal(err)
	}
	// Registered before the caller's cleanups, so it runs after them.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := adminExec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
}

// audBigTable creates table (id bigint primary key, v text, c text) in
// database as app_scram, directly (not through ddlguard), fills it past
// the guard's default small_table_bytes and ANALYZEs it, so that the catalog facts ddlguard reads
// (pg_class.relpages) show it large.
func audBigTable(t *testing.T, database, table string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, cluster.DSN(pgcluster.RoleSCRAM, database, "sslmode", "disable"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	ident := pgx.Identifier{table}.Sanitize()
	if err := execEach(ctx, conn,
		"CREATE TABLE "+ident+" (id bigint PRIMARY KEY, v text NOT NULL, c text)",
		"INSERT INTO "+ident+" SELECT g, md5(g::text), repeat('x', 64) FROM generate_series(1, 100000) g",
		"ANALYZE "+ident,
	); err != nil {
		t.Fatal(err)
	}
	audCheckBig(t, ctx, conn, table)
}

// audCheckBig fails unless table is larger than the guard's default
// small_table_bytes (below which the size rules pass) both on disk and in
// the statistics the guard's catalog facts read (see checkLarge).
func audCheckBig(t *testing.T, ctx context.Context, conn *pgx.Conn, table string) {
	t.Helper()
	if err := checkLarge(ctx, conn, table); err != nil {
		t.Fatalf("fixture table: %v", err)
	}
}

// audExec runs sql (simple protocol) and returns ddlguard's rejection,
// or nil when it ran; any other error fails the test.
func audExec(t *testing.T, conn *pgx.Conn, sql string) *pgconn.PgError {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := conn.Exec(ctx, sql)
	if err == nil {
		return nil
	}
	pe := pgErrorOf(err)
	if pe == nil || pe.Code != proxy.CodeRejected {
		t.Fatalf("%s: want success or a ddlguard rejection, got %v", sql, err)
	}
	return pe
}

// audWantRejected checks pe is ddlguard's rejection by rule.
func audWantRejected(t *testing.T, what string, pe *pgconn.PgError, rule string) {
	t.Helper()
	if pe == nil {
		t.Fatalf("%s: ran, want it rejected by %s", what, rule)
	}
	if pe.Code != proxy.CodeRejected || pe.Severity != "ERROR" || !strings.HasPrefix(pe.Message, "ddlguard: "+rule+": ") {
		t.Fatalf("%s: got %s %s %q, want ERROR %s \"ddlguard: %s: ...\"", what, pe.Severity, pe.Code, pe.Message, proxy.CodeRejected, rule)
	}
	if pe.Hint == "" {
		t.Errorf("%s: rejection without a hint: %q", what, pe.Message)
	}
	if pe.Where != "" || pe.File != "" || pe.Routine != "" {
		t.Errorf("%s: rejection carries PL/pgSQL internals: where %q file %q routine %q", what, pe.Where, pe.File, pe.Routine)
	}
}

// audWantWarned checks that notices hold exactly one ddlguard warning, by rule.
func audWantWarned(t *testing.T, what string, notices []pgconn.Notice, rule string) pgconn.Notice {
	t.Helper()
	var got []pgconn.Notice
	for _, n := range notices {
		if strings.HasPrefix(n.Message, "ddlguard: ") {
			got = append(got, n)
		}
	}
	if len(got) != 1 {
		t.Fatalf("%s: got ddlguard notices %v, want one warning from %s", what, audNoticeSummary(got), rule)
	}
	n := got[0]
	if n.Severity != "WARNING" || n.Code != "01Z01" || !strings.HasPrefix(n.Message, "ddlguard: "+rule+": ") {
		t.Fatalf("%s: got notice %s %s %q, want WARNING 01Z01 \"ddlguard: %s: ...\"", what, n.Severity, n.Code, n.Message, rule)
	}
	return n
}

func audNoticeSummary(ns []pgconn.Notice) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.Severity + " " + n.Code + " " + n.Message
	}
	return out
}

// audLogRecords parses a JSON log; a line that is not JSON fails the test.
func audLogRecords(t *testing.T, log string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("log line is not JSON: %s", sc.Text())
		}
		out = append(out, rec)
	}
	return out
}

// audDecisions returns the "decision" lines of a JSON log.
func audDecisions(t *testing.T, log string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, rec := range audLogRecords(t, log) {
		if rec["msg"] == "decision" {
			out = append(out, rec)
		}
	}
	return out
}

// audColumnExists reports whether table.column exists in database (asked
// directly, as the superuser).
func audColumnExists(t *testing.T, database, table, column string) bool {
	t.Helper()
	conn := superConn(t, database)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var n int
	err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_attribute
		WHERE attrelid = $1::regclass AND attname = $2 AND attnum > 0 AND NOT attisdropped`, table, column).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n == 1
}

// audField returns a string field of a log record ("" when absent).
func audField(rec map[string]any, k string) string {
	s, _ := rec[k].(string)
	return s
}

// The audit log: every decision other than a plain allow is one "decision"
// line naming the connection, the statement, the action, the rule,
// warnings, overrides and locks; plain DML logs nothing; an inline override
// is honoured only for the roles configured.
func TestAuditDecisionLog(t *testing.T) {
	const db = "audit_decisions"
	audDatabase(t, db)
	audBigTable(t, db, "big")

	cfg := guard.DefaultConfig()
	// drop-column enforced (the proxy's default leaves it to review), so
	// that its inline override means something.
	cfg.Rules = map[string]guard.RuleConfig{"rename": {Mode: guard.Warn}, "drop-column": {Mode: guard.Enforce}}
	cfg.InlineOverrideRoles = []string{pgcluster.RoleSCRAM}
	p := startGuardProxy(t, cfg)
	conn, notices := connectNotices(t, "through ddlguard", p.DSN(pgcluster.RoleSCRAM, db, "sslmode", "disable", "application_name", "audit-test"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// 1. Rejected (simple protocol, then extended protocol).
	audWantRejected(t, "volatile default", audExec(t, conn,
		`ALTER TABLE big ADD COLUMN created timestamptz DEFAULT clock_timestamp()`), "add-column-rewrite")
	_, err := conn.PgConn().ExecParams(ctx, `ALTER TABLE big ADD COLUMN created2 timestamptz DEFAULT clock_timestamp()`,
		nil, nil, nil, nil).Close()
	audWantRejected(t, "volatile default, extended protocol", pgErrorOf(err), "add-column-rewrite")
	if audColumnExists(t, db, "big", "created") || audColumnExists(t, db, "big", "created2") {
		t.Fatal("a rejected ADD COLUMN ran")
	}

	// 2. Warned: rename is configured to warn.
	notices.take()
	if pe := audExec(t, conn, `ALTER TABLE big RENAME COLUMN c TO c_old`); pe != nil {
		t.Fatalf("rename in warn mode was rejected: %s", pe.Message)
	}
	audWantWarned(t, "rename in warn mode", notices.take(), "rename")

	// 3. Inline override by a role allowed to use it: runs, with a warning
	// that gives the reason.
	const overrideSQL = `/* ddlguard:allow drop-column reason="cleanup ticket 42" */ ALTER TABLE big DROP COLUMN c_old`
	if pe := audExec(t, conn, overrideSQL); pe != nil {
		t.Fatalf("inline override by %s was rejected: %s", pgcluster.RoleSCRAM, pe.Message)
	}
	n := audWantWarned(t, "inline override", notices.take(), "drop-column")
	if !strings.Contains(n.Message, "cleanup ticket 42") {
		t.Errorf("override notice does not give the reason: %q", n.Message)
	}
	if audColumnExists(t, db, "big", "c_old") {
		t.Fatal("the overridden DROP COLUMN did not run")
	}

	// 4. The same comment from a role not in inline_override_roles is
	// ignored: rejected by ddlguard (ZG001, not the server's 42501 for a
	// non-owner).
	other, _ := connectNotices(t, "through ddlguard", p.DSN(pgcluster.RoleTrust, db, "sslmode", "disable", "application_name", "audit-other"))
	const ignoredSQL = `/* ddlguard:allow drop-column reason="cleanup ticket 43" */ ALTER TABLE big DROP COLUMN v`
	audWantRejected(t, "inline override by "+pgcluster.RoleTrust, audExec(t, other, ignoredSQL), "drop-column")
	if !audColumnExists(t, db, "big", "v") {
		t.Fatal("the DROP COLUMN of a role without inline override rights ran")
	}

	decisions := audDecisions(t, p.Logs())

	// 5. Plain DML, simple and extended protocol: no decision line.
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{"SELECT count(*) FROM big", nil},
		{"INSERT INTO big (id, v) VALUES (1000001, 'dml-literal')", nil},
		{"UPDATE big SET v = $1 WHERE id = $2", []any{"dml-param", int64(1000001)}},
		{"SELECT v FROM big WHERE id = $1", []any{int64(1000001)}},
		{"DELETE FROM big WHERE id = 1000001", nil},
	} {
		if _, err := conn.Exec(ctx, q.sql, q.args...); err != nil {
			t.Fatalf("%s: %v", q.sql, err)
		}
	}
	if n := notices.take(); len(n) > 0 {
		t.Errorf("plain DML got notices: %v", audNoticeSummary(n))
	}
	all := p.Logs()
	if after := audDecisions(t, all); len(after) != len(decisions) {
		t.Errorf("plain DML logged decisions: %v", after[len(decisions):])
	}
	if strings.Contains(all, "dml-literal") || strings.Contains(all, "dml-param") {
		t.Error("DML contents reached the log")
	}

	// The decision lines, in order.
	if len(decisions) != 5 {
		t.Fatalf("got %d decision lines, want 5:\n%s", len(decisions), all)
	}
	for _, rec := range decisions {
		t.Logf("decision: %v", rec)
	}
	common := func(rec map[string]any, user, app string) {
		t.Helper()
		for _, k := range []string{"conn_id", "client", "kind", "statement", "locks", "action"} {
			if v, ok := rec[k]; !ok || v == "" {
				t.Errorf("decision line lacks %q: %v", k, rec)
			}
		}
		if rec["user"] != user || rec["database"] != db || rec["application_name"] != app ||
			!strings.HasPrefix(audField(rec, "kind"), "ALTER TABLE") {
			t.Errorf("decision line: user/database/application_name/kind: %v", rec)
		}
		if c := audField(rec, "client"); !strings.HasPrefix(c, "127.0.0.1:") {
			t.Errorf("decision line client %q", c)
		}
		if l := audField(rec, "locks"); l != "big ACCESS EXCLUSIVE" {
			t.Errorf("decision line locks %q, want \"big ACCESS EXCLUSIVE\"", l)
		}
	}
	rej, rejExt, warn, ovr, ign := decisions[0], decisions[1], decisions[2], decisions[3], decisions[4]
	for i, rec := range []map[string]any{rej, rejExt} {
		common(rec, pgcluster.RoleSCRAM, "audit-test")
		if audField(rec, "rule") != "add-column-rewrite" || audField(rec, "action") != "reject" {
			t.Errorf("rejected statement's line: %v", rec)
		}
		if want := []string{"created", "created2"}[i]; !strings.Contains(audField(rec, "statement"), "ALTER TABLE big ADD COLUMN "+want+" ") {
			t.Errorf("rejected statement's line does not show the statement: %v", rec)
		}
		for _, k := range []string{"overrides", "warnings"} {
			if _, ok := rec[k]; ok {
				t.Errorf("rejected statement's line has %s: %v", k, rec)
			}
		}
	}
	if rej["conn_id"] != rejExt["conn_id"] || rej["conn_id"] != warn["conn_id"] || rej["conn_id"] != ovr["conn_id"] ||
		rej["conn_id"] == ign["conn_id"] {
		t.Errorf("conn_id does not follow the connections: %v %v %v %v %v",
			rej["conn_id"], rejExt["conn_id"], warn["conn_id"], ovr["conn_id"], ign["conn_id"])
	}

	common(warn, pgcluster.RoleSCRAM, "audit-test")
	if audField(warn, "warnings") != "rename" || audField(warn, "action") != "timeout" || audField(warn, "rule") != "" ||
		audField(warn, "statement") != "ALTER TABLE big RENAME COLUMN c TO c_old" {
		t.Errorf("warned statement's line: %v", warn)
	}

	common(ovr, pgcluster.RoleSCRAM, "audit-test")
	if audField(ovr, "warnings") != "drop-column" || audField(ovr, "overrides") != "drop-column: cleanup ticket 42" ||
		audField(ovr, "action") != "timeout" || audField(ovr, "rule") != "" ||
		!strings.Contains(audField(ovr, "statement"), "ALTER TABLE big DROP COLUMN c_old") {
		t.Errorf("inline override's line: %v", ovr)
	}

	common(ign, pgcluster.RoleTrust, "audit-other")
	if audField(ign, "action") != "reject" || audField(ign, "rule") != "drop-column" ||
		!strings.Contains(audField(ign, "statement"), "ALTER TABLE big DROP COLUMN v") {
		t.Errorf("ignored inline override's line: %v", ign)
	}
	for _, k := range []string{"overrides", "warnings"} {
		if _, ok := ign[k]; ok {
			t.Errorf("ignored inline override's line has %s: %v", k, ign)
		}
	}
}

// audLiteralCase is one statement of TestAuditLiteralsNotLogged: secret is the
// literal in sql, shown what the log's statement must contain instead.
type audLiteralCase struct {
	name, sql, secret, action, shown string
	extended                         bool // sent with Parse/Bind/Execute
}

// The statement in a decision line is normalised: literal values are
// replaced by $n placeholders and never reach the log, whatever the kind of
// statement (DEFAULT values, CHECK expressions and index predicates can hold
// data; so can DML decided inside a transaction holding ACCESS EXCLUSIVE).
func TestAuditLiteralsNotLogged(t *testing.T) {
	const db = "audit_literals"
	audDatabase(t, db)
	audBigTable(t, db, "big")
	p := startGuardProxy(t, guard.DefaultConfig())
	conn, _ := connectNotices(t, "through ddlguard", p.DSN(pgcluster.RoleSCRAM, db, "sslmode", "disable"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	cases := []audLiteralCase{
		{name: "volatile default (rejected)", action: "reject", secret: "secret-volatile",
			sql:   `ALTER TABLE big ADD COLUMN tag text DEFAULT 'secret-volatile' || clock_timestamp()::text`,
			shown: "ALTER TABLE big ADD COLUMN tag text DEFAULT $1"},
		{name: "volatile default, extended protocol (rejected)", action: "reject", secret: "secret-extended", extended: true,
			sql:   `ALTER TABLE big ADD COLUMN tag text DEFAULT 'secret-extended' || random()::text`,
			shown: "ALTER TABLE big ADD COLUMN tag text DEFAULT $1"},
		{name: "constant default (runs)", action: "timeout", secret: "secret-literal",
			sql:   `ALTER TABLE big ADD COLUMN note text DEFAULT 'secret-literal'`,
			shown: "ALTER TABLE big ADD COLUMN note text DEFAULT $1"},
		{name: "check constraint NOT VALID (runs)", action: "timeout", secret: "secret-check",
			sql:   `ALTER TABLE big ADD CONSTRAINT big_v_check CHECK (v <> 'secret-check') NOT VALID`,
			shown: "CHECK (v <> $1) NOT VALID"},
		// Executed rewrites: CREATE INDEX CONCURRENTLY runs in the
		// statement's place (its steps carry the literal too).
		{name: "partial index predicate (rewritten)", action: "rewrite", secret: "secret-predicate",
			sql:   `CREATE INDEX big_v_part ON big (v) WHERE v <> 'secret-predicate'`,
			shown: "WHERE v <> $1"},
		{name: "partial index predicate, extended protocol (rewritten)", action: "rewrite", secret: "secret-ext-predicate",
			extended: true,
			sql:      `CREATE INDEX big_v_part2 ON big (v) WHERE v <> 'secret-ext-predicate'`,
			shown:    "WHERE v <> $1"},
	}
	for _, c := range cases {
		var pe *pgconn.PgError
		if c.extended {
			_, err := conn.PgConn().ExecParams(ctx, c.sql, nil, nil, nil, nil).Close()
			if err != nil && pgErrorOf(err) == nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			pe = pgErrorOf(err)
		} else {
			pe = audExec(t, conn, c.sql)
		}
		if (pe != nil) != (c.action == "reject") {
			t.Fatalf("%s: rejection %v, want action %s", c.name, pe, c.action)
		}
	}
	for _, idx := range []string{"big_v_part", "big_v_part2"} {
		if got := queryString(t, superConn(t, db), "SELECT count(*) || ' ' || bool_and(x.indisvalid) FROM pg_index x "+
			"JOIN pg_class c ON c.oid = x.indexrelid WHERE c.relname = '"+idx+"'"); got != "1 true" {
			t.Errorf("rewritten index %s: count, valid = %q, want one valid index", idx, got)
		}
	}
	// DML inside a transaction that holds ACCESS EXCLUSIVE on big is decided
	// (and rejected: it would run under that lock).
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if pe := audExec(t, conn, `ALTER TABLE big ADD COLUMN n2 int`); pe != nil {
		t.Fatalf("ADD COLUMN n2: %s", pe.Message)
	}
	audWantRejected(t, "UPDATE under ACCESS EXCLUSIVE", audExec(t, conn, `UPDATE big SET v = 'secret-dml' WHERE id = 7`),
		"statement-after-access-exclusive")
	tx.Rollback(ctx)
	cases = append(cases,
		audLiteralCase{name: "ADD COLUMN in a transaction", action: "timeout", shown: "ALTER TABLE big ADD COLUMN n2 int"},
		audLiteralCase{name: "UPDATE under ACCESS EXCLUSIVE", action: "reject", secret: "secret-dml",
			shown: "UPDATE big SET v = $1 WHERE id = $2"})

	all := p.Logs()
	decisions := audDecisions(t, all)
	if len(decisions) != len(cases) {
		t.Fatalf("got %d decision lines, want %d:\n%s", len(decisions), len(cases), all)
	}
	for i, c := range cases {
		rec := decisions[i]
		st := audField(rec, "statement")
		t.Logf("%s: logged %q", c.name, st)
		if audField(rec, "action") != c.action {
			t.Errorf("%s: action %q, want %q", c.name, audField(rec, "action"), c.action)
		}
		if c.secret != "" && strings.Contains(all, c.secret) {
			t.Errorf("%s: the literal %q reached the log: statement %q", c.name, c.secret, st)
		}
		if !strings.Contains(st, c.shown) {
			t.Errorf("%s: logged statement %q, want it normalised, containing %q", c.name, st, c.shown)
		}
	}
}
