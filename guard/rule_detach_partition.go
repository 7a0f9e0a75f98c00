package guard

import (
	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
)

// detachPartitionRule: ALTER TABLE p DETACH PARTITION c takes ACCESS
// EXCLUSIVE on the parent and the partition: every query on the whole
// partitioned table queues behind it while it waits. PostgreSQL 14+ can
// detach CONCURRENTLY (SHARE UPDATE EXCLUSIVE on the parent), with the same
// end state, unless the parent has a DEFAULT partition. Where CONCURRENTLY is
// not available (PostgreSQL 13, a DEFAULT partition) there is nothing safer
// and the statement just runs with the lock timeout; inside a transaction
// block, where CONCURRENTLY cannot run either, it runs with the lock timeout
// and a warning (the detach itself is metadata, its danger the queue).
type detachPartitionRule struct{}

func init() { register(detachPartitionRule{}) }

func (detachPartitionRule) ID() string        { return "detach-partition" }
func (detachPartitionRule) DefaultMode() Mode { return Enforce }
func (detachPartitionRule) Relaxable() bool   { return false }

func (detachPartitionRule) Check(s *Statement) *Finding {
	a, cmd := s.alterTableCmd()
	if cmd == nil || cmd.Subtype != pg_query.AlterTableType_AT_DetachPartition {
		return nil
	}
	pc := cmd.Def.GetPartitionCmd()
	if pc == nil || pc.Concurrent || s.sess.major() < 14 {
		return nil
	}
	parent := rangeVarName(a.Relation)
	if !s.existing(parent) {
		return nil
	}
	if f, ok := s.facts.Relation(parent); ok && f.HasDefaultPartition {
		return nil
	}
	c := proto.Clone(a).(*pg_query.AlterTableStmt)
	c.Cmds[0].GetAlterTableCmd().Def.GetPartitionCmd().Concurrent = true
	safe := deparse(&pg_query.Node{Node: &pg_query.Node_AlterTableStmt{AlterTableStmt: c}})
	if safe == "" {
		return nil
	}
	why := "and on the partition " + rangeVarName(pc.Name) + ": every query on the partitioned table " +
		"queues behind it while it waits for the transactions using it"
	f := s.finding(parent, why, s.concurrentlyHint(safe))
	f.Rewrite = []string{safe}
	f.RewriteOutsideTxOnly = true
	f.QueueOnly = true // a detach is metadata: its danger is the queue
	return f
}
