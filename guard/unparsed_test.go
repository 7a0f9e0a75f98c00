package guard

import "testing"

func TestUnparsedLocks(t *testing.T) {
	for sql, want := range map[string]string{
		"ALTER TABLE t ADD CONSTRAINT t_a_not_null NOT NULL a NOT VALID":                "t",
		`ALTER TABLE IF EXISTS ONLY App."Events" ADD CONSTRAINT c NOT NULL a NOT VALID`: `app.Events`,
		"alter table db.s.t add constraint c not null a not valid":                      "s.t",
		"ALTER INDEX s.i ATTACH PARTITION s.j":                                          "s.i",
		"ALTER MATERIALIZED VIEW mv SOMETHING NEW":                                      "mv",
		"ALTER FOREIGN TABLE ft SOMETHING NEW":                                          "ft",
		"ALTER TABLE view ADD CONSTRAINT c NOT NULL a NOT VALID":                        "view",
		"ALTER TABLE s.table ADD CONSTRAINT c NOT NULL a NOT VALID":                     "s.table",
		"ALTER TABLE ÄBC ADD CONSTRAINT c NOT NULL a NOT VALID":                         "Äbc",
		"ALTER DOMAIN d SOMETHING NEW":                                                  "",
		"CREATE TABLE t (a int NOT NULL NOT VALID)":                                     "",
		"ALTER TABLE select ADD CONSTRAINT c NOT NULL a NOT VALID":                      "",
		"ALTER TABLE":                   "",
		`ALTER TABLE U&"d\0061t" ADD x`: "",
	} {
		locks := unparsedLocks(sql)
		got := ""
		if len(locks) == 1 && locks[0].Mode == AccessExclusive {
			got = locks[0].Relation
		} else if len(locks) > 0 {
			got = "?"
		}
		if got != want {
			t.Errorf("unparsedLocks(%q) = %q, want %q", sql, got, want)
		}
	}
}
