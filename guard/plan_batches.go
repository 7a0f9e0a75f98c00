package guard

import (
	"fmt"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// Batched DML: an UPDATE or DELETE of many rows run as short transactions of
// batchRows rows each, repeated until it affects no row, instead of one long
// transaction that holds its locks (and any lock taken before it) throughout.

// batchRows is the number of rows one batch updates or deletes.
const batchRows = 10000

// batchedUpdate is one batch of "UPDATE rel SET set WHERE pending": pending
// must become false for the rows the batch has updated, so that repeating
// the statement ends.
func batchedUpdate(rel, set, pending string) string {
	return fmt.Sprintf("UPDATE %s SET %s WHERE ctid = ANY (ARRAY(SELECT ctid FROM %s WHERE %s LIMIT %d))",
		rel, set, rel, pending, batchRows)
}

// batchedDelete is one batch of "DELETE FROM rel [WHERE cond]".
func batchedDelete(rel, cond string) string {
	where := ""
	if cond != "" {
		where = " WHERE " + cond
	}
	return fmt.Sprintf("DELETE FROM %s WHERE ctid = ANY (ARRAY(SELECT ctid FROM %s%s LIMIT %d))", rel, rel, where, batchRows)
}

// backfill is the batched UPDATE that fills existing rows, with the comment
// a human needs to run it (note is added to the comment).
func backfill(rel, set, pending, note string) []string {
	return []string{
		fmt.Sprintf("-- backfill in batches, one short transaction each, until it updates 0 rows%s:", note),
		batchedUpdate(rel, set, pending) + ";",
	}
}

// batchedStatement renders an UPDATE or DELETE of one table as one batch,
// repeatable until it affects no row; "" when the statement cannot be
// batched that way (joins, self-referencing or volatile SET expressions,
// RETURNING, WITH).
func batchedStatement(n *pg_query.Node) string {
	switch n := n.Node.(type) {
	case *pg_query.Node_UpdateStmt:
		return batchedUpdateOf(n.UpdateStmt)
	case *pg_query.Node_DeleteStmt:
		d := n.DeleteStmt
		if len(d.UsingClause) > 0 || len(d.ReturningList) > 0 || d.WithClause != nil {
			return ""
		}
		cond := ""
		if d.WhereClause != nil {
			if cond = sqlExpr(d.WhereClause); cond == "" {
				return ""
			}
		}
		return batchedDelete(rangeVarSQL(d.Relation), cond)
	}
	return ""
}

// batchedUpdateOf is the batch form of an UPDATE: each target that is not
// yet its new value is pending.
func batchedUpdateOf(u *pg_query.UpdateStmt) string {
	if len(u.FromClause) > 0 || len(u.ReturningList) > 0 || u.WithClause != nil || len(u.TargetList) == 0 {
		return ""
	}
	var sets, pending []string
	for _, t := range u.TargetList {
		rt := t.GetResTarget()
		if rt == nil || len(rt.Indirection) > 0 || rt.Val.GetMultiAssignRef() != nil || rt.Val.GetSetToDefault() != nil ||
			!repeatableExpr(rt.Val) {
			return ""
		}
		for _, c := range exprColumns(rt.Val) {
			if c == rt.Name {
				return "" // SET c = c + 1 would never finish
			}
		}
		val := sqlExpr(rt.Val)
		if val == "" {
			return ""
		}
		sets = append(sets, quoteIdent(rt.Name)+" = "+val)
		pending = append(pending, quoteIdent(rt.Name)+" IS DISTINCT FROM "+val)
	}
	cond := strings.Join(pending, " OR ")
	if len(pending) > 1 {
		cond = "(" + cond + ")"
	}
	if u.WhereClause != nil {
		w := sqlExpr(u.WhereClause)
		if w == "" {
			return ""
		}
		cond = "(" + w + ") AND " + cond
	}
	return batchedUpdate(rangeVarSQL(u.Relation), strings.Join(sets, ", "), cond)
}

// rangeVarSQL renders a relation as SQL: "table [AS alias]".
func rangeVarSQL(rv *pg_query.RangeVar) string {
	out := quoteName(rangeVarName(rv))
	if rv.Alias != nil && rv.Alias.Aliasname != "" {
		out += " AS " + quoteIdent(rv.Alias.Aliasname)
	}
	return out
}
