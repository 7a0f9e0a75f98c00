package guard

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
)

// dropIndexRule: DROP INDEX without CONCURRENTLY takes ACCESS EXCLUSIVE on
// the index and on its table. The drop itself is quick, but while it waits
// for the transactions that use the table, every later query on the table
// queues behind it. DROP INDEX CONCURRENTLY waits without blocking anyone
// and has the same end state; PostgreSQL allows it only for one index and
// without CASCADE, and not for partitioned indexes, and never inside a
// transaction block. Where it cannot be used the drop runs with the lock
// timeout (a queue-only finding: the drop itself is brief).
type dropIndexRule struct{}

func init() { register(dropIndexRule{}) }

func (dropIndexRule) ID() string        { return "drop-index-not-concurrently" }
func (dropIndexRule) DefaultMode() Mode { return Enforce }
func (dropIndexRule) Relaxable() bool   { return false }

func (dropIndexRule) Check(s *Statement) *Finding {
	d := s.node.GetDropStmt()
	if d == nil || d.RemoveType != pg_query.ObjectType_OBJECT_INDEX || d.Concurrent {
		return nil
	}
	ifExists := ""
	if d.MissingOk {
		ifExists = "IF EXISTS "
	}
	var guarded []string // existing, non-partitioned indexes
	var lines []string   // the hint: one DROP INDEX per index
	for _, o := range d.Objects {
		name := nameOf(o.GetList().GetItems())
		if name == "" {
			continue
		}
		f, ok := s.facts.Relation(name)
		if !s.existing(name) || (ok && f.Kind == 'I') {
			// New indexes block nobody; a partitioned index cannot be
			// dropped concurrently, so the plain drop (with the lock
			// timeout) is all there is.
			lines = append(lines, "DROP INDEX "+ifExists+quoteName(name)+";")
			continue
		}
		guarded = append(guarded, name)
		lines = append(lines, "DROP INDEX CONCURRENTLY "+ifExists+quoteName(name)+";")
	}
	if len(guarded) == 0 {
		return nil
	}
	cascade := d.Behavior == pg_query.DropBehavior_DROP_CASCADE
	var rewrite string
	if len(d.Objects) == 1 && !cascade {
		c := proto.Clone(d).(*pg_query.DropStmt)
		c.Concurrent = true
		rewrite = deparse(&pg_query.Node{Node: &pg_query.Node_DropStmt{DropStmt: c}})
	}
	var hint []string
	switch {
	case cascade:
		hint = append(hint, "-- CONCURRENTLY cannot CASCADE: first drop what depends on "+strings.Join(guarded, ", ")+
			" (e.g. a foreign key that uses a unique index), then, as a query of its own outside a transaction block:")
		if len(lines) > 1 {
			hint[0] = strings.Replace(hint[0], "as a query of its own", "each as a query of its own", 1)
		}
		hint = append(hint, lines...)
	case rewrite != "":
		hint = append(hint, s.concurrentlyHint(rewrite))
	case len(lines) == 1:
		hint = append(hint, outsideBlockNote, lines[0])
	default:
		hint = append(hint, "-- each as a query of its own, outside a transaction block (CONCURRENTLY cannot run inside one):")
		hint = append(hint, lines...)
	}
	why := "on the index and on its table: the drop is quick once granted, but while it waits for the " +
		"transactions using the table every later query on the table queues behind it"
	f := s.finding(guarded[0], why, strings.Join(hint, "\n"))
	f.QueueOnly = true
	if rewrite != "" {
		f.Rewrite = []string{rewrite}
		f.RewriteOutsideTxOnly = true
	}
	return f
}
