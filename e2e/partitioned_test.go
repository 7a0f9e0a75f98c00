package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ddlguard/ddlguard/e2e/pgcluster"
	"github.com/ddlguard/ddlguard/guard"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// partitionedSetup is a partitioned table two levels deep with rows in
// every leaf, and an index on one leaf whose name PostgreSQL's naming of
// a new index on (v) would take first.
var partitionedSetup = []string{
	"CREATE TABLE events (id bigint, at date, v int) PARTITION BY RANGE (at)",
	"CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')",
	"CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01') PARTITION BY RANGE (v)",
	"CREATE TABLE events_2026_a PARTITION OF events_2026 FOR VALUES FROM (MINVALUE) TO (1000)",
	"CREATE TABLE events_2026_b PARTITION OF events_2026 FOR VALUES FROM (1000) TO (MAXVALUE)",
	"INSERT INTO events SELECT g, date '2025-01-01' + (g % 700), g FROM generate_series(1, 2000) g",
	"CREATE INDEX events_2025_v_idx ON events_2025 (id)",
	"ANALYZE events",
}

// indexShape lists every index of the events tree: table, name, validity,
// the index it is attached to, definition.
func indexShape(t *testing.T, conn *pgx.Conn) string {
	t.Helper()
	rows, err := conn.Query(context.Background(), `SELECT c.relname || ' ' || i.relname || ' valid=' || x.indisvalid || ' attached_to=' ||
    COALESCE((SELECT p.relname FROM pg_inherits h JOIN pg_class p ON p.oid = h.inhparent WHERE h.inhrelid = i.oid), '-') ||
    ' ' || pg_get_indexdef(i.oid)
  FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid
  WHERE c.relname LIKE 'events%' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}

// CREATE INDEX on a large partitioned table runs as the
// partition-by-partition sequence (CREATE INDEX CONCURRENTLY cannot build
// on a partitioned table; a plain build would hold SHARE on every
// partition for all of it): the client's statement succeeds, from psql's
// simple protocol and from a driver's extended one, and leaves exactly the
// indexes PostgreSQL's own CREATE INDEX leaves (names, validity, each
// attached to its parent's index), in a database where the same statements
// ran directly. A sequence that fails part-way (a unique index over
// duplicates in the last partition) takes back everything it built, as
// the direct statement's failure leaves nothing. Inside a transaction the
// statement is refused with the sequence, for these partitions, as hint.
// On a small partitioned table the statement runs as it is.
func TestPartitionedCreateIndex(t *testing.T) {
	const db, direct = "partitioned_index", "partitioned_index_direct"
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	setup := freshDatabase(t, db, partitionedSetup...)
	reference := freshDatabase(t, direct, partitionedSetup...)
	dup := "INSERT INTO events VALUES (1, '2026-06-01', 1500), (2, '2026-06-01', 1500)"

	// Large: every table with rows is over this threshold.
	cfg := guard.DefaultConfig()
	cfg.SmallTableBytes = 1
	p := startGuardProxy(t, cfg)
	conn, notices := connectNotices(t, "through ddlguard", p.DSN(pgcluster.RoleSCRAM, db, "sslmode", "disable"))

	for _, step := range []struct {
		name, sql string
		extended  bool
		before    string // run first, on both databases
		wantCode  string // the direct statement's error, "" for success
	}{
		{name: "simple", sql: "CREATE INDEX ON events (v)"},
		{name: "extended", sql: "CREATE INDEX events_at_id ON events (at, id)", extended: true},
		{name: "failing part-way", sql: "CREATE UNIQUE INDEX ON events (at, v)", before: dup, wantCode: "23505"},
	} {
		t.Run(step.name, func(t *testing.T) {
			if step.before != "" {
				if err := execEach(ctx, setup, step.before); err != nil {
					t.Fatal(err)
				}
				if err := execEach(ctx, reference, step.before); err != nil {
					t.Fatal(err)
				}
			}
			_, directErr := reference.Exec(ctx, step.sql)
			if code := pgCode(directErr); code != step.wantCode {
				t.Fatalf("directly: %v, want code %q", directErr, step.wantCode)
			}
			var err error
			if step.extended {
				err = conn.PgConn().ExecParams(ctx, step.sql, nil, nil, nil, nil).Read().Err
			} else {
				_, err = conn.Exec(ctx, step.sql)
			}
			if code := pgCode(err); code != step.wantCode {
				t.Fatalf("through ddlguard: %v, want code %q as directly", err, step.wantCode)
			}
			var rewritten *pgconn.Notice
			for _, n := range notices.take() {
				if n.Code == "01Z03" && strings.Contains(n.Message, "ON ONLY events") {
					rewritten = &n
					continue
				}
				t.Errorf("notice the statement directly does not give: %s %s", n.Code, n.Message)
			}
			switch {
			case rewritten == nil:
				t.Errorf("no notice of the partition-by-partition sequence")
			case step.wantCode != "" && !strings.Contains(rewritten.Detail, "taken back: DROP INDEX IF EXISTS"):
				t.Errorf("notice detail %q does not say what was taken back", rewritten.Detail)
			}
			if got, want := indexShape(t, setup), indexShape(t, reference); got != want {
				t.Errorf("indexes through ddlguard:\n%s\nindexes after the same statement directly:\n%s", got, want)
			}
		})
	}

	t.Run("in a transaction", func(t *testing.T) {
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		_, err = tx.Exec(ctx, "CREATE INDEX ON events (id)")
		wantRefused(t, err, "create-index-not-concurrently")
		hint := pgErrorOf(err).Hint
		for _, want := range []string{"CREATE INDEX events_id_idx ON ONLY events", "CREATE INDEX CONCURRENTLY events_2026_a_id_idx ON events_2026_a",
			"ALTER INDEX events_2026_id_idx ATTACH PARTITION events_2026_a_id_idx"} {
			if !strings.Contains(hint, want) {
				t.Errorf("hint %q lacks %q", hint, want)
			}
		}
	})

	t.Run("small", func(t *testing.T) {
		// The sum of the partitions, under the default threshold: runs.
		small := startGuardProxy(t, guard.DefaultConfig())
		sconn, _ := connectNotices(t, "through ddlguard", small.DSN(pgcluster.RoleSCRAM, db, "sslmode", "disable"))
		if _, err := sconn.Exec(ctx, "CREATE INDEX events_id_idx ON events (id)"); err != nil {
			t.Fatalf("CREATE INDEX on a small partitioned table: %v", err)
		}
	})
}

// pgCode is err's SQLSTATE, "" for no error (or one not from the server).
func pgCode(err error) string {
	if pe := pgErrorOf(err); pe != nil {
		return pe.Code
	}
	return ""
}
