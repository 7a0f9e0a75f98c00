package guard

import (
	"fmt"
	"sort"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// statementAfterAccessExclusiveRule: once a transaction holds ACCESS
// EXCLUSIVE on an existing table, every further statement in it prolongs the
// outage of that table until COMMIT: a backfill UPDATE after ADD COLUMN, an
// index build or other slow work on another table. A quick DDL on another
// table is left to several-tables-in-transaction (the seed article's
// deadlock case), so it follows that rule's mode.
// Allowed: transaction control, SET/RESET/SHOW, statements that only touch
// relations already held at ACCESS EXCLUSIVE without slow work (a second
// quick ALTER of the same table), statements on relations created in the
// transaction, and queries that read or write none of the locked tables
// (migration bookkeeping such as INSERT INTO schema_migrations). A plain
// INSERT ... VALUES into a locked table is quick and allowed too, and so is
// work on a locked table the catalog facts show to be small. VALIDATE of a
// constraint added NOT VALID in the same transaction is left to
// validate-in-same-transaction.
type statementAfterAccessExclusiveRule struct{}

func init() { register(statementAfterAccessExclusiveRule{}) }

func (statementAfterAccessExclusiveRule) ID() string        { return "statement-after-access-exclusive" }
func (statementAfterAccessExclusiveRule) DefaultMode() Mode { return Enforce }
func (statementAfterAccessExclusiveRule) Relaxable() bool   { return false }

func (statementAfterAccessExclusiveRule) Check(s *Statement) *Finding {
	var held []string // existing relations held at ACCESS EXCLUSIVE
	for rel, m := range s.sess.Tx.Held {
		if m >= AccessExclusive && s.existing(rel) {
			held = append(held, rel)
		}
	}
	if len(held) == 0 {
		return nil
	}
	sort.Strings(held)
	n := s.node
	if n.GetTransactionStmt() != nil || n.GetVariableSetStmt() != nil || n.GetVariableShowStmt() != nil {
		return nil
	}
	heldAs := func(rel string) string {
		for _, h := range held {
			if h == rel || unqualified(h) == unqualified(rel) && (h == unqualified(h) || rel == unqualified(rel)) {
				return h
			}
		}
		return ""
	}
	sql := strings.TrimSuffix(strings.TrimSpace(s.text), ";")
	commitFirst := "-- COMMIT right after the DDL on " + strings.Join(held, ", ") +
		", then run this in a transaction of its own:\n" + sql + ";"

	// Locks the statement takes: on another existing relation (it may wait
	// for it, and works on it, while the held tables stay blocked), or slow
	// work on a held one.
	for _, l := range s.locks {
		if !s.existing(l.Relation) {
			continue
		}
		if h := heldAs(l.Relation); h == "" {
			if l.Mode >= Share && (!l.Work.Slow() || s.isSmall(l.Relation)) {
				// A quick DDL lock on another table: the deadlock-order
				// case of several-tables-in-transaction, with its own mode.
				continue
			}
			why := "while this transaction already holds " + AccessExclusive.String() + " on " +
				strings.Join(held, ", ") + ": " + strings.Join(held, ", ") +
				" stays blocked for all reads and writes while this waits for and works on " + l.Relation + ", until COMMIT"
			return s.finding(l.Relation, why, commitFirst)
		} else if l.Work.Slow() && !s.isSmall(h) && !afterAEValidatesOwnNotValid(s) {
			return heldFinding(s, h, workWhy(l.Work)+" under it", commitFirst)
		}
	}

	// Queries and DML: they take no lock worth recording, but whatever they
	// read or write of a held table they do under its ACCESS EXCLUSIVE lock.
	if !afterAEDataStatement(n) || afterAEQuickInsert(n) {
		return nil
	}
	for _, rel := range afterAERelations(n) {
		if h := heldAs(rel); h != "" && !s.isSmall(h) {
			hint := commitFirst
			if batched := afterAEBatched(n); batched != "" {
				hint = "-- COMMIT right after the DDL on " + strings.Join(held, ", ") +
					"; then, in batches, one short transaction each, until it affects 0 rows:\n" + batched + ";"
			}
			return heldFinding(s, h, "for as long as it runs", hint)
		}
	}
	return nil
}

// afterAEValidatesOwnNotValid: VALIDATE CONSTRAINT of a constraint this
// transaction added NOT VALID, the case the validate-in-same-transaction
// rule reports more precisely.
func afterAEValidatesOwnNotValid(s *Statement) bool {
	a, cmd := s.alterTableCmd()
	if cmd == nil || cmd.Subtype != pg_query.AlterTableType_AT_ValidateConstraint {
		return false
	}
	rel := unqualified(rangeVarName(a.Relation))
	for c := range s.sess.Tx.NotValid {
		if i := strings.LastIndexByte(c, '.'); i > 0 && c[i+1:] == cmd.Name && unqualified(c[:i]) == rel {
			return true
		}
	}
	return false
}

// heldFinding is the finding for work done under the ACCESS EXCLUSIVE lock
// the transaction already holds on rel (the statement's own lock, if any, is
// weaker and not the point).
func heldFinding(s *Statement, rel, why, hint string) *Finding {
	msg := fmt.Sprintf("%s on %s would hold %s lock (%s), taken earlier in this transaction, %s; "+
		"it is held until COMMIT", s.kind, rel, AccessExclusive, AccessExclusive.Blocks(), why)
	held := rel + " " + AccessExclusive.String() + " (held by this transaction since an earlier statement)"
	detail := locksDetail(s.locks)
	if detail == "" {
		detail = "locks: " + held
	} else {
		detail += "; " + held
	}
	return &Finding{Message: msg, Detail: detail, Hint: hint}
}

// afterAEDataStatement: the statement reads or writes table data.
func afterAEDataStatement(n *pg_query.Node) bool {
	switch {
	case n.GetSelectStmt() != nil, n.GetInsertStmt() != nil, n.GetUpdateStmt() != nil, n.GetDeleteStmt() != nil,
		n.GetMergeStmt() != nil, n.GetCopyStmt() != nil, n.GetCreateTableAsStmt() != nil:
		return true
	case n.GetExplainStmt() != nil:
		// Only EXPLAIN ANALYZE runs the query.
		for _, o := range n.GetExplainStmt().Options {
			if d := o.GetDefElem(); d != nil && d.Defname == "analyze" && defElemTrue(d) {
				return true
			}
		}
	}
	return false
}

// afterAEQuickInsert: INSERT ... VALUES with no subquery: a few rows.
func afterAEQuickInsert(n *pg_query.Node) bool {
	ins := n.GetInsertStmt()
	if ins == nil || ins.WithClause != nil {
		return false
	}
	sel := ins.SelectStmt.GetSelectStmt()
	return sel != nil && len(sel.ValuesLists) > 0 && len(afterAERelations(ins.SelectStmt)) == 0
}

// afterAERelations lists the relations a statement names anywhere in its
// tree (FROM items, targets, subqueries), as written.
func afterAERelations(n *pg_query.Node) []string {
	var out []string
	walkTree(n.ProtoReflect(), func(m protoreflect.Message) bool {
		rv, ok := m.Interface().(*pg_query.RangeVar)
		if ok {
			out = appendUnique(out, rangeVarName(rv))
		}
		return !ok
	})
	return out
}

// afterAEBatched renders an UPDATE or DELETE of one table as one batch of
// 10000 rows, repeatable until it affects no row; "" when the statement
// cannot be batched that way (joins, self-referencing or volatile SET
// expressions, RETURNING, WITH).
func afterAEBatched(n *pg_query.Node) string {
	const batch = " LIMIT 10000))"
	switch {
	case n.GetUpdateStmt() != nil:
		u := n.GetUpdateStmt()
		if len(u.FromClause) > 0 || len(u.ReturningList) > 0 || u.WithClause != nil || len(u.TargetList) == 0 {
			return ""
		}
		from := afterAERangeVarSQL(u.Relation)
		var sets, pending []string
		for _, t := range u.TargetList {
			rt := t.GetResTarget()
			if rt == nil || len(rt.Indirection) > 0 || rt.Val.GetMultiAssignRef() != nil || rt.Val.GetSetToDefault() != nil ||
				!afterAERepeatable(rt.Val) {
				return ""
			}
			for _, c := range exprColumns(rt.Val) {
				if c == rt.Name {
					return "" // SET c = c + 1 would never finish
				}
			}
			val := afterAEExprSQL(rt.Val)
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
			w := afterAEExprSQL(u.WhereClause)
			if w == "" {
				return ""
			}
			cond = "(" + w + ") AND " + cond
		}
		return "UPDATE " + from + " SET " + strings.Join(sets, ", ") + " WHERE ctid = ANY (ARRAY(SELECT ctid FROM " +
			from + " WHERE " + cond + batch
	case n.GetDeleteStmt() != nil:
		d := n.GetDeleteStmt()
		if len(d.UsingClause) > 0 || len(d.ReturningList) > 0 || d.WithClause != nil {
			return ""
		}
		from := afterAERangeVarSQL(d.Relation)
		where := ""
		if d.WhereClause != nil {
			w := afterAEExprSQL(d.WhereClause)
			if w == "" {
				return ""
			}
			where = " WHERE " + w
		}
		return "DELETE FROM " + from + " WHERE ctid = ANY (ARRAY(SELECT ctid FROM " + from + where + batch
	}
	return ""
}

// afterAERangeVarSQL renders "table [AS alias]".
func afterAERangeVarSQL(rv *pg_query.RangeVar) string {
	out := quoteName(rangeVarName(rv))
	if rv.Alias != nil && rv.Alias.Aliasname != "" {
		out += " AS " + quoteIdent(rv.Alias.Aliasname)
	}
	return out
}

// afterAEExprSQL renders an expression as SQL.
func afterAEExprSQL(n *pg_query.Node) string {
	sel := &pg_query.SelectStmt{TargetList: []*pg_query.Node{{Node: &pg_query.Node_ResTarget{
		ResTarget: &pg_query.ResTarget{Val: n, Location: -1}}}}}
	out := deparse(&pg_query.Node{Node: &pg_query.Node_SelectStmt{SelectStmt: sel}})
	if !strings.HasPrefix(out, "SELECT ") {
		return ""
	}
	return strings.TrimPrefix(out, "SELECT ")
}

// afterAERepeatable: evaluating the expression again gives the same value
// for the same row: no subquery, and only functions known not to be
// volatile (nonVolatileFuncs; column references are fine).
func afterAERepeatable(n *pg_query.Node) bool {
	ok := true
	walkTree(n.ProtoReflect(), func(m protoreflect.Message) bool {
		switch v := m.Interface().(type) {
		case *pg_query.SubLink:
			ok = false
		case *pg_query.FuncCall:
			if len(v.Funcname) == 0 || !nonVolatileFuncs[v.Funcname[len(v.Funcname)-1].GetString_().GetSval()] {
				ok = false
			}
		}
		return ok
	})
	return ok
}
