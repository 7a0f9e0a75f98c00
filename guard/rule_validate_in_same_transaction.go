package guard

import (
	"fmt"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// validateSameTxRule: VALIDATE CONSTRAINT of a constraint added NOT VALID
// earlier in the same transaction (or the same ALTER TABLE). The lock the
// ADD took (ACCESS EXCLUSIVE for CHECK, SHARE ROW EXCLUSIVE for FOREIGN KEY)
// is held until COMMIT, so the validation scan runs under it: as bad as a
// validated ADD.
type validateSameTxRule struct{}

func init() { register(validateSameTxRule{}) }

func (validateSameTxRule) ID() string        { return "validate-in-same-transaction" }
func (validateSameTxRule) DefaultMode() Mode { return Enforce }
func (validateSameTxRule) Relaxable() bool   { return true }

func (validateSameTxRule) Check(s *Statement) *Finding {
	a, cmds, rel := s.existingTableAlter()
	if a == nil {
		return nil
	}
	addedHere := map[string]bool{}
	for _, cmd := range cmds {
		if con := addedConstraint(cmd); con != nil && con.SkipValidation && con.Conname != "" {
			addedHere[con.Conname] = true
			continue
		}
		if cmd.Subtype != pg_query.AlterTableType_AT_ValidateConstraint {
			continue
		}
		if addedHere[cmd.Name] {
			// One statement: it holds the ADD's lock while it validates.
			return s.alterPlanFinding(a, cmds, rel, "while it scans every row to validate "+cmd.Name+
				", which the same statement adds NOT VALID")
		}
		if !s.addedNotValidInTx(rel, cmd.Name) {
			continue
		}
		mode := max(s.heldOn(rel), ShareRowExclusive, s.lockOn(rel).Mode)
		msg := fmt.Sprintf("%s on %s would hold %s lock (%s) while it scans every row to validate %s: "+
			"this transaction added %s NOT VALID and holds that ADD's lock until COMMIT",
			s.kind, rel, mode, mode.Blocks(), cmd.Name, cmd.Name)
		hint := "-- COMMIT the transaction that adds " + cmd.Name + " NOT VALID first, then run on its own:\n" +
			alterTableSQL(a, cmd) + ";"
		return &Finding{Message: msg, Detail: locksDetail(s.locks), Hint: hint}
	}
	return nil
}

// addedNotValidInTx: the transaction added rel's constraint con NOT VALID
// (the relation may be written with or without its schema).
func (s *stmt) addedNotValidInTx(rel, con string) bool {
	if s.sess.Tx.NotValid[rel+"."+con] {
		return true
	}
	for k := range s.sess.Tx.NotValid {
		if r, c, ok := cutLast(k, "."); ok && c == con && unqualified(r) == unqualified(rel) {
			return true
		}
	}
	return false
}

func cutLast(s, sep string) (before, after string, ok bool) {
	for i := len(s) - len(sep); i >= 0; i-- {
		if s[i:i+len(sep)] == sep {
			return s[:i], s[i+len(sep):], true
		}
	}
	return s, "", false
}

// heldOn is the lock the transaction holds on rel (written with or without
// its schema).
func (s *stmt) heldOn(rel string) LockMode {
	mode := s.sess.Tx.Held[rel]
	for r, m := range s.sess.Tx.Held {
		if unqualified(r) == unqualified(rel) {
			mode = max(mode, m)
		}
	}
	return mode
}
