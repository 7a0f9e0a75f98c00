package guard

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// dropColumnRule: ALTER TABLE ... DROP COLUMN destroys the column's data, and
// every query or deployed code that still names the column fails. The drop
// is metadata-only (the space is reclaimed by later writes), but its ACCESS
// EXCLUSIVE lock still queues. It is confirmed with an inline override once
// the code no longer uses the column.
type dropColumnRule struct{}

func init() { register(dropColumnRule{}) }

func (dropColumnRule) ID() string        { return "drop-column" }
func (dropColumnRule) DefaultMode() Mode { return Enforce }
func (dropColumnRule) Relaxable() bool   { return false }
func (dropColumnRule) ReviewTime() bool  { return true }

func (dropColumnRule) Check(s *Statement) *Finding {
	a, cmds, rel := s.alterOfExisting()
	if a == nil {
		return nil
	}
	var cols []string
	cascade := false
	for _, c := range cmds {
		if c.Subtype == pg_query.AlterTableType_AT_DropColumn {
			cols = append(cols, c.Name)
			cascade = cascade || c.Behavior == pg_query.DropBehavior_DROP_CASCADE
		}
	}
	if len(cols) == 0 {
		return nil
	}
	sql := deparse(s.node)
	for _, c := range cmds {
		if c.Subtype == pg_query.AlterTableType_AT_DropColumn {
			sql = dropColumnKeyword(sql, c)
		}
	}
	qualified := make([]string, len(cols))
	for i, c := range cols {
		qualified[i] = rel + "." + c
	}
	what, its, it := "column "+qualified[0], "its", "it"
	if len(cols) > 1 {
		what, its, it = "columns "+strings.Join(qualified, ", "), "their", "them"
	}
	why := "and destroys " + what + " with " + its + " data: every query and deployed code that still uses " + it +
		" fails (the drop itself is metadata-only, but it queues behind every open transaction on " + rel + ")"
	if cascade {
		why += "; CASCADE also drops the views, indexes and constraints that depend on " + it
	}
	if sql == "" {
		sql = s.writtenSQL()
	}
	hint := "-- first deploy code that no longer reads or writes " + strings.Join(qualified, ", ") +
		" (ORMs: mark " + it + " ignored), then confirm:\n" +
		allowComment("drop-column", "no deployed code uses "+strings.Join(qualified, ", ")) + sql + ";"
	return s.finding(rel, why, hint)
}

// dropColumnKeyword puts back the optional COLUMN keyword the deparser
// leaves out ("DROP IF EXISTS c" -> "DROP COLUMN IF EXISTS c"), for hints
// that read like the statement people write.
func dropColumnKeyword(sql string, c *pg_query.AlterTableCmd) string {
	ifExists := ""
	if c.MissingOk {
		ifExists = "IF EXISTS "
	}
	old := "DROP " + ifExists + quoteIdent(c.Name)
	for from := 0; ; {
		i := strings.Index(sql[from:], old)
		if i < 0 {
			return sql
		}
		i += from
		end := i + len(old)
		if end == len(sql) || sql[end] == ' ' || sql[end] == ',' {
			return sql[:i] + "DROP COLUMN " + ifExists + quoteIdent(c.Name) + sql[end:]
		}
		from = end
	}
}
