package guard

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
)

// createIndexRule: CREATE INDEX without CONCURRENTLY holds SHARE (all writes
// wait) for the whole build. CREATE INDEX CONCURRENTLY builds under SHARE
// UPDATE EXCLUSIVE and has the same end state; on a partitioned table, which
// it cannot build on, the hint is the partition-by-partition sequence.
type createIndexRule struct{}

func init() { register(createIndexRule{}) }

func (createIndexRule) ID() string        { return "create-index-not-concurrently" }
func (createIndexRule) DefaultMode() Mode { return Enforce }
func (createIndexRule) Relaxable() bool   { return true }

func (createIndexRule) Check(s *Statement) *Finding {
	ix := s.node.GetIndexStmt()
	if ix == nil || ix.Concurrent {
		return nil
	}
	rel := rangeVarName(ix.Relation)
	if !s.existing(rel) {
		return nil
	}
	if s.isPartitioned(rel) {
		// PostgreSQL cannot build an index CONCURRENTLY on a partitioned
		// table: no rewrite, the hint is the sequence that gets there.
		return s.finding(rel, workWhy(WorkIndexBuild), partitionedIndexHint(ix))
	}
	c := proto.Clone(ix).(*pg_query.IndexStmt)
	c.Concurrent = true
	safe := deparse(&pg_query.Node{Node: &pg_query.Node_IndexStmt{IndexStmt: c}})
	f := s.finding(rel, workWhy(WorkIndexBuild), safe)
	f.Rewrite = []string{safe}
	f.RewriteOutsideTxOnly = true
	return f
}

// partitionedIndexHint is the way to index a partitioned table without
// holding SHARE on all of it for the build: the index on the parent only
// (invalid, and quick), then on each partition CONCURRENTLY, attached to
// it; the parent's index is valid once every partition's is attached.
func partitionedIndexHint(ix *pg_query.IndexStmt) string {
	name := ix.Idxname
	if name == "" {
		name = makeObjectName(ix.Relation.Relname, columnsPart(indexColumns(ix)), "idx")
	}
	parent := proto.Clone(ix).(*pg_query.IndexStmt)
	parent.Idxname, parent.Relation.Inh = name, false
	part := proto.Clone(ix).(*pg_query.IndexStmt)
	part.Concurrent, part.IfNotExists = true, false
	part.Idxname = makeObjectName(partitionPlaceholder, columnsPart(indexColumns(ix)), "idx")
	part.Relation = &pg_query.RangeVar{Relname: partitionPlaceholder, Inh: true}
	partIndex := part.Idxname // in its partition's schema, which <partition> names
	if ix.Relation.Schemaname != "" {
		name = ix.Relation.Schemaname + "." + name
	}
	return strings.Join([]string{
		"-- " + rangeVarName(ix.Relation) + " is partitioned, and CREATE INDEX CONCURRENTLY cannot build on a partitioned table: index the parent only (quick; the index stays invalid), then each partition concurrently, attaching each (replace <partition>; a sub-partitioned partition the same way, one level down):",
		deparse(&pg_query.Node{Node: &pg_query.Node_IndexStmt{IndexStmt: parent}}) + ";",
		unquotePlaceholder(deparse(&pg_query.Node{Node: &pg_query.Node_IndexStmt{IndexStmt: part}})) + ";",
		unquotePlaceholder("ALTER INDEX "+quoteName(name)+" ATTACH PARTITION "+quoteName(partIndex)) + ";",
	}, "\n")
}

// indexColumns names an index's columns as PostgreSQL's index names do
// ("expr" for an expression).
func indexColumns(ix *pg_query.IndexStmt) []string {
	var cols []string
	for _, p := range ix.IndexParams {
		e := p.GetIndexElem()
		switch {
		case e == nil:
		case e.Name != "":
			cols = append(cols, e.Name)
		default:
			cols = append(cols, "expr")
		}
	}
	return cols
}
