package guard

import pg_query "github.com/pganalyze/pg_query_go/v6"

// blockNeutral reports whether PostgreSQL runs the statement exactly as it
// runs it alone when it is one statement of a transaction block (an
// implicit one: a multi-statement Query, or statements pipelined before one
// Sync). It is false for what PostgreSQL refuses inside a block (VACUUM,
// CONCURRENTLY forms, CLUSTER or REINDEX of a partitioned table, ...), for
// what it refuses outside one (LOCK TABLE, DECLARE), for transaction
// control and SET, and for every statement not known to be neutral.
func (s *stmt) blockNeutral() bool {
	if s.concurrently {
		return false
	}
	switch n := s.node.Node.(type) {
	case *pg_query.Node_AlterTableStmt, *pg_query.Node_IndexStmt, *pg_query.Node_RenameStmt,
		*pg_query.Node_TruncateStmt, *pg_query.Node_CreateStmt, *pg_query.Node_CreateTrigStmt,
		*pg_query.Node_RuleStmt, *pg_query.Node_CreatePolicyStmt, *pg_query.Node_AlterPolicyStmt,
		*pg_query.Node_CreateStatsStmt, *pg_query.Node_CommentStmt, *pg_query.Node_AlterDomainStmt,
		*pg_query.Node_AlterObjectSchemaStmt, *pg_query.Node_RefreshMatViewStmt,
		*pg_query.Node_CreateTableAsStmt, *pg_query.Node_ViewStmt, *pg_query.Node_AlterSeqStmt:
		return true
	case *pg_query.Node_DropStmt:
		// DROP DATABASE and DROP TABLESPACE are other statements; a DROP
		// of relations, types or functions runs the same in a block.
		return !n.DropStmt.Concurrent
	}
	return false
}
