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
	a, cmds, rel := s.tableAlterOfExisting()
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
			return s.constraintPlanFinding(a, cmds, rel, "while it scans every row to validate "+cmd.Name+
				", which the same statement adds NOT VALID")
		}
		if !s.sess.Tx.addedNotValid(rel, cmd.Name) {
			continue
		}
		mode := max(s.sess.Tx.heldOn(rel), ShareRowExclusive, s.lockOn(rel).Mode)
		msg := fmt.Sprintf("%s on %s would hold %s lock (%s) while it scans every row to validate %s: "+
			"this transaction added %s NOT VALID and holds that ADD's lock until COMMIT",
			s.kind, rel, mode, mode.Blocks(), cmd.Name, cmd.Name)
		hint := "-- COMMIT the transaction that adds " + cmd.Name + " NOT VALID first, then run on its own:\n" +
			alterTableSQL(a, cmd) + ";"
		return &Finding{Message: msg, Detail: locksDetail(s.locks), Hint: hint}
	}
	return nil
}
