package guard

import (
	"fmt"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
)

// reindexRule: REINDEX without CONCURRENTLY rebuilds under SHARE on the table
// (every write waits) and ACCESS EXCLUSIVE on the index being rebuilt (every
// query that would use it waits), for the whole build. REINDEX CONCURRENTLY
// (PostgreSQL 12+) builds a new copy under SHARE UPDATE EXCLUSIVE and swaps
// it in: the same end state.
type reindexRule struct{}

func init() { register(reindexRule{}) }

func (reindexRule) ID() string        { return "reindex-not-concurrently" }
func (reindexRule) DefaultMode() Mode { return Enforce }
func (reindexRule) Relaxable() bool   { return true }

func (reindexRule) Check(s *Statement) *Finding {
	r := s.node.GetReindexStmt()
	if r == nil || s.concurrently {
		return nil
	}
	switch r.Kind {
	case pg_query.ReindexObjectType_REINDEX_OBJECT_INDEX, pg_query.ReindexObjectType_REINDEX_OBJECT_TABLE:
		rel := rangeVarName(r.Relation)
		if rel == "" || !s.existing(rel) {
			return nil
		}
		safe := reindexConcurrentlySQL(r, s.sess.major())
		if safe == "" {
			return nil
		}
		why := "while it rebuilds the index: every query on its table waits (planning a query locks all the " +
			"table's indexes), and the table itself is held in SHARE mode"
		if r.Kind == pg_query.ReindexObjectType_REINDEX_OBJECT_TABLE {
			why = "while it rebuilds every index of " + rel + "; each index is locked ACCESS EXCLUSIVE while it is " +
				"rebuilt, and planning a query locks all the table's indexes, so reads wait too"
		}
		f := s.finding(rel, why, s.concurrentlyHint(safe))
		f.Rewrite = []string{safe}
		f.RewriteOutsideTxOnly = true
		return f
	case pg_query.ReindexObjectType_REINDEX_OBJECT_SCHEMA, pg_query.ReindexObjectType_REINDEX_OBJECT_DATABASE:
		// Not rewritten: rebuilding every index of a schema or database is
		// a maintenance job to start on purpose, not a migration step.
		what := "SCHEMA " + quoteIdent(r.Name)
		if r.Kind == pg_query.ReindexObjectType_REINDEX_OBJECT_DATABASE {
			what = strings.TrimSpace("DATABASE " + quoteIdent(r.Name))
			if r.Name == "" {
				what = "DATABASE"
			}
		}
		hint := []string{reindexConcurrentlySQL(r, s.sess.major()) + ";"}
		if r.Kind == pg_query.ReindexObjectType_REINDEX_OBJECT_DATABASE {
			hint = append([]string{"-- CONCURRENTLY skips the system catalogs; reindex those with REINDEX SYSTEM in a maintenance window"}, hint...)
		}
		hint = append([]string{"-- outside a transaction block, as a query of its own, at a quiet time:"}, hint...)
		return reindexAllFinding(s, "REINDEX "+what, strings.Join(hint, "\n"))
	case pg_query.ReindexObjectType_REINDEX_OBJECT_SYSTEM:
		hint := "-- system catalogs cannot be reindexed CONCURRENTLY: run it in a maintenance window and confirm:\n" +
			allowComment("reindex-not-concurrently", "maintenance window") + deparse(s.node) + ";"
		return reindexAllFinding(s, strings.TrimSpace("REINDEX SYSTEM "+r.Name), hint)
	}
	return nil
}

// reindexConcurrentlySQL renders the statement with CONCURRENTLY and its
// other options kept: REINDEX (CONCURRENTLY, VERBOSE) INDEX i on PostgreSQL
// 14+, REINDEX (VERBOSE) INDEX CONCURRENTLY i before (the option list took
// only VERBOSE there).
func reindexConcurrentlySQL(r *pg_query.ReindexStmt, major int) string {
	c := proto.Clone(r).(*pg_query.ReindexStmt)
	params := make([]*pg_query.Node, 0, len(c.Params)+1)
	if major >= 14 {
		params = append(params, &pg_query.Node{Node: &pg_query.Node_DefElem{DefElem: &pg_query.DefElem{
			Defname: "concurrently", Defaction: pg_query.DefElemAction_DEFELEM_UNSPEC, Location: -1}}})
	}
	for _, p := range c.Params {
		if d := p.GetDefElem(); d != nil && d.Defname == "concurrently" {
			continue
		}
		params = append(params, p)
	}
	c.Params = params
	out := deparse(&pg_query.Node{Node: &pg_query.Node_ReindexStmt{ReindexStmt: c}})
	if out == "" || major >= 14 {
		return out
	}
	// Put CONCURRENTLY after the object kind, which follows REINDEX or the
	// parenthesized option list.
	word := strings.TrimPrefix(c.Kind.String(), "REINDEX_OBJECT_")
	at := len("REINDEX ")
	if strings.HasPrefix(out, "REINDEX (") {
		i := strings.Index(out, ") "+word)
		if i < 0 {
			return ""
		}
		at = i + 2
	}
	if !strings.HasPrefix(out[at:], word) {
		return ""
	}
	at += len(word)
	return out[:at] + " CONCURRENTLY" + out[at:]
}

// reindexAllFinding is the finding for REINDEX SCHEMA / DATABASE / SYSTEM,
// which lock every table they visit rather than one named relation.
func reindexAllFinding(s *Statement, what, hint string) *Finding {
	msg := fmt.Sprintf("%s would hold %s lock (%s) on each table it visits and %s on each index while it rebuilds it, "+
		"one table after another, for as long as it takes to rebuild every index", what, Share, Share.Blocks(), AccessExclusive)
	return &Finding{Message: msg, Detail: locksDetail(s.locks), Hint: hint}
}
