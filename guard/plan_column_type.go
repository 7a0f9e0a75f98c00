package guard

import (
	"fmt"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
)

// typeChangePlan is the expand/contract form of one ALTER COLUMN ... TYPE:
// a new column kept in sync by a trigger, a batched backfill, and a rename
// in one short transaction.
func typeChangePlan(s *Statement, a *pg_query.AlterTableStmt, cmd *pg_query.AlterTableCmd) []string {
	cd := cmd.Def.GetColumnDef()
	if cd == nil || cd.TypeName == nil {
		return []string{alterTableSQL(a, cmd) + ";"}
	}
	rel := quoteName(rangeVarName(a.Relation))
	table := a.Relation.GetRelname()
	col := quoteIdent(cmd.Name)
	newName := makeObjectName(cmd.Name, "", "new")
	oldName := makeObjectName(cmd.Name, "", "old")
	newCol, oldCol := quoteIdent(newName), quoteIdent(oldName)
	sync := makeObjectName(table, cmd.Name, "sync")
	fn, trg := quotedInSchemaOf(a.Relation, sync), quoteIdent(sync)

	src, srcNew := col, "new."+col
	if cd.GetRawDefault() != nil { // USING expression
		src, srcNew = "("+sqlExpr(cd.RawDefault)+")", sqlExpr(newRowExpr(cd.RawDefault))
	}
	def := proto.Clone(cd).(*pg_query.ColumnDef)
	def.Colname, def.RawDefault = newName, nil
	add := &pg_query.AlterTableCmd{Subtype: pg_query.AlterTableType_AT_AddColumn,
		Def: &pg_query.Node{Node: &pg_query.Node_ColumnDef{ColumnDef: def}}}
	alter := "ALTER TABLE " + rel + " "

	out := []string{
		alterTableSQL(a, add) + ";",
		fmt.Sprintf("CREATE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS %s;", fn,
			dollarQuote(fmt.Sprintf("BEGIN new.%s := %s; RETURN new; END", newCol, srcNew))),
		fmt.Sprintf("CREATE TRIGGER %s BEFORE INSERT OR UPDATE ON %s FOR EACH ROW EXECUTE FUNCTION %s();", trg, rel, fn),
	}
	out = append(out, backfill(rel, newCol+" = "+src, newCol+" IS NULL AND "+src+" IS NOT NULL", "")...)
	if s.columnNotNull(rangeVarName(a.Relation), cmd.Name) {
		out = append(out, notNullSteps(rel, newCol, constraintName(table, []string{newName}, "check"))...)
	}
	out = append(out,
		fmt.Sprintf("-- give %s what %s has besides its type (DEFAULT, constraints, indexes built CONCURRENTLY, dependent views), then swap the names in one short transaction:", newCol, col),
		"BEGIN;",
		fmt.Sprintf("DROP TRIGGER %s ON %s;", trg, rel),
		fmt.Sprintf("DROP FUNCTION %s();", fn),
		fmt.Sprintf("%sRENAME COLUMN %s TO %s;", alter, col, oldCol),
		fmt.Sprintf("%sRENAME COLUMN %s TO %s;", alter, newCol, col),
		"COMMIT;",
		"-- once nothing uses the old column any more:",
		fmt.Sprintf("%sDROP COLUMN %s;", alter, oldCol),
	)
	return out
}
