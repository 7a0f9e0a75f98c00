package guard

import pg_query "github.com/pganalyze/pg_query_go/v6"

// addExclusionRule: ALTER TABLE ... ADD EXCLUDE builds its index under
// ACCESS EXCLUSIVE. There is no online path: an exclusion constraint can
// neither be built CONCURRENTLY nor added USING INDEX.
type addExclusionRule struct{}

func init() { register(addExclusionRule{}) }

func (addExclusionRule) ID() string        { return "add-exclusion-constraint" }
func (addExclusionRule) DefaultMode() Mode { return Enforce }
func (addExclusionRule) Relaxable() bool   { return true }

func (addExclusionRule) Check(s *Statement) *Finding {
	a, cmds, rel := s.tableAlterOfExisting()
	if a == nil {
		return nil
	}
	for _, cmd := range cmds {
		con := addedConstraint(cmd)
		if con == nil || con.Contype != pg_query.ConstrType_CONSTR_EXCLUSION {
			continue
		}
		// The hint is the statement for a quiet moment, the other
		// subcommands split off in their safe forms.
		return s.finding(rel, "while it builds the index for the exclusion constraint", s.planConstraints(a, cmds).hint())
	}
	return nil
}
