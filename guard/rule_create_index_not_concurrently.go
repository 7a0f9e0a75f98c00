package guard

import (
	"strconv"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
)

// createIndexRule: CREATE INDEX without CONCURRENTLY holds SHARE (all writes
// wait) for the whole build. CREATE INDEX CONCURRENTLY builds under SHARE
// UPDATE EXCLUSIVE and has the same end state. It cannot build on a
// partitioned table: there the safe form is the partition-by-partition
// sequence (the index on the parent only, each partition's built
// concurrently and attached), written out for the partitions the facts
// list, and only named when they are not known.
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
		if !ix.Relation.Inh {
			return nil // ON ONLY: an index on the parent alone, nothing built
		}
		f, _ := s.facts.Relation(rel)
		steps := partitionedIndexSteps(ix, f)
		if steps == nil {
			return s.finding(rel, workWhy(WorkIndexBuild), partitionedIndexHint(ix))
		}
		fd := s.finding(rel, workWhy(WorkIndexBuild), strings.Join(steps, ";\n")+";")
		fd.Rewrite = steps
		fd.RewriteOutsideTxOnly = true
		return fd
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

// partitionedIndexSteps is the partition-by-partition sequence for the
// partitioned table f (its facts) as PostgreSQL's own CREATE INDEX would
// leave it: the index on the parent only, then for each partition in tree
// order its index (ON ONLY a sub-partitioned one, CONCURRENTLY on a leaf)
// attached to its parent's, which makes the parent's valid once all are.
// Names are chosen as PostgreSQL chooses them (table, columns, "idx", a
// number when taken). nil when the tree is not known, or for IF NOT EXISTS
// (whether the parent's index exists decides what the statement does), or
// for a unique index over foreign partitions (which PostgreSQL refuses).
func partitionedIndexSteps(ix *pg_query.IndexStmt, f RelationFacts) []string {
	if f.Partitions == nil || ix.IfNotExists {
		return nil
	}
	cols := columnsPart(indexColumns(ix))
	taken := map[string]bool{}
	for _, n := range f.Indexes {
		taken[n] = true
	}
	for _, p := range f.Partitions {
		taken[unqualified(p.Name)] = true
		for _, n := range p.Indexes {
			taken[n] = true
		}
	}
	name := ix.Idxname
	if name == "" {
		name = chooseName(ix.Relation.Relname, cols, taken)
	}
	taken[name] = true
	parent := proto.Clone(ix).(*pg_query.IndexStmt)
	parent.Idxname, parent.Relation.Inh = name, false
	steps := []string{deparse(&pg_query.Node{Node: &pg_query.Node_IndexStmt{IndexStmt: parent}})}
	indexOf := map[string]string{"": nameInSchemaOf(ix.Relation, name)}
	for _, p := range f.Partitions {
		if p.Kind == 'f' {
			if ix.Unique {
				return nil
			}
			continue // PostgreSQL leaves foreign partitions unindexed
		}
		up, ok := indexOf[p.Parent]
		if !ok {
			return nil
		}
		child := proto.Clone(ix).(*pg_query.IndexStmt)
		child.Relation = rangeVarOf(p.Name)
		child.Idxname = chooseName(child.Relation.Relname, cols, taken)
		taken[child.Idxname] = true
		if p.Kind == 'p' {
			child.Relation.Inh = false
		} else {
			child.Concurrent = true
		}
		own := nameInSchemaOf(child.Relation, child.Idxname)
		indexOf[p.Name] = own
		steps = append(steps, deparse(&pg_query.Node{Node: &pg_query.Node_IndexStmt{IndexStmt: child}}),
			"ALTER INDEX "+quoteName(up)+" ATTACH PARTITION "+quoteName(own))
	}
	return steps
}

// chooseName picks an index name for table as PostgreSQL does
// (ChooseRelationName): table_columns_idx, then idx1, idx2, ... until one is
// not taken.
func chooseName(table, cols string, taken map[string]bool) string {
	name := makeObjectName(table, cols, "idx")
	for pass := 1; taken[name]; pass++ {
		name = makeObjectName(table, cols, "idx"+strconv.Itoa(pass))
	}
	return name
}

// rangeVarOf is the RangeVar of a relation name as the guard reports it.
func rangeVarOf(name string) *pg_query.RangeVar {
	rv := &pg_query.RangeVar{Relname: name, Inh: true, Relpersistence: "p"}
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		rv.Schemaname, rv.Relname = name[:i], name[i+1:]
	}
	return rv
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
