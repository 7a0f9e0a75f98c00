package e2e

// Lock facts: the guard's knowledge of which locks a statement takes, checked
// against real servers.
//
// Every entry of testdata/lockfacts.sql (the corpus; its header documents the
// markers) runs on fixture tables in a database of its own, on the package's
// cluster and on a PostgreSQL 18, on a direct connection (not through
// ddlguard). What is observed per entry is an lfFact:
//
//   - locks: in a fresh transaction, the relation locks this backend holds
//     after the statement that it did not hold before it (pg_locks, by
//     (relation, mode)), strongest mode per relation. Catalog relations
//     (oid < 16384), toast and temporary relations, and relations the
//     statement created are left out. Locks the server releases before the
//     end of the statement are not seen (it rarely does so on user
//     relations).
//   - storage: relations whose relfilenode changed (rewrite, truncate,
//     REINDEX, new storage of any kind), and relations dropped.
//   - reads: rows the statement read from each relation
//     (pg_stat_get_xact_tuples_returned + _fetched, parallel workers
//     disabled), so that a validation scan is visible.
//
// Then everything rolls back. Entries that cannot run in a transaction block
// (no_transaction) run in autocommit while another session holds SHARE
// UPDATE EXCLUSIVE on every fixture table: the first table lock of at least
// that strength the statement asks for is seen waiting in pg_locks (with
// whatever it held already); relfilenode changes are read after it finished.
//
// The guard's prediction (guard.PredictLocks) is compared with the
// observation by lfCompare; see there for the matching rules.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ddlguard/ddlguard/e2e/pgcluster"
	"github.com/ddlguard/ddlguard/guard"
)

const (
	lfCorpusFile = "testdata/lockfacts.sql"
	lfDatabase   = "lockfacts"
	// lfMinEntries is the least the corpus may hold.
	lfMinEntries = 70
	// lfOutEnv names a directory to write the observed facts to, as
	// lockfacts-pg<major>.json, for building the guard's lock table.
	lfOutEnv = "LOCKFACTS_OUT"
)

// lfPredict is the guard's lock prediction under test.
var lfPredict = guard.PredictLocks

// lfFixtures creates the fixture relations in database lockfacts. lf_main
// has 100k rows; VACUUM ANALYZE runs after (outside this script) so that
// reltuples is right and autovacuum has nothing to do.
const lfFixtures = `
CREATE SCHEMA lf_other;
CREATE TYPE lf_mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN lf_posint AS int;
CREATE SEQUENCE lf_seq;
CREATE FUNCTION lf_trg_fn() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;

-- Referenced by lf_child; lf_main gets foreign keys to it in the corpus.
CREATE TABLE lf_ref (id int PRIMARY KEY, name text NOT NULL);
INSERT INTO lf_ref SELECT i, 'ref ' || i FROM generate_series(1, 1000) i;

CREATE TABLE lf_main (
	id int PRIMARY KEY,
	a int,
	b varchar(10),
	c varchar(20),
	d text,
	e numeric(10,2),
	f timestamp,
	g int NOT NULL,
	h int,
	CONSTRAINT lf_main_h_not_null CHECK (h IS NOT NULL)
);
INSERT INTO lf_main
SELECT i, i % 1000 + 1, left(md5(i::text), 8), left(md5(i::text), 10), md5(i::text),
       (i % 100000) / 100.0, timestamp '2024-01-01' + i * interval '1 minute', i, i
FROM generate_series(1, 100000) i;
CREATE INDEX lf_main_a_idx ON lf_main (a);
CREATE INDEX lf_main_b_idx ON lf_main (b);
CREATE UNIQUE INDEX lf_main_g_uidx ON lf_main (g);
ALTER TABLE lf_main ADD CONSTRAINT lf_main_a_positive CHECK (a > 0) NOT VALID;
CREATE TRIGGER lf_main_trg BEFORE UPDATE ON lf_main FOR EACH ROW EXECUTE FUNCTION lf_trg_fn();

CREATE TABLE lf_child (id int PRIMARY KEY, ref_id int REFERENCES lf_ref (id), ref2_id int);
INSERT INTO lf_child SELECT i, i % 1000 + 1, i % 1000 + 1 FROM generate_series(1, 10000) i;
ALTER TABLE lf_child ADD CONSTRAINT lf_child_ref2_fkey FOREIGN KEY (ref2_id) REFERENCES lf_ref (id) NOT VALID;

CREATE TABLE lf_nopk (id int, v text);
INSERT INTO lf_nopk SELECT i, 'v' || i FROM generate_series(1, 10000) i;
CREATE UNIQUE INDEX lf_nopk_id_uidx ON lf_nopk (id);

CREATE TABLE lf_empty (id int PRIMARY KEY, v text);

CREATE TABLE lf_drop (id int PRIMARY KEY, v text);
INSERT INTO lf_drop SELECT i, 'v' || i FROM generate_series(1, 1000) i;

CREATE UNLOGGED TABLE lf_unlogged (id int PRIMARY KEY, v text);
INSERT INTO lf_unlogged SELECT i, 'v' || i FROM generate_series(1, 10000) i;

CREATE TABLE lf_gen (id int PRIMARY KEY, x int, y int GENERATED ALWAYS AS (x * 2) STORED);
INSERT INTO lf_gen (id, x) SELECT i, i FROM generate_series(1, 10000) i;

CREATE TABLE lf_part (id int NOT NULL, k int NOT NULL, v text) PARTITION BY RANGE (k);
CREATE TABLE lf_part_1 PARTITION OF lf_part FOR VALUES FROM (0) TO (1000);
INSERT INTO lf_part SELECT i, i % 1000, 'p' || i FROM generate_series(1, 20000) i;
-- To attach: without a constraint implying the bound, and with one.
CREATE TABLE lf_part_2 (id int NOT NULL, k int NOT NULL, v text);
INSERT INTO lf_part_2 SELECT i, 1000 + i % 1000, 'q' || i FROM generate_series(1, 20000) i;
CREATE TABLE lf_part_3 (id int NOT NULL, k int NOT NULL, v text,
	CONSTRAINT lf_part_3_k_range CHECK (k >= 2000 AND k < 3000));
INSERT INTO lf_part_3 SELECT i, 2000 + i % 1000, 'r' || i FROM generate_series(1, 20000) i;
-- An index on the parent only and one on its partition, to attach.
CREATE TABLE lf_ipart (id int NOT NULL, k int NOT NULL) PARTITION BY RANGE (k);
CREATE TABLE lf_ipart_1 PARTITION OF lf_ipart FOR VALUES FROM (0) TO (1000);
INSERT INTO lf_ipart SELECT i, i % 1000 FROM generate_series(1, 10000) i;
CREATE INDEX lf_ipart_id_idx ON ONLY lf_ipart (id);
CREATE INDEX lf_ipart_1_id_idx ON lf_ipart_1 (id);

CREATE TABLE lf_inh_parent (id int NOT NULL, v text);
CREATE TABLE lf_inh_child () INHERITS (lf_inh_parent);
INSERT INTO lf_inh_child SELECT i, 'c' || i FROM generate_series(1, 10000) i;
CREATE TABLE lf_inh_other (id int NOT NULL, v text);
INSERT INTO lf_inh_other SELECT i, 'o' || i FROM generate_series(1, 10000) i;

CREATE MATERIALIZED VIEW lf_mv AS SELECT id, name FROM lf_ref;
CREATE UNIQUE INDEX lf_mv_id_uidx ON lf_mv (id);

CREATE TABLE lf_dom (id int PRIMARY KEY, qty lf_posint, mood lf_mood);
INSERT INTO lf_dom SELECT i, i, 'ok' FROM generate_series(1, 10000) i;
`

// lfEntry is one statement of the corpus.
type lfEntry struct {
	Line          int      `json:"line"` // of the statement's first line
	SQL           string   `json:"sql"`
	Notes         []string `json:"notes,omitempty"`
	Setup         []string `json:"setup,omitempty"`
	Cleanup       []string `json:"cleanup,omitempty"`
	MinVersion    int      `json:"min_version,omitempty"`
	MaxVersion    int      `json:"max_version,omitempty"`
	ExpectError   bool     `json:"expect_error,omitempty"`
	ErrorText     string   `json:"error_text,omitempty"`
	NoTransaction bool     `json:"no_transaction,omitempty"`
	SkipObserve   bool     `json:"skip_observe,omitempty"`
	CatalogLocks  []string `json:"catalog_locks,omitempty"`
	CatalogWork   bool     `json:"catalog_work,omitempty"`
}

// lfParseCorpus reads the corpus: entries separated by "-- next" lines.
func lfParseCorpus(path string) ([]lfEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var (
		entries []lfEntry
		cur     lfEntry
		sqlBuf  []string
		lineNo  int
		started bool // past the first "-- next" (before it: the header)
	)
	flush := func() error {
		sql := strings.TrimSpace(strings.Join(sqlBuf, "\n"))
		sqlBuf = nil
		if !started {
			if sql != "" {
				return fmt.Errorf("%s: SQL before the first -- next", path)
			}
			return nil
		}
		if sql == "" {
			return fmt.Errorf("%s:%d: entry without a statement", path, cur.Line)
		}
		cur.SQL = sql
		entries = append(entries, cur)
		return nil
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lineNo++
		line := strings.TrimRight(sc.Text(), " \t")
		trimmed := strings.TrimSpace(line)
		if trimmed == "-- next" {
			if err := flush(); err != nil {
				return nil, err
			}
			started = true
			cur = lfEntry{Line: lineNo + 1}
			continue
		}
		if !started {
			if trimmed != "" && !strings.HasPrefix(trimmed, "--") {
				sqlBuf = append(sqlBuf, line)
			}
			continue
		}
		if rest, ok := strings.CutPrefix(trimmed, "--"); ok {
			rest = strings.TrimSpace(rest)
			key, val, hasVal := strings.Cut(rest, ":")
			key, val = strings.TrimSpace(key), strings.TrimSpace(val)
			bad := func(msg string) error { return fmt.Errorf("%s:%d: %s: %s", path, lineNo, msg, line) }
			switch key {
			case "min_version", "max_version":
				n, err := strconv.Atoi(val)
				if err != nil || !hasVal {
					return nil, bad("want a major version number")
				}
				if key == "min_version" {
					cur.MinVersion = n
				} else {
					cur.MaxVersion = n
				}
			case "expect_error":
				cur.ExpectError, cur.ErrorText = true, val
			case "no_transaction":
				cur.NoTransaction = true
			case "skip_observe":
				cur.SkipObserve = true
			case "setup", "cleanup":
				if val == "" {
					return nil, bad("empty " + key)
				}
				if key == "setup" {
					cur.Setup = append(cur.Setup, val)
				} else {
					cur.Cleanup = append(cur.Cleanup, val)
				}
			case "catalog_work":
				cur.CatalogWork = true
			case "catalog_locks":
				for r := range strings.SplitSeq(val, ",") {
					if r = strings.TrimSpace(r); r != "" {
						cur.CatalogLocks = append(cur.CatalogLocks, r)
					}
				}
			default:
				if rest != "" && !strings.HasPrefix(rest, "====") {
					cur.Notes = append(cur.Notes, rest)
				}
			}
			continue
		}
		if trimmed == "" && len(sqlBuf) == 0 {
			continue
		}
		if len(sqlBuf) == 0 {
			cur.Line = lineNo
		}
		sqlBuf = append(sqlBuf, line)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return entries, nil
}

// runsOn reports whether the entry applies to a server of major version v.
func (e *lfEntry) runsOn(v int) bool {
	return (e.MinVersion == 0 || v >= e.MinVersion) && (e.MaxVersion == 0 || v <= e.MaxVersion)
}

// lfRel is one row of the relation snapshot.
type lfRel struct {
	OID      uint32
	Schema   string
	Name     string
	Kind     string // pg_class.relkind
	Filenode uint32
	Owner    uint32  // index: its table; partition or inheritance child: its parent
	Tuples   float64 // pg_class.reltuples
	Read     int64   // rows read in this transaction so far
}

func (r *lfRel) isIndex() bool { return r.Kind == "i" || r.Kind == "I" }

// lfRelFact is what one statement did to one pre-existing relation.
type lfRelFact struct {
	Name     string         `json:"name"`
	Kind     string         `json:"kind"`
	Owner    string         `json:"owner,omitempty"`
	Mode     guard.LockMode `json:"-"`
	ModeName string         `json:"mode,omitempty"`
	Waiting  bool           `json:"waiting,omitempty"` // no_transaction: requested, not granted
	Storage  bool           `json:"new_storage,omitempty"`
	Dropped  bool           `json:"dropped,omitempty"`
	Read     int64          `json:"rows_read,omitempty"`
	Tuples   float64        `json:"reltuples"`
}

// scanned reports whether the statement read at least half the relation's
// rows.
func (r *lfRelFact) scanned() bool {
	return r.Tuples >= 1 && float64(r.Read) >= r.Tuples/2
}

// lfFact is the observation of one entry on one server.
type lfFact struct {
	Entry   *lfEntry                `json:"entry"`
	Skipped string                  `json:"skipped,omitempty"`
	Err     string                  `json:"error,omitempty"`
	Partial bool                    `json:"partial,omitempty"` // no_transaction observation
	Rels    map[string]*lfRelFact   `json:"relations,omitempty"`
	Created []string                `json:"created,omitempty"`
	Took    time.Duration           `json:"took_ns"`
	rels    map[string]*lfRel       // the pre-statement snapshot, by name
	byOID   map[uint32]*lfRel       // the same, by oid
	indexes map[string][]*lfRelFact // observed indexes by table name
}

// lfRun creates the fixtures on c, observes every entry, compares with the
// guard and logs the table.
func lfRun(t *testing.T, c *pgcluster.Cluster, entries []lfEntry) {
	begin := time.Now()
	major := c.Version()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	admin := connectDirect(t, c, pgcluster.Superuser, "postgres")
	// lf_ts is an in-place tablespace (a directory under pg_tblspc), for
	// SET TABLESPACE to move something for real. Tablespaces belong to the
	// cluster: drop what an earlier run (-count) left.
	for _, s := range []string{
		"DROP DATABASE IF EXISTS " + lfDatabase,
		"DROP TABLESPACE IF EXISTS lf_ts",
		"SET allow_in_place_tablespaces = on",
		"CREATE TABLESPACE lf_ts LOCATION ''",
		"CREATE DATABASE " + lfDatabase,
	} {
		if err := lfExec(ctx, admin, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	conn := lfConnect(t, ctx, c)
	if err := lfExec(ctx, conn, lfFixtures); err != nil {
		t.Fatalf("fixtures: %v", err)
	}
	if err := lfExec(ctx, conn, "VACUUM ANALYZE"); err != nil {
		t.Fatalf("VACUUM ANALYZE: %v", err)
	}
	t.Logf("PostgreSQL %d: fixtures in %s", major, time.Since(begin).Round(time.Millisecond))

	facts := make([]*lfFact, len(entries))
	for i := range entries {
		e := &entries[i]
		switch {
		case !e.runsOn(major):
			facts[i] = &lfFact{Entry: e, Skipped: fmt.Sprintf("not for PostgreSQL %d", major)}
		case e.SkipObserve:
			facts[i] = &lfFact{Entry: e, Skipped: "skip_observe"}
		case !e.NoTransaction:
			facts[i] = lfObserveTx(t, ctx, conn, e)
		}
	}
	// Outside a transaction: last, as they change the fixtures for good
	// (new relfilenodes; cleanup undoes the rest).
	var blocker, worker *pgx.Conn
	for i := range entries {
		if facts[i] != nil {
			continue
		}
		if blocker == nil {
			blocker, worker = lfConnect(t, ctx, c), lfConnect(t, ctx, c)
		}
		facts[i] = lfObserveBlocked(t, ctx, conn, blocker, worker, &entries[i])
	}
	observed := time.Since(begin)

	var mismatches []string
	var tbl strings.Builder
	tw := tabwriter.NewWriter(&tbl, 0, 0, 1, ' ', 0)
	fmt.Fprintln(tw, "line\tresult\tstatement\tpredicted\tobserved")
	for _, f := range facts {
		e := f.Entry
		pred, predErr := lfPredict(e.SQL, major)
		problems := append(lfCheckServer(f), lfCheckObserver(f)...)
		if f.Skipped == "" && f.Err == "" && !e.ExpectError {
			problems = append(problems, lfCompare(f, pred, predErr)...)
		}
		result := "OK"
		switch {
		case f.Skipped != "":
			result = "skip"
		case len(problems) > 0:
			result = "MISMATCH"
			for _, p := range problems {
				mismatches = append(mismatches, fmt.Sprintf("%s:%d %s\n    %s", lfCorpusFile, e.Line, lfShort(e.SQL, 200), p))
			}
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", e.Line, result, lfShort(e.SQL, 70), lfPredictedString(pred, predErr), lfObservedString(f))
	}
	tw.Flush()
	t.Logf("PostgreSQL %d, %d entries (observed in %s):\n%s", major, len(entries), observed.Round(time.Millisecond), tbl.String())

	if dir := os.Getenv(lfOutEnv); dir != "" {
		lfWriteFacts(t, dir, major, facts)
	}
	if len(mismatches) > 0 {
		t.Errorf("PostgreSQL %d: %d mismatches:\n%s", major, len(mismatches), strings.Join(mismatches, "\n"))
	}
}

// lfConnect is a superuser connection to the lockfacts database with the
// observation settings: no parallel workers (their reads would not be
// counted in this backend) and a lock timeout (nothing should wait).
func lfConnect(t *testing.T, ctx context.Context, c *pgcluster.Cluster) *pgx.Conn {
	t.Helper()
	conn := connectDirect(t, c, pgcluster.Superuser, lfDatabase)
	const settings = "SET max_parallel_maintenance_workers = 0; SET max_parallel_workers_per_gather = 0; SET lock_timeout = '20s'"
	if err := lfExec(ctx, conn, settings); err != nil {
		t.Fatalf("%s: %v", settings, err)
	}
	return conn
}

// lfExec runs sql (one or more statements) with the simple query protocol.
func lfExec(ctx context.Context, conn *pgx.Conn, sql string) error {
	_, err := conn.PgConn().Exec(ctx, sql).ReadAll()
	return err
}

// lfSnapshot lists the non-catalog, non-toast, non-temporary relations of
// the database with their storage and the rows this transaction has read.
func lfSnapshot(ctx context.Context, conn *pgx.Conn) (map[uint32]*lfRel, error) {
	const q = `
SELECT DISTINCT ON (c.oid) c.oid::int8, n.nspname, c.relname, c.relkind::text, c.relfilenode::int8,
       coalesce(i.indrelid, inh.inhparent, 0)::int8, c.reltuples::float8,
       (pg_stat_get_xact_tuples_returned(c.oid) + pg_stat_get_xact_tuples_fetched(c.oid))::int8
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_index i ON i.indexrelid = c.oid
LEFT JOIN pg_inherits inh ON inh.inhrelid = c.oid
WHERE c.oid >= 16384 AND n.nspname <> 'pg_toast' AND n.nspname NOT LIKE 'pg\_temp\_%' AND n.nspname NOT LIKE 'pg\_toast\_temp\_%'
ORDER BY c.oid, inh.inhseqno`
	rows, err := conn.Query(ctx, q)
	if err != nil {
		return nil, err
	}
	out := map[uint32]*lfRel{}
	for rows.Next() {
		var r lfRel
		var oid, filenode, owner int64
		if err := rows.Scan(&oid, &r.Schema, &r.Name, &r.Kind, &filenode, &owner, &r.Tuples, &r.Read); err != nil {
			return nil, err
		}
		r.OID, r.Filenode, r.Owner = uint32(oid), uint32(filenode), uint32(owner)
		out[r.OID] = &r
	}
	return out, rows.Err()
}

// lfLock is one row of pg_locks.
type lfLock struct {
	OID     uint32
	Mode    guard.LockMode
	Granted bool
	Type    string // locktype
}

// lfLocks reads pid's locks in the current database: relation locks, and
// (when all is set) any lock not granted.
func lfLocks(ctx context.Context, conn *pgx.Conn, pid uint32, all bool) ([]lfLock, error) {
	const q = `
SELECT coalesce(l.relation, 0)::int8, l.mode, l.granted, l.locktype
FROM pg_locks l
WHERE l.pid = $1 AND (
	(l.locktype = 'relation' AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()))
	OR ($2 AND NOT l.granted))`
	rows, err := conn.Query(ctx, q, int64(pid), all)
	if err != nil {
		return nil, err
	}
	var out []lfLock
	for rows.Next() {
		var oid int64
		var mode, typ string
		var granted bool
		if err := rows.Scan(&oid, &mode, &granted, &typ); err != nil {
			return nil, err
		}
		m, _ := guard.ParseLockMode(mode)
		out = append(out, lfLock{OID: uint32(oid), Mode: m, Granted: granted, Type: typ})
	}
	return out, rows.Err()
}

// lfObserveTx observes one entry in a transaction that is rolled back.
func lfObserveTx(t *testing.T, ctx context.Context, conn *pgx.Conn, e *lfEntry) *lfFact {
	t.Helper()
	f := &lfFact{Entry: e}
	if err := lfExec(ctx, conn, "BEGIN"); err != nil {
		t.Fatalf("BEGIN: %v", err)
	}
	defer func() {
		if err := lfExec(ctx, conn, "ROLLBACK"); err != nil {
			t.Fatalf("ROLLBACK after %s: %v", e.SQL, err)
		}
	}()
	for _, s := range e.Setup {
		if err := lfExec(ctx, conn, s); err != nil {
			f.Err = fmt.Sprintf("setup %q: %v", s, err)
			return f
		}
	}
	pid := conn.PgConn().PID()
	pre, err := lfSnapshot(ctx, conn)
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	preLocks, err := lfLocks(ctx, conn, pid, false)
	if err != nil {
		t.Fatalf("pg_locks: %v", err)
	}
	start := time.Now()
	err = lfExec(ctx, conn, e.SQL)
	f.Took = time.Since(start)
	if err != nil {
		f.Err = err.Error()
		return f
	}
	post, err := lfSnapshot(ctx, conn)
	if err != nil {
		t.Fatalf("snapshot after %s: %v", e.SQL, err)
	}
	postLocks, err := lfLocks(ctx, conn, pid, false)
	if err != nil {
		t.Fatalf("pg_locks after %s: %v", e.SQL, err)
	}
	held := map[lfLock]bool{}
	for _, l := range preLocks {
		held[l] = true
	}
	var taken []lfLock
	for _, l := range postLocks {
		if !held[l] {
			taken = append(taken, l)
		}
	}
	f.build(pre, post, taken)
	return f
}

// lfObserveBlocked observes a no_transaction entry: the statement runs on
// worker while blocker holds SHARE UPDATE EXCLUSIVE on every fixture table;
// watcher reads worker's locks until one is waiting, then blocker lets go.
func lfObserveBlocked(t *testing.T, ctx context.Context, watcher, blocker, worker *pgx.Conn, e *lfEntry) *lfFact {
	t.Helper()
	f := &lfFact{Entry: e, Partial: true}
	for _, s := range e.Setup {
		if err := lfExec(ctx, worker, s); err != nil {
			f.Err = fmt.Sprintf("setup %q: %v", s, err)
			return f
		}
	}
	pre, err := lfSnapshot(ctx, watcher)
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	var tables []string
	for _, r := range pre {
		if r.Kind == "r" || r.Kind == "p" {
			tables = append(tables, pgx.Identifier{r.Schema, r.Name}.Sanitize())
		}
	}
	slices.Sort(tables)
	if err := lfExec(ctx, blocker, "BEGIN; LOCK TABLE "+strings.Join(tables, ", ")+" IN SHARE UPDATE EXCLUSIVE MODE"); err != nil {
		t.Fatalf("blocker: %v", err)
	}
	released := false
	release := func() {
		if !released {
			released = true
			if err := lfExec(ctx, blocker, "ROLLBACK"); err != nil {
				t.Fatalf("blocker ROLLBACK: %v", err)
			}
		}
	}
	defer release()

	pid := worker.PgConn().PID()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- lfExec(ctx, worker, e.SQL) }()
	var seen []lfLock
	var stmtErr error
	finished := false
	deadline := time.Now().Add(10 * time.Second)
poll:
	for {
		select {
		case stmtErr = <-done:
			finished = true
			break poll
		default:
		}
		locks, err := lfLocks(ctx, watcher, pid, true)
		if err != nil {
			t.Fatalf("pg_locks of %d: %v", pid, err)
		}
		for _, l := range locks {
			if !l.Granted {
				seen = locks
				break poll
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s neither finished nor waited for a lock in 10s", e.SQL)
		}
		time.Sleep(2 * time.Millisecond)
	}
	release()
	if !finished {
		stmtErr = <-done
	}
	f.Took = time.Since(start)
	if stmtErr != nil {
		f.Err = stmtErr.Error()
	}
	post, err := lfSnapshot(ctx, watcher)
	if err != nil {
		t.Fatalf("snapshot after %s: %v", e.SQL, err)
	}
	for _, s := range e.Cleanup {
		if err := lfExec(ctx, worker, s); err != nil {
			t.Fatalf("cleanup %q after %s: %v", s, e.SQL, err)
		}
	}
	if f.Err == "" {
		f.build(pre, post, seen)
	}
	return f
}

// build fills in the fact from the snapshots before and after the statement
// and the locks it took (or, Partial, holds and waits for).
func (f *lfFact) build(pre, post map[uint32]*lfRel, locks []lfLock) {
	f.Rels = map[string]*lfRelFact{}
	f.rels = map[string]*lfRel{}
	f.byOID = pre
	f.indexes = map[string][]*lfRelFact{}
	for _, r := range pre {
		f.rels[r.Name] = r
	}
	rel := func(r *lfRel) *lfRelFact {
		rf := f.Rels[r.Name]
		if rf == nil {
			rf = &lfRelFact{Name: r.Name, Kind: r.Kind, Tuples: r.Tuples}
			if o := pre[r.Owner]; o != nil {
				rf.Owner = o.Name
			}
			f.Rels[r.Name] = rf
		}
		return rf
	}
	for _, l := range locks {
		r := pre[l.OID]
		if r == nil || l.Type != "relation" {
			continue // created by the statement, toast, temporary
		}
		rf := rel(r)
		if !l.Granted {
			rf.Waiting = true
		}
		if l.Mode > rf.Mode {
			rf.Mode = l.Mode
		}
	}
	postByName := map[string]*lfRel{}
	for _, p := range post {
		postByName[p.Schema+"."+p.Name] = p
	}
	replaced := map[uint32]bool{}
	for oid, r := range pre {
		p := post[oid]
		if p == nil {
			// A new relation of the same name replaced it: REINDEX
			// CONCURRENTLY, or ALTER COLUMN TYPE recreating an index (which
			// keeps the old storage when the index stays valid).
			if q := postByName[r.Schema+"."+r.Name]; q != nil && pre[q.OID] == nil {
				rel(r).Storage = q.Filenode != r.Filenode
				replaced[q.OID] = true
			} else {
				rel(r).Dropped = true
			}
			continue
		}
		if r.Filenode != 0 && p.Filenode != r.Filenode {
			rel(r).Storage = true
		}
		if d := p.Read - r.Read; d > 0 {
			rel(r).Read = d
		}
	}
	for oid, p := range post {
		if pre[oid] == nil && !replaced[oid] {
			f.Created = append(f.Created, p.Name+"("+p.Kind+")")
		}
	}
	slices.Sort(f.Created)
	for _, rf := range f.Rels {
		rf.ModeName = rf.Mode.String()
		if r := f.rels[rf.Name]; r != nil && r.isIndex() && rf.Owner != "" {
			f.indexes[rf.Owner] = append(f.indexes[rf.Owner], rf)
		}
	}
}

// effective is the mode the statement in effect holds on a relation: its
// own, or for a table, the strongest on any of its indexes, since every
// query locks all indexes of the tables it plans with (the PostgreSQL docs
// on REINDEX: an ACCESS EXCLUSIVE index lock blocks "virtually any queries"
// on the table).
func (f *lfFact) effective(name string) guard.LockMode {
	m := guard.NoLock
	if rf := f.Rels[name]; rf != nil {
		m = rf.Mode
	}
	for _, ix := range f.indexes[name] {
		m = max(m, ix.Mode)
	}
	return m
}

// readOf is how many rows the statement read from a table, directly or
// through one of its indexes (an index-only scan reads no heap rows).
func (f *lfFact) readOf(name string) int64 {
	var n int64
	if rf := f.Rels[name]; rf != nil {
		n = rf.Read
	}
	for _, ix := range f.indexes[name] {
		n = max(n, ix.Read)
	}
	return n
}

// lfCheckServer reports corpus problems independent of the guard: an
// unexpected server error, or no error where one was expected.
func lfCheckServer(f *lfFact) []string {
	e := f.Entry
	if f.Skipped != "" {
		return nil
	}
	switch {
	case e.ExpectError && f.Err == "":
		return []string{"expected the server to reject it, it did not"}
	case e.ExpectError && !strings.Contains(f.Err, e.ErrorText):
		return []string{fmt.Sprintf("server error %q does not contain %q", f.Err, e.ErrorText)}
	case !e.ExpectError && f.Err != "":
		return []string{"server error: " + f.Err}
	}
	return nil
}

// lfLockTable matches the corpus's LOCK TABLE entries on lf_main.
var lfLockTable = regexp.MustCompile(`^LOCK TABLE lf_main IN ([A-Z ]+) MODE;$`)

// lfCheckObserver checks the observation itself where the answer is certain,
// so that a broken observer cannot pass for a guard that agrees with it:
// LOCK TABLE holds exactly the mode asked for, TRUNCATE gives new storage.
func lfCheckObserver(f *lfFact) []string {
	if f.Skipped != "" || f.Err != "" {
		return nil
	}
	main := f.Rels["lf_main"]
	if main == nil {
		main = &lfRelFact{}
	}
	if m := lfLockTable.FindStringSubmatch(f.Entry.SQL); m != nil {
		want, _ := guard.ParseLockMode(m[1])
		if main.Mode != want {
			return []string{fmt.Sprintf("observer: LOCK TABLE in %s mode seen as %s", want, main.Mode)}
		}
	}
	if f.Entry.SQL == "TRUNCATE lf_main;" && !main.Storage {
		return []string{"observer: TRUNCATE lf_main gave it no new relfilenode"}
	}
	return nil
}

// lfCompare checks the guard's prediction against an observation without
// error. The rules:
//
//  1. Names: a predicted relation is matched by its name without schema
//     (pre-statement names: RENAME matches the old name). Created ones are
//     not checked; one naming no pre-existing relation is a mismatch.
//  2. Modes: a predicted index must have exactly the observed mode. A
//     predicted table (or view, sequence, materialized view) must have
//     exactly its effective mode: the strongest of its own and its indexes'
//     (see effective), so REINDEX TABLE is ACCESS EXCLUSIVE in effect. A
//     predicted relation the server did not lock at all is a mismatch
//     (unless the observation is partial, no_transaction).
//  3. Unpredicted locks: a relation the server locked at SHARE or stronger
//     without a prediction is a mismatch unless covered: an index by its
//     table, a partition or inheritance child by its parent, predicted at
//     the same strength or more; a table by one of its indexes predicted at
//     least at the table's effective mode (DROP INDEX, REINDEX INDEX, ALTER
//     INDEX name only the index); or listed in catalog_locks (with its
//     indexes and partitions). Weaker unpredicted locks (reads of
//     referenced tables) are fine.
//  4. Storage: a predicted WorkRewrite or WorkTruncate needs a new
//     relfilenode on that relation (for a partitioned table: on one of its
//     partitions); a new relfilenode on a predicted relation with any other
//     Work is a mismatch, except an index predicted with WorkIndexBuild
//     (REINDEX). Entries marked catalog_work (whether the server rewrites
//     depends on catalog facts the SQL does not show: the column's old
//     type, the current tablespace) accept a predicted rewrite the server
//     did not do; never the reverse. A new relfilenode on an unpredicted
//     relation must be covered like in 3: by a parent predicted with
//     Rewrite/Truncate, or for an index by its table predicted with
//     Rewrite, Truncate or IndexBuild.
//  5. Reads: when the server read a table in full (at least half its
//     reltuples, from the heap or through an index; observed in a
//     transaction only) under SHARE UPDATE EXCLUSIVE or more, some predicted
//     lock must have slow work (scan, index build, rewrite): the locks are
//     held for as long as that read. Predicting slow work the server did
//     not do (ANALYZE samples; a CHECK that proves NOT NULL) is accepted.
func lfCompare(f *lfFact, pred []guard.Lock, predErr error) []string {
	if predErr != nil {
		// Syntax newer than the guard's parser (PostgreSQL 17 grammar) must
		// fail safe: run unchecked, with the lock timeout.
		g, err := guard.New(guard.DefaultConfig())
		if err != nil {
			return []string{err.Error()}
		}
		r := g.Decide(f.Entry.SQL, &guard.Session{}, guard.NoFacts{})
		if len(r.Statements) == 1 && r.Statements[0].Unchecked && r.Statements[0].Action == guard.Timeout {
			return nil
		}
		return []string{"guard.PredictLocks: " + predErr.Error() + " (and the statement does not fail safe)"}
	}
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	// Predictions by name; the strongest wins if one is listed twice.
	predicted := map[string]guard.Lock{}
	for _, l := range pred {
		name := lfBareName(l.Relation)
		if old, ok := predicted[name]; ok {
			l.Mode = max(l.Mode, old.Mode)
			l.Work = max(l.Work, old.Work)
			l.Created = l.Created && old.Created
		}
		predicted[name] = l
	}
	catalogNamed := map[string]bool{}
	for _, r := range f.Entry.CatalogLocks {
		catalogNamed[r] = true
	}
	// catalog reports whether r, or what it belongs to, is in catalog_locks.
	var catalog func(r *lfRel) bool
	catalog = func(r *lfRel) bool {
		return r != nil && (catalogNamed[r.Name] || catalog(f.byOID[r.Owner]))
	}

	// cover is the strongest predicted mode that vouches for rel (rule 3).
	var cover func(r *lfRel) guard.LockMode
	cover = func(r *lfRel) guard.LockMode {
		m := guard.NoLock
		if p, ok := predicted[r.Name]; ok {
			m = p.Mode
		}
		if o := f.byOID[r.Owner]; o != nil {
			m = max(m, cover(o))
		}
		if !r.isIndex() {
			for name, p := range predicted {
				if ix := f.rels[name]; ix != nil && ix.isIndex() && ix.Owner == r.OID {
					m = max(m, p.Mode)
				}
			}
		}
		return m
	}
	// rewriteCover reports whether a new relfilenode on the unpredicted r
	// is vouched for (rule 4).
	var rewriteCover func(r *lfRel) bool
	rewriteCover = func(r *lfRel) bool {
		o := f.byOID[r.Owner]
		if o == nil {
			return false
		}
		if p, ok := predicted[o.Name]; ok {
			if p.Work == guard.WorkRewrite || p.Work == guard.WorkTruncate || (r.isIndex() && p.Work == guard.WorkIndexBuild) {
				return true
			}
		}
		return rewriteCover(o)
	}

	names := make([]string, 0, len(predicted))
	for name := range predicted {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		p := predicted[name]
		if p.Created {
			continue
		}
		r := f.rels[name]
		if r == nil {
			bad("predicted %s on %s, which is no relation of the fixtures", p.Mode, name)
			continue
		}
		rf := f.Rels[name]
		obs := f.effective(name)
		if r.isIndex() && rf != nil {
			obs = rf.Mode
		}
		switch {
		case obs == guard.NoLock && f.Partial:
			// Not seen before the statement waited: unknown.
		case obs == guard.NoLock:
			bad("%s: predicted %s, the server took no lock on it", name, p.Mode)
		case obs != p.Mode:
			own := guard.NoLock
			if rf != nil {
				own = rf.Mode
			}
			if own != obs {
				bad("%s: predicted %s, observed %s (%s on the table itself, %s on an index of it)", name, p.Mode, obs, own, obs)
			} else {
				bad("%s: predicted %s, observed %s", name, p.Mode, obs)
			}
		}
		storage := rf != nil && rf.Storage
		if r.Kind == "p" {
			storage = lfDescendantStorage(f, r)
		}
		rewrites := p.Work == guard.WorkRewrite || p.Work == guard.WorkTruncate
		switch {
		case rewrites && !storage && f.Entry.CatalogWork:
			// More work than the server did, where only the catalog
			// could tell: accepted.
		case rewrites && !storage:
			bad("%s: predicted %s, but its relfilenode did not change", name, p.Work)
		case !rewrites && storage && !(r.isIndex() && p.Work == guard.WorkIndexBuild):
			bad("%s: predicted work %q, but it got a new relfilenode (rewrite or truncate)", name, p.Work)
		}
	}

	// Rule 5: a full read under a lock of SHARE UPDATE EXCLUSIVE or more
	// makes the statement slow; the guard must say so somewhere.
	slow := false
	for _, p := range predicted {
		slow = slow || p.Work.Slow()
	}
	if !slow && !f.Partial {
		for _, name := range slices.Sorted(maps.Keys(f.Rels)) {
			r := f.rels[name]
			if r.isIndex() || catalog(r) || f.effective(name) < guard.ShareUpdateExclusive {
				continue
			}
			if n := f.readOf(name); r.Tuples >= 1 && float64(n) >= r.Tuples/2 {
				bad("%s: the server read it in full (%d row reads, reltuples %.0f) under %s, but no predicted lock has slow work", name, n, r.Tuples, f.effective(name))
			}
		}
	}

	for _, name := range slices.Sorted(maps.Keys(f.Rels)) {
		rf := f.Rels[name]
		if _, ok := predicted[name]; ok || catalog(f.rels[name]) {
			continue
		}
		r := f.rels[name]
		obs := rf.Mode
		if !r.isIndex() {
			obs = f.effective(name)
		}
		if obs >= guard.Share && cover(r) < obs {
			bad("%s: locked %s, not predicted", name, obs)
		}
		if rf.Storage && !rewriteCover(r) {
			bad("%s: got a new relfilenode, not predicted", name)
		}
	}
	return problems
}

// lfDescendantStorage reports whether any partition (or child) of r, at any
// depth, got a new relfilenode.
func lfDescendantStorage(f *lfFact, r *lfRel) bool {
	for _, rf := range f.Rels {
		c := f.rels[rf.Name]
		if c == nil || c.isIndex() || !rf.Storage {
			continue
		}
		for o := f.byOID[c.Owner]; o != nil; o = f.byOID[o.Owner] {
			if o.OID == r.OID {
				return true
			}
		}
	}
	return false
}

// lfBareName strips the schema from a relation name as the guard writes it
// (a dot inside double quotes is part of the name).
func lfBareName(s string) string {
	inQuote := false
	last := -1
	for i, ch := range s {
		switch {
		case ch == '"':
			inQuote = !inQuote
		case ch == '.' && !inQuote:
			last = i
		}
	}
	s = s[last+1:]
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = strings.ReplaceAll(s[1:len(s)-1], `""`, `"`)
	}
	return s
}

// lfAbbrev shortens a lock mode for the table: AS RS RE SUE S SRE E AE.
func lfAbbrev(m guard.LockMode) string {
	var b strings.Builder
	for w := range strings.FieldsSeq(m.String()) {
		b.WriteByte(w[0])
	}
	if m == guard.ShareUpdateExclusive {
		return "SUE"
	}
	return b.String()
}

func lfPredictedString(pred []guard.Lock, err error) string {
	if err != nil {
		return "error: " + lfShort(err.Error(), 60)
	}
	if len(pred) == 0 {
		return "none"
	}
	parts := make([]string, 0, len(pred))
	for _, l := range pred {
		s := l.Relation + ":" + lfAbbrev(l.Mode)
		if l.Work != guard.WorkNone {
			s += "/" + l.Work.String()
		}
		if l.Created {
			s += "/created"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

// lfObservedString condenses an observation: tables with their mode and
// what happened to them, then their indexes (folded when they all fared the
// same), then what was created.
func lfObservedString(f *lfFact) string {
	switch {
	case f.Skipped != "":
		return "(" + f.Skipped + ")"
	case f.Err != "":
		return "error: " + lfShort(f.Err, 90)
	}
	relStr := func(rf *lfRelFact) string {
		s := rf.Name + ":" + lfAbbrev(rf.Mode)
		if rf.Mode == guard.NoLock {
			s = rf.Name + ":-"
		}
		var flags []string
		if rf.Waiting {
			flags = append(flags, "waiting")
		}
		if rf.Dropped {
			flags = append(flags, "dropped")
		}
		if rf.Storage {
			flags = append(flags, "new-storage")
		}
		if rf.scanned() && !f.Partial {
			flags = append(flags, "read")
		}
		if len(flags) > 0 {
			s += "[" + strings.Join(flags, ",") + "]"
		}
		return s
	}
	var tables []string
	for name, rf := range f.Rels {
		if r := f.rels[name]; r != nil && !(r.isIndex() && f.Rels[rf.Owner] != nil) {
			tables = append(tables, name)
		}
	}
	slices.Sort(tables)
	var parts []string
	for _, name := range tables {
		rf := f.Rels[name]
		s := relStr(rf)
		ixs := f.indexes[name]
		if len(ixs) > 0 {
			strs := make([]string, len(ixs))
			same := true
			for i, ix := range ixs {
				strs[i] = relStr(ix)
				if strings.TrimPrefix(strs[i], ix.Name) != strings.TrimPrefix(strs[0], ixs[0].Name) {
					same = false
				}
			}
			slices.Sort(strs)
			if same && len(ixs) > 1 {
				s += fmt.Sprintf(" +%d idx%s", len(ixs), strings.TrimPrefix(relStr(ixs[0]), ixs[0].Name))
			} else {
				s += " +idx " + strings.Join(strs, " ")
			}
		}
		parts = append(parts, s)
	}
	if len(f.Created) > 0 {
		parts = append(parts, "created "+strings.Join(f.Created, ","))
	}
	if len(parts) == 0 {
		return "no locks"
	}
	return strings.Join(parts, "; ")
}

// lfShort puts s on one line and cuts it at n runes.
func lfShort(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// lfWriteFacts writes the facts as JSON to dir/lockfacts-pg<major>.json.
func lfWriteFacts(t *testing.T, dir string, major int, facts []*lfFact) {
	t.Helper()
	b, err := json.MarshalIndent(facts, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, fmt.Sprintf("lockfacts-pg%d.json", major))
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("facts written to %s", path)
}

// TestLockFactsCorpus checks the corpus on its own: enough entries, markers
// that make sense.
func TestLockFactsCorpus(t *testing.T) {
	entries, err := lfParseCorpus(lfCorpusFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) < lfMinEntries {
		t.Errorf("%s has %d entries, want at least %d", lfCorpusFile, len(entries), lfMinEntries)
	}
	for _, e := range entries {
		where := fmt.Sprintf("%s:%d", lfCorpusFile, e.Line)
		if e.MinVersion != 0 && e.MaxVersion != 0 && e.MinVersion > e.MaxVersion {
			t.Errorf("%s: min_version %d > max_version %d", where, e.MinVersion, e.MaxVersion)
		}
		if len(e.Cleanup) > 0 && !e.NoTransaction {
			t.Errorf("%s: cleanup is for no_transaction entries (the others roll back)", where)
		}
		if e.NoTransaction && e.ExpectError {
			t.Errorf("%s: no_transaction and expect_error together are not supported", where)
		}
		if strings.Count(strings.TrimSuffix(strings.TrimSpace(e.SQL), ";"), ";") > 0 && !strings.Contains(e.SQL, "$$") {
			t.Errorf("%s: more than one statement: %s", where, e.SQL)
		}
	}
}

// TestLockFacts observes the corpus on the package's cluster and on
// PostgreSQL 18 and compares with guard.PredictLocks.
func TestLockFacts(t *testing.T) {
	entries, err := lfParseCorpus(lfCorpusFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Run(fmt.Sprintf("pg%d", cluster.Version()), func(t *testing.T) {
		t.Parallel()
		lfRun(t, cluster, entries)
	})
	t.Run("pg18", func(t *testing.T) {
		t.Parallel()
		c := startPG18Cluster(t)
		lfRun(t, c, entries)
	})
}
