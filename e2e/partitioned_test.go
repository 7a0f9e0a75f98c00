package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ddlguard/ddlguard/e2e/pgcluster"
	"github.com/ddlguard/ddlguard/guard"
)

// CREATE INDEX on a large partitioned table is refused with the
// partition-by-partition sequence as its hint, never rewritten to CREATE
// INDEX CONCURRENTLY (which PostgreSQL refuses on a partitioned table: the
// client would get an error PostgreSQL itself never raises for its
// statement); the hint's sequence, run as it says, gives the parent a valid
// index; on a small partitioned table the statement runs.
func TestPartitionedCreateIndex(t *testing.T) {
	const db = "partitioned_index"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	setup := freshDatabase(t, db,
		"CREATE TABLE events (id bigint, at date, v int) PARTITION BY RANGE (at)",
		"CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')",
		"CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')",
		"INSERT INTO events SELECT g, date '2025-01-01' + (g % 700), g FROM generate_series(1, 2000) g",
		"ANALYZE events",
	)

	// Large: every table with rows is over this threshold.
	cfg := guard.DefaultConfig()
	cfg.SmallTableBytes = 1
	p := startGuardProxy(t, cfg)
	conn, _ := connectNotices(t, "through ddlguard", p.DSN(pgcluster.RoleSCRAM, db, "sslmode", "disable"))
	_, err := conn.Exec(ctx, "CREATE INDEX ON events (v)")
	wantRefused(t, err, "create-index-not-concurrently")
	hint := pgErrorOf(err).Hint
	if !strings.Contains(hint, "ON ONLY events") || !strings.Contains(hint, "CREATE INDEX CONCURRENTLY <partition>_v_idx ON <partition>") {
		t.Fatalf("hint: %q, want the partition-by-partition sequence", hint)
	}
	if got := enfValue(t, setup, "SELECT count(*) FROM pg_indexes WHERE tablename LIKE 'events%'"); got != "0" {
		t.Fatalf("%s indexes after the refusal", got)
	}

	// The hint, run as it says (each statement on its own, <partition>
	// replaced), gives events a valid index.
	lines := strings.Split(hint, "\n")[1:]
	if err := execEach(ctx, setup, strings.TrimSuffix(lines[0], ";")); err != nil {
		t.Fatal(err)
	}
	for _, part := range []string{"events_2025", "events_2026"} {
		for _, l := range lines[1:] {
			if err := execEach(ctx, setup, strings.ReplaceAll(strings.TrimSuffix(l, ";"), "<partition>", part)); err != nil {
				t.Fatalf("hint step for %s: %v", part, err)
			}
		}
	}
	if got := enfValue(t, setup, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'events_v_idx'::regclass"); got != "true" {
		t.Errorf("events_v_idx valid: %s after the hint's sequence", got)
	}

	// Small (the sum of the partitions, under the default threshold): runs.
	small := startGuardProxy(t, guard.DefaultConfig())
	sconn, _ := connectNotices(t, "through ddlguard", small.DSN(pgcluster.RoleSCRAM, db, "sslmode", "disable"))
	if _, err := sconn.Exec(ctx, "CREATE INDEX events_id_idx ON events (id)"); err != nil {
		t.Fatalf("CREATE INDEX on a small partitioned table: %v", err)
	}
}
