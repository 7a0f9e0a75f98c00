package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ddlguard/ddlguard/e2e/pgcluster"
	"github.com/ddlguard/ddlguard/guard"
	"github.com/ddlguard/ddlguard/proxy"
)

// TestMigrationHistories applies every project of the migration-history
// corpus (historycorpus_test.go) file by file to new databases, directly
// and through ddlguard with no configuration, with both runners
// (historyrun_test.go), on PostgreSQL 15 and 18, in three runs: on an empty
// database, with a few hundred rows per table, and with one table over
// small_table_bytes.
//
//   - Empty and with rows, every file has the outcome it has directly
//     (all apply), ddlguard refuses and rewrites nothing, and the two
//     databases end identical (schema and row counts).
//   - With the large table, ddlguard refuses or rewrites exactly what
//     testdata/migrations/large.golden lists, the same for both runners and
//     both servers; a refused file leaves the database as it found it, and
//     is then applied directly (as the operator would, after review) so the
//     history goes on; the databases end identical.
//
// The wall time of each run, direct and through ddlguard, and the rules
// that fired are logged (go test -v; make bench-migrate measures the cost).
func TestMigrationHistories(t *testing.T) {
	projects := loadHistories(t)
	files := 0
	for _, p := range projects {
		for _, f := range p.files {
			if f.data == dataSchema {
				files++
			}
		}
	}
	if files < 150 {
		t.Fatalf("the corpus has %d migration files, want at least 150", files)
	}
	golden := readLargeGolden(t)
	for _, server := range []string{"pg15", "pg18"} {
		t.Run(server, func(t *testing.T) {
			c := cluster
			if server == "pg18" {
				c = startPG18Cluster(t)
			}
			for _, kind := range historyRunnerKinds {
				for _, run := range historyRuns {
					t.Run(kind+"/"+run.name, func(t *testing.T) {
						sum := &historySummary{rules: map[string]int{}}
						t.Run("projects", func(t *testing.T) {
							for _, p := range projects {
								t.Run(p.name, func(t *testing.T) {
									t.Parallel()
									applyHistory(t, c, p, kind, run, sum)
								})
							}
						})
						t.Logf("%s %s %s: %d files, direct %s, through ddlguard %s (%.2fx); rules: %s",
							server, kind, run.name, sum.files, sum.direct.Round(time.Millisecond),
							sum.guarded.Round(time.Millisecond), float64(sum.guarded)/float64(sum.direct), sum.ruleCounts())
						if t.Failed() {
							return
						}
						got := sum.refusedOrRewritten()
						want := []string(nil)
						if run.data == dataLarge {
							want = golden
						}
						if !slices.Equal(got, want) {
							t.Errorf("%s %s %s: refused or rewritten through ddlguard:\n%s\nwant (%s):\n%s\ndiff:\n%s",
								server, kind, run.name, strings.Join(got, "\n"), largeGolden, strings.Join(want, "\n"),
								strings.Join(setDiff(want, got), "\n"))
						}
					})
				}
			}
		})
	}
}

// largeGolden lists "project/file: rule action" for every statement the
// large run refuses or rewrites (action as carried out).
const largeGolden = historyDir + "/large.golden"

func readLargeGolden(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile(largeGolden)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for l := range strings.SplitSeq(string(raw), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return out
}

// historySummary gathers what the projects of one run did.
type historySummary struct {
	mu              sync.Mutex
	files           int
	direct, guarded time.Duration
	rules           map[string]int // "rule action" -> count
	changed         []string       // "project/file: rule action", refused or rewritten
}

func (s *historySummary) add(files int, direct, guarded time.Duration, rules map[string]int, changed []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files += files
	s.direct += direct
	s.guarded += guarded
	for k, n := range rules {
		s.rules[k] += n
	}
	s.changed = append(s.changed, changed...)
}

func (s *historySummary) ruleCounts() string {
	if len(s.rules) == 0 {
		return "none"
	}
	var out []string
	for _, k := range slices.Sorted(maps.Keys(s.rules)) {
		out = append(out, k+"="+strconv.Itoa(s.rules[k]))
	}
	return strings.Join(out, ", ")
}

func (s *historySummary) refusedOrRewritten() []string {
	out := slices.Clone(s.changed)
	slices.Sort(out)
	return out
}

// applyHistory applies project p's files of run to two new databases on c,
// one directly and one through a ddlguard of its own, and compares them.
func applyHistory(t *testing.T, c *pgcluster.Cluster, p historyProject, kind string, run historyRun, sum *historySummary) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	base := "hist_" + p.name + "_" + kind + "_" + run.name
	directDB, guardedDB := base+"_direct", base+"_guarded"
	for _, db := range []string{directDB, guardedDB} {
		historyDatabase(t, c, db)
	}
	px := startGuardProxy(t, guard.DefaultConfig(), func(cfg *proxy.Config) { cfg.Upstream = c.Addr() })
	psql := cluster.Psql()
	directDSN := func(db string) string { return c.DSN(pgcluster.RoleSCRAM, db, "sslmode", "disable") }
	direct := openHistoryRunner(t, kind, psql, directDSN(directDB))
	defer direct.close()
	guarded := openHistoryRunner(t, kind, psql, c.DSN(pgcluster.RoleSCRAM, guardedDB,
		"host", px.Host, "port", strconv.Itoa(px.Port), "sslmode", "disable"))
	defer guarded.close()
	var bypass historyRunner // the operator's direct connection to guardedDB
	defer func() {
		if bypass != nil {
			bypass.close()
		}
	}()

	var (
		files           int
		tDirect, tGuard time.Duration
		logAt           int
		rules           = map[string]int{}
		changed         []string
	)
	for _, f := range p.files {
		if !f.appliesIn(run) {
			continue
		}
		files++
		begin := time.Now()
		got := guarded.apply(ctx, f)
		tGuard += time.Since(begin)
		logs := px.Logs()
		for _, fd := range historyFindings(logs[logAt:]) {
			rules[fd.key()]++
			if fd.changes() {
				changed = append(changed, p.name+"/"+f.name+": "+fd.key())
			}
		}
		logAt = len(logs)

		refused := strings.HasPrefix(got, "ZG")
		if refused {
			if run.data != dataLarge {
				t.Fatalf("%s: refused through ddlguard: %s", f.name, got)
			}
			// Nothing of a refused file may remain: the guarded database
			// must still be what the direct one is before this file.
			before, err := historySchema(ctx, c, directDB)
			if err != nil {
				t.Fatal(err)
			}
			after, err := historySchema(ctx, c, guardedDB)
			if err != nil {
				t.Fatal(err)
			}
			if d := setDiff(before, after); len(d) > 0 {
				t.Fatalf("%s: refused (%s) but left changes behind:\n%s", f.name, got, strings.Join(d, "\n"))
			}
			if bypass == nil {
				bypass = openHistoryRunner(t, kind, psql, directDSN(guardedDB))
			}
			if out := bypass.apply(ctx, f); out != "ok" {
				t.Fatalf("%s: refused through ddlguard, then directly: %s", f.name, out)
			}
		}

		begin = time.Now()
		want := direct.apply(ctx, f)
		tDirect += time.Since(begin)
		if want != "ok" {
			t.Fatalf("%s fails directly (the corpus must apply): %s", f.name, want)
		}
		if !refused && got != want {
			t.Fatalf("%s: directly %s, through ddlguard %s", f.name, want, got)
		}
	}

	a, err := historySchema(ctx, c, directDB)
	if err != nil {
		t.Fatal(err)
	}
	b, err := historySchema(ctx, c, guardedDB)
	if err != nil {
		t.Fatal(err)
	}
	if d := setDiff(a, b); len(d) > 0 {
		t.Errorf("the database migrated through ddlguard differs from the one migrated directly:\n%s", strings.Join(d, "\n"))
	}
	sum.add(files, tDirect, tGuard, rules, changed)
}

// historyDatabase recreates db on c, owned by pgcluster.RoleSCRAM, and drops
// it when the test ends.
func historyDatabase(t testing.TB, c *pgcluster.Cluster, db string) {
	t.Helper()
	admin := func(sqls ...string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, c.DSN(pgcluster.Superuser, "postgres", "sslmode", "disable"))
		if err != nil {
			return err
		}
		defer conn.Close(context.Background())
		return execEach(ctx, conn, sqls...)
	}
	ident := pgx.Identifier{db}.Sanitize()
	if err := admin("DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)",
		"CREATE DATABASE "+ident+" OWNER "+pgcluster.RoleSCRAM); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := admin("DROP DATABASE IF EXISTS " + ident + " WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", db, err)
		}
	})
}

// historyDecision is one audit-log decision.
type historyDecision struct {
	Msg        string `json:"msg"`
	Rule       string `json:"rule"`
	Action     string `json:"action"`
	ExecutedAs string `json:"executed_as"`
	Warnings   string `json:"warnings"`
}

// historyFinding is one rule that fired: "rule action", the action carried
// out ("warn" for a warning).
type historyFinding struct{ rule, action string }

func (f historyFinding) key() string { return f.rule + " " + f.action }

// changes: ddlguard refused the statement or ran something else in its place.
func (f historyFinding) changes() bool { return f.action == "reject" || f.action == "rewrite" }

// historyFindings reads the rules that fired from ddlguard's JSON log lines.
func historyFindings(logs string) []historyFinding {
	var out []historyFinding
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		line := sc.Bytes()
		if !strings.Contains(string(line), `"msg":"decision"`) {
			continue
		}
		var d historyDecision
		if err := json.Unmarshal(line, &d); err != nil {
			panic(fmt.Sprintf("ddlguard log line is not JSON: %v: %s", err, line))
		}
		if d.Rule != "" {
			act := d.Action
			if d.ExecutedAs != "" {
				act = d.ExecutedAs
			}
			out = append(out, historyFinding{d.Rule, act})
		}
		if d.Warnings != "" {
			for w := range strings.SplitSeq(d.Warnings, ",") {
				out = append(out, historyFinding{w, "warn"})
			}
		}
	}
	return out
}
