package guard

import pg_query "github.com/pganalyze/pg_query_go/v6"

// addUniqueRule: ALTER TABLE ... ADD UNIQUE / PRIMARY KEY (without USING
// INDEX) builds the index under ACCESS EXCLUSIVE. CREATE UNIQUE INDEX
// CONCURRENTLY builds it under SHARE UPDATE EXCLUSIVE; ADD CONSTRAINT ...
// USING INDEX then only attaches it. A primary key's columns must already be
// NOT NULL, or USING INDEX sets them NOT NULL with a scan.
type addUniqueRule struct{}

func init() { register(addUniqueRule{}) }

func (addUniqueRule) ID() string        { return "add-unique-constraint" }
func (addUniqueRule) DefaultMode() Mode { return Enforce }
func (addUniqueRule) Relaxable() bool   { return true }

func (addUniqueRule) Check(s *Statement) *Finding {
	a, cmds, rel := s.tableAlterOfExisting()
	if a == nil {
		return nil
	}
	for _, cmd := range cmds {
		con := addedConstraint(cmd)
		if con == nil || con.Indexname != "" {
			continue
		}
		switch con.Contype {
		case pg_query.ConstrType_CONSTR_UNIQUE:
			return s.constraintPlanFinding(a, cmds, rel, "while it builds the unique index for the new constraint")
		case pg_query.ConstrType_CONSTR_PRIMARY:
			return s.constraintPlanFinding(a, cmds, rel, "while it builds the unique index for the new primary key")
		}
	}
	return nil
}
