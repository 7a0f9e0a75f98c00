package guard

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// truncateRule: TRUNCATE removes every row at once under ACCESS EXCLUSIVE.
// On a table in use that is data loss for whoever still writes it, and the
// lock queues like any other. Tables created in the same transaction and
// temporary tables are nobody else's.
type truncateRule struct{}

func init() { register(truncateRule{}) }

func (truncateRule) ID() string        { return "truncate" }
func (truncateRule) DefaultMode() Mode { return Enforce }
func (truncateRule) Relaxable() bool   { return false }
func (truncateRule) ReviewTime() bool  { return true }

func (truncateRule) Check(s *Statement) *Finding {
	t := s.node.GetTruncateStmt()
	if t == nil {
		return nil
	}
	var tables []string
	for _, r := range t.Relations {
		if name := rangeVarName(r.GetRangeVar()); name != "" && s.existing(name) {
			tables = append(tables, name)
		}
	}
	if len(tables) == 0 {
		return nil
	}
	list, it, they, its, is := strings.Join(tables, ", "), "it", "it", "its", "is"
	if len(tables) > 1 {
		it, they, its, is = "them", "they", "their", "are"
	}
	why := workWhy(WorkTruncate) + " of " + list + " at once; it queues behind every open transaction on " + it +
		", and whoever still writes " + it + " loses data"
	if t.Behavior == pg_query.DropBehavior_DROP_CASCADE {
		why += "; CASCADE also empties every table with a foreign key to " + it
	}
	hint := []string{"-- if " + list + " " + is + " in use, delete in batches, one short transaction each, until it deletes 0 rows:"}
	if t.Behavior == pg_query.DropBehavior_DROP_CASCADE {
		hint = append(hint, "-- (CASCADE: delete from the tables that reference "+it+" first)")
	}
	if t.RestartSeqs {
		hint = append(hint, "-- (RESTART IDENTITY: DELETE leaves "+its+" sequences as they are)")
	}
	for _, name := range tables {
		q := quoteName(name)
		hint = append(hint, batchedDelete(q, "")+";")
	}
	hint = append(hint, "-- or, if "+they+" really must be emptied at once, confirm:",
		allowComment("truncate", list+" "+is+" not in use")+s.deparsedSQL()+";")
	return s.finding(tables[0], why, strings.Join(hint, "\n"))
}
