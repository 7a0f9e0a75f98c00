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
			if sameRelationName(h, rel) {
				return h
			}
		}
		return ""
	}
	commitFirst := "-- COMMIT right after the DDL on " + strings.Join(held, ", ") +
		", then run this in a transaction of its own:\n" + s.writtenSQL() + ";"

	// Locks the statement takes: on another existing relation (it may wait
	// for it, and works on it, while the held tables stay blocked), or slow
	// work on a held one.
	for _, l := range s.locks {
		if !s.existing(l.Relation) {
			continue
		}
		if h := heldAs(l.Relation); h == "" {
			// ANALYZE reads a sample of the table under its weak lock:
			// work, not a quick DDL.
			quickDDL := l.Mode >= Share || n.GetVacuumStmt() == nil
			if quickDDL && (!l.Work.Slow() || s.isSmall(l.Relation)) {
				// A quick DDL on another relation (renaming or commenting
				// on it, a strong lock's deadlock-order case of
				// several-tables-in-transaction with its own mode).
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
			if batched := batchedStatement(n); batched != "" {
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
	return s.sess.Tx.addedNotValid(rangeVarName(a.Relation), cmd.Name)
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
		return optionOn(n.GetExplainStmt().Options, "analyze")
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
