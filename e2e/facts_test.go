package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ddlguard/ddlguard/e2e/pgcluster"
	"github.com/ddlguard/ddlguard/guard"
	"github.com/ddlguard/ddlguard/proxy"
)

// pipelineCreateIndex sends SELECT 1 and a CREATE INDEX in one pipeline (so
// the CREATE INDEX is decided mid-batch, where the client's own connection
// cannot be asked for facts) and returns the CREATE INDEX's error.
func pipelineCreateIndex(t *testing.T, conn *pgconn.PgConn, sql string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pl := conn.StartPipeline(ctx)
	pl.SendQueryParams("SELECT 1", nil, nil, nil, nil)
	pl.SendQueryParams(sql, nil, nil, nil, nil)
	if err := pl.Sync(); err != nil {
		t.Fatal(err)
	}
	var idxErr error
	for i := 0; ; i++ {
		res, err := pl.GetResults()
		if err != nil {
			// pgconn reports a failed statement here; the rest of the
			// batch up to the Sync is skipped by the server.
			idxErr = err
			continue
		}
		if res == nil {
			break
		}
		switch r := res.(type) {
		case *pgconn.ResultReader:
			_, err := r.Close()
			if i == 1 {
				idxErr = err
			}
		case *pgconn.PipelineSync:
			if err := pl.Close(); err != nil && idxErr == nil {
				idxErr = err
			}
			return idxErr
		}
	}
	pl.Close()
	return idxErr
}

// Catalog facts come from the monitor connection when one is configured,
// even mid-pipeline; without one, mid-pipeline facts are unknown and the
// guard takes the safe answer.
func TestFactsMonitorAndPipeline(t *testing.T) {
	super := superConn(t, "postgres")
	ctx := context.Background()
	if err := execEach(ctx, super,
		"DROP TABLE IF EXISTS facts_small",
		"CREATE TABLE facts_small AS SELECT g AS id FROM generate_series(1, 1000) g",
		"GRANT ALL ON facts_small TO PUBLIC",
		"ANALYZE facts_small",
	); err != nil {
		t.Fatal(err)
	}
	g, err := guard.New(guard.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	monitor := startMonitorFacts(t)

	plain := startProxy(t, func(c *proxy.Config) { c.Guard = g })
	withMonitor := startProxy(t, func(c *proxy.Config) { c.Guard = g; c.MonitorFacts = monitor })

	// Mid-pipeline, a statement that only needs the lock timeout cannot get
	// it (ddlguard brackets whole batches) and is refused with ZG002; one
	// a rule objects to is refused with ZG001. Which one tells whether the
	// guard saw the table as small.
	for i, tc := range []struct {
		name string
		p    *testProxy
		code string
	}{
		{"no monitor: unknown mid-pipeline, treated as large", plain, proxy.CodeRejected},
		{"monitor: small table, a timeout decision", withMonitor, "ZG002"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := tc.p.Connect(t, pgcluster.Superuser, "postgres", "sslmode", "disable")
			idx := fmt.Sprintf("facts_small_idx_%d", i)
			err := pipelineCreateIndex(t, conn.PgConn(), "CREATE INDEX "+idx+" ON facts_small (id)")
			if pgErr := pgErrorOf(err); pgErr == nil || pgErr.Code != tc.code {
				t.Fatalf("CREATE INDEX mid-pipeline: %v, want SQLSTATE %s", err, tc.code)
			}
			var exists bool
			super.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", idx).Scan(&exists)
			if exists {
				t.Fatal("the index was built")
			}
		})
	}
	// At a sync boundary the client's own connection answers: small, runs.
	conn := plain.Connect(t, pgcluster.Superuser, "postgres", "sslmode", "disable")
	if _, err := conn.Exec(ctx, "CREATE INDEX facts_small_idx_boundary ON facts_small (id)"); err != nil {
		t.Fatalf("CREATE INDEX on a small table at a boundary: %v", err)
	}
}

// With a monitor connection, the blocker check polls there: the client's
// DDL waits outside the queue and, when the budget runs out, fails with
// 55P03 naming the blocker.
func TestFactsMonitorBlockerCheck(t *testing.T) {
	super := superConn(t, "postgres")
	ctx := context.Background()
	if err := execEach(ctx, super,
		"DROP TABLE IF EXISTS facts_blocked",
		"CREATE TABLE facts_blocked (id int)",
	); err != nil {
		t.Fatal(err)
	}
	monitor := startMonitorFacts(t)
	p := startGuardProxy(t, guard.DefaultConfig(), func(c *proxy.Config) {
		c.MonitorFacts = monitor
		c.Exec = proxy.ExecConfig{RetryBudget: time.Second}
	})

	blocker := connectDirect(t, cluster, pgcluster.Superuser, "postgres")
	if _, err := blocker.Exec(ctx, "BEGIN; SELECT count(*) FROM facts_blocked"); err != nil {
		t.Fatal(err)
	}
	var blockerPID int32
	blocker.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&blockerPID)

	conn := p.Connect(t, pgcluster.Superuser, "postgres", "sslmode", "disable")
	start := time.Now()
	_, err := conn.Exec(ctx, "ALTER TABLE facts_blocked ADD COLUMN c int")
	took := time.Since(start)
	pgErr := pgErrorOf(err)
	if pgErr == nil || pgErr.Code != "55P03" || !strings.Contains(pgErr.Detail, fmt.Sprintf("pid %d", blockerPID)) ||
		!strings.Contains(pgErr.Hint, fmt.Sprintf("pg_terminate_backend(%d)", blockerPID)) {
		t.Fatalf("after the budget: %v (detail %q)", err, pgErr.Detail)
	}
	if took < time.Second || took > 5*time.Second {
		t.Fatalf("gave up after %s, want about the 1s budget", took)
	}
	var monitors int
	super.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'ddlguard-facts'").Scan(&monitors)
	if monitors == 0 {
		t.Fatal("no monitor connection was used for the blocker check")
	}
	blocker.Exec(ctx, "ROLLBACK")
	if _, err := conn.Exec(ctx, "ALTER TABLE facts_blocked ADD COLUMN c int"); err != nil {
		t.Fatalf("once the blocker is gone: %v", err)
	}
}

// TestRefreshJudgedByItsQuery: REFRESH MATERIALIZED VIEW reruns the view's
// query under ACCESS EXCLUSIVE, so a small view over a large table (read
// directly or through a plain view) is a large refresh: rewritten to
// CONCURRENTLY where it has a unique index, refused where not, from the
// client's connection and from the monitor's alike. A small view over
// small tables passes with the lock timeout.
func TestRefreshJudgedByItsQuery(t *testing.T) {
	const db = "refresh_query"
	freshDatabase(t, db,
		"CREATE TABLE big (id int, pad text)",
		"INSERT INTO big SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g",
		"CREATE TABLE tiny (id int)",
		"INSERT INTO tiny VALUES (1), (2)",
		"CREATE VIEW big_v AS SELECT id FROM big",
		"CREATE MATERIALIZED VIEW by_key AS SELECT id % 10 AS k, count(*) AS n FROM big GROUP BY 1",
		"CREATE UNIQUE INDEX by_key_k ON by_key (k)",
		"CREATE MATERIALIZED VIEW by_key_nx AS SELECT id % 10 AS k, count(*) AS n FROM big_v GROUP BY 1",
		"CREATE MATERIALIZED VIEW tiny_count AS SELECT count(*) AS n FROM tiny",
	)
	cfg := guard.DefaultConfig()
	cfg.SmallTableBytes = 256 << 10 // big is about 2.6 MB; the views one page or two
	for _, where := range []string{"client's connection", "monitor"} {
		t.Run(where, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			p := startGuardProxy(t, cfg, func(c *proxy.Config) {
				if where == "monitor" {
					c.MonitorFacts = startMonitorFacts(t)
				}
			})
			conn, notices := connectNotices(t, "through ddlguard", p.DSN(pgcluster.RoleSCRAM, db, "sslmode", "disable"))
			if _, err := conn.Exec(ctx, "REFRESH MATERIALIZED VIEW by_key"); err != nil {
				t.Fatalf("REFRESH of a small view over a large table, with a unique index: %v", err)
			}
			rewritten := false
			for _, n := range notices.take() {
				rewritten = rewritten || (n.Code == "01Z03" && strings.Contains(n.Message, "REFRESH MATERIALIZED VIEW CONCURRENTLY by_key"))
			}
			if !rewritten {
				t.Errorf("REFRESH of by_key did not run CONCURRENTLY")
			}
			_, err := conn.Exec(ctx, "REFRESH MATERIALIZED VIEW by_key_nx")
			wantRefused(t, err, "refresh-materialized-view")
			if _, err := conn.Exec(ctx, "REFRESH MATERIALIZED VIEW tiny_count"); err != nil {
				t.Fatalf("REFRESH of a small view over a small table: %v", err)
			}
			for _, n := range notices.take() {
				if n.Code == "01Z03" {
					t.Errorf("the small view over a small table was rewritten: %s", n.Message)
				}
			}
		})
	}
}
