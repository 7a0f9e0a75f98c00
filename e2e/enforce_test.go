package e2e

// Enforcement on the wire, end to end: every enforce-by-default rule
// rejected through ddlguard against real PostgreSQL (and the server shown
// not to have run the statement), the same statements allowed on a table
// created in the same transaction, rejections on every protocol path
// (simple, extended, named and unnamed statements, pipelines, batches,
// multi-statement strings, transaction blocks, psql, psycopg), warn mode,
// the small-table relaxation from catalog facts, and the facts query being
// invisible to the client.
//
// All tests share one database, enfDatabase, created once per run
// (enfFixture) and owned by app_trust, the role every client here logs in
// as (trust authentication, so the raw pgproto3 connections can log in too).

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/ddlguard/ddlguard/e2e/pgcluster"
	"github.com/ddlguard/ddlguard/guard"
	"github.com/ddlguard/ddlguard/proxy"
)

const (
	enfDatabase = "enforce"
	enfUser     = pgcluster.RoleTrust
	enfBigRows  = 300000
	// enfDOPrefix starts the statement ddlguard sends the server instead of
	// a rejected one.
	enfDOPrefix = "DO $ddlguard$BEGIN RAISE EXCEPTION"
)

// enfFixtureSQL builds the fixture, statement by statement, as app_trust
// directly on the server. Autovacuum is off for every table so that the
// catalog facts ddlguard reads (relpages, reltuples) are exactly what the
// fixture's own VACUUM ANALYZE left, and so that no autovacuum worker holds
// a lock a test statement would queue behind.
var enfFixtureSQL = []string{
	// big: ~30 MiB with its indexes, far above small_table_bytes (10 MiB).
	`CREATE TABLE big (id bigint PRIMARY KEY, a int NOT NULL, b text, c int, ref_id int, v varchar(20))
	   WITH (autovacuum_enabled = false)`,
	fmt.Sprintf(`INSERT INTO big SELECT g, g %% 1000, md5(g::text), g, g %% 100 + 1, 'v' || g
	   FROM generate_series(1, %d) g`, enfBigRows),
	`CREATE INDEX big_a_idx ON big (a)`,
	// ref: the referenced table of the foreign-key cases (small).
	`CREATE TABLE ref (id int PRIMARY KEY, name text) WITH (autovacuum_enabled = false)`,
	`INSERT INTO ref SELECT g, 'ref ' || g FROM generate_series(1, 100) g`,
	// big_mv: a large populated materialized view without a unique index.
	`CREATE MATERIALIZED VIEW big_mv WITH (autovacuum_enabled = false) AS SELECT id, b FROM big`,
	// parted with one partition, and parted_new to attach: never analyzed
	// and over small_table_bytes, which ddlguard measures.
	`CREATE TABLE parted (id int, k int) PARTITION BY RANGE (k)`,
	`CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (1000) WITH (autovacuum_enabled = false)`,
	`CREATE TABLE parted_new (id int, k int) WITH (autovacuum_enabled = false)`,
	`INSERT INTO parted_new SELECT g, 1000 + g % 1000 FROM generate_series(1, 300000) g`,
	// posint: big has a column of it, so ALTER DOMAIN posint scans big.
	`CREATE DOMAIN posint AS int`,
	`ALTER TABLE big ADD COLUMN p posint`,
	`CREATE TABLE doomed (id int) WITH (autovacuum_enabled = false)`,
	// probe_seq advances (outside any transaction) if a rejected UPDATE ran.
	`CREATE SEQUENCE probe_seq`,
	`CREATE TABLE audit_t (n int) WITH (autovacuum_enabled = false)`,
	// small_t: 1000 rows, analyzed: small. never_analyzed: the same, but
	// never vacuumed or analyzed (and no index, whose build would set the
	// table's relpages): relpages says nothing, ddlguard measures it.
	`CREATE TABLE small_t (id int, a int) WITH (autovacuum_enabled = false)`,
	`INSERT INTO small_t SELECT g, g % 10 FROM generate_series(1, 1000) g`,
	`CREATE TABLE never_analyzed (id int, a int) WITH (autovacuum_enabled = false)`,
	`INSERT INTO never_analyzed SELECT g, g % 10 FROM generate_series(1, 1000) g`,
	// st_a, st_b: the several-tables cases.
	`CREATE TABLE st_a (id int) WITH (autovacuum_enabled = false)`,
	`CREATE TABLE st_b (id int) WITH (autovacuum_enabled = false)`,
	`CREATE FUNCTION enf_noop() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$`,
	`VACUUM ANALYZE big, ref, big_mv, parted_1, doomed, audit_t, small_t, st_a, st_b`,
}

var enfFixture fixtureOnce

// enforceFixture creates enfDatabase and its tables, once per test run.
func enforceFixture(t *testing.T) {
	t.Helper()
	enfFixture.ensure(t, "enforce", enfCreateFixture)
}

func enfCreateFixture() error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	owner, err := createFixtureDatabase(ctx, enfDatabase, enfUser, enfFixtureSQL)
	if err != nil {
		return err
	}
	defer owner.Close(context.Background())
	// The fixture must be what the tests assume: big is large both for
	// pg_total_relation_size and for the relpages sum ddlguard reads;
	// never_analyzed and parted_new have never been analyzed.
	if err := checkLarge(ctx, owner, "big"); err != nil {
		return err
	}
	var naTuples, newTuples float64
	err = owner.QueryRow(ctx, `SELECT
		  (SELECT reltuples FROM pg_class WHERE oid = 'never_analyzed'::regclass),
		  (SELECT reltuples FROM pg_class WHERE oid = 'parted_new'::regclass)`).Scan(&naTuples, &newTuples)
	if err != nil {
		return err
	}
	if naTuples >= 0 || newTuples >= 0 {
		return fmt.Errorf("never_analyzed/parted_new have reltuples %v/%v, want -1 (never analyzed)", naTuples, newTuples)
	}
	return nil
}

// enfGuardProxy starts ddlguard with the default guard configuration,
// adjusted by mutate.
func enfGuardProxy(t *testing.T, mutate ...func(*guard.Config)) *testProxy {
	t.Helper()
	cfg := guard.DefaultConfig()
	for _, m := range mutate {
		m(&cfg)
	}
	return startGuardProxy(t, cfg)
}

// enfRuleMode sets one rule's mode.
func enfRuleMode(rule string, mode guard.Mode) func(*guard.Config) {
	return func(c *guard.Config) {
		if c.Rules == nil {
			c.Rules = map[string]guard.RuleConfig{}
		}
		c.Rules[rule] = guard.RuleConfig{Mode: mode}
	}
}

// enfReviewRules are the rules the proxy leaves to review by default.
var enfReviewRules = []string{"drop-column", "drop-table", "rename", "truncate", "lock-table"}

// enfEnforce sets rules to enforce mode.
func enfEnforce(rules ...string) func(*guard.Config) {
	return func(c *guard.Config) {
		for _, rule := range rules {
			enfRuleMode(rule, guard.Enforce)(c)
		}
	}
}

// enfNoRewrite keeps rules in enforce mode with their rewrite turned off
// (YAML `rewrite: false`): outside a transaction block ddlguard would run
// the safe sequence in place of the statement; with this it rejects the
// statement, with the sequence as its hint.
func enfNoRewrite(rules ...string) func(*guard.Config) {
	return func(c *guard.Config) {
		if c.Rules == nil {
			c.Rules = map[string]guard.RuleConfig{}
		}
		for _, rule := range rules {
			c.Rules[rule] = guard.RuleConfig{Mode: guard.Enforce, NoRewrite: true}
		}
	}
}

// enfConnect opens a pgx connection as enfUser to enfDatabase through p
// (plaintext), collecting notices; closed at test end.
func enfConnect(t *testing.T, p *testProxy) (*pgx.Conn, *noticeLog) {
	t.Helper()
	return connectNotices(t, "through ddlguard", p.DSN(enfUser, enfDatabase, "sslmode", "disable"))
}

func enfCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// enfMustExec runs sql (simple protocol) and fails the test on an error.
func enfMustExec(t *testing.T, conn *pgx.Conn, sql string) {
	t.Helper()
	if _, err := conn.Exec(enfCtx(t), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// enfValue runs a one-value query and returns the value as text ("" for NULL).
func enfValue(t *testing.T, conn *pgx.Conn, sql string, args ...any) string {
	t.Helper()
	var v *string
	if err := conn.QueryRow(enfCtx(t), "SELECT ("+sql+")::text", args...).Scan(&v); err != nil {
		t.Fatalf("%.200s: %v", sql, err)
	}
	if v == nil {
		return ""
	}
	return *v
}

// enfWantRejected checks that err is ddlguard's rejection by rule, as the
// client must see it, and returns it.
func enfWantRejected(t *testing.T, what string, err error, rule string) *pgconn.PgError {
	t.Helper()
	pe := pgErrorOf(err)
	if pe == nil {
		t.Fatalf("%s: got %v, want ddlguard's rejection by %s (SQLSTATE %s)", what, err, rule, proxy.CodeRejected)
	}
	if pe.Code != proxy.CodeRejected {
		t.Fatalf("%s: SQLSTATE %s (%s), want %s", what, pe.Code, pe.Message, proxy.CodeRejected)
	}
	if want := "ddlguard: " + rule + ": "; !strings.HasPrefix(pe.Message, want) {
		t.Errorf("%s: message %q, want it to start with %q", what, pe.Message, want)
	}
	if pe.Severity != "ERROR" || pe.SeverityUnlocalized != "ERROR" {
		t.Errorf("%s: severity %q/%q, want ERROR", what, pe.Severity, pe.SeverityUnlocalized)
	}
	if !strings.Contains(pe.Detail, "locks:") {
		t.Errorf("%s: DETAIL %q does not list the locks (no \"locks:\")", what, pe.Detail)
	}
	if strings.TrimSpace(pe.Hint) == "" {
		t.Errorf("%s: no HINT (the safe SQL)", what)
	}
	// The DO block's PL/pgSQL context and source location are stripped.
	if pe.Where != "" || pe.File != "" || pe.Line != 0 || pe.Routine != "" {
		t.Errorf("%s: PL/pgSQL traces left in the error: where %q, file %q, line %d, routine %q",
			what, pe.Where, pe.File, pe.Line, pe.Routine)
	}
	return pe
}

// enfWantCode checks that err is a server error with SQLSTATE code.
func enfWantCode(t *testing.T, what string, err error, code string) {
	t.Helper()
	if pe := pgErrorOf(err); pe == nil || pe.Code != code {
		t.Fatalf("%s: got %v, want SQLSTATE %s", what, err, code)
	}
}

// enfSnapshotSQL describes everything in the fixture's schema a DDL
// statement could change: relations with their storage (relfilenode,
// persistence, partition status), columns with types and NOT NULL,
// constraints with their validation state, indexes with their clustered
// flag, and the probe sequence.
const enfSnapshotSQL = `SELECT concat_ws(E'\n',
  (SELECT string_agg(c.relname || ' ' || c.relkind::text || ' ' || c.relpersistence::text || ' ' || c.relfilenode
       || CASE WHEN c.relispartition THEN ' partition' ELSE '' END, ', ' ORDER BY c.relname)
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'),
  (SELECT string_agg(c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
       || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END, ', ' ORDER BY c.relname, a.attnum)
     FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'm') AND a.attnum > 0 AND NOT a.attisdropped),
  (SELECT string_agg(k.conname || ' ' || k.contype::text || ' ' || k.convalidated, ', ' ORDER BY k.conname)
     FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace WHERE n.nspname = 'public'),
  (SELECT string_agg(i.indexrelid::regclass::text || CASE WHEN i.indisclustered THEN ' clustered' ELSE '' END
       || CASE WHEN i.indisvalid THEN '' ELSE ' invalid' END, ', ' ORDER BY i.indexrelid::regclass::text)
     FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'public'),
  (SELECT 'probe_seq ' || last_value || ' ' || is_called FROM probe_seq))`

// enfCase is one rule's unsafe statement and how to see that the server
// did not run it.
type enfCase struct {
	rule string
	// pre runs before sql (after BEGIN when tx).
	pre []string
	sql string
	// tx: sql runs inside BEGIN; the rejection must leave the transaction
	// aborted until ROLLBACK.
	tx bool
	// rewrite: the rule has a safe sequence that ddlguard would run in
	// place of the statement (outside a transaction block); the case runs
	// with the rule's rewrite turned off (enfNoRewrite), so that it is
	// rejected. Executed rewrites: rewrite_test.go.
	rewrite bool
	// probe is a superuser query whose answer must be want both before and
	// after the rejection (or, with want "", the same before and after).
	probe, want string
}

// enfCases covers every enforce-by-default rule the proxy evaluates
// (TestEnforceEveryRule fails when a rule has no case).
var enfCases = []enfCase{
	{rule: "add-check-validated", sql: "ALTER TABLE big ADD CONSTRAINT big_a_check CHECK (a >= 0)", rewrite: true,
		probe: "SELECT count(*) FROM pg_constraint WHERE conname = 'big_a_check'", want: "0"},
	{rule: "add-column-inline-constraint", sql: "ALTER TABLE big ADD COLUMN e_inline int CHECK (e_inline > 0)",
		probe: "SELECT count(*) FROM pg_attribute WHERE attrelid = 'big'::regclass AND attname = 'e_inline'", want: "0"},
	{rule: "add-column-not-null-without-default", sql: "ALTER TABLE big ADD COLUMN e_nn text NOT NULL",
		probe: "SELECT count(*) FROM pg_attribute WHERE attrelid = 'big'::regclass AND attname = 'e_nn'", want: "0"},
	{rule: "add-column-rewrite", sql: "ALTER TABLE big ADD COLUMN e_seen timestamptz DEFAULT clock_timestamp()",
		probe: "SELECT count(*) FROM pg_attribute WHERE attrelid = 'big'::regclass AND attname = 'e_seen'", want: "0"},
	{rule: "add-exclusion-constraint", sql: "ALTER TABLE big ADD CONSTRAINT big_id_excl EXCLUDE USING btree (id WITH =)",
		probe: "SELECT count(*) FROM pg_class WHERE relname = 'big_id_excl'", want: "0"},
	{rule: "add-foreign-key-validated", sql: "ALTER TABLE big ADD CONSTRAINT big_ref_fk FOREIGN KEY (ref_id) REFERENCES ref (id)",
		rewrite: true, probe: "SELECT count(*) FROM pg_constraint WHERE conname = 'big_ref_fk'", want: "0"},
	{rule: "add-unique-constraint", sql: "ALTER TABLE big ADD CONSTRAINT big_c_key UNIQUE (c)", rewrite: true,
		probe: "SELECT count(*) FROM pg_class WHERE relname = 'big_c_key'", want: "0"},
	{rule: "alter-column-type", sql: "ALTER TABLE big ALTER COLUMN a TYPE bigint",
		probe: "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'big'::regclass AND attname = 'a'",
		want:  "integer"},
	{rule: "alter-domain-add-constraint", sql: "ALTER DOMAIN posint ADD CONSTRAINT posint_check CHECK (VALUE > 0)", rewrite: true,
		probe: "SELECT count(*) FROM pg_constraint WHERE contypid = 'posint'::regtype", want: "0"},
	{rule: "attach-partition", sql: "ALTER TABLE parted ATTACH PARTITION parted_new FOR VALUES FROM (1000) TO (2000)",
		probe: "SELECT relispartition FROM pg_class WHERE oid = 'parted_new'::regclass", want: "false"},
	{rule: "cluster", sql: "CLUSTER big USING big_pkey",
		probe: "SELECT indisclustered FROM pg_index WHERE indexrelid = 'big_pkey'::regclass", want: "false"},
	{rule: "concurrently-in-transaction", tx: true, sql: "CREATE INDEX CONCURRENTLY big_conc_idx ON big (c)",
		probe: "SELECT count(*) FROM pg_class WHERE relname = 'big_conc_idx'", want: "0"},
	{rule: "create-index-not-concurrently", sql: "CREATE INDEX big_b_idx ON big (b)", rewrite: true,
		probe: "SELECT count(*) FROM pg_class WHERE relname = 'big_b_idx'", want: "0"},
	{rule: "detach-partition", sql: "ALTER TABLE parted DETACH PARTITION parted_1", rewrite: true,
		probe: "SELECT relispartition FROM pg_class WHERE oid = 'parted_1'::regclass", want: "true"},
	{rule: "drop-column", sql: "ALTER TABLE big DROP COLUMN v",
		probe: "SELECT count(*) FROM pg_attribute WHERE attrelid = 'big'::regclass AND attname = 'v' AND NOT attisdropped",
		want:  "1"},
	{rule: "drop-index-not-concurrently", sql: "DROP INDEX big_a_idx", rewrite: true,
		probe: "SELECT count(*) FROM pg_class WHERE relname = 'big_a_idx'", want: "1"},
	{rule: "drop-table", sql: "DROP TABLE doomed", probe: "SELECT to_regclass('doomed') IS NOT NULL", want: "true"},
	{rule: "lock-table", tx: true, sql: "LOCK TABLE big IN SHARE MODE"},
	{rule: "refresh-materialized-view", sql: "REFRESH MATERIALIZED VIEW big_mv",
		probe: "SELECT relfilenode FROM pg_class WHERE oid = 'big_mv'::regclass"},
	{rule: "reindex-not-concurrently", sql: "REINDEX TABLE big", rewrite: true,
		probe: "SELECT string_agg(relname || ' ' || relfilenode, ', ' ORDER BY relname) FROM pg_class WHERE relname IN ('big_pkey', 'big_a_idx')"},
	{rule: "rename", sql: "ALTER TABLE big RENAME COLUMN b TO b_renamed",
		probe: "SELECT string_agg(attname, ',') FROM pg_attribute WHERE attrelid = 'big'::regclass AND attname IN ('b', 'b_renamed')",
		want:  "b"},
	{rule: "rewrite-table", sql: "ALTER TABLE big SET UNLOGGED",
		probe: "SELECT relpersistence FROM pg_class WHERE oid = 'big'::regclass", want: "p"},
	{rule: "set-not-null", sql: "ALTER TABLE big ALTER COLUMN c SET NOT NULL", rewrite: true,
		probe: "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'big'::regclass AND attname = 'c'", want: "false"},
	// The backfill after ADD COLUMN, under the ALTER's ACCESS EXCLUSIVE: had
	// it run, probe_seq (not transactional) would have advanced.
	{rule: "statement-after-access-exclusive", tx: true, pre: []string{"ALTER TABLE big ADD COLUMN e_backfill int"},
		sql: "UPDATE big SET e_backfill = nextval('probe_seq')", probe: "SELECT last_value || ' ' || is_called FROM probe_seq",
		want: "1 false"},
	// Work on another table while ACCESS EXCLUSIVE on the first is held (a
	// quick DDL on another table is the several-tables rule's case instead).
	{rule: "statement-after-access-exclusive", tx: true, pre: []string{"ALTER TABLE st_a ADD COLUMN e_first int"},
		sql:   "ANALYZE big",
		probe: "SELECT count(*) FROM pg_attribute WHERE attname = 'e_first'", want: "0"},
	{rule: "truncate", sql: "TRUNCATE big", probe: "SELECT count(*) FROM big", want: fmt.Sprint(enfBigRows)},
	{rule: "vacuum-full", sql: "VACUUM FULL big", probe: "SELECT relfilenode FROM pg_class WHERE oid = 'big'::regclass"},
	{rule: "validate-in-same-transaction", tx: true,
		pre:   []string{"ALTER TABLE big ADD CONSTRAINT big_c_positive CHECK (c > 0) NOT VALID"},
		sql:   "ALTER TABLE big VALIDATE CONSTRAINT big_c_positive",
		probe: "SELECT count(*) FROM pg_constraint WHERE conname = 'big_c_positive'", want: "0"},
}

// enfNotCovered are the rules TestEnforceEveryRule leaves to other tests:
// missing-lock-timeout is lint-only (the proxy never evaluates it) and
// several-tables-in-transaction warns by default
// (TestEnforceSeveralTablesRule).
var enfNotCovered = []string{"missing-lock-timeout", "several-tables-in-transaction"}

// TestEnforceEveryRule runs each rule's unsafe statement through ddlguard,
// over the simple and the extended protocol, and checks the rejection the
// client gets and that the server did not run the statement: the backend's
// last statement is ddlguard's DO block, the case's own probe, and a
// snapshot of the whole schema are unchanged. Rules with a rewrite run with
// it turned off (enfCase.rewrite).
func TestEnforceEveryRule(t *testing.T) {
	begin := time.Now()
	enforceFixture(t)

	covered := map[string]bool{}
	for _, c := range enfCases {
		covered[c.rule] = true
	}
	for _, id := range guard.RuleIDs() {
		if !covered[id] && !slices.Contains(enfNotCovered, id) {
			t.Errorf("rule %s has no end-to-end case in enfCases", id)
		}
	}
	for id := range covered {
		if !slices.Contains(guard.RuleIDs(), id) {
			t.Errorf("enfCases names unknown rule %s", id)
		}
	}

	var rewriteRules []string
	for _, c := range enfCases {
		if c.rewrite {
			rewriteRules = append(rewriteRules, c.rule)
		}
	}
	// The review-time rules warn in the proxy by default
	// (TestProxyLeavesReviewRulesToReview); here they are enforced, as an
	// operator may configure them.
	p := enfGuardProxy(t, enfEnforce(enfReviewRules...))
	noRewrite := enfGuardProxy(t, enfNoRewrite(rewriteRules...), enfEnforce(enfReviewRules...))
	super := superConn(t, enfDatabase)
	for i, c := range enfCases {
		for _, protocol := range []string{"simple", "extended"} {
			t.Run(fmt.Sprintf("%02d-%s/%s", i, c.rule, protocol), func(t *testing.T) {
				if c.rewrite {
					enfRunCase(t, noRewrite, super, c, protocol)
				} else {
					enfRunCase(t, p, super, c, protocol)
				}
			})
		}
	}
	t.Logf("fixture %s (once per run), %d cases x 2 protocols in %s", enfFixture.took.Round(time.Millisecond),
		len(enfCases), time.Since(begin).Round(time.Millisecond))
}

func enfRunCase(t *testing.T, p *testProxy, super *pgx.Conn, c enfCase, protocol string) {
	ctx := enfCtx(t)
	snapshot := enfValue(t, super, enfSnapshotSQL)
	var probe string
	if c.probe != "" {
		probe = enfValue(t, super, c.probe)
		if c.want != "" && probe != c.want {
			t.Fatalf("before the statement, %s = %q, want %q (fixture changed?)", c.probe, probe, c.want)
		}
	}

	conn, notices := enfConnect(t, p)
	pid := conn.PgConn().PID()
	if c.tx {
		enfMustExec(t, conn, "BEGIN")
	}
	for _, sql := range c.pre {
		enfMustExec(t, conn, sql)
	}
	var err error
	if protocol == "simple" {
		_, err = conn.Exec(ctx, c.sql)
	} else {
		// Parse (unnamed), Bind, Describe, Execute, Sync.
		rows, qerr := conn.Query(ctx, c.sql, pgx.QueryExecModeExec)
		if qerr == nil {
			rows.Close()
			qerr = rows.Err()
		}
		err = qerr
	}
	enfWantRejected(t, c.sql, err, c.rule)
	if n := notices.take(); len(n) > 0 {
		t.Errorf("notices with the rejection: %+v", n)
	}

	// What the server ran instead: ddlguard's DO block, whose error left the
	// session where PostgreSQL leaves it after an error.
	wantState := "idle"
	if c.tx {
		wantState = "idle in transaction (aborted)"
	}
	var state, query string
	if err := super.QueryRow(ctx, "SELECT state, query FROM pg_stat_activity WHERE pid = $1", int64(pid)).Scan(&state, &query); err != nil {
		t.Fatal(err)
	}
	if state != wantState || !strings.HasPrefix(query, enfDOPrefix) {
		t.Errorf("backend %d: state %q, last statement %.80q; want %q after ddlguard's DO block", pid, state, query, wantState)
	}

	if c.tx {
		if st := conn.PgConn().TxStatus(); st != 'E' {
			t.Errorf("transaction status %q after the rejection, want 'E'", st)
		}
		_, err := conn.Exec(ctx, "SELECT 1")
		enfWantCode(t, "SELECT 1 after the rejection inside BEGIN", err, "25P02")
		enfMustExec(t, conn, "ROLLBACK")
	}
	if st := conn.PgConn().TxStatus(); st != 'I' {
		t.Errorf("transaction status %q at the end, want 'I'", st)
	}
	if got := enfValue(t, conn, "SELECT 42"); got != "42" {
		t.Errorf("the connection is not usable after the rejection: %q", got)
	}

	if c.probe != "" {
		after := enfValue(t, super, c.probe)
		if after != probe {
			t.Errorf("%s: %q before, %q after: the server ran the statement", c.probe, probe, after)
		}
	}
	if after := enfValue(t, super, enfSnapshotSQL); after != snapshot {
		t.Errorf("the schema changed:\nbefore:\n%s\nafter:\n%s", snapshot, after)
	}
}

// TestEnforceNewTableInTransaction: the same unsafe statements on a table
// created earlier in the same transaction pass (nobody else can be waiting
// for it), and their effects are there after COMMIT.
func TestEnforceNewTableInTransaction(t *testing.T) {
	begin := time.Now()
	enforceFixture(t)
	p := enfGuardProxy(t)
	super := superConn(t, enfDatabase)
	t.Cleanup(func() { super.Exec(context.Background(), "DROP TABLE IF EXISTS fresh") })
	conn, notices := enfConnect(t, p)
	ctx := enfCtx(t)

	steps := []string{
		"BEGIN",
		"CREATE TABLE fresh (id int, ref_id int, c int, v text)",
		"INSERT INTO fresh SELECT g, g % 100 + 1, g, 'v' || g FROM generate_series(1, 5000) g",
		"CREATE INDEX fresh_c_idx ON fresh (c)",
		"ALTER TABLE fresh ADD COLUMN seen timestamptz DEFAULT clock_timestamp()",
		"ALTER TABLE fresh ADD CONSTRAINT fresh_ref_fk FOREIGN KEY (ref_id) REFERENCES ref (id)",
		"ALTER TABLE fresh ALTER COLUMN c SET NOT NULL",
		"ALTER TABLE fresh DROP COLUMN v",
		"ALTER TABLE fresh ADD CONSTRAINT fresh_id_key UNIQUE (id)",
	}
	for _, sql := range steps {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v (a table created in the same transaction must pass)", sql, err)
		}
	}
	// TRUNCATE as well, once the rows have served the constraints above.
	if _, err := conn.Exec(ctx, "TRUNCATE fresh"); err != nil {
		t.Fatalf("TRUNCATE fresh: %v", err)
	}
	enfMustExec(t, conn, "COMMIT")
	if n := notices.take(); len(n) > 0 {
		t.Errorf("notices: %+v", n)
	}

	checks := []struct{ sql, want string }{
		{"SELECT count(*) FROM pg_class WHERE relname = 'fresh_c_idx'", "1"},
		{"SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'fresh'::regclass AND attname = 'seen'",
			"timestamp with time zone"},
		{"SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'fresh_ref_fk'", "FOREIGN KEY (ref_id) REFERENCES ref(id)"},
		{"SELECT convalidated FROM pg_constraint WHERE conname = 'fresh_ref_fk'", "true"},
		{"SELECT attnotnull FROM pg_attribute WHERE attrelid = 'fresh'::regclass AND attname = 'c'", "true"},
		{"SELECT count(*) FROM pg_attribute WHERE attrelid = 'fresh'::regclass AND attname = 'v' AND NOT attisdropped", "0"},
		{"SELECT count(*) FROM pg_constraint WHERE conname = 'fresh_id_key' AND contype = 'u'", "1"},
		{"SELECT count(*) FROM fresh", "0"},
	}
	for _, c := range checks {
		if got := enfValue(t, super, c.sql); got != c.want {
			t.Errorf("after COMMIT, %s = %q, want %q", c.sql, got, c.want)
		}
	}
	for _, rec := range enfDecisions(t, p) {
		if rec["action"] == "reject" || rec["action"] == "rewrite" {
			t.Errorf("decision on a table created in the transaction: %v", rec)
		}
	}
	t.Logf("done in %s", time.Since(begin).Round(time.Millisecond))
}

// enfLogRecords parses ddlguard's JSON log lines whose msg is msg.
func enfLogRecords(t *testing.T, p *testProxy, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(p.Logs(), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("ddlguard log line is not JSON: %q: %v", line, err)
		}
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

func enfDecisions(t *testing.T, p *testProxy) []map[string]any {
	t.Helper()
	return enfLogRecords(t, p, "decision")
}

// TestEnforceProtocolPaths: a rejection behaves as a server error on every
// path a client can send a statement by. The rule has a rewrite, which
// ddlguard runs only for a statement alone outside a transaction block:
// the pipeline, batch, transaction, multi-statement and named-statement
// paths are rejected with the default configuration; the unnamed-statement
// and psycopg autocommit paths, which the default would rewrite, run
// with the rule's rewrite turned off.
func TestEnforceProtocolPaths(t *testing.T) {
	begin := time.Now()
	enforceFixture(t)
	p := enfGuardProxy(t)
	noRewrite := enfGuardProxy(t, enfNoRewrite("create-index-not-concurrently"))
	super := superConn(t, enfDatabase)
	const rule = "create-index-not-concurrently"
	indexAbsent := func(t *testing.T, name string) {
		t.Helper()
		if got := enfValue(t, super, "SELECT count(*) FROM pg_class WHERE relname = $1", name); got != "0" {
			t.Errorf("index %s was created", name)
		}
	}

	t.Run("pipeline", func(t *testing.T) {
		conn, _ := enfConnect(t, p)
		ctx := enfCtx(t)
		pl := conn.PgConn().StartPipeline(ctx)
		pl.SendQueryParams("SELECT 1", nil, nil, nil, nil)
		pl.SendQueryParams("CREATE INDEX enf_pipe_idx ON big (c)", nil, nil, nil, nil)
		pl.SendQueryParams("SELECT 2", nil, nil, nil, nil)
		pl.SendPipelineSync()
		pl.SendQueryParams("SELECT 3", nil, nil, nil, nil)
		if err := pl.Sync(); err != nil {
			t.Fatal(err)
		}
		var got []string
		for {
			res, err := pl.GetResults()
			if err != nil {
				enfWantRejected(t, "CREATE INDEX in a pipeline", err, rule)
				got = append(got, "error "+pgErrorOf(err).Code)
				continue
			}
			if res == nil {
				break
			}
			switch r := res.(type) {
			case *pgconn.ResultReader:
				out := r.Read()
				if out.Err != nil {
					enfWantRejected(t, "CREATE INDEX in a pipeline", out.Err, rule)
					got = append(got, "error "+pgErrorOf(out.Err).Code)
					continue
				}
				s := "result " + out.CommandTag.String()
				for _, row := range out.Rows {
					s += " " + string(row[0])
				}
				got = append(got, s)
			case *pgconn.PipelineSync:
				got = append(got, "sync")
			default:
				t.Fatalf("unexpected pipeline result %T", res)
			}
		}
		if err := pl.Close(); err != nil {
			t.Fatal(err)
		}
		want := []string{"result SELECT 1 1", "error ZG001", "sync", "result SELECT 1 3", "sync"}
		if !slices.Equal(got, want) {
			t.Errorf("pipeline results\n got %q\nwant %q (SELECT 2 skipped up to the Sync)", got, want)
		}
		indexAbsent(t, "enf_pipe_idx")
		if got := enfValue(t, conn, "SELECT 4"); got != "4" {
			t.Errorf("after the pipeline: %q", got)
		}
	})

	t.Run("batch", func(t *testing.T) {
		conn, _ := enfConnect(t, p)
		ctx := enfCtx(t)
		b := &pgx.Batch{}
		b.Queue("INSERT INTO audit_t VALUES (10)")
		b.Queue("SELECT 1")
		b.Queue("CREATE INDEX enf_batch_idx ON big (c)")
		b.Queue("INSERT INTO audit_t VALUES (11)")
		br := conn.SendBatch(ctx, b)
		if _, err := br.Exec(); err != nil {
			t.Fatalf("INSERT before the rejection: %v", err)
		}
		var one int
		if err := br.QueryRow().Scan(&one); err != nil || one != 1 {
			t.Fatalf("SELECT 1 before the rejection: %d, %v", one, err)
		}
		_, err := br.Exec()
		enfWantRejected(t, "CREATE INDEX in a batch", err, rule)
		if _, err := br.Exec(); err == nil {
			t.Errorf("the INSERT after the rejection in the batch ran")
		}
		br.Close()
		// The batch's implicit transaction (one Sync) rolled back, as the
		// server does after any error in it.
		if got := enfValue(t, super, "SELECT count(*) FROM audit_t WHERE n IN (10, 11)"); got != "0" {
			t.Errorf("%s rows of the failed batch are in audit_t, want none", got)
		}
		indexAbsent(t, "enf_batch_idx")
		if got := enfValue(t, conn, "SELECT 5"); got != "5" {
			t.Errorf("after the batch: %q", got)
		}
	})

	t.Run("transaction", func(t *testing.T) {
		conn, _ := enfConnect(t, p)
		ctx := enfCtx(t)
		enfMustExec(t, conn, "BEGIN")
		enfMustExec(t, conn, "INSERT INTO audit_t VALUES (20)")
		_, err := conn.Exec(ctx, "CREATE INDEX enf_tx_idx ON big (c)")
		enfWantRejected(t, "CREATE INDEX inside BEGIN", err, rule)
		if st := conn.PgConn().TxStatus(); st != 'E' {
			t.Errorf("transaction status %q, want 'E'", st)
		}
		_, err = conn.Exec(ctx, "SELECT 1")
		enfWantCode(t, "SELECT after the rejection", err, "25P02")
		_, err = conn.Exec(ctx, "COMMIT")
		if err != nil {
			t.Fatalf("COMMIT of the aborted transaction: %v", err)
		}
		// COMMIT of a failed transaction rolls it back.
		if got := enfValue(t, super, "SELECT count(*) FROM audit_t WHERE n = 20"); got != "0" {
			t.Errorf("the aborted transaction's INSERT was committed")
		}
		enfMustExec(t, conn, "BEGIN")
		_, err = conn.Exec(ctx, "CREATE INDEX enf_tx_idx ON big (c)")
		enfWantRejected(t, "CREATE INDEX inside BEGIN (again)", err, rule)
		enfMustExec(t, conn, "ROLLBACK")
		if got := enfValue(t, conn, "SELECT 6"); got != "6" || conn.PgConn().TxStatus() != 'I' {
			t.Errorf("after ROLLBACK: %q, status %q", got, conn.PgConn().TxStatus())
		}
		indexAbsent(t, "enf_tx_idx")
	})

	t.Run("multi-statement", func(t *testing.T) {
		conn, _ := enfConnect(t, p)
		ctx := enfCtx(t)
		pc := conn.PgConn()
		_, err := pc.Exec(ctx, "INSERT INTO audit_t VALUES (1); CREATE INDEX enf_multi_idx ON big (c); INSERT INTO audit_t VALUES (2)").ReadAll()
		enfWantRejected(t, "multi-statement string", err, rule)
		if got := enfValue(t, super, "SELECT count(*) FROM audit_t WHERE n IN (1, 2)"); got != "0" {
			t.Errorf("%s rows of the rejected string are in audit_t: something of it ran", got)
		}
		indexAbsent(t, "enf_multi_idx")
		if st := pc.TxStatus(); st != 'I' {
			t.Errorf("after the rejected string: status %q, want 'I'", st)
		}

		// A string that opens a transaction block before the rejected
		// statement leaves it aborted, as the server leaves
		// "BEGIN; SELECT 1/0;".
		direct := connectDirect(t, cluster, enfUser, enfDatabase)
		_, err = direct.PgConn().Exec(ctx, "BEGIN; SELECT 1/0;").ReadAll()
		enfWantCode(t, "BEGIN; SELECT 1/0; directly", err, "22012")
		directStatus := direct.PgConn().TxStatus()

		_, err = pc.Exec(ctx, "BEGIN; CREATE INDEX enf_multi_idx ON big (c);").ReadAll()
		enfWantRejected(t, "BEGIN; CREATE INDEX ...;", err, rule)
		if st := pc.TxStatus(); st != 'E' || st != directStatus {
			t.Errorf("after BEGIN; CREATE INDEX ...; status %q, want 'E' (PostgreSQL itself: %q)", st, directStatus)
		}
		_, err = conn.Exec(ctx, "SELECT 1")
		enfWantCode(t, "SELECT in the failed transaction", err, "25P02")
		enfMustExec(t, conn, "ROLLBACK")
		if got := enfValue(t, conn, "SELECT 7"); got != "7" {
			t.Errorf("after ROLLBACK: %q", got)
		}
		indexAbsent(t, "enf_multi_idx")
	})

	t.Run("named-prepared-statement", func(t *testing.T) {
		conn, _ := enfConnect(t, p)
		ctx := enfCtx(t)
		const sql = "CREATE INDEX enf_prep_idx ON big (c)"
		if _, err := conn.Prepare(ctx, "enf_prep", sql); err != nil {
			t.Fatalf("Prepare: %v (the rejection comes at Execute, as a server error would)", err)
		}
		for i := range 3 {
			_, err := conn.Exec(ctx, "enf_prep")
			enfWantRejected(t, fmt.Sprintf("Execute %d of the prepared statement", i+1), err, rule)
		}
		var decided int
		for _, rec := range enfDecisions(t, p) {
			if s, _ := rec["statement"].(string); strings.Contains(s, "enf_prep_idx") {
				decided++
				if rec["rule"] != rule || rec["action"] != "rewrite" || rec["executed_as"] != "reject" {
					t.Errorf("decision log: %v", rec)
				}
			}
		}
		if decided != 1 {
			t.Errorf("%d decisions logged for the prepared statement, want 1 (decided at Parse only)", decided)
		}
		indexAbsent(t, "enf_prep_idx")
		if got := enfValue(t, conn, "SELECT 8"); got != "8" {
			t.Errorf("after the executes: %q", got)
		}
	})

	t.Run("unnamed-statement", func(t *testing.T) {
		conn, _ := enfConnect(t, noRewrite)
		ctx := enfCtx(t)
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeExec, pgx.QueryExecModeDescribeExec} {
			rows, err := conn.Query(ctx, "CREATE INDEX enf_unnamed_idx ON big (c)", mode)
			if err == nil {
				rows.Close()
				err = rows.Err()
			}
			enfWantRejected(t, fmt.Sprintf("unnamed statement (%v)", mode), err, rule)
		}
		indexAbsent(t, "enf_unnamed_idx")
		if got := enfValue(t, conn, "SELECT 9"); got != "9" {
			t.Errorf("after the unnamed statements: %q", got)
		}
	})

	t.Run("psycopg", func(t *testing.T) {
		script := filepath.Join(t.TempDir(), "enforce_psycopg.py")
		if err := os.WriteFile(script, []byte(enfPsycopgScript), 0o644); err != nil {
			t.Fatal(err)
		}
		res := runClientProgram(t, 30*time.Second, nil, psycopgPython, script,
			noRewrite.DSN(enfUser, enfDatabase, "sslmode", "disable"), "CREATE INDEX enf_psycopg_idx ON big (c)")
		if res.code != 0 {
			t.Fatalf("psycopg script failed:\n%s", res)
		}
		var got struct {
			DDL, Next, AutocommitDDL                  *enfPyError
			StatusAfterDDL, StatusAfterRoll, PsycopgV string
			AfterRollback, AutocommitAfter            int
		}
		if err := json.Unmarshal([]byte(strings.TrimSpace(res.stdout)), &got); err != nil {
			t.Fatalf("psycopg output: %v\n%s", err, res)
		}
		for what, e := range map[string]*enfPyError{"in a transaction": got.DDL, "in autocommit": got.AutocommitDDL} {
			if e == nil || e.SQLState != proxy.CodeRejected || !strings.HasPrefix(e.Message, "ddlguard: "+rule+": ") ||
				e.Severity != "ERROR" || !strings.Contains(e.Detail, "locks:") || e.Hint == "" || e.Context != "" {
				t.Errorf("psycopg %s: %+v, want ddlguard's rejection without CONTEXT", what, e)
			}
		}
		if got.StatusAfterDDL != "INERROR" || got.Next == nil || got.Next.SQLState != "25P02" {
			t.Errorf("after the rejection: status %s, next statement %+v; want INERROR and 25P02", got.StatusAfterDDL, got.Next)
		}
		if got.StatusAfterRoll != "IDLE" || got.AfterRollback != 42 || got.AutocommitAfter != 43 {
			t.Errorf("after rollback: status %s, SELECT gave %d; autocommit SELECT gave %d", got.StatusAfterRoll,
				got.AfterRollback, got.AutocommitAfter)
		}
		t.Logf("psycopg %s in %s", got.PsycopgV, res.elapsed.Round(time.Millisecond))
		indexAbsent(t, "enf_psycopg_idx")
	})
	t.Logf("done in %s", time.Since(begin).Round(time.Millisecond))
}

// enfPyError is an error as enfPsycopgScript reports it.
type enfPyError struct {
	SQLState, Severity, Message, Detail, Hint, Context string
}

// enfPsycopgScript runs argv[2] through ddlguard (argv[1]) with psycopg 3,
// first in psycopg's default transaction, then in autocommit, and prints
// what happened as JSON.
const enfPsycopgScript = `
import json, sys
import psycopg

dsn, ddl = sys.argv[1], sys.argv[2]

def err(e):
    d = e.diag
    return {"SQLState": e.sqlstate, "Severity": d.severity_nonlocalized or "", "Message": d.message_primary or "",
            "Detail": d.message_detail or "", "Hint": d.message_hint or "", "Context": d.context or ""}

out = {"PsycopgV": psycopg.__version__, "DDL": None, "Next": None, "AutocommitDDL": None}
with psycopg.connect(dsn) as conn:
    try:
        conn.execute(ddl)
    except psycopg.Error as e:
        out["DDL"] = err(e)
    out["StatusAfterDDL"] = conn.info.transaction_status.name
    try:
        conn.execute("SELECT 1")
    except psycopg.Error as e:
        out["Next"] = err(e)
    conn.rollback()
    out["StatusAfterRoll"] = conn.info.transaction_status.name
    out["AfterRollback"] = conn.execute("SELECT 42").fetchone()[0]
    conn.rollback()
    conn.autocommit = True
    try:
        conn.execute(ddl)
    except psycopg.Error as e:
        out["AutocommitDDL"] = err(e)
    out["AutocommitAfter"] = conn.execute("SELECT 43").fetchone()[0]
print(json.dumps(out))
`

// TestEnforceSeveralTablesRule: strong locks on two tables in one
// transaction. With the default configuration several-tables-in-transaction
// only warns; the seed's own deadlock case (ALTER a; ALTER b) is rejected
// nonetheless, by statement-after-access-exclusive, because the second
// ALTER waits for and works on b while a stays locked ACCESS EXCLUSIVE.
func TestEnforceSeveralTablesRule(t *testing.T) {
	begin := time.Now()
	enforceFixture(t)
	const rule = "several-tables-in-transaction"
	wantWarning := func(t *testing.T, notices []pgconn.Notice, table string) {
		t.Helper()
		var found []pgconn.Notice
		for _, n := range notices {
			if n.Code == "01Z01" && strings.HasPrefix(n.Message, "ddlguard: "+rule+": ") {
				found = append(found, n)
			}
		}
		if len(found) != 1 {
			t.Fatalf("notices %+v, want one 01Z01 %s warning", notices, rule)
		}
		n := found[0]
		if n.Severity != "WARNING" || !strings.Contains(n.Message, " on "+table+" ") || n.Hint == "" {
			t.Errorf("warning %+v: want severity WARNING, about %s, with a hint", n, table)
		}
	}
	columns := func(t *testing.T, conn *pgx.Conn, names ...string) string {
		t.Helper()
		return enfValue(t, conn, "SELECT count(*) FROM pg_attribute WHERE attname = ANY ($1)", names)
	}

	t.Run("default/seed-case-runs-and-warns", func(t *testing.T) {
		conn, notices := enfConnect(t, enfGuardProxy(t))
		enfMustExec(t, conn, "BEGIN")
		enfMustExec(t, conn, "ALTER TABLE st_a ADD COLUMN x1 int")
		if n := notices.take(); len(n) > 0 {
			t.Errorf("notices for the first table: %+v", n)
		}
		enfMustExec(t, conn, "ALTER TABLE st_b ADD COLUMN y1 int")
		wantWarning(t, notices.take(), "st_b")
		if got := columns(t, conn, "x1", "y1"); got != "2" {
			t.Errorf("%s of the two columns exist in the transaction, want both", got)
		}
		enfMustExec(t, conn, "ROLLBACK")
	})

	t.Run("default/share-row-exclusive-on-two-tables-warns", func(t *testing.T) {
		conn, notices := enfConnect(t, enfGuardProxy(t))
		enfMustExec(t, conn, "BEGIN")
		enfMustExec(t, conn, "CREATE TRIGGER st_a_trg AFTER INSERT ON st_a FOR EACH ROW EXECUTE FUNCTION enf_noop()")
		if n := notices.take(); len(n) > 0 {
			t.Errorf("notices for the first table: %+v", n)
		}
		enfMustExec(t, conn, "CREATE TRIGGER st_b_trg AFTER INSERT ON st_b FOR EACH ROW EXECUTE FUNCTION enf_noop()")
		wantWarning(t, notices.take(), "st_b")
		if got := enfValue(t, conn, "SELECT count(*) FROM pg_trigger WHERE tgname IN ('st_a_trg', 'st_b_trg')"); got != "2" {
			t.Errorf("%s of the two triggers exist in the transaction", got)
		}
		enfMustExec(t, conn, "ROLLBACK")
	})

	t.Run("enforce/seed-case-rejected", func(t *testing.T) {
		conn, notices := enfConnect(t, enfGuardProxy(t, enfRuleMode(rule, guard.Enforce)))
		ctx := enfCtx(t)
		enfMustExec(t, conn, "BEGIN")
		enfMustExec(t, conn, "ALTER TABLE st_a ADD COLUMN x3 int")
		_, err := conn.Exec(ctx, "ALTER TABLE st_b ADD COLUMN y3 int")
		pe := enfWantRejected(t, "second ALTER", err, rule)
		if !strings.Contains(pe.Message, "already holds ACCESS EXCLUSIVE on st_a") {
			t.Errorf("message %q does not name the lock held on st_a", pe.Message)
		}
		if n := notices.take(); len(n) > 0 {
			t.Errorf("notices with the rejection: %+v", n)
		}
		if st := conn.PgConn().TxStatus(); st != 'E' {
			t.Errorf("transaction status %q, want 'E'", st)
		}
		_, err = conn.Exec(ctx, "SELECT 1")
		enfWantCode(t, "SELECT after the rejection", err, "25P02")
		enfMustExec(t, conn, "ROLLBACK")
		if got := columns(t, conn, "x3", "y3"); got != "0" {
			t.Errorf("%s columns of the rolled-back transaction exist", got)
		}
	})
	t.Logf("done in %s", time.Since(begin).Round(time.Millisecond))
}

// TestEnforceWarnMode: a rule in warn mode lets the statement run and sends
// the client a WARNING notice (01Z01) with the message and hint the
// rejection would have had, ahead of the statement's CommandComplete.
func TestEnforceWarnMode(t *testing.T) {
	begin := time.Now()
	enforceFixture(t)
	const rule = "create-index-not-concurrently"
	const sql = "CREATE INDEX enf_warn_idx ON big (c)"
	super := superConn(t, enfDatabase)
	t.Cleanup(func() {
		for _, idx := range []string{"enf_warn_idx", "enf_warn_raw_idx", "enf_warn_psql_idx"} {
			super.Exec(context.Background(), "DROP INDEX IF EXISTS "+idx)
		}
	})

	// The rejection in enforce mode, for comparison (with the rule's
	// rewrite turned off: the default would run CREATE INDEX CONCURRENTLY).
	enforcing, _ := enfConnect(t, enfGuardProxy(t, enfNoRewrite(rule)))
	_, err := enforcing.Exec(enfCtx(t), sql)
	rejection := enfWantRejected(t, sql+" (enforce)", err, rule)

	p := enfGuardProxy(t, enfRuleMode(rule, guard.Warn))
	conn, notices := enfConnect(t, p)
	if _, err := conn.Exec(enfCtx(t), sql); err != nil {
		t.Fatalf("%s in warn mode: %v", sql, err)
	}
	got := notices.take()
	if len(got) != 1 {
		t.Fatalf("notices %+v, want one", got)
	}
	n := got[0]
	if n.Severity != "WARNING" || n.SeverityUnlocalized != "WARNING" || n.Code != "01Z01" {
		t.Errorf("notice severity %q/%q code %q, want WARNING 01Z01", n.Severity, n.SeverityUnlocalized, n.Code)
	}
	if n.Message != rejection.Message || n.Hint != rejection.Hint {
		t.Errorf("warning\n message %q\n hint %q\nrejection\n message %q\n hint %q\nwant the same", n.Message, n.Hint,
			rejection.Message, rejection.Hint)
	}
	if n.Detail != "locks: big SHARE (index build)" {
		t.Errorf("notice DETAIL %q", n.Detail)
	}
	if got := enfValue(t, super, "SELECT count(*) FROM pg_class WHERE relname = 'enf_warn_idx'"); got != "1" {
		t.Errorf("the index was not built in warn mode")
	}

	// On the wire: the notice comes first, then the statement's own answer.
	rc := dialRaw(t, p.Addr())
	rc.startup(t, 3<<16, map[string]string{"user": enfUser, "database": enfDatabase})
	seq := enfRawExchange(t, rc, "CREATE INDEX enf_warn_raw_idx ON big (c)")
	wantSeq := []string{
		"NoticeResponse WARNING 01Z01 ddlguard: " + rule + ": CREATE INDEX on big would hold SHARE lock (blocks writes) while it builds the index",
		"CommandComplete CREATE INDEX",
		"ReadyForQuery I",
	}
	if !slices.Equal(seq, wantSeq) {
		t.Errorf("messages\n got %q\nwant %q", seq, wantSeq)
	}

	// psql prints it as any server warning.
	res := runClientProgram(t, 20*time.Second, nil, cluster.Psql(),
		psqlClientArgs(p.DSN(enfUser, enfDatabase, "sslmode", "disable"), "-c", "CREATE INDEX enf_warn_psql_idx ON big (c)")...)
	wantStderr := "WARNING:  ddlguard: create-index-not-concurrently: CREATE INDEX on big would hold SHARE lock (blocks writes) while it builds the index\n" +
		"DETAIL:  locks: big SHARE (index build)\n" +
		"HINT:  CREATE INDEX CONCURRENTLY enf_warn_psql_idx ON big USING btree (c)\n"
	if res.code != 0 || res.stdout != "CREATE INDEX\n" || res.stderr != wantStderr {
		t.Errorf("psql:\n%s\nwant exit 0, stdout \"CREATE INDEX\", stderr\n%s", res, wantStderr)
	}
	if got := enfValue(t, super, "SELECT count(*) FROM pg_class WHERE relname IN ('enf_warn_raw_idx', 'enf_warn_psql_idx')"); got != "2" {
		t.Errorf("%s of the raw and psql indexes were built, want 2", got)
	}
	t.Logf("done in %s", time.Since(begin).Round(time.Millisecond))
}

// enfRawExchange sends one simple Query and describes every message up to
// ReadyForQuery.
func enfRawExchange(t *testing.T, rc *rawConn, sql string) []string {
	t.Helper()
	rc.SetDeadline(time.Now().Add(15 * time.Second))
	defer rc.SetDeadline(time.Time{})
	rc.fe.SendQuery(&pgproto3.Query{String: sql})
	if err := rc.fe.Flush(); err != nil {
		t.Fatal(err)
	}
	var out []string
	for {
		msg, err := rc.fe.Receive()
		if err != nil {
			t.Fatalf("%s: after %q: %v", sql, out, err)
		}
		switch m := msg.(type) {
		case *pgproto3.CommandComplete:
			out = append(out, "CommandComplete "+string(m.CommandTag))
		case *pgproto3.ReadyForQuery:
			return append(out, "ReadyForQuery "+string(m.TxStatus))
		case *pgproto3.ErrorResponse:
			out = append(out, "ErrorResponse "+m.Severity+" "+m.Code)
		case *pgproto3.NoticeResponse:
			out = append(out, "NoticeResponse "+m.Severity+" "+m.Code+" "+m.Message)
		default:
			out = append(out, fmt.Sprintf("%T", msg)[len("*pgproto3."):])
		}
	}
}

// TestEnforcePsqlShowsRejection: what a person sees in psql (the CREATE
// INDEX rule with its rewrite turned off, so that it is rejected; what psql
// shows of an executed rewrite: TestRewritePsqlShowsNotice).
func TestEnforcePsqlShowsRejection(t *testing.T) {
	begin := time.Now()
	enforceFixture(t)
	p := enfGuardProxy(t, enfNoRewrite("create-index-not-concurrently"), enfEnforce("drop-column"))
	dsn := p.DSN(enfUser, enfDatabase, "sslmode", "disable")
	const createIndex = "CREATE INDEX enf_psql_idx ON big (c)"
	const createIndexShown = "ERROR:  ddlguard: create-index-not-concurrently: CREATE INDEX on big would hold SHARE lock (blocks writes) while it builds the index\n" +
		"DETAIL:  locks: big SHARE (index build)\n" +
		"HINT:  CREATE INDEX CONCURRENTLY enf_psql_idx ON big USING btree (c)\n"
	const dropColumn = "ALTER TABLE big DROP COLUMN v"
	const dropColumnShown = "ERROR:  ddlguard: drop-column: ALTER TABLE on big would hold ACCESS EXCLUSIVE lock (blocks all reads and writes) " +
		"and destroys column big.v with its data: every query and deployed code that still uses it fails " +
		"(the drop itself is metadata-only, but it queues behind every open transaction on big)\n" +
		"DETAIL:  locks: big ACCESS EXCLUSIVE\n" +
		"HINT:  -- first deploy code that no longer reads or writes big.v (ORMs: mark it ignored), then confirm:\n" +
		`/* ddlguard:allow drop-column reason="no deployed code uses big.v" */ ALTER TABLE big DROP COLUMN v;` + "\n"

	for _, c := range []struct{ sql, shown string }{{createIndex, createIndexShown}, {dropColumn, dropColumnShown}} {
		res := runClientProgram(t, 20*time.Second, nil, cluster.Psql(), psqlClientArgs(dsn, "-c", c.sql)...)
		if res.code != 1 || res.stdout != "" || res.stderr != c.shown {
			t.Errorf("psql -c %q:\n%s\nwant exit 1 and exactly on stderr:\n%s", c.sql, res, c.shown)
		}
	}

	// A script with ON_ERROR_STOP stops at the rejection (exit 3).
	dir := t.TempDir()
	script := filepath.Join(dir, "migration.sql")
	if err := os.WriteFile(script, []byte(createIndex+";\nSELECT 'not reached' AS after;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res := runClientProgram(t, 20*time.Second, nil, cluster.Psql(), psqlClientArgs(dsn, "-f", script)...)
	prefixed := ""
	for _, line := range strings.SplitAfter(createIndexShown, "\n") {
		if strings.HasPrefix(line, "ERROR:") {
			line = "psql:" + script + ":1: " + line
		}
		prefixed += line
	}
	if res.code != 3 || strings.Contains(res.stdout, "not reached") || res.stderr != prefixed {
		t.Errorf("psql -f with ON_ERROR_STOP:\n%s\nwant exit 3, nothing after the rejection, stderr:\n%s", res, prefixed)
	}

	// Without ON_ERROR_STOP the session goes on with the next statement.
	if err := os.WriteFile(script, []byte(createIndex+";\nSELECT 'next statement ran' AS after;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	res = runClientProgram(t, 20*time.Second, nil, cluster.Psql(), "-X", "-d", dsn, "-f", script)
	if res.code != 0 || !strings.Contains(res.stdout, "next statement ran") || res.stderr != prefixed {
		t.Errorf("psql -f without ON_ERROR_STOP:\n%s\nwant exit 0, the next statement's result, stderr:\n%s", res, prefixed)
	}

	// Without the stripping, psql would show the DO block's PL/pgSQL
	// context: the same RAISE straight to the server does.
	direct := runClientProgram(t, 20*time.Second, nil, cluster.Psql(),
		psqlClientArgs(cluster.DSN(enfUser, enfDatabase, "sslmode", "disable"), "-c",
			"DO $$BEGIN RAISE EXCEPTION USING MESSAGE = 'x', ERRCODE = 'ZG001'; END$$")...)
	if !strings.Contains(direct.stderr, "CONTEXT:  PL/pgSQL function inline_code_block") {
		t.Errorf("a DO block's error straight from the server shows no CONTEXT line:\n%s", direct)
	}
	if got := enfValue(t, superConn(t, enfDatabase), "SELECT count(*) FROM pg_class WHERE relname = 'enf_psql_idx'"); got != "0" {
		t.Errorf("psql's CREATE INDEX ran")
	}
	t.Logf("done in %s", time.Since(begin).Round(time.Millisecond))
}

// TestEnforceSmallTablesRelaxed: the size rules pass small tables (facts
// from relpages after ANALYZE, or measured for a table never analyzed) and
// reject large ones. (The CREATE INDEX rule runs
// with its rewrite turned off, so that "large" shows as a rejection
// rather than as CREATE INDEX CONCURRENTLY run in its place.)
func TestEnforceSmallTablesRelaxed(t *testing.T) {
	begin := time.Now()
	enforceFixture(t)
	p := enfGuardProxy(t, enfNoRewrite("create-index-not-concurrently"))
	super := superConn(t, enfDatabase)
	t.Cleanup(func() { super.Exec(context.Background(), "DROP INDEX IF EXISTS small_t_relaxed_idx") })
	conn, notices := enfConnect(t, p)
	ctx := enfCtx(t)

	if _, err := conn.Exec(ctx, "CREATE INDEX small_t_relaxed_idx ON small_t (a)"); err != nil {
		t.Fatalf("CREATE INDEX on a small analyzed table: %v", err)
	}
	if got := enfValue(t, super, "SELECT count(*) FROM pg_class WHERE relname = 'small_t_relaxed_idx'"); got != "1" {
		t.Errorf("the index on small_t was not built")
	}

	_, err := conn.Exec(ctx, "CREATE INDEX big_relaxed_idx ON big (a)")
	enfWantRejected(t, "CREATE INDEX on big", err, "create-index-not-concurrently")

	t.Cleanup(func() { super.Exec(context.Background(), "DROP INDEX IF EXISTS never_analyzed_idx") })
	size := enfValue(t, super, "SELECT pg_total_relation_size('never_analyzed')")
	if _, err := conn.Exec(ctx, "CREATE INDEX never_analyzed_idx ON never_analyzed (a)"); err != nil {
		t.Fatalf("CREATE INDEX on a never analyzed table of %s bytes (measured small): %v", size, err)
	}
	if got := enfValue(t, super, "SELECT count(*) FROM pg_class WHERE relname IN ('big_relaxed_idx', 'never_analyzed_idx')"); got != "1" {
		t.Errorf("%s of the indexes exist, want 1 (never_analyzed's)", got)
	}
	if n := notices.take(); len(n) > 0 {
		t.Errorf("notices: %+v", n)
	}

	actions := map[string]string{}
	for _, rec := range enfDecisions(t, p) {
		s, _ := rec["statement"].(string)
		for _, idx := range []string{"small_t_relaxed_idx", "big_relaxed_idx", "never_analyzed_idx"} {
			if strings.Contains(s, idx) {
				actions[idx], _ = rec["action"].(string)
			}
		}
	}
	want := map[string]string{"small_t_relaxed_idx": "timeout", "big_relaxed_idx": "reject", "never_analyzed_idx": "timeout"}
	for idx, a := range want {
		if actions[idx] != a {
			t.Errorf("decision for %s: %q, want %q", idx, actions[idx], a)
		}
	}
	t.Logf("done in %s", time.Since(begin).Round(time.Millisecond))
}

// TestEnforceFactsInvisible: the catalog query ddlguard asks on the
// client's connection leaves no trace in what the client receives, in and
// out of a transaction block, and is not sent in an aborted transaction.
func TestEnforceFactsInvisible(t *testing.T) {
	begin := time.Now()
	enforceFixture(t)
	p := enfGuardProxy(t)
	super := superConn(t, enfDatabase)
	t.Cleanup(func() {
		super.Exec(context.Background(), "DROP INDEX IF EXISTS small_t_raw_idx")
		super.Exec(context.Background(), "ALTER TABLE big DROP COLUMN IF EXISTS c_raw, DROP COLUMN IF EXISTS c_direct")
	})
	login := map[string]string{"user": enfUser, "database": enfDatabase}
	via := dialRaw(t, p.Addr())
	via.startup(t, 3<<16, login)
	direct := dialRaw(t, cluster.Addr())
	direct.startup(t, 3<<16, login)

	exchange := func(t *testing.T, sqlVia, sqlDirect string, want ...string) {
		t.Helper()
		got := enfRawExchange(t, via, sqlVia)
		server := enfRawExchange(t, direct, sqlDirect)
		if !slices.Equal(got, want) || !slices.Equal(server, want) {
			t.Errorf("%s:\nthrough ddlguard %q\nPostgreSQL alone %q\nwant %q", sqlVia, got, server, want)
		}
	}

	// Outside a transaction block.
	exchange(t, "ALTER TABLE big ADD COLUMN c_raw int", "ALTER TABLE big ADD COLUMN c_direct int",
		"CommandComplete ALTER TABLE", "ReadyForQuery I")
	// Proof that facts were asked: on a small table CREATE INDEX runs
	// (without facts the guard would take it as large and reject it).
	if seq := enfRawExchange(t, via, "CREATE INDEX small_t_raw_idx ON small_t (a)"); !slices.Equal(seq,
		[]string{"CommandComplete CREATE INDEX", "ReadyForQuery I"}) {
		t.Errorf("CREATE INDEX on small_t: %q", seq)
	}

	// Inside one.
	exchange(t, "BEGIN", "BEGIN", "CommandComplete BEGIN", "ReadyForQuery T")
	// (The direct connection alters another table: its transaction runs
	// alongside and must not wait for big.)
	exchange(t, "ALTER TABLE big ADD COLUMN c_raw_tx int", "ALTER TABLE st_a ADD COLUMN c_direct_tx int",
		"CommandComplete ALTER TABLE", "ReadyForQuery T")
	exchange(t, "ROLLBACK", "ROLLBACK", "CommandComplete ROLLBACK", "ReadyForQuery I")
	exchange(t, "BEGIN", "BEGIN", "CommandComplete BEGIN", "ReadyForQuery T")
	if seq := enfRawExchange(t, via, "CREATE INDEX small_t_raw_tx_idx ON small_t (a)"); !slices.Equal(seq,
		[]string{"CommandComplete CREATE INDEX", "ReadyForQuery T"}) {
		t.Errorf("CREATE INDEX on small_t inside BEGIN: %q", seq)
	}
	exchange(t, "ROLLBACK", "ROLLBACK", "CommandComplete ROLLBACK", "ReadyForQuery I")

	// In an aborted transaction ddlguard asks nothing: the statement gets
	// the server's own 25P02, as it would without ddlguard.
	exchange(t, "BEGIN", "BEGIN", "CommandComplete BEGIN", "ReadyForQuery T")
	exchange(t, "SELECT 1/0", "SELECT 1/0", "ErrorResponse ERROR 22012", "ReadyForQuery E")
	exchange(t, "CREATE INDEX c_raw_e_idx ON never_analyzed (a)", "CREATE INDEX c_direct_e_idx ON never_analyzed (a)",
		"ErrorResponse ERROR 25P02", "ReadyForQuery E")
	exchange(t, "ROLLBACK", "ROLLBACK", "CommandComplete ROLLBACK", "ReadyForQuery I")
	var skipped int
	for _, rec := range enfLogRecords(t, p, "catalog facts unavailable") {
		if e, _ := rec["err"].(string); strings.Contains(e, "aborted") {
			skipped++
		}
	}
	if skipped != 1 {
		t.Errorf("%d \"catalog facts unavailable ... aborted\" log lines, want 1\n%s", skipped, p.Logs())
	}
	if got := enfValue(t, super, "SELECT count(*) FROM pg_attribute WHERE attname IN ('c_raw_tx', 'c_raw_e_idx')"); got != "0" {
		t.Errorf("columns of rolled-back transactions exist")
	}
	t.Logf("done in %s", time.Since(begin).Round(time.Millisecond))
}
