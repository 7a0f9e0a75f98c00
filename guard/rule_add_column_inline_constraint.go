package guard

import (
	"strings"
)

// addColumnInlineConstraintRule: ADD COLUMN with an inline CHECK, UNIQUE,
// PRIMARY KEY or (on a column the existing rows get a value for)
// REFERENCES checks every row or builds an index while it holds ACCESS
// EXCLUSIVE. The plain column and the constraint added the online way
// (NOT VALID + VALIDATE, CREATE UNIQUE INDEX CONCURRENTLY + USING INDEX)
// reach the same end state.
type addColumnInlineConstraintRule struct{}

func init() { register(addColumnInlineConstraintRule{}) }

func (addColumnInlineConstraintRule) ID() string        { return "add-column-inline-constraint" }
func (addColumnInlineConstraintRule) DefaultMode() Mode { return Enforce }
func (addColumnInlineConstraintRule) Relaxable() bool   { return true }

func (addColumnInlineConstraintRule) Check(s *Statement) *Finding {
	a, cmds, rel := s.alterOfExisting()
	if a == nil || !s.lockOn(rel).Work.Slow() {
		return nil
	}
	var whys []string
	for _, c := range addedColumns(a, cmds) {
		if why := c.inlineWhy(); why != "" {
			whys = append(whys, why)
		}
	}
	if len(whys) == 0 {
		return nil
	}
	return s.finding(rel, "while it "+strings.Join(whys, ", and "),
		strings.Join(planColumns(s, a, cmds, false), "\n"))
}
