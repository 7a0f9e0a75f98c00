package guard

import pg_query "github.com/pganalyze/pg_query_go/v6"

// keepsShape reports whether the statement leaves every existing relation
// it touches the same kind of thing under the same name, with the same
// partitions and persistence, and without writing rows: DDL that changes
// only columns, constraints, defaults, indexes, triggers, comments or
// statistics, new relations, transaction control and settings. Data
// statements, partition and inheritance changes, renames of relations,
// drops, truncation and table-wide rewrites that change storage are not.
func (s *stmt) keepsShape() bool {
	switch n := s.node.Node.(type) {
	case *pg_query.Node_CreateStmt:
		// A partition or child changes its parent's partitions.
		return n.CreateStmt.Partbound == nil && len(n.CreateStmt.InhRelations) == 0
	case *pg_query.Node_TransactionStmt, *pg_query.Node_VariableSetStmt, *pg_query.Node_VariableShowStmt,
		*pg_query.Node_IndexStmt, *pg_query.Node_CreateTrigStmt,
		*pg_query.Node_CommentStmt, *pg_query.Node_CreateStatsStmt, *pg_query.Node_ViewStmt,
		*pg_query.Node_CreateSeqStmt, *pg_query.Node_CreateFunctionStmt, *pg_query.Node_CreateEnumStmt,
		*pg_query.Node_CreateDomainStmt, *pg_query.Node_AlterDomainStmt, *pg_query.Node_CreatePolicyStmt:
		return true
	case *pg_query.Node_RenameStmt:
		t := n.RenameStmt.RenameType
		return t == pg_query.ObjectType_OBJECT_COLUMN || t == pg_query.ObjectType_OBJECT_TABCONSTRAINT
	case *pg_query.Node_AlterTableStmt:
		for _, c := range n.AlterTableStmt.Cmds {
			if !keepsShapeCmd(c.GetAlterTableCmd().GetSubtype()) {
				return false
			}
		}
		return true
	}
	return false
}

func keepsShapeCmd(t pg_query.AlterTableType) bool {
	switch t {
	case pg_query.AlterTableType_AT_AttachPartition, pg_query.AlterTableType_AT_DetachPartition,
		pg_query.AlterTableType_AT_DetachPartitionFinalize, pg_query.AlterTableType_AT_AddInherit,
		pg_query.AlterTableType_AT_DropInherit, pg_query.AlterTableType_AT_SetTableSpace,
		pg_query.AlterTableType_AT_SetLogged, pg_query.AlterTableType_AT_SetUnLogged,
		pg_query.AlterTableType_AT_SetAccessMethod, pg_query.AlterTableType_AT_AddOf,
		pg_query.AlterTableType_AT_DropOf:
		return false
	}
	return true
}

// FactsOutlive reports whether facts about rel, cached before statement d
// ran, still serve the guard after it: d keeps the shape of what it
// touches (Decision.KeepsShape), does not drop rel, and rel is small with
// room to spare (under half the session's small-table threshold, so that
// a rewrite that doubles it stays small). The rules that read a
// relation's columns and constraints judge only relations that are not
// small, so of such facts the size, kind and persistence are what stays
// good: the caller drops the rest.
func (g *Guard) FactsOutlive(d *Decision, rel string, f RelationFacts, sess *Session) bool {
	if !d.KeepsShape {
		return false
	}
	for _, dropped := range d.Effects.Dropped {
		if dropped == rel {
			return false
		}
	}
	small := g.cfg.smallTableBytes(sess)
	return f.SizeBytes >= 0 && f.SizeBytes < small/2
}
