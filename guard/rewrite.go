package guard

import (
	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// UndoSequence returns what takes back the steps of a rewrite sequence
// that ran (in order), last first (known[step] where the planner gave it,
// else UndoStatement), leaving out indexes a later step attached to a
// partitioned table's index: they go with it, and cannot be dropped before
// it.
func UndoSequence(ran []string, known map[string]string) []string {
	attached := map[string]bool{}
	for _, step := range ran {
		if child := attachedIndex(step); child != "" {
			attached[child] = true
		}
	}
	var out []string
	for i := len(ran) - 1; i >= 0; i-- {
		if ix := createdIndex(ran[i]); ix != "" && attached[ix] {
			continue
		}
		u, ok := known[ran[i]]
		if !ok {
			u = UndoStatement(ran[i])
		}
		if u != "" {
			out = append(out, u)
		}
	}
	return out
}

// attachedIndex is the index an ALTER INDEX ... ATTACH PARTITION step
// attaches ("" for any other step).
func attachedIndex(step string) string {
	tree, err := pg_query.Parse(step)
	if err != nil || len(tree.Stmts) != 1 {
		return ""
	}
	a := tree.Stmts[0].Stmt.GetAlterTableStmt()
	if a == nil || a.Objtype != pg_query.ObjectType_OBJECT_INDEX || len(a.Cmds) != 1 {
		return ""
	}
	cmd := a.Cmds[0].GetAlterTableCmd()
	if cmd == nil || cmd.Subtype != pg_query.AlterTableType_AT_AttachPartition || cmd.Def.GetPartitionCmd() == nil {
		return ""
	}
	return rangeVarName(cmd.Def.GetPartitionCmd().Name)
}

// createdIndex is the index a CREATE INDEX step creates, named as
// attachedIndex names it ("" for any other step).
func createdIndex(step string) string {
	tree, err := pg_query.Parse(step)
	if err != nil || len(tree.Stmts) != 1 {
		return ""
	}
	if ix := tree.Stmts[0].Stmt.GetIndexStmt(); ix != nil && ix.Idxname != "" {
		return nameInSchemaOf(ix.Relation, ix.Idxname)
	}
	return ""
}

// UndoStatement returns the statement that takes back what one step of a
// rewrite sequence created, for when a later step fails and the original
// statement would have left nothing behind: a constraint added by the step
// is dropped, an index built concurrently is dropped concurrently (an index
// on a partitioned table only, which cannot be, is dropped with the
// indexes attached to it). "" when
// the step leaves nothing to take back (VALIDATE, SET NOT NULL, a DROP).
func UndoStatement(step string) string {
	tree, err := pg_query.Parse(step)
	if err != nil || len(tree.Stmts) != 1 {
		return ""
	}
	n := tree.Stmts[0].Stmt
	if ix := n.GetIndexStmt(); ix != nil && ix.Idxname != "" {
		if !ix.Concurrent {
			return "DROP INDEX IF EXISTS " + quoteName(nameInSchemaOf(ix.Relation, ix.Idxname))
		}
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
