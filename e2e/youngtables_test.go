package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ddlguard/ddlguard/e2e/pgcluster"
	"github.com/ddlguard/ddlguard/guard"
	"github.com/ddlguard/ddlguard/proxy"
)

// Tables created by an earlier migration and never vacuumed or analyzed
// (pg_class.relpages says nothing) are measured, with zero configuration:
// a migration transaction that indexes, constrains and retypes such an
// empty table applies through ddlguard as it does directly, from the
// simple and the extended protocol, and with monitor.dsn configured once
// the client's own transaction locks the table; the same statements on a young table
// of over small_table_bytes are refused, as that table deserves; and a
// young table another session holds ACCESS EXCLUSIVE on is not measured
// (the measurement would queue behind that lock): its size is unknown,
// taken as large, and ddlguard answers at once.
func TestYoungTablesAreMeasured(t *testing.T) {
	const db = "young_tables"
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	setup := freshDatabase(t, db,
		"CREATE TABLE young_simple (id bigint NOT NULL, a int, b int)",
		"CREATE TABLE young_extended (id bigint NOT NULL, a int, b int)",
		"CREATE TABLE young_locked (id bigint NOT NULL, a int, b int)",
		"CREATE TABLE young_monitor (id bigint NOT NULL, a int, b int)",
		"CREATE TABLE young_big (id bigint NOT NULL, a int, b int, pad text)",
		"INSERT INTO young_big SELECT g, g, g, repeat('x', 100) FROM generate_series(1, 120000) g",
	)
	if got := enfValue(t, setup, "SELECT pg_relation_size('young_big') > 10 * 1024 * 1024"); got != "true" {
		t.Fatalf("young_big is not over small_table_bytes: %s", got)
	}

	p := startGuardProxy(t, guard.DefaultConfig())
	migration := func(table string) []string {
		return []string{
			"CREATE INDEX " + table + "_a_idx ON " + table + " (a)",
			"ALTER TABLE " + table + " ADD PRIMARY KEY (id)",
			"ALTER TABLE " + table + " ALTER COLUMN b TYPE bigint",
			"ALTER TABLE " + table + " ALTER COLUMN a SET NOT NULL",
		}
	}
	run := func(conn *pgx.Conn, extended bool, sql string) error {
		if extended {
			_, err := conn.PgConn().ExecParams(ctx, sql, nil, nil, nil, nil).Close()
			return err
		}
		_, err := conn.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol)
		return err
	}

	for _, c := range []struct {
		table    string
		extended bool
	}{{"young_simple", false}, {"young_extended", true}} {
		conn, _ := connectNotices(t, "through ddlguard", p.DSN(pgcluster.RoleSCRAM, db, "sslmode", "disable"))
		enfMustExec(t, conn, "BEGIN")
		for _, sql := range migration(c.table) {
			if err := run(conn, c.extended, sql); err != nil {
				t.Fatalf("%s (extended protocol %v) on an empty, never analyzed table: %v", sql, c.extended, err)
			}
		}
		enfMustExec(t, conn, "COMMIT")
		if got := enfValue(t, setup, "SELECT count(*) FROM pg_index WHERE indrelid = '"+c.table+"'::regclass"); got != "2" {
			t.Errorf("%s: %s indexes after the migration, want 2 (the index and the primary key)", c.table, got)
		}
	}

	// With the monitor pool configured: once the client's transaction
	// holds a lock on the table, the monitor's size query would wait behind
	// it; the facts come from the client's own connection instead, where
	// the young table is measured.
	mp := startGuardProxy(t, guard.DefaultConfig(), func(c *proxy.Config) { c.MonitorFacts = startMonitorFacts(t) })
	mconn, _ := connectNotices(t, "through ddlguard with a monitor", mp.DSN(pgcluster.RoleSCRAM, db, "sslmode", "disable"))
	enfMustExec(t, mconn, "BEGIN")
	for _, sql := range append([]string{"ALTER TABLE young_monitor ADD COLUMN c int"}, migration("young_monitor")...) {
		if err := run(mconn, false, sql); err != nil {
			t.Fatalf("%s with monitor.dsn, inside the migration's transaction: %v", sql, err)
		}
	}
	enfMustExec(t, mconn, "COMMIT")

	// Over small_table_bytes: the index build is refused inside the
	// transaction (its CONCURRENTLY form cannot run there).
	conn, _ := connectNotices(t, "through ddlguard", p.DSN(pgcluster.RoleSCRAM, db, "sslmode", "disable"))
	enfMustExec(t, conn, "BEGIN")
	wantRefused(t, run(conn, false, migration("young_big")[0]), "create-index-not-concurrently")
	enfMustExec(t, conn, "ROLLBACK")

	// Another session holds ACCESS EXCLUSIVE on a young table: its size is
	// not measured (that would queue), so unknown, and the answer comes at
	// once.
	holder, err := pgx.Connect(ctx, cluster.DSN(pgcluster.RoleSCRAM, db, "sslmode", "disable"))
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(ctx)
	if err := execEach(ctx, holder, "BEGIN", "LOCK TABLE young_locked IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	enfMustExec(t, conn, "BEGIN")
	start := time.Now()
	wantRefused(t, run(conn, false, migration("young_locked")[0]), "create-index-not-concurrently")
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("the refusal took %s: the facts query waited behind the other session's lock", took)
	}
	enfMustExec(t, conn, "ROLLBACK")
	if err := execEach(ctx, holder, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
}

// wantRefused fails unless err is ddlguard's refusal by rule.
func wantRefused(t *testing.T, err error, rule string) {
	t.Helper()
	pe := pgErrorOf(err)
	if pe == nil || pe.Code != proxy.CodeRejected || !strings.HasPrefix(pe.Message, "ddlguard: "+rule+": ") {
		t.Fatalf("got %v, want a refusal by %s", err, rule)
	}
}

// freshDatabase recreates db (dropped at test end) and runs sqls in it as
// pgcluster.RoleSCRAM; it returns that role's direct connection to it,
// closed at test end.
func freshDatabase(t *testing.T, db string, sqls ...string) *pgx.Conn {
	t.Helper()
	audDatabase(t, db)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, cluster.DSN(pgcluster.RoleSCRAM, db, "sslmode", "disable"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	if err := execEach(ctx, conn, sqls...); err != nil {
		t.Fatal(err)
	}
	return conn
}
