package guard

import (
	"strings"
)

// addColumnRewriteRule: ADD COLUMN whose existing rows each need a value of
// their own (a volatile DEFAULT, serial, an identity, GENERATED ... STORED)
// rewrites the whole table under ACCESS EXCLUSIVE. A constant or stable
// DEFAULT is stored once in the catalog (PostgreSQL 11+) and is not flagged.
type addColumnRewriteRule struct{}

func init() { register(addColumnRewriteRule{}) }

func (addColumnRewriteRule) ID() string        { return "add-column-rewrite" }
func (addColumnRewriteRule) DefaultMode() Mode { return Enforce }
func (addColumnRewriteRule) Relaxable() bool   { return true }

func (addColumnRewriteRule) Check(s *Statement) *Finding {
	a, cmds, rel := s.alterOfExisting()
	if a == nil || s.lockOn(rel).Work != WorkRewrite {
		return nil
	}
	var whys []string
	for _, c := range addedColumns(a, cmds) {
		if why := c.rewriteWhy(); why != "" {
			whys = append(whys, why)
		}
	}
	if len(whys) == 0 {
		return nil
	}
	return s.finding(rel, "while it rewrites the whole table to "+strings.Join(whys, " and "),
		strings.Join(planColumns(s, a, cmds, false), "\n"))
}
