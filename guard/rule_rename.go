package guard

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// renameRule: renaming a table, view, materialized view or column is quick,
// but every running query and every deployed piece of code that still uses
// the old name fails from the moment it commits. Renaming an index (SHARE
// UPDATE EXCLUSIVE) or a constraint breaks nothing and is not reported.
type renameRule struct{}

func init() { register(renameRule{}) }

func (renameRule) ID() string        { return "rename" }
func (renameRule) DefaultMode() Mode { return Enforce }
func (renameRule) Relaxable() bool   { return false }
func (renameRule) ReviewTime() bool  { return true }

func (renameRule) Check(s *Statement) *Finding {
	r := s.node.GetRenameStmt()
	if r == nil || r.Relation == nil {
		return nil
	}
	rel := rangeVarName(r.Relation)
	if !s.existing(rel) {
		return nil
	}
	if f, ok := s.facts.Relation(rel); ok && (f.Kind == 'i' || f.Kind == 'I' || f.Kind == 'S') {
		// ALTER TABLE also renames indexes and sequences.
		return nil
	}
	switch r.RenameType {
	case pg_query.ObjectType_OBJECT_TABLE, pg_query.ObjectType_OBJECT_VIEW, pg_query.ObjectType_OBJECT_MATVIEW,
		pg_query.ObjectType_OBJECT_FOREIGN_TABLE:
		return renameRelationFinding(s, r, rel)
	case pg_query.ObjectType_OBJECT_COLUMN:
		return renameColumnFinding(s, r, rel)
	}
	return nil
}

// renameRelationFinding: keep the old name working as a view on the new one
// until every client uses the new name.
func renameRelationFinding(s *Statement, r *pg_query.RenameStmt, rel string) *Finding {
	newName := nameInSchemaOf(r.Relation, r.Newname)
	old, renamed := quoteName(rel), quoteName(newName)
	word := objectWord(r.RenameType)
	hint := strings.Join([]string{
		"BEGIN;",
		"ALTER " + word + " " + old + " RENAME TO " + quoteIdent(r.Newname) + ";",
		"CREATE VIEW " + old + " AS SELECT * FROM " + renamed + ";",
		"COMMIT;",
		"-- once every deployed client uses " + newName + ":",
		"DROP VIEW " + old + ";",
	}, "\n")
	why := "and every running query and deployed code that still uses the name " + rel +
		" fails from the moment it commits"
	return s.finding(rel, why, hint)
}

// renameColumnFinding: expand and contract instead of renaming in place.
func renameColumnFinding(s *Statement, r *pg_query.RenameStmt, rel string) *Finding {
	table, oldCol, newCol := quoteName(rel), quoteIdent(r.Subname), quoteIdent(r.Newname)
	why := "and every running query and deployed code that still uses the column " + rel + "." + r.Subname +
		" fails from the moment it commits"
	if r.RelationType != pg_query.ObjectType_OBJECT_TABLE && r.RelationType != pg_query.ObjectType_OBJECT_FOREIGN_TABLE {
		// A view's columns come from its query.
		hint := strings.Join([]string{
			"-- add the new name as an extra last column (CREATE OR REPLACE VIEW may only append columns):",
			"CREATE OR REPLACE VIEW " + table + " AS SELECT <current select list>, " + oldCol + " AS " + newCol + " FROM ...;",
			"-- once every deployed client uses " + r.Newname + ", recreate the view without " + r.Subname + ".",
		}, "\n")
		return s.finding(rel, why, hint)
	}
	typ := "<type of " + r.Subname + ">"
	if t, ok := s.factsColumnType(rel, r.Subname); ok {
		typ = t
	}
	hint := strings.Join([]string{
		"ALTER TABLE " + table + " ADD COLUMN " + newCol + " " + typ + ";",
		"-- keep " + r.Newname + " in step with " + r.Subname + " (a trigger, or the application writing both), then backfill",
		"-- in batches, one short transaction each, until it updates 0 rows:",
		batchedUpdate(table, newCol+" = "+oldCol, newCol+" IS DISTINCT FROM "+oldCol) + ";",
		"-- deploy code that reads and writes only " + r.Newname + ", then:",
		"ALTER TABLE " + table + " DROP COLUMN " + oldCol + ";",
	}, "\n")
	return s.finding(rel, why, hint)
}
