package guard

import (
	"fmt"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// stmt is one statement being decided: its parse tree, what it locks, and
// the session as it is just before it runs.
type stmt struct {
	parsedStmt
	kind    string
	locks   []Lock
	effects Effects
	// concurrently: a CONCURRENTLY form (all but REFRESH MATERIALIZED VIEW
	// CONCURRENTLY cannot run in a transaction block).
	concurrently bool
	sess         *Session
	facts        Facts
	// inBlock: the statement runs inside a transaction block, explicit or
	// the implicit one of a multi-statement simple query.
	inBlock bool
	// small is the small-table threshold in bytes (0: never small).
	small int64
	// factsFresh: the facts were read just before this statement (the
	// first of its string), so a relation they do not have does not exist.
	factsFresh bool
	// locksUnknown: the statement locks SHARE and scans relations the
	// facts do not name (see Decision.LocksUnknown); taken as large.
	locksUnknown bool
	// reruns: the statement reruns a materialized view's query under its
	// lock (REFRESH): what the query reads is the work
	// (RelationFacts.QueryBytes).
	reruns bool
}

// analyze fills kind, locks, effects and concurrently from the parse tree.
func (s *stmt) analyze() {
	switch n := s.node.Node.(type) {
	case *pg_query.Node_IndexStmt:
		s.analyzeCreateIndex(n.IndexStmt)
	case *pg_query.Node_AlterTableStmt:
		s.analyzeAlterTable(n.AlterTableStmt)
	case *pg_query.Node_DropStmt:
		s.analyzeDrop(n.DropStmt)
	case *pg_query.Node_RenameStmt:
		s.analyzeRename(n.RenameStmt)
	case *pg_query.Node_ReindexStmt:
		s.analyzeReindex(n.ReindexStmt)
	case *pg_query.Node_TruncateStmt:
		s.kind = "TRUNCATE"
		for _, r := range n.TruncateStmt.Relations {
			s.lock(rangeVarName(r.GetRangeVar()), AccessExclusive, WorkTruncate)
		}
	case *pg_query.Node_VacuumStmt:
		s.analyzeVacuum(n.VacuumStmt)
	case *pg_query.Node_ClusterStmt:
		s.kind = "CLUSTER"
		if rv := n.ClusterStmt.Relation; rv != nil {
			s.lock(rangeVarName(rv), AccessExclusive, WorkRewrite)
		} else {
			s.lock(allRelations, AccessExclusive, WorkRewrite)
		}
	case *pg_query.Node_RefreshMatViewStmt:
		s.analyzeRefreshMatView(n.RefreshMatViewStmt)
	case *pg_query.Node_LockStmt:
		s.kind = "LOCK TABLE"
		mode := LockMode(n.LockStmt.Mode)
		if mode <= NoLock || mode > AccessExclusive {
			mode = AccessExclusive
		}
		for _, r := range n.LockStmt.Relations {
			s.lock(rangeVarName(r.GetRangeVar()), mode, WorkNone)
		}
	case *pg_query.Node_CreateStmt:
		s.analyzeCreateTable(n.CreateStmt)
	case *pg_query.Node_CreateTrigStmt:
		s.kind = "CREATE TRIGGER"
		s.lock(rangeVarName(n.CreateTrigStmt.Relation), ShareRowExclusive, WorkNone)
	case *pg_query.Node_RuleStmt:
		s.kind = "CREATE RULE"
		s.lock(rangeVarName(n.RuleStmt.Relation), AccessExclusive, WorkNone)
	case *pg_query.Node_CreatePolicyStmt:
		s.kind = "CREATE POLICY"
		s.lock(rangeVarName(n.CreatePolicyStmt.Table), AccessExclusive, WorkNone)
	case *pg_query.Node_AlterPolicyStmt:
		s.kind = "ALTER POLICY"
		s.lock(rangeVarName(n.AlterPolicyStmt.Table), AccessExclusive, WorkNone)
	case *pg_query.Node_CreateStatsStmt:
		s.kind = "CREATE STATISTICS"
		for _, r := range n.CreateStatsStmt.Relations {
			s.lock(rangeVarName(r.GetRangeVar()), ShareUpdateExclusive, WorkNone)
		}
	case *pg_query.Node_CommentStmt:
		s.analyzeComment(n.CommentStmt)
	case *pg_query.Node_AlterDomainStmt:
		s.analyzeAlterDomain(n.AlterDomainStmt)
	case *pg_query.Node_AlterObjectSchemaStmt:
		o := n.AlterObjectSchemaStmt
		s.kind = "ALTER " + objectWord(o.ObjectType) + " SET SCHEMA"
		if o.Relation != nil {
			s.lock(rangeVarName(o.Relation), AccessExclusive, WorkNone)
		}
	case *pg_query.Node_TransactionStmt:
		s.analyzeTransaction(n.TransactionStmt)
	case *pg_query.Node_VariableShowStmt:
		s.kind = "SHOW"
	case *pg_query.Node_VariableSetStmt:
		s.analyzeSet(n.VariableSetStmt)
	case *pg_query.Node_CreateTableAsStmt:
		c := n.CreateTableAsStmt
		s.kind = "CREATE TABLE AS"
		if c.Objtype == pg_query.ObjectType_OBJECT_MATVIEW {
			s.kind = "CREATE MATERIALIZED VIEW"
		}
		if c.Into != nil && c.Into.Rel != nil {
			s.created(c.Into.Rel)
		}
	case *pg_query.Node_AlterSeqStmt:
		s.analyzeAlterSequence(n.AlterSeqStmt)
	case *pg_query.Node_ExplainStmt:
		s.kind = "EXPLAIN"
	case *pg_query.Node_ViewStmt:
		s.kind = "CREATE VIEW"
	default:
		s.kind = statementKind(s.node)
	}
}

func (s *stmt) analyzeRefreshMatView(r *pg_query.RefreshMatViewStmt) {
	s.kind = "REFRESH MATERIALIZED VIEW"
	if r.Concurrent {
		// Runs the query and applies the difference in place: reads
		// continue, writes wait for the whole run.
		s.concurrently = true // allowed in a transaction block, unlike the others
		s.lock(rangeVarName(r.Relation), Exclusive, WorkScan)
		return
	}
	work := WorkRewrite
	if r.SkipData {
		work = WorkTruncate // WITH NO DATA: emptied, the query does not run
	}
	s.reruns = !r.SkipData
	s.lock(rangeVarName(r.Relation), AccessExclusive, work)
}

// analyzeSet records what SET does to the settings the guard follows:
// TimeZone (timestamp type changes) and lock_timeout (the linter).
func (s *stmt) analyzeSet(v *pg_query.VariableSetStmt) {
	s.kind = "SET"
	switch strings.ToLower(v.Name) {
	case "timezone":
		if len(v.Args) == 1 {
			if c := v.Args[0].GetAConst(); c != nil && c.GetSval() != nil {
				s.effects.SetTimeZone, s.effects.Local = c.GetSval().Sval, v.IsLocal
			}
		}
	case "lock_timeout":
		s.effects.LockTimeout = lockTimeoutEffect(v)
	}
}

// analyzeAlterSequence: a changed sequence gets new storage unless the
// statement only changes OWNED BY.
func (s *stmt) analyzeAlterSequence(a *pg_query.AlterSeqStmt) {
	s.kind = "ALTER SEQUENCE"
	work := WorkNone
	for _, o := range a.Options {
		if d := o.GetDefElem(); d != nil && d.Defname != "owned_by" {
			work = WorkTruncate
		}
	}
	s.lock(rangeVarName(a.Sequence), ShareRowExclusive, work)
}

// lockTimeoutEffect classifies SET/RESET lock_timeout: setting it to zero
// or resetting it counts as unset.
func lockTimeoutEffect(v *pg_query.VariableSetStmt) LockTimeoutEffect {
	if v.Kind != pg_query.VariableSetKind_VAR_SET_VALUE || len(v.Args) != 1 {
		return LockTimeoutReset
	}
	c := v.Args[0].GetAConst()
	if c == nil {
		return LockTimeoutReset
	}
	zero := (c.GetIval() != nil && c.GetIval().Ival == 0) || (c.GetSval() != nil && strings.TrimSpace(c.GetSval().Sval) == "0")
	switch {
	case zero:
		return LockTimeoutReset
	case v.IsLocal:
		return LockTimeoutSetLocal
	}
	return LockTimeoutSet
}

// indexTable is the table an index belongs to, when facts know it.
func (s *stmt) indexTable(index string) string {
	if f, ok := s.facts.Relation(index); ok {
		return f.Table
	}
	return ""
}

// lock records a lock on an existing relation.
func (s *stmt) lock(rel string, mode LockMode, work Work) {
	if rel == "" {
		return
	}
	for i := range s.locks {
		if s.locks[i].Relation == rel {
			s.locks[i].Mode = max(s.locks[i].Mode, mode)
			s.locks[i].Work = max(s.locks[i].Work, work)
			return
		}
	}
	s.locks = append(s.locks, Lock{Relation: rel, Mode: mode, Work: work})
}

// created records a relation the statement creates.
func (s *stmt) created(rv *pg_query.RangeVar) {
	name := rangeVarName(rv)
	if rv.Relpersistence == "t" {
		s.effects.CreatedTemp = append(s.effects.CreatedTemp, name)
	} else {
		s.effects.Created = append(s.effects.Created, name)
	}
}

func (s *stmt) analyzeCreateIndex(ix *pg_query.IndexStmt) {
	s.kind = "CREATE INDEX"
	rel := rangeVarName(ix.Relation)
	if ix.Concurrent {
		s.concurrently = true
		s.lock(rel, ShareUpdateExclusive, WorkIndexBuild)
		return
	}
	if !ix.Relation.Inh && s.isPartitioned(rel) {
		// ON ONLY a partitioned table: an invalid index on the parent
		// alone, nothing built.
		s.lock(rel, Share, WorkNone)
		return
	}
	s.lock(rel, Share, WorkIndexBuild)
}

func (s *stmt) analyzeDrop(d *pg_query.DropStmt) {
	s.kind = "DROP " + objectWord(d.RemoveType)
	switch d.RemoveType {
	case pg_query.ObjectType_OBJECT_TABLE, pg_query.ObjectType_OBJECT_VIEW, pg_query.ObjectType_OBJECT_MATVIEW,
		pg_query.ObjectType_OBJECT_FOREIGN_TABLE, pg_query.ObjectType_OBJECT_SEQUENCE:
		for _, o := range d.Objects {
			name := nameOf(o.GetList().GetItems())
			s.lock(name, AccessExclusive, WorkNone)
			s.effects.Dropped = append(s.effects.Dropped, name)
		}
	case pg_query.ObjectType_OBJECT_INDEX:
		mode := AccessExclusive
		if d.Concurrent {
			s.concurrently = true
			mode = ShareUpdateExclusive
		}
		for _, o := range d.Objects {
			idx := nameOf(o.GetList().GetItems())
			s.lock(idx, mode, WorkNone)
			if t := s.indexTable(idx); t != "" {
				s.lock(t, mode, WorkNone)
			}
		}
	case pg_query.ObjectType_OBJECT_TRIGGER, pg_query.ObjectType_OBJECT_RULE, pg_query.ObjectType_OBJECT_POLICY:
		// DROP TRIGGER name ON table: the object list ends with the
		// trigger name; what precedes it names the table.
		for _, o := range d.Objects {
			items := o.GetList().GetItems()
			if len(items) >= 2 {
				s.lock(nameOf(items[:len(items)-1]), AccessExclusive, WorkNone)
			}
		}
	}
}

func (s *stmt) analyzeRename(r *pg_query.RenameStmt) {
	s.kind = "ALTER " + objectWord(renameTarget(r)) + " RENAME"
	if r.Relation == nil {
		return
	}
	mode := AccessExclusive
	if r.RenameType == pg_query.ObjectType_OBJECT_INDEX {
		mode = ShareUpdateExclusive // PostgreSQL 12+
	}
	s.lock(rangeVarName(r.Relation), mode, WorkNone)
}

// renameTarget is the kind of object whose name changes, or for a column
// or constraint, the kind of relation it belongs to (the grammar leaves
// that unset for RENAME CONSTRAINT: a table).
func renameTarget(r *pg_query.RenameStmt) pg_query.ObjectType {
	if r.RenameType == pg_query.ObjectType_OBJECT_COLUMN || r.RenameType == pg_query.ObjectType_OBJECT_TABCONSTRAINT {
		if r.RelationType <= pg_query.ObjectType_OBJECT_ACCESS_METHOD {
			return pg_query.ObjectType_OBJECT_TABLE
		}
		return r.RelationType
	}
	return r.RenameType
}

func (s *stmt) analyzeReindex(r *pg_query.ReindexStmt) {
	s.kind = "REINDEX"
	s.concurrently = optionOn(r.Params, "concurrently")
	name := rangeVarName(r.Relation)
	if name == "" {
		name = r.Name // SCHEMA, DATABASE, SYSTEM: every table in it
	}
	switch {
	case s.concurrently:
		s.lock(name, ShareUpdateExclusive, WorkIndexBuild)
	case r.Kind == pg_query.ReindexObjectType_REINDEX_OBJECT_INDEX:
		// ACCESS EXCLUSIVE on the index (planning any query on the table
		// opens it, so even reads wait) and SHARE on its table.
		s.lock(name, AccessExclusive, WorkIndexBuild)
		if t := s.indexTable(name); t != "" {
			s.lock(t, Share, WorkIndexBuild)
		}
	case r.Kind == pg_query.ReindexObjectType_REINDEX_OBJECT_TABLE:
		// SHARE on the table, but ACCESS EXCLUSIVE on every index while it
		// is rebuilt, and planning any query opens all of them: in effect
		// the table is closed to reads and writes.
		s.lock(name, AccessExclusive, WorkIndexBuild)
	default:
		s.lock(name, Share, WorkIndexBuild)
	}
}

func (s *stmt) analyzeVacuum(v *pg_query.VacuumStmt) {
	full := optionOn(v.Options, "full")
	mode, work := ShareUpdateExclusive, WorkNone
	s.kind = "ANALYZE"
	if v.IsVacuumcmd {
		s.kind = "VACUUM"
	}
	if full {
		s.kind, mode, work = "VACUUM FULL", AccessExclusive, WorkRewrite
	}
	for _, r := range v.Rels {
		if vr := r.GetVacuumRelation(); vr != nil {
			s.lock(rangeVarName(vr.Relation), mode, work)
		}
	}
	if len(v.Rels) == 0 {
		s.lock(allRelations, mode, work)
	}
}

// allRelations stands for "every table of the database" (VACUUM FULL or
// CLUSTER without a table list).
const allRelations = "*"

func (s *stmt) analyzeComment(c *pg_query.CommentStmt) {
	s.kind = "COMMENT"
	switch c.Objtype {
	case pg_query.ObjectType_OBJECT_TABLE, pg_query.ObjectType_OBJECT_INDEX, pg_query.ObjectType_OBJECT_VIEW,
		pg_query.ObjectType_OBJECT_MATVIEW, pg_query.ObjectType_OBJECT_SEQUENCE:
		if l := c.Object.GetList(); l != nil {
			s.lock(nameOf(l.Items), ShareUpdateExclusive, WorkNone)
		}
	case pg_query.ObjectType_OBJECT_COLUMN:
		if l := c.Object.GetList(); l != nil && len(l.Items) >= 2 {
			s.lock(nameOf(l.Items[:len(l.Items)-1]), ShareUpdateExclusive, WorkNone)
		}
	}
}

func (s *stmt) analyzeTransaction(t *pg_query.TransactionStmt) {
	switch t.Kind {
	case pg_query.TransactionStmtKind_TRANS_STMT_BEGIN, pg_query.TransactionStmtKind_TRANS_STMT_START:
		s.kind, s.effects.TxControl = "BEGIN", TxBegin
	case pg_query.TransactionStmtKind_TRANS_STMT_COMMIT:
		s.kind, s.effects.TxControl = "COMMIT", TxEnd
	case pg_query.TransactionStmtKind_TRANS_STMT_ROLLBACK:
		s.kind, s.effects.TxControl = "ROLLBACK", TxEnd
	case pg_query.TransactionStmtKind_TRANS_STMT_PREPARE:
		s.kind, s.effects.TxControl = "PREPARE TRANSACTION", TxEnd
	default:
		s.kind, s.effects.TxControl = "SAVEPOINT", TxOther
	}
}

func (s *stmt) analyzeCreateTable(c *pg_query.CreateStmt) {
	s.kind = "CREATE TABLE"
	s.created(c.Relation)
	// Foreign keys lock the referenced (existing) tables.
	fk := func(con *pg_query.Constraint) {
		if con != nil && con.Contype == pg_query.ConstrType_CONSTR_FOREIGN && con.Pktable != nil {
			s.lock(rangeVarName(con.Pktable), ShareRowExclusive, WorkNone)
		}
	}
	for _, e := range c.TableElts {
		if cd := e.GetColumnDef(); cd != nil {
			for _, con := range cd.Constraints {
				fk(con.GetConstraint())
			}
		}
		fk(e.GetConstraint())
	}
	for _, con := range c.Constraints {
		fk(con.GetConstraint())
	}
	if c.Partbound != nil {
		// CREATE TABLE ... PARTITION OF parent.
		for _, p := range c.InhRelations {
			s.lock(rangeVarName(p.GetRangeVar()), AccessExclusive, WorkNone)
		}
	} else {
		for _, p := range c.InhRelations {
			s.lock(rangeVarName(p.GetRangeVar()), ShareUpdateExclusive, WorkNone)
		}
	}
}

// objectWord names an object type as SQL does ("TABLE", "MATERIALIZED VIEW").
func objectWord(t pg_query.ObjectType) string {
	w := strings.TrimPrefix(t.String(), "OBJECT_")
	switch w {
	case "MATVIEW":
		return "MATERIALIZED VIEW"
	case "TABCONSTRAINT":
		return "CONSTRAINT"
	case "FOREIGN_TABLE":
		return "FOREIGN TABLE"
	}
	return strings.ReplaceAll(w, "_", " ")
}

// statementKind names a statement the guard does not analyze further, from
// its node type: SelectStmt -> "SELECT", CreateFunctionStmt -> "CREATE FUNCTION".
func statementKind(n *pg_query.Node) string {
	t := strings.TrimPrefix(fmt.Sprintf("%T", n.GetNode()), "*pg_query.Node_")
	t = strings.TrimSuffix(t, "Stmt")
	t = strings.TrimPrefix(t, "Variable")
	var b strings.Builder
	for i, r := range t {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte(' ')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}
