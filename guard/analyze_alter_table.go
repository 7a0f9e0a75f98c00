package guard

import (
	"regexp"
	"strconv"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// analyzeAlterTable computes the lock and work of ALTER TABLE (and ALTER
// INDEX / MATERIALIZED VIEW / VIEW / SEQUENCE, which share the statement):
// the strongest lock of its subcommands, as PostgreSQL's
// AlterTableGetLockLevel takes it, and the most expensive work.
func (s *stmt) analyzeAlterTable(a *pg_query.AlterTableStmt) {
	s.kind = "ALTER " + objectWord(a.Objtype)
	rel := rangeVarName(a.Relation)
	for _, c := range a.Cmds {
		cmd := c.GetAlterTableCmd()
		if cmd == nil {
			continue
		}
		mode, work := s.alterCmd(rel, a.Objtype, cmd)
		s.lock(rel, mode, work)
	}
}

// alterCmd is the lock mode and work of one ALTER TABLE subcommand on rel;
// locks on other relations (referenced tables, partitions) are added here.
func (s *stmt) alterCmd(rel string, objtype pg_query.ObjectType, cmd *pg_query.AlterTableCmd) (LockMode, Work) {
	switch cmd.Subtype {
	case pg_query.AlterTableType_AT_AddColumn, pg_query.AlterTableType_AT_AddColumnToView:
		return AccessExclusive, s.addColumnWork(rel, cmd.Def.GetColumnDef())
	case pg_query.AlterTableType_AT_AlterColumnType:
		return AccessExclusive, s.alterTypeWork(rel, cmd.Name, cmd.Def.GetColumnDef())
	case pg_query.AlterTableType_AT_SetNotNull:
		if s.setNotNullScans(rel, cmd.Name) {
			return AccessExclusive, WorkScan
		}
		return AccessExclusive, WorkNone
	case pg_query.AlterTableType_AT_AddConstraint:
		mode, work := s.addConstraint(rel, cmd.Def.GetConstraint())
		if objtype == pg_query.ObjectType_OBJECT_FOREIGN_TABLE {
			work = WorkNone // constraints on foreign tables are not checked against remote data
		}
		return mode, work
	case pg_query.AlterTableType_AT_ValidateConstraint:
		return ShareUpdateExclusive, WorkScan
	case pg_query.AlterTableType_AT_SetStatistics, pg_query.AlterTableType_AT_SetOptions,
		pg_query.AlterTableType_AT_ResetOptions, pg_query.AlterTableType_AT_ClusterOn,
		pg_query.AlterTableType_AT_DropCluster:
		return ShareUpdateExclusive, WorkNone
	case pg_query.AlterTableType_AT_SetRelOptions, pg_query.AlterTableType_AT_ResetRelOptions,
		pg_query.AlterTableType_AT_ReplaceRelOptions:
		return relOptionsLock(cmd.Def), WorkNone
	case pg_query.AlterTableType_AT_EnableTrig, pg_query.AlterTableType_AT_EnableAlwaysTrig,
		pg_query.AlterTableType_AT_EnableReplicaTrig, pg_query.AlterTableType_AT_EnableTrigAll,
		pg_query.AlterTableType_AT_EnableTrigUser, pg_query.AlterTableType_AT_DisableTrig,
		pg_query.AlterTableType_AT_DisableTrigAll, pg_query.AlterTableType_AT_DisableTrigUser:
		return ShareRowExclusive, WorkNone
	case pg_query.AlterTableType_AT_SetTableSpace:
		if f, ok := s.facts.Relation(rel); ok && (f.Kind == 'p' || f.Kind == 'I') {
			return AccessExclusive, WorkNone // only the default for future partitions
		}
		return AccessExclusive, WorkRewrite
	case pg_query.AlterTableType_AT_SetLogged,
		pg_query.AlterTableType_AT_SetUnLogged, pg_query.AlterTableType_AT_SetAccessMethod:
		return AccessExclusive, WorkRewrite
	case pg_query.AlterTableType_AT_AttachPartition:
		pc := cmd.Def.GetPartitionCmd()
		if objtype == pg_query.ObjectType_OBJECT_INDEX {
			// ALTER INDEX parent ATTACH PARTITION child: ACCESS EXCLUSIVE
			// on the child index, SHARE UPDATE EXCLUSIVE on the parent
			// index, ACCESS SHARE on both tables; nothing is read.
			if pc != nil {
				s.lock(rangeVarName(pc.Name), AccessExclusive, WorkNone)
			}
			return ShareUpdateExclusive, WorkNone
		}
		if pc != nil {
			s.lock(rangeVarName(pc.Name), AccessExclusive, WorkScan)
		}
		if s.sess.major() >= 12 {
			return ShareUpdateExclusive, WorkNone
		}
		return AccessExclusive, WorkNone
	case pg_query.AlterTableType_AT_DetachPartition:
		pc := cmd.Def.GetPartitionCmd()
		if pc != nil && pc.Concurrent {
			// The partition gets ACCESS EXCLUSIVE in the second phase.
			s.concurrently = true
			s.lock(rangeVarName(pc.Name), AccessExclusive, WorkNone)
			return ShareUpdateExclusive, WorkNone
		}
		if pc != nil {
			s.lock(rangeVarName(pc.Name), AccessExclusive, WorkNone)
		}
		return AccessExclusive, WorkNone
	case pg_query.AlterTableType_AT_DetachPartitionFinalize:
		return ShareUpdateExclusive, WorkNone
	case pg_query.AlterTableType_AT_AddInherit:
		if parent := cmd.Def.GetRangeVar(); parent != nil {
			s.lock(rangeVarName(parent), ShareUpdateExclusive, WorkNone)
		}
		return AccessExclusive, WorkNone
	case pg_query.AlterTableType_AT_DropInherit:
		if parent := cmd.Def.GetRangeVar(); parent != nil {
			s.lock(rangeVarName(parent), AccessShare, WorkNone)
		}
		return AccessExclusive, WorkNone
	case pg_query.AlterTableType_AT_SetExpression:
		return AccessExclusive, WorkRewrite
	}
	// Everything else PostgreSQL does under ACCESS EXCLUSIVE without
	// touching the data: DROP COLUMN, SET/DROP DEFAULT, DROP NOT NULL,
	// DROP CONSTRAINT, SET STORAGE/COMPRESSION, identity changes, OWNER,
	// REPLICA IDENTITY, row security, rules, OF/NOT OF, ...
	return AccessExclusive, WorkNone
}

// relOptionsLock is the lock for SET/RESET (storage parameters): SHARE UPDATE
// EXCLUSIVE for the parameters PostgreSQL allows under it (fillfactor,
// autovacuum_*, toast_tuple_target, parallel_workers, vacuum_*, ...),
// ACCESS EXCLUSIVE for the rest.
func relOptionsLock(def *pg_query.Node) LockMode {
	mode := ShareUpdateExclusive
	for _, o := range def.GetList().GetItems() {
		d := o.GetDefElem()
		if d == nil {
			continue
		}
		name := d.Defname
		if d.Defnamespace != "" {
			name = d.Defnamespace + "." + name
		}
		switch name {
		case "user_catalog_table", "check_option", "security_barrier", "security_invoker":
			mode = AccessExclusive
		}
	}
	return mode
}

// addColumnWork is what ADD COLUMN does to the existing rows.
func (s *stmt) addColumnWork(rel string, cd *pg_query.ColumnDef) Work {
	if cd == nil {
		return WorkNone
	}
	work := WorkNone
	if cd.TypeName != nil && isSerialType(cd.TypeName) {
		work = WorkRewrite
	}
	hasDefault := false
	for _, c := range cd.Constraints {
		con := c.GetConstraint()
		if con != nil && con.Contype == pg_query.ConstrType_CONSTR_DEFAULT && !isNullConst(con.RawExpr) {
			hasDefault = true
		}
	}
	for _, c := range cd.Constraints {
		con := c.GetConstraint()
		if con == nil {
			continue
		}
		switch con.Contype {
		case pg_query.ConstrType_CONSTR_DEFAULT:
			if volatileExpr(con.RawExpr) {
				work = WorkRewrite
			}
		case pg_query.ConstrType_CONSTR_IDENTITY, pg_query.ConstrType_CONSTR_GENERATED:
			work = WorkRewrite
		case pg_query.ConstrType_CONSTR_CHECK:
			work = max(work, WorkScan)
		case pg_query.ConstrType_CONSTR_UNIQUE, pg_query.ConstrType_CONSTR_PRIMARY:
			work = max(work, WorkIndexBuild)
		case pg_query.ConstrType_CONSTR_FOREIGN:
			if con.Pktable != nil {
				s.lock(rangeVarName(con.Pktable), ShareRowExclusive, WorkNone)
			}
			if hasDefault { // without a default every row is NULL: PostgreSQL skips the check
				work = max(work, WorkScan)
			}
		case pg_query.ConstrType_CONSTR_NOTNULL:
			// Checked against every existing row unless a default fills them.
			work = max(work, WorkScan)
		}
	}
	if work == WorkScan && hasDefault && onlyNotNull(cd) {
		// NOT NULL with a non-volatile default: rows get the default, no check needed.
		work = WorkNone
	}
	return work
}

func onlyNotNull(cd *pg_query.ColumnDef) bool {
	for _, c := range cd.Constraints {
		switch c.GetConstraint().GetContype() {
		case pg_query.ConstrType_CONSTR_CHECK, pg_query.ConstrType_CONSTR_FOREIGN,
			pg_query.ConstrType_CONSTR_UNIQUE, pg_query.ConstrType_CONSTR_PRIMARY:
			return false
		}
	}
	return true
}

func isSerialType(t *pg_query.TypeName) bool {
	switch lastName(t.Names) {
	case "serial", "bigserial", "smallserial", "serial2", "serial4", "serial8":
		return true
	}
	return false
}

// addConstraint is the lock and work of ALTER TABLE ... ADD constraint.
func (s *stmt) addConstraint(rel string, con *pg_query.Constraint) (LockMode, Work) {
	if con == nil {
		return AccessExclusive, WorkNone
	}
	if con.SkipValidation && con.Conname != "" {
		s.effects.NotValid = append(s.effects.NotValid, rel+"."+con.Conname)
	}
	switch con.Contype {
	case pg_query.ConstrType_CONSTR_FOREIGN:
		work := WorkScan
		if con.SkipValidation {
			work = WorkNone
		}
		if con.Pktable != nil {
			s.lock(rangeVarName(con.Pktable), ShareRowExclusive, WorkNone)
		}
		return ShareRowExclusive, work
	case pg_query.ConstrType_CONSTR_CHECK:
		if con.SkipValidation {
			return AccessExclusive, WorkNone
		}
		return AccessExclusive, WorkScan
	case pg_query.ConstrType_CONSTR_UNIQUE, pg_query.ConstrType_CONSTR_PRIMARY:
		if con.Indexname != "" {
			// USING INDEX: the index exists; a primary key still sets NOT
			// NULL on its columns, which scans unless they already are.
			if con.Contype == pg_query.ConstrType_CONSTR_PRIMARY && !s.indexColumnsNotNull(rel, con) {
				return AccessExclusive, WorkScan
			}
			return AccessExclusive, WorkNone
		}
		return AccessExclusive, WorkIndexBuild
	case pg_query.ConstrType_CONSTR_EXCLUSION:
		return AccessExclusive, WorkIndexBuild
	}
	return AccessExclusive, WorkNone
}

// indexColumnsNotNull: facts show every column of the constraint NOT NULL.
// For USING INDEX the statement does not list the columns: facts must list
// them as the index's (RelationFacts.Columns of the index).
func (s *stmt) indexColumnsNotNull(rel string, con *pg_query.Constraint) bool {
	cols := stringList(con.Keys)
	if len(cols) == 0 {
		if f, ok := s.facts.Relation(con.Indexname); ok {
			for c := range f.Columns {
				cols = append(cols, c)
			}
		}
	}
	if len(cols) == 0 {
		return false
	}
	for _, c := range cols {
		if !s.columnNotNull(rel, c) {
			return false
		}
	}
	return true
}

// columnNotNull reports whether facts show the column already NOT NULL.
func (s *stmt) columnNotNull(rel, col string) bool {
	f, ok := s.facts.Relation(rel)
	return ok && f.Columns[col].NotNull
}

// hasNotNullCheck reports whether facts show a valid CHECK (col IS NOT NULL).
func (s *stmt) hasNotNullCheck(rel, col string) bool {
	f, ok := s.facts.Relation(rel)
	return ok && f.NotNullChecks[col]
}

// alterTypeWork is what ALTER COLUMN ... TYPE does: nothing for the
// binary-coercible changes PostgreSQL recognises, a rewrite otherwise (or
// when the current type is unknown).
func (s *stmt) alterTypeWork(rel, col string, cd *pg_query.ColumnDef) Work {
	if cd == nil || cd.TypeName == nil || cd.RawDefault != nil { // USING expression
		return WorkRewrite
	}
	f, ok := s.facts.Relation(rel)
	if !ok {
		return WorkRewrite
	}
	c, ok := f.Columns[col]
	if !ok {
		return WorkRewrite
	}
	if binaryCoercible(c.Type, typeNameString(cd.TypeName), s.sess) {
		return WorkNone
	}
	return WorkRewrite
}

// typeNameString renders a TypeName as format_type() would print it for
// the types binaryCoercible knows ("character varying(20)", "numeric(12,2)").
func typeNameString(t *pg_query.TypeName) string {
	name := lastName(t.Names)
	switch name {
	case "varchar":
		name = "character varying"
	case "bpchar":
		name = "character"
	case "timestamp":
		name = "timestamp without time zone"
	case "timestamptz":
		name = "timestamp with time zone"
	case "int4":
		name = "integer"
	case "int8":
		name = "bigint"
	case "int2":
		name = "smallint"
	case "varbit":
		name = "bit varying"
	}
	var mods []string
	for _, m := range t.Typmods {
		if c := m.GetAConst(); c != nil && c.GetIval() != nil {
			mods = append(mods, strconv.Itoa(int(c.GetIval().Ival)))
		}
	}
	if len(mods) > 0 {
		name += "(" + strings.Join(mods, ",") + ")"
	}
	if len(t.ArrayBounds) > 0 {
		name += "[]"
	}
	return name
}

var typeWithMods = regexp.MustCompile(`^([a-z ]+?)(?:\((\d+)(?:,(\d+))?\))?$`)

// binaryCoercible reports whether changing a column from type from to type
// to needs neither a rewrite nor a scan (PostgreSQL's ATColumnChangeRequiresRewrite
// for the common cases): widening varchar/varbit, varchar -> text, dropping a
// length limit, widening numeric precision at the same scale, and
// timestamp -> timestamptz when the session TimeZone is UTC (PostgreSQL 12+).
func binaryCoercible(from, to string, sess *Session) bool {
	from, to = strings.TrimSpace(from), strings.TrimSpace(to)
	if from == to {
		return true
	}
	fm, tm := typeWithMods.FindStringSubmatch(from), typeWithMods.FindStringSubmatch(to)
	if fm == nil || tm == nil {
		return false
	}
	fbase, tbase := fm[1], tm[1]
	num := func(s string) int { n, _ := strconv.Atoi(s); return n }
	switch {
	case (fbase == "character varying" || fbase == "text") && tbase == "text":
		return true
	case fbase == "text" && tbase == "character varying" && tm[2] == "":
		return true
	case fbase == "character varying" && tbase == "character varying":
		return tm[2] == "" || (fm[2] != "" && num(tm[2]) >= num(fm[2]))
	case fbase == "bit varying" && tbase == "bit varying":
		return tm[2] == "" || (fm[2] != "" && num(tm[2]) >= num(fm[2]))
	case fbase == "numeric" && tbase == "numeric":
		if tm[2] == "" {
			return true
		}
		return fm[2] != "" && num(tm[2]) >= num(fm[2]) && num(tm[3]) == num(fm[3])
	case fbase == "timestamp without time zone" && tbase == "timestamp with time zone":
		tz := strings.ToUpper(sess.timeZone())
		return sess.major() >= 12 && (tz == "UTC" || tz == "ETC/UTC" || tz == "GMT" || tz == "Z")
	case fbase == "cidr" && tbase == "inet":
		return true
	}
	return false
}

// factsColumnType is a column's current type from the catalog facts.
func (s *stmt) factsColumnType(rel, col string) (string, bool) {
	f, ok := s.facts.Relation(rel)
	if !ok {
		return "", false
	}
	c, ok := f.Columns[col]
	return c.Type, ok && c.Type != ""
}

// setNotNullScans: SET NOT NULL on col would check every row (the column is
// not already NOT NULL, and on PostgreSQL 12+ no valid CHECK (col IS NOT
// NULL) proves it).
func (s *stmt) setNotNullScans(rel, col string) bool {
	return !s.columnNotNull(rel, col) && !(s.sess.major() >= 12 && s.hasNotNullCheck(rel, col))
}
