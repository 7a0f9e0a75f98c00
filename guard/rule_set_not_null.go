package guard

import pg_query "github.com/pganalyze/pg_query_go/v6"

// setNotNullRule: ALTER COLUMN ... SET NOT NULL holds ACCESS EXCLUSIVE while
// it checks every row, unless (PostgreSQL 12+) a valid CHECK (col IS NOT
// NULL) proves the column has no NULLs. Up to 17 such a CHECK is added NOT
// VALID and validated first; 18 adds the not-null constraint itself NOT
// VALID and validates it.
type setNotNullRule struct{}

func init() { register(setNotNullRule{}) }

func (setNotNullRule) ID() string        { return "set-not-null" }
func (setNotNullRule) DefaultMode() Mode { return Enforce }
func (setNotNullRule) Relaxable() bool   { return true }

func (setNotNullRule) Check(s *Statement) *Finding {
	a, cmds, rel := s.tableAlterOfExisting()
	if a == nil {
		return nil
	}
	for _, cmd := range cmds {
		if cmd.Subtype != pg_query.AlterTableType_AT_SetNotNull || !s.setNotNullScans(rel, cmd.Name) {
			continue
		}
		return s.constraintPlanFinding(a, cmds, rel, "while it scans every row to check that "+cmd.Name+" holds no NULL")
	}
	return nil
}
