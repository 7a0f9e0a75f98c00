package guard

import (
	"slices"
	"testing"
)

func TestFactsNeededIsRelationsAndDomains(t *testing.T) {
	cases := []struct {
		sql                string
		relations, domains []string
	}{
		{sql: "ALTER TABLE t ADD COLUMN c int"},
		{sql: "ALTER TABLE t ADD COLUMN c int DEFAULT clock_timestamp()", relations: []string{"t"}},
		{sql: "ALTER TABLE t ALTER COLUMN c TYPE bigint", relations: []string{"t"}},
		{sql: "ALTER TABLE t RENAME TO u"},
		{sql: "DROP TABLE t"},
		{sql: "DROP TABLE IF EXISTS t"},
		{sql: "ALTER DOMAIN d VALIDATE CONSTRAINT c", domains: []string{"d"}},
		{sql: "ALTER DOMAIN app.d ADD CONSTRAINT c CHECK (VALUE > 0)", domains: []string{"app.d"}},
		{sql: "ALTER DOMAIN d ADD CONSTRAINT c CHECK (VALUE > 0) NOT VALID"},
		{sql: "ALTER DOMAIN d SET NOT NULL", domains: []string{"d"}},
		{sql: "ALTER DOMAIN d SET DEFAULT 0"},
		{sql: "BEGIN; CREATE INDEX i ON t (a); ALTER TABLE u ADD CHECK (a > 0); ALTER DOMAIN d VALIDATE CONSTRAINT c; COMMIT",
			relations: []string{"t", "u"}, domains: []string{"d"}},
		{sql: "ALTER DOMAIN d VALIDATE CONSTRAINT c; ALTER DOMAIN d VALIDATE CONSTRAINT c2; ALTER DOMAIN e SET NOT NULL",
			domains: []string{"d", "e"}},
		{sql: "ALTER TABLE t ADD CHECK (a > 0); ALTER TABLE app.t ADD COLUMN b int; ALTER TABLE app.t ALTER COLUMN b SET NOT NULL",
			relations: []string{"t", "app.t"}},
		{sql: "DROP INDEX i", relations: []string{"i"}},
		{sql: "DROP INDEX CONCURRENTLY i", relations: []string{"i"}},
		{sql: "DROP INDEX i, app.j CASCADE", relations: []string{"i", "app.j"}},
		{sql: "CREATE INDEX CONCURRENTLY i ON t (a)", relations: []string{"t"}},
		{sql: "VACUUM FULL"},
		{sql: "VACUUM FULL t, u", relations: []string{"t", "u"}},
		{sql: "ALTER TABLE p ATTACH PARTITION c FOR VALUES IN (1)", relations: []string{"c", "p"}},
		{sql: "COMMENT ON TABLE t IS 'x'"},
		{sql: "LOCK TABLE t IN SHARE MODE"},
		{sql: "CREATE INDEX ON t (c); ALTER TABLE t FROBNICATE; ALTER DOMAIN d VALIDATE CONSTRAINT c",
			relations: []string{"t"}, domains: []string{"d"}},
		{sql: "SELECT 1"},
		{sql: "INSERT INTO t VALUES (1); UPDATE t SET a = 2"},
		{sql: "SELECT * FROM t; ALTER TABLE t ADD COLUMN c int"},
		{sql: "SELECT * FROM t; CREATE INDEX ON t (c)", relations: []string{"t"}},
		{sql: ""},
	}
	g := mustGuard(t, DefaultConfig())
	for _, c := range cases {
		relations, domains := g.FactsNeeded(c.sql, nil)
		if !slices.Equal(relations, c.relations) || !slices.Equal(domains, c.domains) {
			t.Errorf("%q: FactsNeeded = %q, %q; want %q, %q", c.sql, relations, domains, c.relations, c.domains)
		}
	}
}

// A second ask for the same text answers from the parse cache: the same
// slices, not a new analysis.
func TestFactsNeededIsCachedWithTheParse(t *testing.T) {
	g := mustGuard(t, DefaultConfig())
	sql := "CREATE INDEX ON t (c); ALTER DOMAIN d VALIDATE CONSTRAINT c"
	r1, d1 := g.FactsNeeded(sql, nil)
	lookups := g.cache.get(sql).facts.lookups
	r2, d2 := g.FactsNeeded(sql, nil)
	if len(r1) != 1 || len(d1) != 1 || !slices.Equal(r1, r2) || &d1[0] != &d2[0] ||
		&g.cache.get(sql).facts.lookups[0] != &lookups[0] {
		t.Fatalf("second ask analysed again: %q %q then %q %q", r1, d1, r2, d2)
	}
	if n := g.cache.len(); n != 1 {
		t.Fatalf("cache holds %d entries, want 1", n)
	}
	if cap(d1) != len(d1) {
		t.Fatalf("an append to the answer could write into the cache (cap %d)", cap(d1))
	}
}

// While the transaction holds ACCESS EXCLUSIVE, the held relations a query
// or DML names are needed, by the name they are held under; others, and
// any relation outside such a transaction, are not. Relations the
// transaction created and temporary ones need none.
func TestFactsNeededForWorkUnderAHeldLock(t *testing.T) {
	g := mustGuard(t, DefaultConfig())
	holding := &Session{InTransaction: true, Tx: TxState{Held: map[string]LockMode{"t": AccessExclusive, "s": Share}}}
	created := &Session{InTransaction: true, Tx: TxState{Created: map[string]bool{"n": true}}, Temp: map[string]bool{"tmp": true}}
	cases := []struct {
		sql       string
		sess      *Session
		relations []string
	}{
		{sql: "UPDATE t SET a = 1", sess: holding, relations: []string{"t"}},
		{sql: "UPDATE public.t SET a = 1 WHERE b IN (SELECT b FROM u)", sess: holding, relations: []string{"t"}},
		{sql: "DELETE FROM s WHERE a = 1", sess: holding},
		{sql: "INSERT INTO schema_migrations VALUES (1)", sess: holding},
		{sql: "SELECT count(*) FROM t", sess: holding, relations: []string{"t"}},
		{sql: "UPDATE t SET a = 1", sess: &Session{}},
		{sql: "UPDATE t SET a = 1", sess: nil},
		{sql: "CREATE INDEX i ON u (a); UPDATE t SET a = 1", sess: holding, relations: []string{"u", "t"}},
		{sql: "CREATE INDEX i ON n (a); CREATE INDEX j ON tmp (a); ALTER TABLE u ADD CHECK (a > 0)", sess: created, relations: []string{"u"}},
		{sql: "CREATE INDEX i ON n (a)", sess: created},
	}
	for _, c := range cases {
		relations, _ := g.FactsNeeded(c.sql, c.sess)
		if !slices.Equal(relations, c.relations) {
			t.Errorf("%q: FactsNeeded = %q, want %q", c.sql, relations, c.relations)
		}
	}
}

// A rule's lookups are needed where the rule is enforced (a warning decides
// nothing): the review rules warn in the proxy by default, so their
// statements need no facts there; enforced, they need to know whether the
// relation exists (DROP TABLE IF EXISTS of an absent table passes, TRUNCATE
// of one is left to the server's error).
func TestFactsNeededFollowsRuleModes(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Rules = map[string]RuleConfig{"drop-table": {Mode: Enforce}, "truncate": {Mode: Enforce}}
	enforced := mustGuard(t, cfg)
	defaults := mustGuard(t, DefaultConfig())
	for _, sql := range []string{"DROP TABLE IF EXISTS t", "TRUNCATE t"} {
		if got, _ := defaults.FactsNeeded(sql, nil); len(got) != 0 {
			t.Errorf("%q with the defaults: FactsNeeded = %q, want none", sql, got)
		}
		if got, _ := enforced.FactsNeeded(sql, nil); !slices.Equal(got, []string{"t"}) {
			t.Errorf("%q enforced: FactsNeeded = %q, want [t]", sql, got)
		}
	}
}
