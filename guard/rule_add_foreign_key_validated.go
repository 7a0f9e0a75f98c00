package guard

import pg_query "github.com/pganalyze/pg_query_go/v6"

// addForeignKeyRule: ALTER TABLE ... ADD FOREIGN KEY without NOT VALID holds
// SHARE ROW EXCLUSIVE on the table and on the referenced table (writes to
// both wait) while it checks every existing row. Added NOT VALID it is a
// catalog change; VALIDATE CONSTRAINT, in its own transaction, scans under
// SHARE UPDATE EXCLUSIVE (ROW SHARE on the referenced table).
type addForeignKeyRule struct{}

func init() { register(addForeignKeyRule{}) }

func (addForeignKeyRule) ID() string        { return "add-foreign-key-validated" }
func (addForeignKeyRule) DefaultMode() Mode { return Enforce }
func (addForeignKeyRule) Relaxable() bool   { return true }

func (addForeignKeyRule) Check(s *Statement) *Finding {
	a, cmds, rel := s.tableAlterOfExisting()
	if a == nil {
		return nil
	}
	for _, cmd := range cmds {
		con := addedConstraint(cmd)
		if con == nil || con.Contype != pg_query.ConstrType_CONSTR_FOREIGN || con.SkipValidation {
			continue
		}
		why := "while it scans every row to check the new foreign key"
		if pk := rangeVarName(con.Pktable); pk != "" && pk != rel {
			why = "and " + s.lockOn(pk).Mode.String() + " on " + pk + " " + why
		}
		return s.constraintPlanFinding(a, cmds, rel, why)
	}
	return nil
}
