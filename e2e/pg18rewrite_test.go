package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ddlguard/ddlguard/e2e/pgcluster"
	"github.com/ddlguard/ddlguard/guard"
	"github.com/ddlguard/ddlguard/proxy"
	"github.com/jackc/pgx/v5"
)

// TestPG18RewriteStepProtected: on PostgreSQL 18 the set-not-null rewrite
// starts with ADD CONSTRAINT ... NOT NULL col NOT VALID, syntax the guard's
// parser (PostgreSQL 17's grammar) cannot read. The step must still get
// the blocker check and the lock timeout (its locks come from the planner,
// not from reading the step again): with a session idle in a transaction
// on the table, ddlguard waits outside the lock queue, and the table's
// readers never queue behind the step; once the session ends, the
// statement completes. The same for that syntax sent by the client: the
// lexer still finds the table it alters.
func TestPG18RewriteStepProtected(t *testing.T) {
	c := startPG18Cluster(t)
	cfg := guard.DefaultConfig()
	cfg.SmallTableBytes = 1 // every table with rows is large
	p := startGuardProxy(t, cfg, func(pc *proxy.Config) {
		pc.Upstream = c.Addr()
		pc.UpstreamTLSMode = proxy.UpstreamTLSDisable
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	admin := connectDirect(t, c, pgcluster.Superuser, "postgres")
	if err := execEach(ctx, admin,
		"CREATE TABLE nn (id int, a int)",
		"INSERT INTO nn SELECT g, g FROM generate_series(1, 20000) g",
		"ANALYZE nn"); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name, sql string
		notice    string // code, and text of the notice that says how it ran
		column    string // made NOT NULL
	}{
		{"rewrite step ddlguard writes", "ALTER TABLE nn ALTER COLUMN a SET NOT NULL", "01Z03 NOT NULL a NOT VALID", "a"},
		{"statement the parser cannot read", "ALTER TABLE nn ADD CONSTRAINT nn_id_not_null NOT NULL id NOT VALID", "01Z02 could not be checked", "id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			blocker := connectDirect(t, c, pgcluster.Superuser, "postgres")
			if err := execEach(ctx, blocker, "BEGIN", "SELECT count(*) FROM nn"); err != nil {
				t.Fatal(err)
			}
			readers := make([]*pgx.Conn, lwReaderCount)
			for i := range readers {
				readers[i] = connectDirect(t, c, pgcluster.Superuser, "postgres")
			}
			load := lwStartQueryLoad(readers, "SELECT count(*) FROM nn", 20000)
			time.Sleep(lwWarmup)
			const hold = 1500 * time.Millisecond
			released := make(chan struct{})
			go func() {
				defer close(released)
				time.Sleep(hold)
				blocker.Exec(context.Background(), "COMMIT")
			}()

			conn, notices := connectNotices(t, "through ddlguard", p.DSN(pgcluster.Superuser, "postgres", "sslmode", "disable"))
			start := time.Now()
			_, err := conn.Exec(ctx, tc.sql)
			took := time.Since(start)
			<-released
			stats := load.finish()
			t.Logf("%s through ddlguard: %v after %s; readers: %s", tc.sql, err, took.Round(time.Millisecond), stats)
			if err != nil {
				t.Fatalf("%s: %v", tc.sql, err)
			}
			code, text, _ := strings.Cut(tc.notice, " ")
			seen := false
			for _, n := range notices.take() {
				seen = seen || (n.Code == code && strings.Contains(n.Message, text))
			}
			if !seen {
				t.Errorf("no notice %s %q", code, text)
			}
			if took < hold-200*time.Millisecond {
				t.Errorf("the statement finished after %s, before the idle transaction ended (%s): it was not checked for blockers", took, hold)
			}
			if len(stats.errs) > 0 {
				t.Errorf("reader errors: %v", stats.errs[0])
			}
			// Sent into the queue behind the idle transaction, the statement
			// would stall the readers for its lock timeout (each retry
			// again); checked for blockers first, it never queues.
			if bound := lwLockTimeout / 2; stats.max > bound {
				t.Errorf("a reader of nn waited %s (over %s): the statement queued behind the idle transaction", stats.max, bound)
			}
			var notNull bool
			if err := admin.QueryRow(ctx, "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'nn'::regclass AND attname = $1", tc.column).Scan(&notNull); err != nil || !notNull {
				t.Errorf("nn.%s NOT NULL after the statement: %v, %v", tc.column, notNull, err)
			}
		})
	}
}
