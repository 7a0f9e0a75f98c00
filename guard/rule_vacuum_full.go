package guard

import (
	"strings"
)

// vacuumFullRule: VACUUM FULL copies each table it processes under ACCESS
// EXCLUSIVE. pg_repack --no-order does the same online; plain VACUUM makes
// dead rows' space reusable without any strong lock.
type vacuumFullRule struct{}

func init() { register(vacuumFullRule{}) }

func (vacuumFullRule) ID() string        { return "vacuum-full" }
func (vacuumFullRule) DefaultMode() Mode { return Enforce }
func (vacuumFullRule) Relaxable() bool   { return true }

func (vacuumFullRule) Check(s *Statement) *Finding {
	v := s.node.GetVacuumStmt()
	if v == nil || s.kind != "VACUUM FULL" {
		return nil
	}
	if len(v.Rels) == 0 {
		// Every table of the database, one after another. The analysis
		// records that as one lock on the pseudo-relation allRelations.
		if len(s.locks) == 0 {
			return nil
		}
		f := s.finding(s.locks[0].Relation, "on each in turn while it rewrites it", strings.Join([]string{
			"-- online with pg_repack (needs the pg_repack extension in the database; it skips tables without a primary key or a unique index on NOT NULL columns):",
			repackCommand(s, "--no-order"),
			"-- or, if the goal is only to make the space of dead rows reusable (not to give it back to the operating system):",
			"VACUUM (ANALYZE);",
		}, "\n"))
		if s.locks[0].Relation == allRelations {
			f.Message = strings.Replace(f.Message, " on "+allRelations+" ", " on every table of the database ", 1)
		}
		return f
	}
	var large, rest, views []string // relations as the locks name them
	for _, l := range s.locks {
		f, ok := s.facts.Relation(l.Relation)
		switch {
		case !s.existing(l.Relation) || s.isSmall(l.Relation):
			rest = append(rest, l.Relation)
		case ok && f.Kind == 'm':
			views = append(views, l.Relation)
		default:
			large = append(large, l.Relation)
		}
	}
	if len(large)+len(views) == 0 {
		return nil
	}
	var hint []string
	if len(large) > 0 {
		args := []string{"--no-order"}
		for _, t := range large {
			args = append(args, "--table="+shellWord(quoteName(t)))
		}
		hint = append(hint, repackNeeds(quotedList(large), ""), repackCommand(s, args...))
	}
	for _, mv := range views {
		hint = append(hint, "-- a materialized view is rebuilt compactly, reads going on, by a concurrent refresh (it needs a unique index):",
			"REFRESH MATERIALIZED VIEW CONCURRENTLY "+quoteName(mv)+";")
	}
	if len(rest) > 0 {
		hint = append(hint, "-- small, new and temporary tables are quick:", "VACUUM FULL "+quotedList(rest)+";")
	}
	all := append(append([]string{}, large...), views...)
	hint = append(hint, "-- or, if the goal is only to make the space of dead rows reusable (not to give it back to the operating system):",
		"VACUUM (ANALYZE) "+quotedList(all)+";")
	why := workWhy(WorkRewrite)
	if len(all) > 1 {
		why += ", and then the same on " + quotedList(all[1:])
	}
	return s.finding(all[0], why, strings.Join(hint, "\n"))
}

// quotedList renders relation names as a comma-separated SQL list.
func quotedList(rels []string) string {
	q := make([]string, len(rels))
	for i, r := range rels {
		q[i] = quoteName(r)
	}
	return strings.Join(q, ", ")
}
