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

// Work under a held ACCESS EXCLUSIVE lock is judged by the held table's
// size: a migration transaction that adds a column and backfills it with
// separate statements applies on a small young table, from the simple and
// the extended protocol; the same backfill of a table over
// small_table_bytes is refused (statement-after-access-exclusive).
func TestWorkUnderHeldLockIsJudgedBySize(t *testing.T) {
	const db = "held_lock_work"
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	setup := freshDatabase(t, db,
		"CREATE TABLE held_small (id bigint PRIMARY KEY, a int)",
		"INSERT INTO held_small SELECT g, g FROM generate_series(1, 300) g",
		"CREATE TABLE held_big (id bigint PRIMARY KEY, a int, pad text)",
		"INSERT INTO held_big SELECT g, g, repeat('x', 100) FROM generate_series(1, 120000) g",
	)
	if got := enfValue(t, setup, "SELECT pg_relation_size('held_big') > 10 * 1024 * 1024"); got != "true" {
		t.Fatalf("held_big is not over small_table_bytes: %s", got)
	}
	p := startGuardProxy(t, guard.DefaultConfig())
	for _, extended := range []bool{false, true} {
		conn, _ := connectNotices(t, "through ddlguard", p.DSN(pgcluster.RoleSCRAM, db, "sslmode", "disable"))
		run := func(sql string) error {
			if extended {
				_, err := conn.PgConn().ExecParams(ctx, sql, nil, nil, nil, nil).Close()
				return err
			}
			_, err := conn.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol)
			return err
		}
		col := "b"
		if extended {
			col = "c"
		}
		for _, sql := range []string{
			"BEGIN",
			"ALTER TABLE held_small ADD COLUMN " + col + " int",
			"UPDATE held_small SET " + col + " = a * 2",
			"DELETE FROM held_small WHERE id > 290",
			"COMMIT",
		} {
			if err := run(sql); err != nil {
				t.Fatalf("%s (extended protocol %v) on a small table: %v", sql, extended, err)
			}
		}
		for _, sql := range []string{"BEGIN", "ALTER TABLE held_big ADD COLUMN " + col + " int"} {
			if err := run(sql); err != nil {
				t.Fatalf("%s (extended protocol %v): %v", sql, extended, err)
			}
		}
		wantRefused(t, run("UPDATE held_big SET "+col+" = a * 2"), "statement-after-access-exclusive")
		if err := run("ROLLBACK"); err != nil {
			t.Fatal(err)
		}
	}
	if got := enfValue(t, setup, "SELECT count(*) || ' ' || sum(b) || ' ' || sum(c) FROM held_small"); got != "290 84390 84390" {
		t.Errorf("held_small after the migrations: %s, want 290 rows backfilled", got)
	}
}

// After a statement that changes only a small table's columns, indexes or
// constraints, ddlguard keeps what it measured of the table (its size and
// kind) instead of asking again; anything that may write rows through the
// same connection ends that. A table filled past small_table_bytes between
// two migration statements is judged by its new size, in autocommit, inside
// a transaction, and when the fill is a prepared statement executed again
// (Bind and Execute alone).
func TestKeptFactsDoNotHideGrowth(t *testing.T) {
	const db = "kept_facts"
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	freshDatabase(t, db,
		"CREATE TABLE grow_auto (id bigint NOT NULL, a int, pad text)",
		"CREATE TABLE grow_tx (id bigint NOT NULL, a int, pad text)",
		"CREATE TABLE grow_prepared (id bigint NOT NULL, a int, pad text)",
	)
	p := startGuardProxy(t, guard.DefaultConfig())
	fill := func(table string) string {
		return "INSERT INTO " + table + " SELECT g, g, repeat('x', 100) FROM generate_series(1, 120000) g"
	}
	for _, c := range []struct {
		table    string
		tx       bool
		prepared bool // the fill is a prepared statement run again by Bind alone
	}{{"grow_auto", false, false}, {"grow_tx", true, false}, {"grow_prepared", false, true}} {
		t.Run(c.table, func(t *testing.T) {
			conn, _ := connectNotices(t, "through ddlguard", p.DSN(pgcluster.RoleSCRAM, db, "sslmode", "disable"))
			if c.prepared {
				if _, err := conn.Prepare(ctx, "fill", "INSERT INTO "+c.table+
					" SELECT g, g, repeat('x', 100) FROM generate_series($1::int, $2::int) g"); err != nil {
					t.Fatal(err)
				}
				if _, err := conn.Exec(ctx, "fill", 1, 1); err != nil {
					t.Fatal(err)
				}
			}
			if c.tx {
				enfMustExec(t, conn, "BEGIN")
			}
			// Small: measured, passed, and kept.
			for _, sql := range []string{
				"CREATE INDEX " + c.table + "_a_idx ON " + c.table + " (a)",
				"ALTER TABLE " + c.table + " ADD COLUMN b int",
				"ALTER TABLE " + c.table + " ALTER COLUMN b TYPE bigint",
			} {
				if _, err := conn.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol); err != nil {
					t.Fatalf("%s on an empty table: %v", sql, err)
				}
			}
			if c.prepared {
				if _, err := conn.Exec(ctx, "fill", 2, 120000); err != nil {
					t.Fatal(err)
				}
			} else {
				enfMustExec(t, conn, fill(c.table))
			}
			if got := enfValue(t, conn, "SELECT pg_relation_size('"+c.table+"') > 10 * 1024 * 1024"); got != "true" {
				t.Fatalf("%s is not over small_table_bytes after the fill: %s", c.table, got)
			}
			_, err := conn.Exec(ctx, "ALTER TABLE "+c.table+" ALTER COLUMN a TYPE bigint", pgx.QueryExecModeSimpleProtocol)
			if err == nil || !strings.Contains(err.Error(), "alter-column-type") {
				t.Fatalf("ALTER COLUMN TYPE on %s after it grew past small_table_bytes: %v, want the alter-column-type refusal", c.table, err)
			}
			if c.tx {
				enfMustExec(t, conn, "ROLLBACK")
			}
		})
	}
}
