package guard

import (
	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// addCheckRule: ALTER TABLE ... ADD CHECK without NOT VALID holds ACCESS
// EXCLUSIVE while it checks every existing row. Added NOT VALID it is a
// catalog change, and VALIDATE CONSTRAINT, in its own transaction, scans
// under SHARE UPDATE EXCLUSIVE (reads and writes go on).
type addCheckRule struct{}

func init() { register(addCheckRule{}) }

func (addCheckRule) ID() string        { return "add-check-validated" }
func (addCheckRule) DefaultMode() Mode { return Enforce }
func (addCheckRule) Relaxable() bool   { return true }

func (addCheckRule) Check(s *Statement) *Finding {
	a, cmds, rel := s.tableAlterOfExisting()
	if a == nil {
		return nil
	}
	for _, cmd := range cmds {
		con := addedConstraint(cmd)
		if con == nil || con.Contype != pg_query.ConstrType_CONSTR_CHECK || con.SkipValidation {
			continue
		}
		return s.constraintPlanFinding(a, cmds, rel, "while it scans every row to check the new constraint")
	}
	return nil
}
