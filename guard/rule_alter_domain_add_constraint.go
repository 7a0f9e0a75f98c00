package guard

import (
	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
)

// alterDomainCheckRule: ALTER DOMAIN ... ADD CHECK checks every value of
// the domain in every table that has a column of it, holding SHARE (writes
// wait) on each of those tables while it scans them. Added NOT VALID it only
// applies to new values; but ALTER DOMAIN ... VALIDATE CONSTRAINT takes the
// same SHARE locks for the same scans (measured on PostgreSQL 15 and 18), so
// NOT VALID + VALIDATE is no online path and there is no rewrite. The tables
// are unknown to the guard, so the rule is not relaxed.
type alterDomainCheckRule struct{}

func init() { register(alterDomainCheckRule{}) }

func (alterDomainCheckRule) ID() string        { return "alter-domain-add-constraint" }
func (alterDomainCheckRule) DefaultMode() Mode { return Enforce }
func (alterDomainCheckRule) Relaxable() bool   { return false }

func (alterDomainCheckRule) Check(s *Statement) *Finding {
	d := s.node.GetAlterDomainStmt()
	if d == nil || d.Subtype != "C" { // C: ADD CONSTRAINT
		return nil
	}
	con := d.Def.GetConstraint()
	if con == nil || con.Contype != pg_query.ConstrType_CONSTR_CHECK || con.SkipValidation {
		return nil
	}
	domain := nameOf(d.TypeName)
	name := con.Conname
	if name == "" {
		name = makeObjectName(unqualified(domain), "", "check")
	}
	add := proto.Clone(d).(*pg_query.AlterDomainStmt)
	c := add.Def.GetConstraint()
	c.Conname, c.SkipValidation, c.InitiallyValid = name, true, false
	validate := &pg_query.AlterDomainStmt{Subtype: "V", TypeName: d.TypeName, Name: name, Behavior: d.Behavior}
	render := func(st *pg_query.AlterDomainStmt) string {
		return deparse(&pg_query.Node{Node: &pg_query.Node_AlterDomainStmt{AlterDomainStmt: st}})
	}
	msg := s.kind + " on " + domain + " would hold SHARE lock (" + Share.Blocks() + ") on every table with a column of " +
		"domain " + domain + " while it scans all their rows to check the new constraint (which tables, and how large, " +
		"is unknown here)"
	hint := render(add) + ";\n" +
		"-- checks new values only; VALIDATE takes the same SHARE locks and scans, so run it, if at all, in a maintenance window:\n" +
		render(validate) + ";"
	return &Finding{Message: msg, Detail: "locks: SHARE (scan) on every table with a column of domain " + domain, Hint: hint}
}
