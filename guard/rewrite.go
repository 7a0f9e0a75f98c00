package guard

import (
	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// UndoStatement returns the statement that takes back what one step of a
// rewrite sequence created, for when a later step fails and the original
// statement would have left nothing behind: a constraint added by the step
// is dropped, an index built concurrently is dropped concurrently. "" when
// the step leaves nothing to take back (VALIDATE, SET NOT NULL, a DROP).
func UndoStatement(step string) string {
	tree, err := pg_query.Parse(step)
	if err != nil || len(tree.Stmts) != 1 {
		return ""
	}
	n := tree.Stmts[0].Stmt
	if ix := n.GetIndexStmt(); ix != nil && ix.Idxname != "" {
		return "DROP INDEX CONCURRENTLY IF EXISTS " + quoteName(nameInSchemaOf(ix.Relation, ix.Idxname))
	}
	if d := n.GetAlterDomainStmt(); d != nil {
		// ALTER DOMAIN ... ADD CONSTRAINT name: dropped by name (it locks
		// no table).
		con := d.Def.GetConstraint()
		if d.Subtype != "C" || con == nil || con.Conname == "" {
			return ""
		}
		return "ALTER DOMAIN " + quoteName(nameOf(d.TypeName)) + " DROP CONSTRAINT IF EXISTS " + quoteIdent(con.Conname)
	}
	a := n.GetAlterTableStmt()
	if a == nil || len(a.Cmds) != 1 {
		return ""
	}
	cmd := a.Cmds[0].GetAlterTableCmd()
	if cmd == nil || cmd.Subtype != pg_query.AlterTableType_AT_AddConstraint {
		return ""
	}
	con := cmd.Def.GetConstraint()
	if con == nil || con.Conname == "" {
		return ""
	}
	// (For ADD CONSTRAINT ... USING INDEX, dropping the constraint drops
	// the index it adopted too.)
	return "ALTER TABLE " + quoteName(rangeVarName(a.Relation)) + " DROP CONSTRAINT IF EXISTS " + quoteIdent(con.Conname)
}
