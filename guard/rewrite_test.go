package guard

import (
	"strings"
	"testing"
)

func TestUndoSequence(t *testing.T) {
	ran := []string{
		"CREATE INDEX events_v_idx ON ONLY events USING btree (v)",
		"CREATE INDEX CONCURRENTLY events_2025_v_idx ON events_2025 USING btree (v)",
		"ALTER INDEX events_v_idx ATTACH PARTITION events_2025_v_idx",
		"CREATE INDEX events_2026_v_idx ON ONLY arch.events_2026 USING btree (v)",
		"ALTER INDEX events_v_idx ATTACH PARTITION arch.events_2026_v_idx",
		"CREATE INDEX CONCURRENTLY events_2026_a_v_idx ON events_2026_a USING btree (v)",
	}
	got := strings.Join(UndoSequence(ran, nil), "; ")
	want := "DROP INDEX CONCURRENTLY IF EXISTS events_2026_a_v_idx; DROP INDEX IF EXISTS events_v_idx"
	if got != want {
		t.Errorf("UndoSequence = %q, want %q (attached indexes go with the parent's)", got, want)
	}
	// A step the parser cannot read (PostgreSQL 18 syntax): the planner's undo.
	nn := "ALTER TABLE t ADD CONSTRAINT t_c_not_null NOT NULL c NOT VALID"
	undo := "ALTER TABLE t DROP CONSTRAINT IF EXISTS t_c_not_null"
	if got := UndoSequence([]string{nn, "ALTER TABLE t VALIDATE CONSTRAINT t_c_not_null"}, map[string]string{nn: undo}); len(got) != 1 || got[0] != undo {
		t.Errorf("UndoSequence with the planner's undo = %q, want [%q]", got, undo)
	}
}

func TestUndoStatement(t *testing.T) {
	cases := map[string]string{
		"CREATE INDEX CONCURRENTLY t_a_idx ON app.t USING btree (a)":                          "DROP INDEX CONCURRENTLY IF EXISTS app.t_a_idx",
		"CREATE UNIQUE INDEX CONCURRENTLY \"T_key\" ON t (a)":                                 `DROP INDEX CONCURRENTLY IF EXISTS "T_key"`,
		"ALTER TABLE t ADD CONSTRAINT t_b_fkey FOREIGN KEY (b) REFERENCES u (id) NOT VALID":   "ALTER TABLE t DROP CONSTRAINT IF EXISTS t_b_fkey",
		"ALTER TABLE t ADD CONSTRAINT t_a_key UNIQUE USING INDEX t_a_key":                     "ALTER TABLE t DROP CONSTRAINT IF EXISTS t_a_key",
		"ALTER TABLE t VALIDATE CONSTRAINT t_b_fkey":                                          "",
		"ALTER TABLE t ALTER COLUMN a SET NOT NULL":                                           "",
		"CREATE INDEX CONCURRENTLY ON t (a)":                                                  "",
		"CREATE INDEX events_v_idx ON ONLY app.events USING btree (v)":                        "DROP INDEX IF EXISTS app.events_v_idx",
		"ALTER DOMAIN app.\"Amount\" ADD CONSTRAINT amount_check CHECK (value > 0) NOT VALID": `ALTER DOMAIN app."Amount" DROP CONSTRAINT IF EXISTS amount_check`,
		"ALTER DOMAIN d VALIDATE CONSTRAINT d_check":                                          "",
		"ALTER DOMAIN d ADD CHECK (value > 0) NOT VALID":                                      "",
	}
	for in, want := range cases {
		if got := UndoStatement(in); got != want {
			t.Errorf("UndoStatement(%q) = %q, want %q", in, got, want)
		}
	}
}
