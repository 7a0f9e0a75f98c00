package guard

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// dropTableRule: DROP TABLE destroys the table's data, and every query or
// deployed code that still uses it fails. Views and materialized views are
// left to the lock timeout: dropping one loses no data (it is recreated from
// its definition). Tables created in the same transaction and temporary
// tables are nobody else's.
type dropTableRule struct{}

func init() { register(dropTableRule{}) }

func (dropTableRule) ID() string        { return "drop-table" }
func (dropTableRule) DefaultMode() Mode { return Enforce }
func (dropTableRule) Relaxable() bool   { return false }
func (dropTableRule) ReviewTime() bool  { return true }

func (dropTableRule) Check(s *Statement) *Finding {
	d := s.node.GetDropStmt()
	if d == nil || d.RemoveType != pg_query.ObjectType_OBJECT_TABLE {
		return nil
	}
	var tables []string
	for _, o := range d.Objects {
		if name := nameOf(o.GetList().GetItems()); name != "" && s.existing(name) {
			tables = append(tables, name)
		}
	}
	if len(tables) == 0 {
		return nil
	}
	list := strings.Join(tables, ", ")
	its, it := "its", "it"
	if len(tables) > 1 {
		its, it = "their", "them"
	}
	why := "and destroys " + list + " with all " + its + " data: every query and deployed code that still uses " + it + " fails"
	if d.Behavior == pg_query.DropBehavior_DROP_CASCADE {
		why += "; CASCADE also drops the views and foreign keys that depend on " + it
	}
	dumps := make([]string, len(tables))
	for i, t := range tables {
		dumps[i] = "--table=" + quoteName(t)
	}
	hint := "-- make sure no deployed code uses " + list + " and keep a backup (pg_dump --format=custom " +
		strings.Join(dumps, " ") + "), then confirm:\n" +
		allowComment("drop-table", "no deployed code uses "+list+"; backup kept") + s.deparsedSQL() + ";"
	return s.finding(tables[0], why, hint)
}
