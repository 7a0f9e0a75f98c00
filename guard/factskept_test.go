package guard

import "testing"

func TestFactsOutlive(t *testing.T) {
	g := mustGuard(t, DefaultConfig())
	small := RelationFacts{Kind: 'r', SizeBytes: 64 << 10}
	nearThreshold := RelationFacts{Kind: 'r', SizeBytes: DefaultSmallTableBytes/2 + 1}
	cases := []struct {
		sql  string
		f    RelationFacts
		want bool
	}{
		{"ALTER TABLE t ADD COLUMN c int", small, true},
		{"ALTER TABLE t ALTER COLUMN c TYPE bigint", small, true},
		{"ALTER TABLE t ALTER COLUMN c TYPE bigint", nearThreshold, false},
		{"ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0) NOT VALID", small, true},
		{"CREATE INDEX ON t (c)", small, true},
		{"ALTER TABLE t RENAME COLUMN a TO b", small, true},
		{"ALTER TABLE t RENAME TO u", small, false},
		{"ALTER TABLE t SET SCHEMA s", small, false},
		{"ALTER TABLE t ATTACH PARTITION c FOR VALUES IN (1)", small, false},
		{"ALTER TABLE t DETACH PARTITION c", small, false},
		{"ALTER TABLE t SET UNLOGGED", small, false},
		{"ALTER TABLE t ADD COLUMN c int, SET TABLESPACE x", small, false},
		{"TRUNCATE t", small, false},
		{"CREATE TABLE c PARTITION OF t FOR VALUES IN (1)", small, false},
		{"CREATE TABLE c (a int) INHERITS (t)", small, false},
		{"CREATE TABLE c (a int REFERENCES t)", small, true},
		{"DROP TABLE t", small, false},
		{"REFRESH MATERIALIZED VIEW t", small, false},
		{"VACUUM FULL t", small, false},
		{"LOCK TABLE t", small, false},
		{"ALTER TABLE t ADD COLUMN c int", RelationFacts{Kind: 'r', SizeBytes: 1 << 40}, false},
	}
	for _, c := range cases {
		res := g.Ask(Request{SQL: c.sql, Session: &Session{}})
		d := &res.Statements[0]
		if got := g.FactsOutlive(d, "t", c.f, &Session{}); got != c.want {
			t.Errorf("%q on a %d-byte table: FactsOutlive = %v, want %v", c.sql, c.f.SizeBytes, got, c.want)
		}
	}
}
