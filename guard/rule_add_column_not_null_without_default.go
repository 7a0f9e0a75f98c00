package guard

import (
	"strings"
)

// addColumnNotNullRule: ADD COLUMN ... NOT NULL (or PRIMARY KEY) without a
// DEFAULT leaves the existing rows NULL, so PostgreSQL scans the table under
// ACCESS EXCLUSIVE and then fails on any table that has a row. A
// correctness rule: never relaxed for small tables, but a table created in
// this transaction or a temporary one is empty (or ours) and passes.
type addColumnNotNullRule struct{}

func init() { register(addColumnNotNullRule{}) }

func (addColumnNotNullRule) ID() string        { return "add-column-not-null-without-default" }
func (addColumnNotNullRule) DefaultMode() Mode { return Enforce }
func (addColumnNotNullRule) Relaxable() bool   { return false }

func (addColumnNotNullRule) Check(s *Statement) *Finding {
	a, cmds, rel := s.alterOfExisting()
	if a == nil {
		return nil
	}
	var cols []string
	constant := false // option A (a constant DEFAULT) fits some column
	for _, c := range addedColumns(a, cmds) {
		if c.notNullWithoutValue() {
			cols = append(cols, c.col)
			constant = constant || (len(c.uniques) == 0 && c.pk == nil)
		}
	}
	if len(cols) == 0 {
		return nil
	}
	why := "while it scans every row, and then fails on any table that has a row: new column " +
		strings.Join(cols, ", ") + " is NOT NULL but has no DEFAULT to give the existing rows"
	var hint []string
	if constant {
		hint = append(hint, "-- either a constant DEFAULT for the existing rows (choose the value; it is stored in the catalog, no rewrite):")
		hint = append(hint, planColumns(s, a, cmds, true)...)
		hint = append(hint, "-- or add the column without NOT NULL, fill it, and set NOT NULL without a long lock:")
	}
	hint = append(hint, planColumns(s, a, cmds, false)...)
	return s.finding(rel, why, strings.Join(hint, "\n"))
}
