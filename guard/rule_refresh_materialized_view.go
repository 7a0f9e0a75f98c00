package guard

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
)

// refreshMatViewRule: REFRESH MATERIALIZED VIEW holds ACCESS EXCLUSIVE (no
// reads) while it reruns the query and rewrites the view. CONCURRENTLY
// holds EXCLUSIVE (reads go on) and has the same end state; it needs a
// unique index on plain columns and a populated view, and unlike most
// CONCURRENTLY forms it may run inside a transaction block.
type refreshMatViewRule struct{}

func init() { register(refreshMatViewRule{}) }

func (refreshMatViewRule) ID() string        { return "refresh-materialized-view" }
func (refreshMatViewRule) DefaultMode() Mode { return Enforce }
func (refreshMatViewRule) Relaxable() bool   { return true }

func (refreshMatViewRule) Check(s *Statement) *Finding {
	r := s.node.GetRefreshMatViewStmt()
	// WITH NO DATA empties the view without running its query (and
	// cannot be CONCURRENTLY).
	if r == nil || r.Concurrent || r.SkipData {
		return nil
	}
	rel := rangeVarName(r.Relation)
	if !s.existing(rel) {
		return nil
	}
	f, known := s.facts.Relation(rel)
	if known && !f.Populated {
		// Not populated: nobody can read it yet, and CONCURRENTLY is
		// refused.
		return nil
	}
	c := proto.Clone(r).(*pg_query.RefreshMatViewStmt)
	c.Concurrent = true
	safe := deparse(&pg_query.Node{Node: &pg_query.Node_RefreshMatViewStmt{RefreshMatViewStmt: c}})
	why := "while it reruns the view's query and rewrites it"
	if known && f.UniqueIndex {
		fd := s.finding(rel, why, safe)
		fd.Rewrite = []string{safe}
		// REFRESH ... CONCURRENTLY could run inside a transaction block,
		// but ddlguard runs rewrites only for statements outside one;
		// inside, the statement is rejected and the hint can be used there.
		fd.RewriteOutsideTxOnly = true
		return fd
	}
	need := "-- REFRESH ... CONCURRENTLY needs a unique index on " + quoteName(rel) +
		" over plain columns (no expression, no WHERE) that identify each row; PostgreSQL names it " +
		unqualified(rel) + "_<columns>_idx:"
	if !known {
		need = "-- REFRESH ... CONCURRENTLY needs a unique index on " + quoteName(rel) +
			" over plain columns (no expression, no WHERE) that identify each row; if it has none yet (PostgreSQL names it " +
			unqualified(rel) + "_<columns>_idx):"
	}
	return s.finding(rel, why, strings.Join([]string{
		need,
		"CREATE UNIQUE INDEX CONCURRENTLY ON " + quoteName(rel) + " (/* the columns that identify a row */);",
		safe + ";",
	}, "\n"))
}
