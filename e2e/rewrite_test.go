package e2e

// Executed rewrites, end to end: a statement whose rule has a safe sequence
// with the same end state (CREATE INDEX -> CREATE INDEX CONCURRENTLY, ADD
// FOREIGN KEY -> NOT VALID + VALIDATE, ...) is run as that sequence when it
// arrives alone outside a transaction block, over the simple protocol and
// as an unnamed extended-protocol statement. Each case runs on a table past
// small_table_bytes while three writers (straight to the server) insert and
// update it, and checks: the client gets the original command tag and one
// 01Z03 notice; no writer waited longer than the lock timeout (plus 100ms);
// the catalog ends as the original statement leaves it when run directly
// on a copy of the table. Failing sequences give the client the server's
// error and leave nothing behind. psql shows the notice, and a Node.js
// migration tool (node-pg-migrate) applies plain CREATE INDEX and ADD
// FOREIGN KEY migrations through ddlguard with the schema it gets directly.
//
// The tests share one database, rwDatabase, created once per run
// (rwFixture), owned by rwUser, the role of every connection here (so that
// ddlguard's blocker check sees the writers' sessions in full).

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ddlguard/ddlguard/e2e/pgcluster"
	"github.com/ddlguard/ddlguard/guard"
	"github.com/ddlguard/ddlguard/proxy"
)

const (
	rwDatabase = "rewrite"
	rwUser     = pgcluster.RoleTrust
	rwRows     = 100000
	// rwCodeRewritten is the SQLSTATE of the notice of an executed rewrite.
	rwCodeRewritten = "01Z03"
	// rwWriterSlack is how much longer than the lock timeout a writer's
	// statement may take: its own work and scheduling noise.
	rwWriterSlack = 100 * time.Millisecond
	// rwCopy is the name the copy of a table has: the table's name with
	// "_copy" (wide -> wide_copy, wide_mv -> wide_copy_mv).
	rwTable, rwCopy = "wide", "wide_copy"
)

// rwFixtureSQL builds the fixture as rwUser. wide holds rwRows rows (about
// 16 MiB); its columns dup, gaps, bad_ref and amount each break one
// constraint in a single row (the failure cases): amount, of domain
// wide_amount, is 1..1000 but 0 in one row. wide_copy is wide before any
// test statement, built as the test statements' twin: CREATE TABLE ...
// (LIKE wide INCLUDING ALL), its amount of its own domain wide_copy_amount,
// then INSERT ... SELECT. Autovacuum is off so that the catalog facts stay
// what VACUUM ANALYZE left and no autovacuum worker holds a lock the
// statements would wait for.
var rwFixtureSQL = []string{
	`CREATE TABLE ref (id int PRIMARY KEY, name text) WITH (autovacuum_enabled = false)`,
	`INSERT INTO ref SELECT g, 'ref ' || g FROM generate_series(1, 100) g`,
	`CREATE DOMAIN wide_amount AS int`,
	`CREATE DOMAIN wide_copy_amount AS int`,
	`CREATE TABLE wide (id bigint NOT NULL, a int NOT NULL, b text, c bigint, ref_id int, pad text,
	   dup int, gaps int, bad_ref int, amount wide_amount) WITH (autovacuum_enabled = false)`,
	fmt.Sprintf(`INSERT INTO wide SELECT g, g %% 1000, md5(g::text), g, g %% 100 + 1, repeat('p', 40),
	   CASE WHEN g = 2 THEN 1 ELSE g END, CASE WHEN g = 3 THEN NULL ELSE g END,
	   CASE WHEN g = 4 THEN 1000 ELSE g %% 100 + 1 END, CASE WHEN g = 5 THEN 0 ELSE g %% 1000 + 1 END
	   FROM generate_series(1, %d) g`, rwRows),
	`CREATE INDEX wide_id_idx ON wide (id)`,
	// The writers' ids, above the fixture's.
	`CREATE SEQUENCE wide_writer_seq START 10000001`,
	`CREATE MATERIALIZED VIEW wide_mv WITH (autovacuum_enabled = false) AS SELECT id, a, b, pad FROM wide`,
	`CREATE UNIQUE INDEX wide_mv_id_idx ON wide_mv (id)`,
	`CREATE TABLE wide_copy (LIKE wide INCLUDING ALL) WITH (autovacuum_enabled = false)`,
	`ALTER TABLE wide_copy ALTER COLUMN amount TYPE wide_copy_amount`,
	`INSERT INTO wide_copy SELECT * FROM wide`,
	`CREATE MATERIALIZED VIEW wide_copy_mv WITH (autovacuum_enabled = false) AS SELECT id, a, b, pad FROM wide_copy`,
	`CREATE UNIQUE INDEX wide_copy_mv_id_idx ON wide_copy_mv (id)`,
	`VACUUM ANALYZE ref, wide, wide_mv, wide_copy, wide_copy_mv`,
}

var rwFixture fixtureOnce

// rewriteFixture creates rwDatabase, once per test run.
func rewriteFixture(t *testing.T) {
	t.Helper()
	rwFixture.ensure(t, "rewrite", rwCreateFixture)
}

func rwCreateFixture() error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	owner, err := createFixtureDatabase(ctx, rwDatabase, rwUser, rwFixtureSQL)
	if err != nil {
		return err
	}
	defer owner.Close(context.Background())
	// Both relations the statements work on must be large for the guard:
	// on disk and by the relpages the catalog facts read.
	for _, rel := range []string{"wide", "wide_mv"} {
		if err := checkLarge(ctx, owner, rel); err != nil {
			return err
		}
	}
	return nil
}

// rwCopyOf turns a statement on wide (or wide_mv, or a wide_* name) into
// the same statement on the copy.
func rwCopyOf(sql string) string { return strings.ReplaceAll(sql, rwTable, rwCopy) }

// rwNormal turns the copy's names back into the original's.
func rwNormal(s string) string { return strings.ReplaceAll(s, rwCopy, rwTable) }

// rwSnapshotSQL describes a relation ($1) as the catalogs show it: columns
// with type and NOT NULL, every index with its flags and definition, every
// constraint with its type, validation and definition, the triggers the
// constraints made, and whether it is populated (materialized views).
const rwSnapshotSQL = `SELECT concat_ws(E'\n',
  'columns: ' || (SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod)
                       || CASE WHEN attnotnull THEN ' not null' ELSE '' END, ', ' ORDER BY attnum)
                    FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped),
  (SELECT string_agg(format('index %s valid=%s ready=%s live=%s primary=%s unique=%s: %s', i.relname,
                            x.indisvalid, x.indisready, x.indislive, x.indisprimary, x.indisunique, ix.indexdef),
                     E'\n' ORDER BY replace(i.relname, 'wide_copy', 'wide'))
     FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
     JOIN pg_indexes ix ON ix.schemaname = 'public' AND ix.indexname = i.relname
    WHERE x.indrelid = $1::regclass),
  (SELECT string_agg(format('constraint %s type=%s validated=%s index=%s: %s', conname, contype, convalidated,
                            CASE WHEN conindid = 0 THEN '-' ELSE conindid::regclass::text END, pg_get_constraintdef(oid)),
                     E'\n' ORDER BY replace(conname, 'wide_copy', 'wide'))
     FROM pg_constraint WHERE conrelid = $1::regclass),
  'triggers: ' || coalesce((SELECT string_agg(tgfoid::regproc::text || ' ' || tgtype, ', ' ORDER BY tgfoid::regproc::text, tgtype)
                              FROM pg_trigger WHERE tgrelid = $1::regclass), '-'),
  'populated: ' || (SELECT relispopulated FROM pg_class WHERE oid = $1::regclass))`

// rwSnapshot describes rel (see rwSnapshotSQL), with the copy's names
// turned into the original's.
func rwSnapshot(t *testing.T, conn *pgx.Conn, rel string) string {
	t.Helper()
	return rwNormal(queryStringArgs(t, conn, rwSnapshotSQL, rel))
}

// queryStringArgs runs a one-value query with arguments.
func queryStringArgs(t *testing.T, conn *pgx.Conn, sql string, args ...any) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var s string
	if err := conn.QueryRow(ctx, sql, args...).Scan(&s); err != nil {
		t.Fatalf("%.200s: %v", sql, err)
	}
	return s
}

// rwExecAll runs statements directly, failing the test on an error.
func rwExecAll(t *testing.T, conn *pgx.Conn, sqls ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, sql := range sqls {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
}

// rwWriters are connections straight to the server that insert into and
// update wide while a statement runs through ddlguard.
type rwWriters struct {
	conns []*pgx.Conn
}

// rwLoad is what the writers saw during one statement.
type rwLoad struct {
	statements int
	max        time.Duration
	maxSQL     string
	maxAt      time.Duration // when the slowest statement started, after the writers did
	err        error
}

func rwNewWriters(t *testing.T, n int) *rwWriters {
	t.Helper()
	w := &rwWriters{}
	for range n {
		w.conns = append(w.conns, connectDirect(t, cluster, rwUser, rwDatabase))
	}
	return w
}

const (
	rwInsertSQL = `INSERT INTO wide (id, a, b, c, ref_id, pad, dup, gaps, bad_ref)
	  SELECT v, v % 1000, md5(v::text), v, v % 100 + 1, 'writer', v, v, 1 FROM nextval('wide_writer_seq') v`
	rwUpdateSQL = `UPDATE wide SET b = md5(random()::text), pad = 'updated' WHERE id = $1`
)

// rwFirstWords is the start of a statement, for messages.
func rwFirstWords(sql string) string {
	f := strings.Fields(sql)
	return strings.Join(f[:min(3, len(f))], " ")
}

// during runs fn while every writer loops over an INSERT and an UPDATE
// (each statement its own transaction), from before fn starts until after
// it returns, recording each statement's latency.
func (w *rwWriters) during(t *testing.T, fn func()) rwLoad {
	t.Helper()
	stop := make(chan struct{})
	started := make(chan struct{}, len(w.conns))
	loads := make([]rwLoad, len(w.conns))
	var wg sync.WaitGroup
	begin := time.Now()
	for i, conn := range w.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := &loads[i]
			rng := rand.New(rand.NewPCG(uint64(i), uint64(time.Now().UnixNano())))
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				sql, args := rwInsertSQL, []any(nil)
				if k%2 == 1 {
					sql, args = rwUpdateSQL, []any{rng.Int64N(rwRows) + 1}
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				at := time.Now()
				_, err := conn.Exec(ctx, sql, args...)
				took := time.Since(at)
				cancel()
				if err != nil {
					l.err = fmt.Errorf("writer %d: %s: %w", i, rwFirstWords(sql), err)
					if k == 0 {
						started <- struct{}{}
					}
					return
				}
				l.statements++
				if took > l.max {
					l.max, l.maxSQL, l.maxAt = took, rwFirstWords(sql), at.Sub(begin)
				}
				if k == 0 {
					started <- struct{}{}
				}
			}
		}()
	}
	for range w.conns {
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			close(stop)
			wg.Wait()
			t.Fatal("the writers did not start within 10s")
		}
	}
	func() {
		defer func() {
			close(stop)
			wg.Wait()
		}()
		fn()
		time.Sleep(20 * time.Millisecond) // writers still run after the statement ends
	}()
	var all rwLoad
	for _, l := range loads {
		all.statements += l.statements
		if all.err == nil {
			all.err = l.err
		}
		if l.max > all.max {
			all.max, all.maxSQL, all.maxAt = l.max, l.maxSQL, l.maxAt
		}
	}
	return all
}

// check fails the test when a writer failed or waited for longer than the
// lock timeout plus rwWriterSlack.
func (l rwLoad) check(t *testing.T, what string) { l.checkWithin(t, what, 0) }

// checkWithin is check with extra on top of the limit (for a sequence that
// still scans under a lock writers wait for).
func (l rwLoad) checkWithin(t *testing.T, what string, extra time.Duration) {
	t.Helper()
	if l.err != nil {
		t.Errorf("%s: %v", what, l.err)
	}
	if l.statements < 3 {
		t.Errorf("%s: the writers ran %d statements, want them running the whole time", what, l.statements)
	}
	if limit := guard.DefaultLockTimeout + rwWriterSlack + extra; l.max > limit {
		t.Errorf("%s: a writer waited %s (%s, started %s in), more than the lock timeout %s + %s + %s",
			what, l.max.Round(time.Millisecond), l.maxSQL, l.maxAt.Round(time.Millisecond), guard.DefaultLockTimeout, rwWriterSlack, extra)
	}
}

// rwProtocols are the two ways a client sends one statement: a simple
// Query, and one unnamed Parse/Bind/Describe/Execute/Sync batch (pgconn's
// ExecParams with no arguments).
var rwProtocols = []string{"simple", "extended"}

// rwRun sends sql over protocol and returns its command tag or error.
func rwRun(ctx context.Context, conn *pgx.Conn, protocol, sql string) (pgconn.CommandTag, error) {
	if protocol == "simple" {
		results, err := conn.PgConn().Exec(ctx, sql).ReadAll()
		if err != nil {
			return pgconn.CommandTag{}, err
		}
		if len(results) != 1 {
			return pgconn.CommandTag{}, fmt.Errorf("%d results, want 1", len(results))
		}
		return results[0].CommandTag, nil
	}
	return conn.PgConn().ExecParams(ctx, sql, nil, nil, nil, nil).Close()
}

// rwConnect opens a connection through p as rwUser, collecting notices.
func rwConnect(t *testing.T, p *testProxy) (*pgx.Conn, *noticeLog) {
	t.Helper()
	return connectNotices(t, "through ddlguard",
		p.DSN(rwUser, rwDatabase, "sslmode", "disable", "application_name", "rewrite-test"))
}

// rwWantNotice checks that notices are exactly one executed-rewrite notice
// of rule, and returns it.
func rwWantNotice(t *testing.T, what string, notices []pgconn.Notice, rule string) pgconn.Notice {
	t.Helper()
	if len(notices) != 1 {
		t.Fatalf("%s: notices %v, want one %s notice from %s", what, audNoticeSummary(notices), rwCodeRewritten, rule)
	}
	n := notices[0]
	if n.Severity != "WARNING" || n.SeverityUnlocalized != "WARNING" || n.Code != rwCodeRewritten ||
		!strings.HasPrefix(n.Message, "ddlguard: "+rule+": ") {
		t.Fatalf("%s: notice %s/%s %s %q, want WARNING %s \"ddlguard: %s: ...\"", what, n.Severity, n.SeverityUnlocalized,
			n.Code, n.Message, rwCodeRewritten, rule)
	}
	return n
}

// rwCase is a statement ddlguard rewrites and the state around it.
type rwCase struct {
	name, rule string
	// rel is the relation whose catalog state is compared.
	rel string
	// setup runs directly before the statement (on the table, and turned
	// into the copy's names on the copy); undo after it, back to the
	// fixture's state.
	setup, undo []string
	sql         string
	tag         string // the original statement's command tag
	// steps are texts the notice's list of what ran must contain.
	steps []string
	// steps18 replaces steps on PostgreSQL 18 and later (a NOT VALID not-null
	// constraint, validated: no SET NOT NULL step).
	steps18 []string
	// probe, when set, is a query (on the table's names) whose answer the
	// statement changes, for statements that change no catalog row the
	// snapshot shows (REINDEX, REFRESH); otherwise the snapshot must change.
	probe string
	// state, when set, is a query (on the table's names) describing what
	// the statement changes outside the relation (a domain's constraints):
	// through ddlguard it must answer what it answers on the copy after the
	// original statement, names turned into the original's.
	state string
	// locks, when set, must be in the audit log's locks of the decision.
	locks string
	// scansUnderShare: a step of the sequence still scans the table under
	// SHARE (ALTER DOMAIN ... VALIDATE CONSTRAINT: PostgreSQL has no online
	// form), so writers may also wait for the scan: as long as the original
	// statement took directly on the copy, twice over for noise.
	scansUnderShare bool
}

// rwDomainSQL describes the constraints of the domain wide_amount.
const rwDomainSQL = `SELECT coalesce(string_agg(format('constraint %s type=%s validated=%s: %s', conname, contype,
    convalidated, pg_get_constraintdef(oid)), E'\n' ORDER BY conname), '-')
  FROM pg_constraint WHERE contypid = 'wide_amount'::regtype`

var rwCases = []rwCase{
	// (Unnamed: PostgreSQL names it wide_b_idx either way.)
	{name: "create-index", rule: "create-index-not-concurrently", rel: "wide",
		sql: "CREATE INDEX ON wide (b)", tag: "CREATE INDEX",
		steps: []string{"CREATE INDEX CONCURRENTLY ON wide USING btree (b)"}, undo: []string{"DROP INDEX wide_b_idx"}},
	{name: "create-unique-index", rule: "create-index-not-concurrently", rel: "wide",
		sql: "CREATE UNIQUE INDEX wide_c_uidx ON wide (c) INCLUDE (a) WHERE a >= 0", tag: "CREATE INDEX",
		steps: []string{"CREATE UNIQUE INDEX CONCURRENTLY wide_c_uidx ON wide"}, undo: []string{"DROP INDEX wide_c_uidx"}},
	{name: "drop-index", rule: "drop-index-not-concurrently", rel: "wide",
		setup: []string{"CREATE INDEX wide_a_idx ON wide (a)"},
		sql:   "DROP INDEX wide_a_idx", tag: "DROP INDEX", steps: []string{"DROP INDEX CONCURRENTLY wide_a_idx"}},
	{name: "reindex-index", rule: "reindex-not-concurrently", rel: "wide",
		setup: []string{"CREATE INDEX wide_a_idx ON wide (a)"},
		sql:   "REINDEX INDEX wide_a_idx", tag: "REINDEX", steps: []string{"REINDEX (CONCURRENTLY) INDEX wide_a_idx"},
		probe: "SELECT relfilenode FROM pg_class WHERE oid = 'wide_a_idx'::regclass",
		undo:  []string{"DROP INDEX wide_a_idx"}},
	{name: "add-foreign-key", rule: "add-foreign-key-validated", rel: "wide",
		sql: "ALTER TABLE wide ADD FOREIGN KEY (ref_id) REFERENCES ref (id)", tag: "ALTER TABLE",
		steps: []string{"NOT VALID", "VALIDATE CONSTRAINT wide_ref_id_fkey"},
		undo:  []string{"ALTER TABLE wide DROP CONSTRAINT wide_ref_id_fkey"}},
	{name: "add-check", rule: "add-check-validated", rel: "wide",
		sql: "ALTER TABLE wide ADD CHECK (a >= 0)", tag: "ALTER TABLE",
		steps: []string{"NOT VALID", "VALIDATE CONSTRAINT wide_a_check"},
		undo:  []string{"ALTER TABLE wide DROP CONSTRAINT wide_a_check"}},
	{name: "set-not-null", rule: "set-not-null", rel: "wide",
		sql: "ALTER TABLE wide ALTER COLUMN c SET NOT NULL", tag: "ALTER TABLE",
		steps:   []string{"NOT VALID", "VALIDATE CONSTRAINT", "SET NOT NULL"},
		steps18: []string{"ADD CONSTRAINT wide_c_not_null NOT NULL c NOT VALID", "VALIDATE CONSTRAINT wide_c_not_null"},
		undo:    []string{"ALTER TABLE wide ALTER COLUMN c DROP NOT NULL"}},
	{name: "add-unique", rule: "add-unique-constraint", rel: "wide",
		sql: "ALTER TABLE wide ADD UNIQUE (c)", tag: "ALTER TABLE",
		steps: []string{"CREATE UNIQUE INDEX CONCURRENTLY wide_c_key ON wide", "USING INDEX wide_c_key"},
		undo:  []string{"ALTER TABLE wide DROP CONSTRAINT wide_c_key"}},
	{name: "add-primary-key", rule: "add-unique-constraint", rel: "wide",
		sql: "ALTER TABLE wide ADD PRIMARY KEY (id)", tag: "ALTER TABLE",
		steps: []string{"CREATE UNIQUE INDEX CONCURRENTLY wide_pkey ON wide", "PRIMARY KEY USING INDEX wide_pkey"},
		undo:  []string{"ALTER TABLE wide DROP CONSTRAINT wide_pkey"}},
	// A row only the refresh brings into the view.
	{name: "refresh-materialized-view", rule: "refresh-materialized-view", rel: "wide_mv",
		setup: []string{`INSERT INTO wide (id, a, b, c, ref_id, pad, dup, gaps, bad_ref)
		  VALUES (-1, 1, 'marker', -1, 1, 'marker', -1, -1, 1)`},
		sql: "REFRESH MATERIALIZED VIEW wide_mv", tag: "REFRESH MATERIALIZED VIEW",
		steps: []string{"REFRESH MATERIALIZED VIEW CONCURRENTLY wide_mv"},
		probe: "SELECT count(*) || ' ' || coalesce(max(b), '-') FROM wide_mv WHERE id = -1",
		undo:  []string{"DELETE FROM wide WHERE id = -1", "REFRESH MATERIALIZED VIEW wide_mv"}},
	// (Unnamed: PostgreSQL names it wide_amount_check.) The domain's facts
	// name wide, which the VALIDATE step locks SHARE and scans.
	{name: "alter-domain-add-check", rule: "alter-domain-add-constraint", rel: "wide",
		sql: "ALTER DOMAIN wide_amount ADD CHECK (VALUE >= 0)", tag: "ALTER DOMAIN",
		steps: []string{"ADD CONSTRAINT wide_amount_check CHECK (value >= 0) NOT VALID",
			"ALTER DOMAIN wide_amount VALIDATE CONSTRAINT wide_amount_check"},
		probe: rwDomainSQL, state: rwDomainSQL, locks: "wide SHARE", scansUnderShare: true,
		undo: []string{"ALTER DOMAIN wide_amount DROP CONSTRAINT wide_amount_check"}},
}

// TestRewriteEndState runs each case's statement through ddlguard over both
// protocols under write load, and compares the end state with the
// original statement's, run directly on the copy.
func TestRewriteEndState(t *testing.T) {
	begin := time.Now()
	rewriteFixture(t)
	p := enfGuardProxy(t)
	owner := connectDirect(t, cluster, rwUser, rwDatabase)
	writers := rwNewWriters(t, 3)

	for _, c := range rwCases {
		t.Run(c.name, func(t *testing.T) {
			caseBegin := time.Now()
			copyRel := rwCopyOf(c.rel)
			base := rwSnapshot(t, owner, c.rel)
			if copyBase := rwSnapshot(t, owner, copyRel); copyBase != base {
				t.Fatalf("before the case, %s and %s differ (the previous case's undo?):\n%s\n---\n%s", c.rel, copyRel, base, copyBase)
			}

			// The original statement, directly on the copy.
			for _, s := range c.setup {
				rwExecAll(t, owner, rwCopyOf(s))
			}
			before := rwSnapshot(t, owner, copyRel)
			var probe string
			if c.probe != "" {
				probe = queryString(t, owner, rwCopyOf(c.probe))
			}
			directAt := time.Now()
			tag, err := owner.Exec(enfCtx(t), rwCopyOf(c.sql))
			directTook := time.Since(directAt)
			if err != nil {
				t.Fatalf("%s directly: %v", rwCopyOf(c.sql), err)
			}
			if tag.String() != c.tag {
				t.Fatalf("%s directly: tag %q, want %q", rwCopyOf(c.sql), tag, c.tag)
			}
			want := rwSnapshot(t, owner, copyRel)
			var wantState string
			if c.state != "" {
				wantState = rwNormal(queryString(t, owner, rwCopyOf(c.state)))
			}
			if c.probe != "" {
				if after := queryString(t, owner, rwCopyOf(c.probe)); after == probe {
					t.Fatalf("%s directly: %s is %q before and after", rwCopyOf(c.sql), rwCopyOf(c.probe), after)
				}
			} else if want == before {
				t.Fatalf("%s directly changed nothing in the catalog:\n%s", rwCopyOf(c.sql), want)
			}
			for _, s := range c.undo {
				rwExecAll(t, owner, rwCopyOf(s))
			}

			for _, protocol := range rwProtocols {
				for _, s := range c.setup {
					rwExecAll(t, owner, s)
				}
				if c.probe != "" {
					probe = queryString(t, owner, c.probe)
				}
				conn, notices := rwConnect(t, p)
				var tag pgconn.CommandTag
				var err error
				var took time.Duration
				load := writers.during(t, func() {
					at := time.Now()
					tag, err = rwRun(enfCtx(t), conn, protocol, c.sql)
					took = time.Since(at)
				})
				what := c.sql + " (" + protocol + ")"
				if err != nil {
					t.Fatalf("%s through ddlguard: %v\nnotices: %v", what, err, audNoticeSummary(notices.take()))
				}
				if tag.String() != c.tag {
					t.Errorf("%s: command tag %q, want the original's %q", what, tag, c.tag)
				}
				n := rwWantNotice(t, what, notices.take(), c.rule)
				if want := "ddlguard: " + c.rule + ": ran the safe sequence instead of the statement: "; !strings.HasPrefix(n.Message, want) {
					t.Errorf("%s: notice %q, want it to start with %q", what, n.Message, want)
				}
				steps := c.steps
				if c.steps18 != nil && cluster.Version() >= 18 {
					steps = c.steps18
				}
				for _, step := range steps {
					if !strings.Contains(n.Message, step) {
						t.Errorf("%s: notice %q does not list %q", what, n.Message, step)
					}
				}
				var scanAllowance time.Duration
				if c.scansUnderShare {
					scanAllowance = 2 * directTook
				}
				load.checkWithin(t, what, scanAllowance)
				if st := conn.PgConn().TxStatus(); st != 'I' {
					t.Errorf("%s: transaction status %q after it, want 'I'", what, st)
				}
				if got := queryString(t, conn, "SELECT 'usable'"); got != "usable" {
					t.Errorf("%s: the connection after it: %q", what, got)
				}
				if got := rwSnapshot(t, owner, c.rel); got != want {
					t.Errorf("%s: the catalog differs from the original statement's end state (run directly on %s):\n%s",
						what, copyRel, strings.Join(diffLinesOf(want, got), "\n"))
				}
				if c.probe != "" {
					if after := queryString(t, owner, c.probe); after == probe {
						t.Errorf("%s: %s is %q before and after: the statement did not do its work", what, c.probe, after)
					}
				}
				if c.state != "" {
					if got := queryString(t, owner, c.state); got != wantState {
						t.Errorf("%s: %s differs from the original statement's end state (run directly on the copy):\n%s",
							what, c.state, strings.Join(diffLinesOf(wantState, got), "\n"))
					}
				}
				if c.locks != "" {
					rwWantAuditLocks(t, p, what, c.rule, c.locks)
				}
				t.Logf("%s: %s; writers: %d statements, slowest %s", protocol, took.Round(time.Millisecond),
					load.statements, load.max.Round(time.Millisecond))
				for _, s := range c.undo {
					rwExecAll(t, owner, s)
				}
			}
			if after := rwSnapshot(t, owner, c.rel); after != base {
				t.Errorf("after the undo, %s is not back to its state before the case:\n%s", c.rel, strings.Join(diffLinesOf(base, after), "\n"))
			}
			t.Logf("case in %s", time.Since(caseBegin).Round(time.Millisecond))
		})
	}
	t.Logf("fixture %s (once per run); %d cases x %d protocols in %s", rwFixture.took.Round(time.Millisecond),
		len(rwCases), len(rwProtocols), time.Since(begin).Round(time.Millisecond))
}

// rwWantAuditLocks checks that p's audit log has a decision by rule
// whose locks contain locks.
func rwWantAuditLocks(t *testing.T, p *testProxy, what, rule, locks string) {
	t.Helper()
	var seen []string
	for _, rec := range audDecisions(t, p.Logs()) {
		if audField(rec, "rule") != rule {
			continue
		}
		if strings.Contains(audField(rec, "locks"), locks) {
			return
		}
		seen = append(seen, audField(rec, "action")+": "+audField(rec, "locks"))
	}
	t.Errorf("%s: no audit decision by %s with locks %q (decisions by it: %q)", what, rule, locks, seen)
}

// diffLinesOf renders the difference of two multi-line texts (- want, + got).
func diffLinesOf(want, got string) []string {
	return []string{diffLines(strings.Split(want, "\n"), strings.Split(got, "\n"))}
}

// rwFailCase is a statement whose safe sequence fails on the fixture's
// data, as the original statement does.
type rwFailCase struct {
	name, rule, sql string
	code            string // the original's SQLSTATE
	// probe, when set, is a query (on the table's names) about what the
	// table's snapshot does not show (a domain's constraints): it answers
	// the same before and after.
	probe string
}

var rwFailCases = []rwFailCase{
	// dup has one duplicated value: the index build fails (and
	// CONCURRENTLY leaves an INVALID index behind, which ddlguard drops).
	{name: "create-unique-index-duplicate", rule: "create-index-not-concurrently",
		sql: "CREATE UNIQUE INDEX wide_dup_uidx ON wide (dup)", code: "23505"},
	// gaps has one NULL.
	{name: "set-not-null-null-row", rule: "set-not-null",
		sql: "ALTER TABLE wide ALTER COLUMN gaps SET NOT NULL", code: "23502"},
	// bad_ref has one value missing from ref.
	{name: "add-foreign-key-violating-row", rule: "add-foreign-key-validated",
		sql: "ALTER TABLE wide ADD CONSTRAINT wide_bad_ref_fkey FOREIGN KEY (bad_ref) REFERENCES ref (id)", code: "23503"},
	// amount is 0 in one row: VALIDATE fails, the NOT VALID constraint is
	// dropped again.
	{name: "alter-domain-add-check-violating-row", rule: "alter-domain-add-constraint",
		sql: "ALTER DOMAIN wide_amount ADD CHECK (VALUE > 0)", code: "23514", probe: rwDomainSQL},
}

// rwErrorFields is what a client (or its ORM) reads off an error, with the
// copy's names turned into the original's. A CONTEXT of "parallel worker"
// is left out: whether a parallel worker of an index build or the leader
// finds the duplicate varies from run to run, directly as through ddlguard.
func rwErrorFields(pe *pgconn.PgError) string {
	where := pe.Where
	if where == "parallel worker" {
		where = ""
	}
	return rwNormal(fmt.Sprintf("severity=%s code=%s\nmessage=%s\ndetail=%s\nhint=%s\nwhere=%s\nschema=%s table=%s column=%s constraint=%s",
		pe.Severity, pe.Code, pe.Message, pe.Detail, pe.Hint, where, pe.SchemaName, pe.TableName, pe.ColumnName, pe.ConstraintName))
}

// TestRewriteFailureTakenBack: when a step of the sequence fails, the
// client gets the error the original statement gets (run directly on the
// copy), and the table is left as it was: what earlier steps added is
// taken back, an INVALID index dropped; the notice says so.
func TestRewriteFailureTakenBack(t *testing.T) {
	begin := time.Now()
	rewriteFixture(t)
	p := enfGuardProxy(t)
	owner := connectDirect(t, cluster, rwUser, rwDatabase)
	writers := rwNewWriters(t, 3)

	for _, c := range rwFailCases {
		t.Run(c.name, func(t *testing.T) {
			base := rwSnapshot(t, owner, "wide")
			var probe string
			if c.probe != "" {
				probe = queryString(t, owner, c.probe)
				if onCopy := rwNormal(queryString(t, owner, rwCopyOf(c.probe))); onCopy != probe {
					t.Fatalf("before the case, %s answers %q on the copy, %q on the table", c.probe, onCopy, probe)
				}
			}
			_, err := owner.Exec(enfCtx(t), rwCopyOf(c.sql))
			direct := pgErrorOf(err)
			if direct == nil || direct.Code != c.code {
				t.Fatalf("%s directly: %v, want SQLSTATE %s", rwCopyOf(c.sql), err, c.code)
			}
			if after := rwSnapshot(t, owner, rwCopy); after != base {
				t.Fatalf("%s directly left something behind:\n%s", rwCopyOf(c.sql), strings.Join(diffLinesOf(base, after), "\n"))
			}
			if c.probe != "" {
				if after := rwNormal(queryString(t, owner, rwCopyOf(c.probe))); after != probe {
					t.Fatalf("%s directly left something behind: %s is %q, was %q", rwCopyOf(c.sql), rwCopyOf(c.probe), after, probe)
				}
			}
			want := rwErrorFields(direct)

			for _, protocol := range rwProtocols {
				t.Run(protocol, func(t *testing.T) {
					what := c.sql + " (" + protocol + ")"
					conn, notices := rwConnect(t, p)
					var err error
					load := writers.during(t, func() {
						_, err = rwRun(enfCtx(t), conn, protocol, c.sql)
					})
					pe := pgErrorOf(err)
					if pe == nil {
						t.Fatalf("%s through ddlguard: %v, want the server's error %s", what, err, c.code)
					}
					if pe.Code != c.code {
						t.Errorf("%s: SQLSTATE %s (%s), want %s, as the original statement", what, pe.Code, pe.Message, c.code)
					}
					if got := rwErrorFields(pe); got != want {
						t.Errorf("%s: the error differs from the original statement's:\n--- through ddlguard\n%s\n--- directly\n%s", what, got, want)
					}
					n := rwWantNotice(t, what, notices.take(), c.rule)
					if !strings.Contains(n.Detail, "taken back") {
						t.Errorf("%s: notice DETAIL %q does not say what was taken back", what, n.Detail)
					}
					if strings.Contains(n.Detail, "could not be taken back") {
						t.Errorf("%s: notice DETAIL %q: something could not be taken back", what, n.Detail)
					}
					load.check(t, what)
					if after := rwSnapshot(t, owner, "wide"); after != base {
						t.Errorf("%s: the failed sequence left something behind (- before, + after):\n%s", what,
							strings.Join(diffLinesOf(base, after), "\n"))
					}
					if c.probe != "" {
						if after := queryString(t, owner, c.probe); after != probe {
							t.Errorf("%s: the failed sequence left something behind: %s is %q, was %q", what, c.probe, after, probe)
						}
					}
					if st := conn.PgConn().TxStatus(); st != 'I' {
						t.Errorf("%s: transaction status %q after the error, want 'I'", what, st)
					}
					if got := queryString(t, conn, "SELECT 'usable'"); got != "usable" {
						t.Errorf("%s: the connection after the error: %q", what, got)
					}
					t.Logf("%s: %s; notice %q / %q", protocol, pe.Code, n.Message, n.Detail)
				})
			}
		})
	}
	t.Logf("done in %s", time.Since(begin).Round(time.Millisecond))
}

// TestRewriteRejectedWhereItCannotRun: where ddlguard does not run the safe
// sequence in the statement's place (inside a transaction block, for a
// named prepared statement), the statement is rejected (ZG001) with the
// sequence as its hint, nothing runs in its place (no 01Z03 notice), and
// the rejection does not tell the client that ddlguard never runs rewrites.
func TestRewriteRejectedWhereItCannotRun(t *testing.T) {
	rewriteFixture(t)
	p := enfGuardProxy(t)
	owner := connectDirect(t, cluster, rwUser, rwDatabase)
	cases := []struct {
		name, rule, sql, hint, rel string
		named                      bool // a named prepared statement, outside a transaction block
	}{
		{name: "transaction-block/create-index", rule: "create-index-not-concurrently", rel: "wide",
			sql: "CREATE INDEX wide_tx_idx ON wide (a)", hint: "CREATE INDEX CONCURRENTLY wide_tx_idx ON wide"},
		{name: "transaction-block/add-foreign-key", rule: "add-foreign-key-validated", rel: "wide",
			sql: "ALTER TABLE wide ADD FOREIGN KEY (ref_id) REFERENCES ref (id)", hint: "NOT VALID"},
		{name: "transaction-block/refresh-materialized-view", rule: "refresh-materialized-view", rel: "wide_mv",
			sql: "REFRESH MATERIALIZED VIEW wide_mv", hint: "REFRESH MATERIALIZED VIEW CONCURRENTLY wide_mv"},
		{name: "transaction-block/alter-domain-add-check", rule: "alter-domain-add-constraint", rel: "wide",
			sql:  "ALTER DOMAIN wide_amount ADD CHECK (VALUE >= 0)",
			hint: "wide_amount_check CHECK (value >= 0) NOT VALID;\n-- in a separate transaction, with a short lock_timeout, retried; it still holds SHARE on wide while it scans them, and writes wait:\nALTER DOMAIN wide_amount VALIDATE CONSTRAINT wide_amount_check;"},
		{name: "named-statement/create-index", rule: "create-index-not-concurrently", rel: "wide", named: true,
			sql: "CREATE INDEX wide_named_idx ON wide (a)", hint: "CREATE INDEX CONCURRENTLY wide_named_idx ON wide"},
	}
	for _, c := range cases {
		protocols := rwProtocols
		if c.named {
			protocols = []string{"extended"}
		}
		for _, protocol := range protocols {
			t.Run(c.name+"/"+protocol, func(t *testing.T) {
				base := rwSnapshot(t, owner, c.rel)
				conn, notices := rwConnect(t, p)
				ctx := enfCtx(t)
				var err error
				if c.named {
					if _, perr := conn.Prepare(ctx, "rw_named", c.sql); perr != nil {
						t.Fatalf("Prepare: %v", perr)
					}
					_, err = conn.Exec(ctx, "rw_named")
				} else {
					rwExecAll(t, conn, "BEGIN")
					_, err = rwRun(ctx, conn, protocol, c.sql)
				}
				pe := pgErrorOf(err)
				switch {
				case pe == nil:
					t.Errorf("%s: %v, want ddlguard's rejection by %s (ZG001); notices: %v", c.sql, err, c.rule,
						audNoticeSummary(notices.take()))
				case pe.Code != "ZG001" || !strings.HasPrefix(pe.Message, "ddlguard: "+c.rule+": "):
					t.Errorf("%s: %s %s, want ddlguard's rejection by %s (ZG001)", c.sql, pe.Code, pe.Message, c.rule)
				default:
					if !strings.Contains(pe.Hint, c.hint) {
						t.Errorf("%s: HINT %q, want the safe sequence (%q)", c.sql, pe.Hint, c.hint)
					}
					if strings.Contains(pe.Detail, "does not run rewrites") {
						t.Errorf("%s: DETAIL %q tells the client ddlguard does not run rewrites; it does, outside a "+
							"transaction block for a statement alone (this one is rejected because it is %s)", c.sql, pe.Detail, c.name)
					}
				}
				for _, n := range notices.take() {
					if n.Code == rwCodeRewritten {
						t.Errorf("%s: ddlguard ran a safe sequence in its place: %s %s", c.sql, n.Code, n.Message)
					}
				}
				if !c.named {
					rwExecAll(t, conn, "ROLLBACK")
				}
				if after := rwSnapshot(t, owner, c.rel); after != base {
					t.Errorf("%s: the catalog changed (- before, + after):\n%s", c.sql, strings.Join(diffLinesOf(base, after), "\n"))
				}
			})
		}
	}
}

// TestRewritePsqlShowsNotice: psql prints the notice as a server WARNING
// and the original statement's command tag.
func TestRewritePsqlShowsNotice(t *testing.T) {
	rewriteFixture(t)
	p := enfGuardProxy(t)
	owner := connectDirect(t, cluster, rwUser, rwDatabase)
	t.Cleanup(func() { owner.Exec(context.Background(), "DROP INDEX IF EXISTS wide_psql_idx") })
	res := runClientProgram(t, 30*time.Second, nil, cluster.Psql(),
		psqlClientArgs(p.DSN(rwUser, rwDatabase, "sslmode", "disable"), "-c", "CREATE INDEX wide_psql_idx ON wide (a)")...)
	const want = "WARNING:  ddlguard: create-index-not-concurrently: ran the safe sequence instead of the statement: " +
		"CREATE INDEX CONCURRENTLY wide_psql_idx ON wide"
	if res.code != 0 || res.stdout != "CREATE INDEX\n" || !strings.HasPrefix(res.stderr, want) {
		t.Errorf("psql:\n%s\nwant exit 0, stdout \"CREATE INDEX\", stderr starting with\n%s", res, want)
	}
	if got := queryString(t, owner, "SELECT count(*) || ' ' || bool_and(indisvalid) FROM pg_index WHERE indexrelid = to_regclass('wide_psql_idx')"); got != "1 true" {
		t.Errorf("wide_psql_idx: count, valid %q, want a valid index", got)
	}
}

// Node.js migrations through ddlguard: node-pg-migrate (with node-postgres)
// as installed by scripts/install-node-tools.sh, which pins the versions
// (node-pg-migrate 7.9.1, pg 8.16.3).

// rwNodeInstall runs scripts/install-node-tools.sh once per test binary.
var rwNodeInstall struct {
	once sync.Once
	bin  string
	err  error
}

// nodePgMigrate returns the node-pg-migrate command (a script for node),
// installing it when needed. A failed install fails the test.
func nodePgMigrate(t *testing.T) string {
	t.Helper()
	rwNodeInstall.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		script := filepath.Join("..", "scripts", "install-node-tools.sh")
		cmd := exec.CommandContext(ctx, "bash", script)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		begin := time.Now()
		if err := cmd.Run(); err != nil {
			rwNodeInstall.err = fmt.Errorf("bash %s: %v\nstdout:\n%s\nstderr:\n%s", script, err, stdout.String(), stderr.String())
			return
		}
		lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
		rwNodeInstall.bin = strings.TrimSpace(lines[len(lines)-1])
		if _, err := os.Stat(rwNodeInstall.bin); err != nil {
			rwNodeInstall.err = fmt.Errorf("bash %s: printed %q: %v\nstderr:\n%s", script, rwNodeInstall.bin, err, stderr.String())
			return
		}
		t.Logf("install-node-tools.sh (%s): %s", time.Since(begin).Round(time.Millisecond), strings.TrimSpace(stderr.String()))
	})
	if rwNodeInstall.err != nil {
		t.Fatal(rwNodeInstall.err)
	}
	return rwNodeInstall.bin
}

// rwNodeMigrations: a referenced table (small, in a transaction), then a
// plain CREATE INDEX and a plain ADD FOREIGN KEY on the big table, each in
// a migration without a transaction (pgm.noTransaction()), where ddlguard
// runs their safe sequences.
var rwNodeMigrations = map[string]string{
	"1700000000001_parents.js": `exports.up = (pgm) => {
  pgm.sql("CREATE TABLE parent (id int PRIMARY KEY, name text)");
  pgm.sql("INSERT INTO parent SELECT g, 'parent ' || g FROM generate_series(1, 10) g");
  pgm.sql("ALTER TABLE big ADD COLUMN parent_id int DEFAULT 1");
};
exports.down = false;
`,
	"1700000000002_big_v_index.js": `exports.up = (pgm) => {
  pgm.noTransaction();
  pgm.sql("CREATE INDEX big_v_idx ON big (v)");
};
exports.down = (pgm) => {
  pgm.noTransaction();
  pgm.sql("DROP INDEX CONCURRENTLY big_v_idx");
};
`,
	"1700000000003_big_parent_fk.js": `exports.up = (pgm) => {
  pgm.noTransaction();
  pgm.sql("ALTER TABLE big ADD CONSTRAINT big_parent_fk FOREIGN KEY (parent_id) REFERENCES parent (id)");
};
exports.down = false;
`,
}

// rwNodeSchema describes big and parent and the migrations applied.
func rwNodeSchema(t *testing.T, database string) string {
	t.Helper()
	conn := superConn(t, database)
	return queryStringArgs(t, conn, rwSnapshotSQL, "big") + "\n" + queryStringArgs(t, conn, rwSnapshotSQL, "parent") +
		"\nmigrations: " + queryString(t, conn, "SELECT string_agg(name, ', ' ORDER BY id) FROM pgmigrations")
}

// TestRewriteNodePgMigrate applies the migrations with node-pg-migrate
// through ddlguard and directly on a second database; the schemas match,
// the index valid and the foreign key validated, and the audit log shows
// both statements rewritten.
func TestRewriteNodePgMigrate(t *testing.T) {
	begin := time.Now()
	bin := nodePgMigrate(t)
	const guarded, direct = "rewrite_npm_guarded", "rewrite_npm_direct"
	for _, db := range []string{guarded, direct} {
		audDatabase(t, db)
		audBigTable(t, db, "big")
	}
	p := enfGuardProxy(t)
	dir := t.TempDir()
	migrations := filepath.Join(dir, "migrations")
	if err := os.Mkdir(migrations, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range rwNodeMigrations {
		if err := os.WriteFile(filepath.Join(migrations, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	migrate := func(t *testing.T, host string, port int, database string) clientRun {
		t.Helper()
		url := fmt.Sprintf("postgres://%s:%s@%s:%d/%s?sslmode=disable&application_name=node-pg-migrate",
			pgcluster.RoleSCRAM, cluster.Passwords[pgcluster.RoleSCRAM], host, port, database)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := clientProgramCmd(ctx, "node", bin, "up", "--migrations-dir", migrations)
		cmd.Dir = dir
		cmd.Env = append(cmd.Env, "DATABASE_URL="+url)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		at := time.Now()
		err := cmd.Run()
		res := clientRun{stdout: stdout.String(), stderr: stderr.String(), elapsed: time.Since(at)}
		if err != nil {
			t.Fatalf("node-pg-migrate up on %s: %v\n%s", database, err, res)
		}
		return res
	}
	res := migrate(t, p.Host, p.Port, guarded)
	t.Logf("node-pg-migrate through ddlguard: %s", res.elapsed.Round(time.Millisecond))
	migrate(t, cluster.Host, cluster.Port, direct)

	got, want := rwNodeSchema(t, guarded), rwNodeSchema(t, direct)
	if got != want {
		t.Errorf("schema through ddlguard differs from the schema migrated directly:\n%s", strings.Join(diffLinesOf(want, got), "\n"))
	}
	for _, line := range []string{
		"index big_v_idx valid=t ready=t live=t primary=f unique=f: CREATE INDEX big_v_idx ON public.big USING btree (v)",
		"constraint big_parent_fk type=f validated=t index=parent_pkey: FOREIGN KEY (parent_id) REFERENCES parent(id)",
		"migrations: 1700000000001_parents, 1700000000002_big_v_index, 1700000000003_big_parent_fk",
	} {
		if !strings.Contains(got, line) {
			t.Errorf("schema through ddlguard lacks %q:\n%s", line, got)
		}
	}
	var rewrites []string
	for _, rec := range audDecisions(t, p.Logs()) {
		if audField(rec, "action") == "rewrite" && audField(rec, "application_name") == "node-pg-migrate" {
			rewrites = append(rewrites, audField(rec, "rule"))
		} else if audField(rec, "rule") != "" {
			t.Errorf("decision: %v", rec)
		}
	}
	if w := []string{"create-index-not-concurrently", "add-foreign-key-validated"}; !slices.Equal(rewrites, w) {
		t.Errorf("rewrites in the audit log: %v, want %v\n%s", rewrites, w, res)
	}
	t.Logf("done in %s", time.Since(begin).Round(time.Millisecond))
}

// TestRewriteDomainValidateBlocked: the VALIDATE step of the
// alter-domain-add-constraint rewrite locks SHARE, and scans, the tables
// the domain's facts name (wide), so it runs as every step with a strong
// lock runs. While a session idle in a transaction holds ROW EXCLUSIVE on
// wide, ddlguard does not send the step (nothing queues for wide in front
// of the writers, who go on undisturbed); when the retry budget runs out
// the client gets ddlguard's 55P03 naming the blocker, and the constraint
// the NOT VALID step added is taken back. Facts read on the client's own
// connection and on the monitor connection; both protocols.
func TestRewriteDomainValidateBlocked(t *testing.T) {
	begin := time.Now()
	rewriteFixture(t)
	const (
		budget = 2 * time.Second
		rule   = "alter-domain-add-constraint"
		sql    = "ALTER DOMAIN wide_amount ADD CHECK (VALUE >= 0)"
	)
	owner := connectDirect(t, cluster, rwUser, rwDatabase)
	writers := rwNewWriters(t, 3)
	for _, facts := range []string{"client-connection", "monitor"} {
		for _, protocol := range rwProtocols {
			t.Run(facts+"/"+protocol, func(t *testing.T) {
				p := startGuardProxy(t, guard.DefaultConfig(), func(c *proxy.Config) {
					c.Exec = proxy.ExecConfig{RetryBudget: budget}
					if facts == "monitor" {
						c.MonitorFacts = startMonitorFacts(t)
					}
				})
				before := queryString(t, owner, rwDomainSQL)
				blocker := connectDSN(t, "blocker", cluster.DSN(rwUser, rwDatabase, "sslmode", "disable",
					"application_name", "rw-domain-blocker"))
				rwExecAll(t, blocker, "BEGIN", "LOCK TABLE wide IN ROW EXCLUSIVE MODE")
				blockerPID := blocker.PgConn().PID()
				conn, notices := rwConnect(t, p)
				what := sql + " (" + protocol + ", facts on the " + facts + ")"

				watch := watchQueue(t, connectDirect(t, cluster, rwUser, rwDatabase), "wide", 20*time.Millisecond)
				var err error
				var took time.Duration
				load := writers.during(t, func() {
					at := time.Now()
					_, err = rwRun(enfCtx(t), conn, protocol, sql)
					took = time.Since(at)
				})
				watch.finish()
				samples, queued, _ := watch.between(t, time.Time{}, time.Now())
				rwExecAll(t, blocker, "ROLLBACK")

				pe := lwWantCode(t, what, err, "55P03")
				t.Logf("%s: %s after %s\nDETAIL: %s", what, pe.Message, took.Round(time.Millisecond), pe.Detail)
				if !strings.Contains(pe.Message, "VALIDATE CONSTRAINT wide_amount_check") {
					t.Errorf("%s: message %q does not name the VALIDATE step", what, pe.Message)
				}
				line := lwDetailLine(pe.Detail, blockerPID)
				for _, want := range []string{`application "rw-domain-blocker"`, "holds RowExclusiveLock on wide", "state idle in transaction"} {
					if !strings.Contains(line, want) {
						t.Errorf("%s: 55P03 DETAIL line for the blocker (pid %d) lacks %q:\n%s", what, blockerPID, want, pe.Detail)
					}
				}
				lwWithin(t, what, took, budget, budget+2*time.Second)
				if queued > 0 {
					t.Errorf("%s: %d of %d samples saw a lock request queued for wide: the VALIDATE step entered the queue", what, queued, samples)
				}
				load.check(t, what)

				n := rwWantNotice(t, what, notices.take(), rule)
				for _, want := range []string{"step 2 of 2 failed: ALTER DOMAIN wide_amount VALIDATE CONSTRAINT wide_amount_check",
					"taken back: ALTER DOMAIN wide_amount DROP CONSTRAINT IF EXISTS wide_amount_check"} {
					if !strings.Contains(n.Detail, want) {
						t.Errorf("%s: notice DETAIL %q lacks %q", what, n.Detail, want)
					}
				}
				// The notice is honest about what VALIDATE costs.
				if want := "still holds SHARE on those tables while it scans them (writes wait)"; !strings.Contains(n.Hint, want) {
					t.Errorf("%s: notice HINT %q lacks %q", what, n.Hint, want)
				}
				if !strings.Contains(n.Hint, "on wide (") {
					t.Errorf("%s: notice HINT %q does not name wide with its size", what, n.Hint)
				}
				if after := queryString(t, owner, rwDomainSQL); after != before {
					t.Errorf("%s: the domain's constraints are %q after, %q before: the NOT VALID step was not taken back", what, after, before)
				}
				if st := conn.PgConn().TxStatus(); st != 'I' {
					t.Errorf("%s: transaction status %q after the error, want 'I'", what, st)
				}
				if got := queryString(t, conn, "SELECT 'usable'"); got != "usable" {
					t.Errorf("%s: the connection after the error: %q", what, got)
				}
				rwWantAuditLocks(t, p, what, rule, "wide SHARE")
				t.Logf("%s: writers %d statements, slowest %s; %d queue samples", what, load.statements,
					load.max.Round(time.Millisecond), samples)
			})
		}
	}
	t.Logf("done in %s", time.Since(begin).Round(time.Millisecond))
}

// TestRewriteDomainWithoutFacts: when ddlguard cannot learn which tables
// use a domain (here: a name with a backslash, which it refuses to look up),
// ALTER DOMAIN ... ADD CHECK is still rewritten, and its VALIDATE step still
// runs with the lock timeout and retries, only without the blocker check
// (no table to check): behind a session idle in a transaction it times out
// attempt after attempt, each bounded by the lock timeout, until the budget
// runs out; the client gets the server's 55P03 and the NOT VALID
// constraint is taken back.
func TestRewriteDomainWithoutFacts(t *testing.T) {
	rewriteFixture(t)
	const (
		budget = 2 * time.Second
		rule   = "alter-domain-add-constraint"
		sql    = `ALTER DOMAIN "rw\dom" ADD CHECK (VALUE >= 0)`
	)
	owner := connectDirect(t, cluster, rwUser, rwDatabase)
	rwExecAll(t, owner, `DROP TABLE IF EXISTS rw_nofacts`, `DROP DOMAIN IF EXISTS "rw\dom"`,
		`CREATE DOMAIN "rw\dom" AS int`, `CREATE TABLE rw_nofacts (id int, v "rw\dom")`,
		`INSERT INTO rw_nofacts SELECT g, g FROM generate_series(1, 1000) g`)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		execEach(ctx, owner, `DROP TABLE IF EXISTS rw_nofacts`, `DROP DOMAIN IF EXISTS "rw\dom"`)
	})
	const domainSQL = `SELECT coalesce(string_agg(conname || ' ' || convalidated, ', '), '-') FROM pg_constraint WHERE contypid = '"rw\dom"'::regtype`
	for _, protocol := range rwProtocols {
		t.Run(protocol, func(t *testing.T) {
			p := startGuardProxy(t, guard.DefaultConfig(), func(c *proxy.Config) { c.Exec = proxy.ExecConfig{RetryBudget: budget} })
			blocker := connectDirect(t, cluster, rwUser, rwDatabase)
			rwExecAll(t, blocker, "BEGIN", "LOCK TABLE rw_nofacts IN ROW EXCLUSIVE MODE")
			conn, notices := rwConnect(t, p)
			what := sql + " (" + protocol + ")"
			at := time.Now()
			_, err := rwRun(enfCtx(t), conn, protocol, sql)
			took := time.Since(at)
			rwExecAll(t, blocker, "ROLLBACK")

			pe := lwWantCode(t, what, err, "55P03")
			if pe.Message != "canceling statement due to lock timeout" {
				t.Errorf("%s: %q, want the server's lock timeout", what, pe.Message)
			}
			// The last attempt may start just before the budget runs out.
			lwWithin(t, what, took, budget-guard.DefaultLockTimeout, budget+guard.DefaultLockTimeout+time.Second)
			if retries := strings.Count(p.Logs(), `"msg":"lock timeout; retrying"`); retries < 2 {
				t.Errorf("%s: %d retries logged, want the VALIDATE step retried", what, retries)
			}
			n := rwWantNotice(t, what, notices.take(), rule)
			if want := `taken back: ALTER DOMAIN "rw\dom" DROP CONSTRAINT IF EXISTS "rw\dom_check"`; !strings.Contains(n.Detail, want) {
				t.Errorf("%s: notice DETAIL %q lacks %q", what, n.Detail, want)
			}
			if !strings.Contains(n.Hint, "which tables, and how large, is unknown here") {
				t.Errorf("%s: notice HINT %q does not say the tables are unknown", what, n.Hint)
			}
			if got := queryString(t, owner, domainSQL); got != "-" {
				t.Errorf("%s: the domain's constraints after: %q, want none", what, got)
			}
			if got := queryString(t, conn, "SELECT 'usable'"); got != "usable" {
				t.Errorf("%s: the connection after the error: %q", what, got)
			}
			t.Logf("%s: %s after %s", what, pe.Message, took.Round(time.Millisecond))
		})
	}
}
