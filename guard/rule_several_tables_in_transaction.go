package guard

import (
	"sort"
	"strings"
)

// severalTablesRule: the statement takes SHARE or stronger on an existing
// relation while the transaction already holds SHARE or stronger on another
// one. Every lock is held until COMMIT, so each table stays blocked for as
// long as the whole transaction runs, and two sessions taking the same strong
// locks in a different order deadlock (the seed article's case). Warns by
// default: migrations that touch several tables on purpose are common.
type severalTablesRule struct{}

func init() { register(severalTablesRule{}) }

func (severalTablesRule) ID() string        { return "several-tables-in-transaction" }
func (severalTablesRule) DefaultMode() Mode { return Warn }
func (severalTablesRule) Relaxable() bool   { return false }

func (severalTablesRule) Check(s *Statement) *Finding {
	if len(s.sess.Tx.Held) == 0 {
		return nil
	}
	for _, l := range s.locks {
		if l.Mode < Share || !s.existing(l.Relation) {
			continue
		}
		var others []string
		for rel, m := range s.sess.Tx.Held {
			if m >= Share && !sameRelationName(rel, l.Relation) {
				others = append(others, rel)
			}
		}
		if len(others) == 0 {
			continue
		}
		sort.Strings(others)
		holds := make([]string, len(others))
		for i, rel := range others {
			holds[i] = s.sess.Tx.Held[rel].String() + " on " + rel
		}
		why := "while this transaction already holds " + strings.Join(holds, ", ") + " until COMMIT: each table " +
			"stays blocked for the whole transaction, and two sessions taking these locks in a different order deadlock"
		hint := "-- one table per transaction: COMMIT the work on " + strings.Join(others, ", ") +
			" first, then run this in a transaction (or migration) of its own:\n" + s.writtenSQL() + ";"
		return s.finding(l.Relation, why, hint)
	}
	return nil
}
