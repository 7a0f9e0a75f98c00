package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ddlguard/ddlguard/e2e/pgcluster"
	"github.com/ddlguard/ddlguard/guard"
	"github.com/ddlguard/ddlguard/proxy"
)

// Nothing lost, nothing duplicated: a client sends N numbered INSERTs,
// each its own autocommit statement, through ddlguard while the server is
// restarted three times and the client itself drops its connection at
// random (cleanly between statements, or abandoning a statement in
// flight). On any error the client reconnects, waits until the backend
// that ran the statement is gone (its outcome is then final), and checks
// whether the row landed; it sends again only a statement that did not.
// Afterwards the table must hold every row exactly once: each acknowledged
// one, each ambiguous one found, and nothing the client never sent.

const (
	onceStatements = 2000
	onceRestarts   = 3
)

// onceClient is the retrying client.
type onceClient struct {
	t          *testing.T
	dsn        string
	conn       *pgx.Conn
	begin      time.Time
	generation int // connections opened
	errs       map[string]int
	// Figures for the report.
	acked, ambiguousFound, resent, cleanDrops, abandoned int
}

// note counts an error by a short description.
func (c *onceClient) note(err error) {
	key := err.Error()
	if pe := pgErrorOf(err); pe != nil {
		key = pe.Severity + " " + pe.Code + " " + pe.Message
	} else if strings.Contains(key, "context deadline exceeded") || strings.Contains(key, "timeout") {
		key = "client abandoned the statement (context deadline)"
	} else if i := strings.LastIndex(key, ": "); i >= 0 {
		key = "network: " + key[i+2:]
	}
	c.errs[key]++
}

// connect opens a connection through ddlguard, retrying while the server
// is away.
func (c *onceClient) connect(ctx context.Context) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		conn, err := pgx.Connect(cctx, c.dsn)
		cancel()
		if err == nil {
			c.conn = conn
			c.generation++
			return
		}
		c.note(err)
		if time.Now().After(deadline) {
			c.t.Fatalf("could not reconnect through ddlguard for 30s: %v", err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func (c *onceClient) drop() {
	if c.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c.conn.Close(ctx)
		cancel()
		c.conn = nil
	}
}

// landed waits until backend pid has exited and returns how many rows with
// id the table holds.
func (c *onceClient) landed(ctx context.Context, id int, pid uint32) int {
	deadline := time.Now().Add(20 * time.Second)
	for {
		if time.Now().After(deadline) {
			c.t.Fatalf("could not settle statement %d (backend %d) within 20s", id, pid)
		}
		if c.conn == nil {
			c.connect(ctx)
		}
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var gone bool
		var n int
		err := c.conn.QueryRow(qctx, `SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND pid <> pg_backend_pid()),
			(SELECT count(*) FROM once_seq WHERE id = $2)`, int64(pid), id).Scan(&gone, &n)
		cancel()
		if err != nil {
			c.note(err)
			c.drop()
			continue
		}
		if gone {
			return n
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestExactlyOnceAcrossRestarts(t *testing.T) {
	pg := startThrowawayCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	admin, err := pg.Connect(ctx, pgcluster.Superuser, "postgres", "sslmode", "disable")
	if err != nil {
		t.Fatal(err)
	}
	// No key: a duplicate would show as a second row, not as an error.
	if err := execEach(ctx, admin, "CREATE TABLE once_seq (id int NOT NULL, generation int NOT NULL)",
		"GRANT ALL ON once_seq TO PUBLIC"); err != nil {
		t.Fatal(err)
	}
	admin.Close(ctx)
	g, err := guard.New(guard.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	p := startProxyFor(t, pg, func(c *proxy.Config) { c.Guard = g })

	// The restarter: a fast restart each time the client passes a mark.
	marks := make(chan int, onceRestarts)
	restarted := make(chan time.Duration, onceRestarts)
	go func() {
		for range marks {
			begin := time.Now()
			if err := pg.Restart("fast"); err != nil {
				t.Errorf("restart: %v", err)
			}
			restarted <- time.Since(begin)
		}
		close(restarted)
	}()

	c := &onceClient{t: t, dsn: proxiedDSN(pg, p, pgcluster.RoleTrust, "postgres", "application_name", "exactly-once"),
		begin: time.Now(), errs: map[string]int{}}
	rng := rand.New(rand.NewPCG(2026, 10))
	acked := make([]bool, onceStatements+1)
	found := make([]bool, onceStatements+1)
	nextMark := onceStatements / (onceRestarts + 1)
	for id := 1; id <= onceStatements; id++ {
		if id == nextMark && nextMark < onceStatements {
			marks <- id
			nextMark += onceStatements / (onceRestarts + 1)
		}
		for {
			if c.conn == nil {
				c.connect(ctx)
			}
			sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
			switch r := rng.IntN(200); {
			case r == 0: // hang up between statements
				c.cleanDrops++
				c.drop()
				scancel()
				continue
			case r <= 2: // give up on the statement while it is in flight
				// (before it is sent, while it runs, or after it
				// committed but before the answer arrives)
				c.abandoned++
				scancel()
				sctx, scancel = context.WithTimeout(ctx, time.Duration(10+rng.IntN(300))*time.Microsecond)
			}
			pid := c.conn.PgConn().PID()
			_, err := c.conn.Exec(sctx, "INSERT INTO once_seq (id, generation) VALUES ($1, $2)", id, c.generation)
			scancel()
			if err == nil {
				acked[id] = true
				c.acked++
				break
			}
			// No acknowledgement: did it land?
			c.note(err)
			c.drop()
			if n := c.landed(ctx, id, pid); n > 0 {
				if n > 1 {
					t.Fatalf("statement %d landed %d times", id, n)
				}
				found[id] = true
				c.ambiguousFound++
				break
			}
			c.resent++
		}
	}
	close(marks)
	var restartTimes []string
	for d := range restarted {
		restartTimes = append(restartTimes, d.Round(time.Millisecond).String())
	}
	c.drop()
	took := time.Since(c.begin)

	// The verdict, read directly from the server.
	check, err := pg.Connect(ctx, pgcluster.Superuser, "postgres", "sslmode", "disable")
	if err != nil {
		t.Fatal(err)
	}
	defer check.Close(ctx)
	rows, err := check.Query(ctx, "SELECT id, count(*) FROM once_seq GROUP BY id")
	if err != nil {
		t.Fatal(err)
	}
	counts := map[int]int{}
	for rows.Next() {
		var id, n int
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		counts[id] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	total := 0
	for id, n := range counts {
		total += n
		switch {
		case id < 1 || id > onceStatements:
			t.Errorf("row %d was never sent", id)
		case n > 1:
			t.Errorf("row %d is there %d times", id, n)
		}
	}
	for id := 1; id <= onceStatements; id++ {
		if (acked[id] || found[id]) && counts[id] != 1 {
			t.Errorf("statement %d (acknowledged %v, found after an error %v) has %d rows", id, acked[id], found[id], counts[id])
		}
		if !acked[id] && !found[id] {
			t.Errorf("statement %d never settled", id)
		}
	}

	var errLines []string
	for k, n := range c.errs {
		errLines = append(errLines, fmt.Sprintf("%5d  %s", n, k))
	}
	sort.Strings(errLines)
	t.Logf("%d statements in %s through one ddlguard; %d restarts (%s); %d connections opened (%d reconnects), %d clean drops, %d statements abandoned in flight",
		onceStatements, took.Round(time.Millisecond), len(restartTimes), strings.Join(restartTimes, ", "),
		c.generation, c.generation-1, c.cleanDrops, c.abandoned)
	t.Logf("acknowledged %d, ambiguous and found %d, sent again %d; table: %d rows, %d distinct ids", c.acked, c.ambiguousFound, c.resent, total, len(counts))
	t.Logf("errors seen:\n%s", strings.Join(errLines, "\n"))
	if len(restartTimes) != onceRestarts {
		t.Errorf("%d restarts, want %d", len(restartTimes), onceRestarts)
	}
	if c.acked+c.ambiguousFound != onceStatements || total != onceStatements {
		t.Errorf("acknowledged %d + found %d, table %d rows; want %d", c.acked, c.ambiguousFound, total, onceStatements)
	}
	if c.resent+c.ambiguousFound == 0 {
		t.Error("no statement was ever in doubt: the faults did not hit")
	}
	waitProxyIdle(t, p)
}
