package guard

import (
	"fmt"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The online plan for an ALTER TABLE that adds columns or changes column
// types, shared by the ADD COLUMN rules and alter-column-type: every
// subcommand as its own statement, and the ones that would rewrite, scan or
// build under ACCESS EXCLUSIVE replaced by their online equivalent
// (plan_add_column.go, plan_column_type.go). Constraint subcommands stay as
// written here; planConstraints (plan_constraints.go) plans those.

// planColumns returns the statements (and "--" comments) that reach the
// end state of ALTER TABLE a without a long ACCESS EXCLUSIVE lock.
// constantDefault: give NOT NULL columns without a DEFAULT a constant one
// (option A of add-column-not-null-without-default) instead of a backfill.
func planColumns(s *Statement, a *pg_query.AlterTableStmt, cmds []*pg_query.AlterTableCmd, constantDefault bool) []string {
	var out []string
	for _, cmd := range cmds {
		switch {
		case cmd.Subtype == pg_query.AlterTableType_AT_AddColumn:
			out = append(out, newColumnAdd(a, cmd).plan(s, constantDefault)...)
		case cmd.Subtype == pg_query.AlterTableType_AT_AlterColumnType &&
			s.alterTypeWork(rangeVarName(a.Relation), cmd.Name, cmd.Def.GetColumnDef()) == WorkRewrite:
			out = append(out, typeChangePlan(s, a, cmd)...)
		default:
			out = append(out, alterTableSQL(a, cmd)+";")
		}
	}
	return out
}

// notNullSteps sets NOT NULL on rel.col without scanning under ACCESS
// EXCLUSIVE: SET NOT NULL skips its scan when a valid CHECK (col IS NOT
// NULL) exists (PostgreSQL 12+), and VALIDATE scans under SHARE UPDATE
// EXCLUSIVE. check is the helper constraint's name.
func notNullSteps(rel, col, check string) []string {
	alter := "ALTER TABLE " + rel + " "
	return []string{
		fmt.Sprintf("%sADD CONSTRAINT %s CHECK (%s IS NOT NULL) NOT VALID;", alter, quoteIdent(check), col),
		fmt.Sprintf("%sVALIDATE CONSTRAINT %s;", alter, quoteIdent(check)),
		fmt.Sprintf("%sALTER COLUMN %s SET NOT NULL;", alter, col),
		fmt.Sprintf("%sDROP CONSTRAINT %s;", alter, quoteIdent(check)),
	}
}

// newRowExpr returns a copy of expression n with every column reference
// qualified by NEW (for a row trigger).
func newRowExpr(n *pg_query.Node) *pg_query.Node {
	c := proto.Clone(n).(*pg_query.Node)
	walkTree(c.ProtoReflect(), func(m protoreflect.Message) bool {
		cr, ok := m.Interface().(*pg_query.ColumnRef)
		if ok {
			cr.Fields = append([]*pg_query.Node{pg_query.MakeStrNode("new")}, cr.Fields...)
		}
		return !ok
	})
	return c
}
