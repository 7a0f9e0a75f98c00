package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ddlguard/ddlguard/e2e/pgcluster"
	"github.com/ddlguard/ddlguard/guard"
	"github.com/ddlguard/ddlguard/proxy"
)

// An extended-protocol batch that needs the lock timeout is held until its
// Sync and run as a whole: it waits out blockers, and without the blocker
// check it is retried after lock timeouts; the client sees one answer.
func TestExtendedBatchLockWait(t *testing.T) {
	super := superConn(t, "postgres")
	ctx := context.Background()
	g, err := guard.New(guard.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		exec  proxy.ExecConfig
		retry bool
	}{
		{"blocker check waits outside the queue", proxy.ExecConfig{}, false},
		{"no blocker check: retried after lock timeouts", proxy.ExecConfig{NoBlockerCheck: true}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			table := fmt.Sprintf("ext_wait_%d", time.Now().UnixNano()%1e9)
			if _, err := super.Exec(ctx, "CREATE TABLE "+table+" (id int)"); err != nil {
				t.Fatal(err)
			}
			p := startProxy(t, func(c *proxy.Config) { c.Guard, c.Exec = g, tc.exec })
			blocker := connectDirect(t, cluster, pgcluster.Superuser, "postgres")
			if _, err := blocker.Exec(ctx, "BEGIN; SELECT count(*) FROM "+table); err != nil {
				t.Fatal(err)
			}
			released := make(chan struct{})
			go func() {
				defer close(released)
				time.Sleep(1500 * time.Millisecond)
				blocker.Exec(context.Background(), "COMMIT")
			}()
			defer func() { <-released }() // before the connection's cleanup closes it

			conn := p.Connect(t, pgcluster.Superuser, "postgres", "sslmode", "disable")
			start := time.Now()
			res := conn.PgConn().ExecParams(ctx, "ALTER TABLE "+table+" ADD COLUMN c int", nil, nil, nil, nil).Read()
			took := time.Since(start)
			if res.Err != nil || res.CommandTag.String() != "ALTER TABLE" {
				t.Fatalf("extended ALTER: %v (tag %q)", res.Err, res.CommandTag)
			}
			if took < time.Second {
				t.Fatalf("the ALTER finished after %s, before the blocker let go", took)
			}
			retries := strings.Count(p.Logs(), "lock timeout; retrying")
			if tc.retry != (retries > 0) {
				t.Fatalf("%d retries logged (want retries: %v)", retries, tc.retry)
			}
			var lt string
			if err := conn.QueryRow(ctx, "SHOW lock_timeout").Scan(&lt); err != nil || lt != "0" {
				t.Fatalf("lock_timeout after the batch: %q, %v", lt, err)
			}
		})
	}
}
