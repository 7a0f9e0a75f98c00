package guard

import (
	"regexp"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
)

// The safe sequence for an ALTER TABLE that adds or validates constraints or
// sets NOT NULL, shared by the constraint rules (add-check-validated,
// add-foreign-key-validated, set-not-null, add-unique-constraint,
// add-exclusion-constraint, validate-in-same-transaction): subcommand by
// subcommand, with constraint and index names chosen the way PostgreSQL
// chooses them. Column subcommands (ADD COLUMN, ALTER COLUMN TYPE) stay as
// written here; planColumns (plan_columns.go) plans those.

// constraintPlanFinding is the finding for an ALTER TABLE one of whose
// subcommands is dangerous: the hint is the safe sequence for the whole
// statement; it is also the rewrite when the statement has this one
// subcommand and the sequence ends in exactly the same state.
func (s *stmt) constraintPlanFinding(a *pg_query.AlterTableStmt, cmds []*pg_query.AlterTableCmd, rel, why string) *Finding {
	p := s.planConstraints(a, cmds)
	f := s.finding(rel, why, p.hint())
	if len(cmds) == 1 && p.exact {
		f.Rewrite = append(append([]string(nil), p.now...), p.later...)
		f.RewriteOutsideTxOnly = true
		f.StepErrors = p.stepErrors
		f.StepLocks = p.stepLocks
		f.StepUndo = p.stepUndo
	}
	return f
}

// safePlan is a safe sequence: now runs first, later each in a transaction
// of its own after now has committed (VALIDATE, CREATE INDEX CONCURRENTLY).
// Elements starting with "--" are comments for a human.
type safePlan struct {
	now, later []string
	// exact: same end state as the original and no human step.
	exact bool
	// stepErrors report a step's failure as the original's.
	stepErrors []StepError
	// stepLocks and stepUndo: the locks of steps written in syntax the
	// guard's parser does not read, and what takes them back
	// (Finding.StepLocks, Finding.StepUndo).
	stepLocks map[string][]Lock
	stepUndo  map[string]string
}

// hint renders the plan as SQL, one statement a line.
func (p *safePlan) hint() string {
	var lines []string
	add := func(list []string) {
		for _, x := range list {
			if strings.HasPrefix(x, "--") {
				lines = append(lines, x)
			} else {
				lines = append(lines, x+";")
			}
		}
	}
	add(p.now)
	if len(p.now) > 0 && len(p.later) > 0 {
		lines = append(lines, "-- in a separate transaction:")
	}
	add(p.later)
	return strings.Join(lines, "\n")
}

// planConstraints is the safe sequence for a whole ALTER TABLE: each
// subcommand as a statement of its own, validated constraints added NOT
// VALID and validated later, scanning SET NOT NULL through a validated CHECK (or, on
// PostgreSQL 18, a NOT VALID not-null constraint), UNIQUE / PRIMARY KEY
// through CREATE UNIQUE INDEX CONCURRENTLY and USING INDEX.
func (s *stmt) planConstraints(a *pg_query.AlterTableStmt, cmds []*pg_query.AlterTableCmd) *safePlan {
	p := &safePlan{exact: true}
	nm := names{}
	for _, cmd := range cmds {
		if con := addedConstraint(cmd); con != nil && con.Conname != "" {
			nm[con.Conname] = true
		}
	}
	for _, cmd := range cmds {
		s.planCmd(p, nm, a, cmd)
	}
	return p
}

// planCmd adds one subcommand to the plan: in its online form when it has
// one, else as written.
func (s *stmt) planCmd(p *safePlan, nm names, a *pg_query.AlterTableStmt, cmd *pg_query.AlterTableCmd) {
	rel := rangeVarName(a.Relation)
	table := a.Relation.Relname
	switch cmd.Subtype {
	case pg_query.AlterTableType_AT_ValidateConstraint:
		// Under the statement's lock it would scan; alone it takes
		// SHARE UPDATE EXCLUSIVE.
		p.later = append(p.later, alterTableSQL(a, cmd))
		return
	case pg_query.AlterTableType_AT_SetNotNull:
		if s.setNotNullScans(rel, cmd.Name) {
			s.planNotNull(p, nm, a, cmd.Name)
			return
		}
	case pg_query.AlterTableType_AT_AddConstraint:
		con := cmd.Def.GetConstraint()
		if con == nil {
			break
		}
		switch con.Contype {
		case pg_query.ConstrType_CONSTR_FOREIGN:
			if con.SkipValidation {
				break
			}
			name := con.Conname
			if name == "" {
				name = nm.choose(table, columnsPart(stringList(con.FkAttrs)), "fkey")
			}
			if s.isPartitioned(rel) && s.sess.major() < 18 {
				s.planPartitionedForeignKey(p, a, cmd, name)
				return
			}
			s.planNotValid(p, a, cmd, name)
			return
		case pg_query.ConstrType_CONSTR_CHECK:
			if con.SkipValidation {
				break
			}
			name := con.Conname
			if name == "" {
				name = nm.choose(table, checkNameColumn(con.RawExpr), "check")
			}
			s.planNotValid(p, a, cmd, name)
			return
		case pg_query.ConstrType_CONSTR_UNIQUE, pg_query.ConstrType_CONSTR_PRIMARY:
			if con.Indexname != "" {
				break
			}
			s.planUnique(p, nm, a, cmd, con)
			return
		case pg_query.ConstrType_CONSTR_EXCLUSION:
			p.now = append(p.now, exclusionLines(a, cmd)...)
			p.exact = false
			return
		}
	}
	p.now = append(p.now, alterTableSQL(a, cmd))
}

// withConstraint returns a copy of an ADD CONSTRAINT subcommand with the
// constraint named name, NOT VALID when notValid.
func withConstraint(cmd *pg_query.AlterTableCmd, name string, notValid bool) *pg_query.AlterTableCmd {
	c := proto.Clone(cmd).(*pg_query.AlterTableCmd)
	con := c.Def.GetConstraint()
	con.Conname = name
	if notValid {
		con.SkipValidation, con.InitiallyValid = true, false
	}
	return c
}

// alterCmdSQL renders "ALTER TABLE rel <subtype> name" (VALIDATE
// CONSTRAINT, SET NOT NULL, DROP CONSTRAINT).
func alterCmdSQL(a *pg_query.AlterTableStmt, subtype pg_query.AlterTableType, name string) string {
	cmd := &pg_query.AlterTableCmd{Subtype: subtype, Name: name, Behavior: pg_query.DropBehavior_DROP_RESTRICT}
	return alterTableSQL(a, cmd)
}

// planNotValid: ADD CONSTRAINT name ... NOT VALID now, VALIDATE later.
func (s *stmt) planNotValid(p *safePlan, a *pg_query.AlterTableStmt, cmd *pg_query.AlterTableCmd, name string) {
	p.now = append(p.now, alterTableSQL(a, withConstraint(cmd, name, true)))
	p.later = append(p.later, alterCmdSQL(a, pg_query.AlterTableType_AT_ValidateConstraint, name))
}

// planPartitionedForeignKey: before PostgreSQL 18 a partitioned table
// cannot take a NOT VALID foreign key, but adding it attaches equal,
// validated foreign keys of the partitions without scanning them.
func (s *stmt) planPartitionedForeignKey(p *safePlan, a *pg_query.AlterTableStmt, cmd *pg_query.AlterTableCmd, name string) {
	part := partitionAlter(a)
	rel := rangeVarName(a.Relation)
	p.now = append(p.now,
		"-- "+rel+" is partitioned: before PostgreSQL 18 it cannot take a NOT VALID foreign key; for each partition (replace <partition>), each statement in its own transaction:",
		unquotePlaceholder(alterTableSQL(part, withConstraint(cmd, name, true))),
		unquotePlaceholder(alterCmdSQL(part, pg_query.AlterTableType_AT_ValidateConstraint, name)),
		"-- then this attaches the partitions' validated foreign keys without a scan (ddlguard cannot see them, hence the allow):",
		allowComment("add-foreign-key-validated", "partitions validated")+alterTableSQL(a, withConstraint(cmd, name, false)))
	p.exact = false
}

// partitionPlaceholder stands for each partition's name in hints.
const partitionPlaceholder = "<partition>"

var quotedPlaceholder = regexp.MustCompile(`"(` + partitionPlaceholder + `[^"]*)"`)

// unquotePlaceholder undoes the deparser's quoting of the placeholder.
func unquotePlaceholder(sql string) string { return quotedPlaceholder.ReplaceAllString(sql, "$1") }

// partitionAlter is a copy of a with the placeholder as relation.
func partitionAlter(a *pg_query.AlterTableStmt) *pg_query.AlterTableStmt {
	return &pg_query.AlterTableStmt{Relation: &pg_query.RangeVar{Relname: partitionPlaceholder, Inh: true},
		Objtype: a.Objtype, MissingOk: a.MissingOk}
}

// planNotNull makes col NOT NULL without a scan under ACCESS EXCLUSIVE.
// PostgreSQL 18: a NOT VALID not-null constraint under the name SET NOT
// NULL would give it, validated later. Before: a NOT VALID CHECK (col IS
// NOT NULL), validated, lets SET NOT NULL skip its scan; the CHECK is then
// dropped. Its name cannot clash with PostgreSQL 18's <table>_<col>_not_null.
func (s *stmt) planNotNull(p *safePlan, nm names, a *pg_query.AlterTableStmt, col string) {
	table := a.Relation.Relname
	if s.sess.major() >= 18 {
		name := nm.choose(table, col, "not_null")
		step := alterTablePrefix(a) + " ADD CONSTRAINT " + quoteIdent(name) + " NOT NULL " + quoteIdent(col) + " NOT VALID"
		p.now = append(p.now, step)
		if p.stepLocks == nil {
			p.stepLocks, p.stepUndo = map[string][]Lock{}, map[string]string{}
		}
		// PostgreSQL 18 syntax, which the parser (PostgreSQL 17's grammar)
		// cannot read: ACCESS EXCLUSIVE, nothing read (lockfacts.sql); a
		// failed VALIDATE after it drops the constraint again.
		p.stepLocks[step] = []Lock{{Relation: rangeVarName(a.Relation), Mode: AccessExclusive}}
		p.stepUndo[step] = alterTablePrefix(a) + " DROP CONSTRAINT IF EXISTS " + quoteIdent(name)
		p.later = append(p.later, alterCmdSQL(a, pg_query.AlterTableType_AT_ValidateConstraint, name))
		return
	}
	name := nm.choose(table, col, "not_null_check")
	add := &pg_query.AlterTableCmd{Subtype: pg_query.AlterTableType_AT_AddConstraint,
		Def: nodeOf(notNullCheck(name, col)), Behavior: pg_query.DropBehavior_DROP_RESTRICT}
	p.now = append(p.now, alterTableSQL(a, add))
	// The helper CHECK's violation is SET NOT NULL's not-null violation.
	p.stepErrors = append(p.stepErrors, StepError{Code: "23514", As: "23502", Column: col,
		Message: "column %q of relation %q contains null values"})
	p.later = append(p.later,
		alterCmdSQL(a, pg_query.AlterTableType_AT_ValidateConstraint, name),
		alterCmdSQL(a, pg_query.AlterTableType_AT_SetNotNull, col),
		alterCmdSQL(a, pg_query.AlterTableType_AT_DropConstraint, name))
}

// alterTablePrefix is "ALTER TABLE [IF EXISTS] [ONLY] name", for statements
// the PostgreSQL 17 deparser cannot render (PostgreSQL 18 syntax).
func alterTablePrefix(a *pg_query.AlterTableStmt) string {
	out := "ALTER TABLE "
	if a.MissingOk {
		out += "IF EXISTS "
	}
	if !a.Relation.Inh {
		out += "ONLY "
	}
	if a.Relation.Schemaname != "" {
		out += quoteIdent(a.Relation.Schemaname) + "."
	}
	return out + quoteIdent(a.Relation.Relname)
}

// planUnique builds the index CONCURRENTLY and attaches it with USING
// INDEX. A primary key needs its columns NOT NULL first (USING INDEX would
// otherwise set them NOT NULL with a scan under ACCESS EXCLUSIVE). A
// partitioned table cannot build CONCURRENTLY: each partition gets its
// constraint that way, and adding the constraint to the table then attaches
// them without building.
func (s *stmt) planUnique(p *safePlan, nm names, a *pg_query.AlterTableStmt, cmd *pg_query.AlterTableCmd, con *pg_query.Constraint) {
	rel := rangeVarName(a.Relation)
	table := a.Relation.Relname
	keys, incl := stringList(con.Keys), stringList(con.Including)
	primary := con.Contype == pg_query.ConstrType_CONSTR_PRIMARY
	label, addition := "key", columnsPart(append(append([]string(nil), keys...), incl...))
	if primary {
		label, addition = "pkey", ""
	}
	name := con.Conname
	if name == "" {
		name = nm.choose(table, addition, label)
	}
	if primary {
		for _, k := range keys {
			if !s.columnNotNull(rel, k) {
				s.planNotNull(p, nm, a, k)
				p.exact = false
			}
		}
	}
	if s.isPartitioned(rel) {
		part := partitionAlter(a)
		partName := makeObjectName(partitionPlaceholder, addition, label)
		p.later = append(p.later,
			"-- "+rel+" is partitioned: an index cannot be built CONCURRENTLY on it; for each partition (replace <partition>):",
			unquotePlaceholder(uniqueIndexSQL(part, con, partName)),
			unquotePlaceholder(alterTableSQL(part, usingIndexCmd(con, partName))),
			"-- then this attaches the partitions' constraints without building an index (ddlguard cannot see them, hence the allow):",
			allowComment("add-unique-constraint", "partitions indexed")+alterTableSQL(a, withConstraint(cmd, name, false)))
		p.exact = false
		return
	}
	p.later = append(p.later, uniqueIndexSQL(a, con, name), alterTableSQL(a, usingIndexCmd(con, name)))
}

// uniqueIndexSQL is CREATE UNIQUE INDEX CONCURRENTLY for a UNIQUE or
// PRIMARY KEY constraint: its columns, INCLUDE, NULLS NOT DISTINCT, WITH
// and USING INDEX TABLESPACE.
func uniqueIndexSQL(a *pg_query.AlterTableStmt, con *pg_query.Constraint, name string) string {
	elems := func(cols []string) []*pg_query.Node {
		out := make([]*pg_query.Node, 0, len(cols))
		for _, c := range cols {
			out = append(out, &pg_query.Node{Node: &pg_query.Node_IndexElem{IndexElem: &pg_query.IndexElem{Name: c,
				Ordering: pg_query.SortByDir_SORTBY_DEFAULT, NullsOrdering: pg_query.SortByNulls_SORTBY_NULLS_DEFAULT}}})
		}
		return out
	}
	rv := proto.Clone(a.Relation).(*pg_query.RangeVar)
	rv.Inh = true
	ix := &pg_query.IndexStmt{Idxname: name, Relation: rv, AccessMethod: "btree", TableSpace: con.Indexspace,
		IndexParams: elems(stringList(con.Keys)), IndexIncludingParams: elems(stringList(con.Including)),
		Options: con.Options, Unique: true, NullsNotDistinct: con.NullsNotDistinct, Concurrent: true}
	return deparse(&pg_query.Node{Node: &pg_query.Node_IndexStmt{IndexStmt: ix}})
}

// usingIndexCmd is ADD CONSTRAINT name UNIQUE / PRIMARY KEY USING INDEX name,
// keeping DEFERRABLE / INITIALLY DEFERRED.
func usingIndexCmd(con *pg_query.Constraint, name string) *pg_query.AlterTableCmd {
	c := &pg_query.Constraint{Contype: con.Contype, Conname: name, Indexname: name,
		Deferrable: con.Deferrable, Initdeferred: con.Initdeferred, InitiallyValid: true, Location: -1}
	return &pg_query.AlterTableCmd{Subtype: pg_query.AlterTableType_AT_AddConstraint,
		Def: nodeOf(c), Behavior: pg_query.DropBehavior_DROP_RESTRICT}
}

// exclusionLines: an EXCLUDE constraint has no online path; the statement
// for a quiet moment, waiting a little longer for its lock.
func exclusionLines(a *pg_query.AlterTableStmt, cmd *pg_query.AlterTableCmd) []string {
	return []string{
		"-- EXCLUDE constraints cannot be built CONCURRENTLY or added USING INDEX: add it while " +
			rangeVarName(a.Relation) + " is small, or in a maintenance window:",
		"SET lock_timeout = '10s'",
		alterTableSQL(a, cmd),
		"RESET lock_timeout",
	}
}

// isPartitioned: facts show rel is a partitioned table.
func (s *stmt) isPartitioned(rel string) bool {
	f, ok := s.facts.Relation(rel)
	return ok && f.Kind == 'p'
}
