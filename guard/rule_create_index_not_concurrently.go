package guard

import (
	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
)

// createIndexRule: CREATE INDEX without CONCURRENTLY holds SHARE (all writes
// wait) for the whole build. CREATE INDEX CONCURRENTLY builds under SHARE
// UPDATE EXCLUSIVE and has the same end state.
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
	c := proto.Clone(ix).(*pg_query.IndexStmt)
	c.Concurrent = true
	safe := deparse(&pg_query.Node{Node: &pg_query.Node_IndexStmt{IndexStmt: c}})
	f := s.finding(rel, workWhy(WorkIndexBuild), safe)
	f.Rewrite = []string{safe}
	f.RewriteOutsideTxOnly = true
	return f
}
