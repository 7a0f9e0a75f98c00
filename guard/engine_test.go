package guard

import (
	"fmt"
	"strings"
	"testing"
)

func mustGuard(t testing.TB, cfg Config) *Guard {
	t.Helper()
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// The parse cache keeps at most CacheEntries texts and reuses a parse for
// a repeated text.
func TestParseCacheBounded(t *testing.T) {
	cfg := DefaultConfig()
	cfg.CacheEntries = 3
	g := mustGuard(t, cfg)
	for i := 0; i < 10; i++ {
		g.Decide(fmt.Sprintf("ALTER TABLE t%d ADD COLUMN c int", i), &Session{}, nil)
	}
	if n := g.cache.len(); n != 3 {
		t.Fatalf("cache holds %d entries, want 3", n)
	}
	sql := "ALTER TABLE t9 ADD COLUMN c int"
	if g.cache.get(sql) != g.cache.get(sql) {
		t.Fatal("a cached text was parsed again")
	}
	big := "ALTER TABLE t ADD COLUMN c int DEFAULT '" + strings.Repeat("x", maxCachedText) + "'"
	g.Decide(big, &Session{}, nil)
	if n := g.cache.len(); n != 3 {
		t.Fatalf("an oversized text entered the cache (%d entries)", n)
	}
}

// Non-DDL never reaches the parser, so it never enters the cache.
func TestNonDDLIsNotParsed(t *testing.T) {
	g := mustGuard(t, DefaultConfig())
	for _, sql := range []string{"SELECT 1", "INSERT INTO t VALUES (1)", "UPDATE t SET a = 1; DELETE FROM t"} {
		if r := g.Decide(sql, &Session{}, nil); r.Parsed || r.Action != Allow {
			t.Errorf("%q: parsed=%v action=%s", sql, r.Parsed, r.Action)
		}
	}
	if n := g.cache.len(); n != 0 {
		t.Fatalf("plain DML reached the parser (%d cache entries)", n)
	}
}

// Statements the PostgreSQL 17 grammar cannot read fail safe when they look
// like DDL (timeout + unchecked), and are left to the server otherwise.
func TestUnparseableStatements(t *testing.T) {
	g := mustGuard(t, DefaultConfig())
	cases := []struct {
		sql       string
		want      []Action
		unchecked []bool
	}{
		{"ALTER TABLE t ADD COLUMN v int GENERATED ALWAYS AS (a + 1) VIRTUAL", []Action{Timeout}, []bool{true}},
		{"SELECT 1; ALTER TABLE t ADD CONSTRAINT t_a_nn NOT NULL a NOT VALID", []Action{Allow, Timeout}, []bool{false, true}},
		{"/* pg18 */ ALTER TABLE t ALTER CONSTRAINT c NOT ENFORCED", []Action{Timeout}, []bool{true}},
		{"SELEC 1", []Action{Allow}, []bool{false}},
		{"CREATE INDEX t_a_idx ON t (a) WHERE", []Action{Timeout}, []bool{true}},
	}
	defer func() {
		if st := g.Stats(); st.ParseErrors != 5 || st.Unchecked != 4 {
			t.Errorf("stats %+v, want 5 parse errors of which 4 unchecked", st)
		}
	}()
	for _, c := range cases {
		r := g.Decide(c.sql, &Session{}, nil)
		if len(r.Statements) != len(c.want) {
			t.Errorf("%q: %d statements, want %d", c.sql, len(r.Statements), len(c.want))
			continue
		}
		for i, d := range r.Statements {
			if d.Action != c.want[i] || d.Unchecked != c.unchecked[i] {
				t.Errorf("%q [%d]: action %s unchecked %v, want %s %v (parse error %q)",
					c.sql, i, d.Action, d.Unchecked, c.want[i], c.unchecked[i], d.ParseError)
			}
			if d.Unchecked && d.LockTimeout != DefaultLockTimeout {
				t.Errorf("%q: unchecked statement without the lock timeout", c.sql)
			}
		}
	}
}

// Decide never changes the caller's session.
func TestDecideLeavesSessionAlone(t *testing.T) {
	g := mustGuard(t, DefaultConfig())
	sess := Session{InTransaction: true, Tx: TxState{Held: map[string]LockMode{"a": Share}}}
	g.Decide("CREATE TABLE n (a int); ALTER TABLE a ADD COLUMN c int; COMMIT", &sess, nil)
	if !sess.InTransaction || len(sess.Tx.Held) != 1 || sess.Tx.Created != nil {
		t.Fatalf("session changed: %+v", sess)
	}
}

func TestObserveTracksTheTransaction(t *testing.T) {
	g := mustGuard(t, DefaultConfig())
	sess := Session{}
	for _, d := range g.DecideScript(`BEGIN; CREATE TABLE n (a int); ALTER TABLE t ADD COLUMN c int;
		ALTER TABLE t ADD CONSTRAINT t_c_check CHECK (c > 0) NOT VALID; SET TimeZone = 'UTC'`, &sess, nil) {
		_ = d
	}
	if !sess.InTransaction || !sess.Tx.Created["n"] || sess.Tx.Held["t"] != AccessExclusive ||
		!sess.Tx.NotValid["t.t_c_check"] || sess.TimeZone != "UTC" {
		t.Fatalf("session after script: %+v", sess)
	}
	g.DecideScript("COMMIT", &sess, nil)
	if sess.InTransaction || sess.Tx.Held != nil {
		t.Fatalf("transaction state survived COMMIT: %+v", sess)
	}
}

var benchSQL = map[string]string{
	"select": "SELECT abalance FROM pgbench_accounts WHERE aid = $1;",
	"insert": "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP);",
	"update": "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2;",
	"alter":  "ALTER TABLE accounts ADD COLUMN note text DEFAULT 'none'",
	"fk":     "ALTER TABLE orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) REFERENCES customers (id)",
}

// BenchmarkDecide measures a decision per statement kind. Non-DDL must stay
// under 300 ns with zero allocations; a typical ALTER (parse cached) under
// 50 us.
func BenchmarkDecide(b *testing.B) {
	g := mustGuard(b, DefaultConfig())
	sess := &Session{ServerMajor: 15}
	for _, name := range []string{"select", "insert", "update", "alter", "fk"} {
		sql := benchSQL[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				g.Decide(sql, sess, NoFacts{})
			}
		})
	}
	b.Run("alter-uncached", func(b *testing.B) {
		b.ReportAllocs()
		cfg := DefaultConfig()
		cfg.CacheEntries = 0
		g := mustGuard(b, cfg)
		for i := 0; i < b.N; i++ {
			g.Decide(benchSQL["alter"], sess, NoFacts{})
		}
	})
}

func TestNonDDLDecisionAllocatesNothing(t *testing.T) {
	g := mustGuard(t, DefaultConfig())
	sess := &Session{ServerMajor: 15}
	for _, name := range []string{"select", "insert", "update"} {
		sql := benchSQL[name]
		if n := testing.AllocsPerRun(200, func() { g.Decide(sql, sess, NoFacts{}) }); n != 0 {
			t.Errorf("%s: %.0f allocations per decision, want 0", name, n)
		}
	}
}

// FuzzDecide: no input makes the guard panic, and the result is consistent.
func FuzzDecide(f *testing.F) {
	for _, s := range benchSQL {
		f.Add(s, false)
	}
	f.Add("BEGIN; ALTER TABLE t ADD COLUMN c serial; CREATE INDEX ON t (c); COMMIT", true)
	f.Add("ALTER TABLE t ADD COLUMN v int GENERATED ALWAYS AS (a) VIRTUAL", false)
	f.Add("CREATE INDEX CONCURRENTLY i ON t (a); DROP INDEX i; REINDEX TABLE t", true)
	f.Add("ALTER TABLE t ALTER COLUMN c TYPE varchar(20), ADD CONSTRAINT k UNIQUE (c)", false)
	f.Add("ALTER DOMAIN d ADD CHECK (VALUE > 0); LOCK t; TRUNCATE t; VACUUM FULL t", true)
	g, err := New(DefaultConfig())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, sql string, inTx bool) {
		sess := &Session{InTransaction: inTx, ServerMajor: 15}
		r := g.Decide(sql, sess, FactsMap{"t": {SizeBytes: 1 << 30, Columns: map[string]Column{"c": {Type: "integer"}}}})
		strongest := Allow
		for _, d := range r.Statements {
			strongest = max(strongest, d.Action)
			if (d.Action == Reject || d.Action == Rewrite) != (d.Deciding != nil) {
				t.Fatalf("%q: action %s with deciding finding %v", sql, d.Action, d.Deciding)
			}
			if d.Action == Rewrite && len(d.Deciding.Rewrite) == 0 {
				t.Fatalf("%q: rewrite without a sequence", sql)
			}
		}
		if strongest != r.Action {
			t.Fatalf("%q: result %s, strongest statement %s", sql, r.Action, strongest)
		}
	})
}

func TestNormalizeRemovesEveryLiteral(t *testing.T) {
	cases := map[string]string{
		`ALTER TABLE t ADD COLUMN c text DEFAULT 'secret' CHECK (c <> 'x') NOT VALID`:        `ALTER TABLE t ADD COLUMN c text DEFAULT $1 CHECK (c <> $2) NOT VALID`,
		`ALTER TABLE t ALTER COLUMN c TYPE varchar(20), ALTER COLUMN d TYPE numeric(12, 2)`:  `ALTER TABLE t ALTER COLUMN c TYPE varchar(20), ALTER COLUMN d TYPE numeric(12, 2)`,
		`CREATE INDEX i ON t (a) WHERE b > 42 AND d = 1.5 AND e = E'\\x' AND f = $$dollar$$`: `CREATE INDEX i ON t (a) WHERE b > $1 AND d = $2 AND e = $3 AND f = $4`,
		`UPDATE t SET a = $1 WHERE b = 'lit' /* 'comment' stays */`:                          `UPDATE t SET a = $1 WHERE b = $2 /* 'comment' stays */`,
		`COMMENT ON TABLE t IS 'password is hunter2'`:                                        `COMMENT ON TABLE t IS $1`,
	}
	for in, want := range cases {
		if got := Normalize(in); got != want {
			t.Errorf("Normalize(%q)\n got %q\nwant %q", in, got, want)
		}
	}
}
