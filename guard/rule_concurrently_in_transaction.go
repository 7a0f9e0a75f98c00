package guard

import (
	"fmt"
)

// concurrentlyInTxRule: CREATE INDEX / DROP INDEX / REINDEX CONCURRENTLY and
// DETACH PARTITION ... CONCURRENTLY cannot run inside a transaction block,
// explicit (BEGIN) or implicit (several statements in one simple query).
// PostgreSQL fails them there; ddlguard says so before anything runs, with
// how to send it instead. REFRESH MATERIALIZED VIEW CONCURRENTLY is allowed
// in a transaction block and is not this rule's business.
type concurrentlyInTxRule struct{}

func init() { register(concurrentlyInTxRule{}) }

func (concurrentlyInTxRule) ID() string        { return "concurrently-in-transaction" }
func (concurrentlyInTxRule) DefaultMode() Mode { return Enforce }
func (concurrentlyInTxRule) Relaxable() bool   { return false }

func (concurrentlyInTxRule) Check(s *Statement) *Finding {
	if !s.concurrently || !s.inBlock || s.node.GetRefreshMatViewStmt() != nil {
		return nil
	}
	// The command name PostgreSQL puts in its error.
	cmd := s.kind + " CONCURRENTLY"
	switch {
	case s.node.GetReindexStmt() != nil:
		cmd = "REINDEX CONCURRENTLY"
	case s.node.GetAlterTableStmt() != nil:
		cmd = "ALTER TABLE ... DETACH CONCURRENTLY"
	}
	why := fmt.Sprintf("if it could run, but a CONCURRENTLY form cannot run inside a transaction block: "+
		"PostgreSQL fails it (%q) and rolls back the whole transaction", cmd+" cannot run inside a transaction block")
	sql := s.writtenSQL() + ";"
	hint := "-- send it as a query of its own, not in one string with other statements:\n" + sql
	if s.sess.InTransaction {
		hint = "-- end the open transaction first (COMMIT), then send it as a query of its own:\n" + sql
	}
	if len(s.locks) == 0 {
		// REINDEX SCHEMA/DATABASE CONCURRENTLY name no single relation.
		msg := fmt.Sprintf("%s CONCURRENTLY would rebuild indexes without blocking writes %s", s.kind, why)
		return &Finding{Message: msg, Hint: hint}
	}
	rel := s.locks[0].Relation
	if a := s.node.GetAlterTableStmt(); a != nil {
		rel = rangeVarName(a.Relation) // the parent, not the partition
	}
	return s.finding(rel, why, hint)
}
