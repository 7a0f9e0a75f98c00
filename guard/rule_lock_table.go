package guard

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
)

// lockTableRule: an explicit LOCK TABLE in SHARE mode or stronger holds the
// lock until the transaction ends, and every conflicting query queues behind
// it (and behind it while it waits). Outside a transaction block PostgreSQL
// refuses LOCK TABLE before locking anything, so only LOCK inside a block
// (explicit, or a multi-statement query string) is reported.
type lockTableRule struct{}

func init() { register(lockTableRule{}) }

func (lockTableRule) ID() string        { return "lock-table" }
func (lockTableRule) DefaultMode() Mode { return Enforce }
func (lockTableRule) Relaxable() bool   { return false }
func (lockTableRule) ReviewTime() bool  { return true }

func (lockTableRule) Check(s *Statement) *Finding {
	l := s.node.GetLockStmt()
	if l == nil || !s.inBlock {
		return nil
	}
	rel := ""
	var mode LockMode
	for _, lk := range s.locks {
		if lk.Mode >= Share && s.existing(lk.Relation) {
			rel, mode = lk.Relation, lk.Mode
			break
		}
	}
	if rel == "" {
		return nil
	}
	// What to confirm if writers really must wait: SHARE ROW EXCLUSIVE
	// keeps writers (and other such lockers) out and lets reads go on.
	confirm := min(mode, ShareRowExclusive)
	hint := []string{
		"-- to serialize with other runs of the same job (reads and writes go on):",
		lockTableSQL(l, ShareUpdateExclusive) + ";",
	}
	if confirm < mode {
		hint = append(hint, "-- if writers must wait, "+confirm.String()+" lets reads go on; keep the transaction short and confirm:")
	} else {
		hint = append(hint, "-- if writers must wait, keep the transaction short and confirm:")
	}
	hint = append(hint, allowComment("lock-table", "writers must wait")+lockTableSQL(l, confirm)+";")
	why := "until the transaction ends, and every conflicting query queues behind it, already while it waits for the lock"
	return s.finding(rel, why, strings.Join(hint, "\n"))
}

// lockTableSQL renders the LOCK statement with another mode.
func lockTableSQL(l *pg_query.LockStmt, mode LockMode) string {
	c := proto.Clone(l).(*pg_query.LockStmt)
	c.Mode = int32(mode)
	return deparse(&pg_query.Node{Node: &pg_query.Node_LockStmt{LockStmt: c}})
}
