package guard

import (
	"fmt"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
)

// The online form of one ADD COLUMN: the column added without touching the
// existing rows, their values backfilled in batches, NOT NULL and
// constraints added the way that does not scan or build under ACCESS
// EXCLUSIVE. The ADD COLUMN rules also read what the column needs from it
// (rewriteWhy, inlineWhy, notNullWithoutValue).

// columnAdd is one ADD COLUMN subcommand, taken apart.
type columnAdd struct {
	a   *pg_query.AlterTableStmt
	cmd *pg_query.AlterTableCmd
	cd  *pg_query.ColumnDef
	// rel is the relation as SQL; table its unqualified name and schema
	// its schema ("" when not written), for generated names.
	rel, table, schema string
	col                string // the column as SQL
	// serial is the integer type of a serial column ("bigint"), serialName
	// the type as written ("bigserial").
	serial, serialName string
	// dflt is the DEFAULT clause (nil when absent or DEFAULT NULL).
	dflt                *pg_query.Constraint
	identity, generated *pg_query.Constraint
	notNull             bool // NOT NULL written
	checks, fks         []*pg_query.Constraint
	uniques             []*pg_query.Constraint
	pk                  *pg_query.Constraint
	// names are the constraint names the plan has used, for PostgreSQL's
	// numbering of duplicates.
	names names
}

// addedColumns takes apart every ADD COLUMN subcommand of an ALTER TABLE.
func addedColumns(a *pg_query.AlterTableStmt, cmds []*pg_query.AlterTableCmd) []*columnAdd {
	var out []*columnAdd
	for _, cmd := range cmds {
		if cmd.Subtype == pg_query.AlterTableType_AT_AddColumn {
			out = append(out, newColumnAdd(a, cmd))
		}
	}
	return out
}

func newColumnAdd(a *pg_query.AlterTableStmt, cmd *pg_query.AlterTableCmd) *columnAdd {
	c := &columnAdd{a: a, cmd: cmd, cd: cmd.Def.GetColumnDef(), names: names{}}
	if c.cd == nil {
		c.cd = &pg_query.ColumnDef{}
	}
	c.rel = quoteName(rangeVarName(a.Relation))
	c.table = a.Relation.GetRelname()
	c.schema = a.Relation.GetSchemaname()
	c.col = quoteIdent(c.cd.Colname)
	if c.cd.TypeName != nil && isSerialType(c.cd.TypeName) {
		c.serialName = lastName(c.cd.TypeName.Names)
		switch c.serialName {
		case "bigserial", "serial8":
			c.serial = "bigint"
		case "smallserial", "serial2":
			c.serial = "smallint"
		default:
			c.serial = "integer"
		}
	}
	// Constraint attributes (DEFERRABLE, INITIALLY DEFERRED, ...) follow
	// the constraint they modify.
	var last *pg_query.Constraint
	for _, n := range c.cd.Constraints {
		con := n.GetConstraint()
		if con == nil {
			continue
		}
		switch con.Contype {
		case pg_query.ConstrType_CONSTR_DEFAULT:
			if !isNullConst(con.RawExpr) {
				c.dflt = con
			}
		case pg_query.ConstrType_CONSTR_IDENTITY:
			c.identity = con
		case pg_query.ConstrType_CONSTR_GENERATED:
			c.generated = con
		case pg_query.ConstrType_CONSTR_NOTNULL:
			c.notNull = true
		case pg_query.ConstrType_CONSTR_CHECK:
			c.checks = append(c.checks, proto.Clone(con).(*pg_query.Constraint))
		case pg_query.ConstrType_CONSTR_FOREIGN:
			last = proto.Clone(con).(*pg_query.Constraint)
			c.fks = append(c.fks, last)
		case pg_query.ConstrType_CONSTR_UNIQUE:
			last = proto.Clone(con).(*pg_query.Constraint)
			c.uniques = append(c.uniques, last)
		case pg_query.ConstrType_CONSTR_PRIMARY:
			last = proto.Clone(con).(*pg_query.Constraint)
			c.pk = last
		case pg_query.ConstrType_CONSTR_ATTR_DEFERRABLE, pg_query.ConstrType_CONSTR_ATTR_NOT_DEFERRABLE,
			pg_query.ConstrType_CONSTR_ATTR_DEFERRED, pg_query.ConstrType_CONSTR_ATTR_IMMEDIATE:
			if last != nil {
				switch con.Contype {
				case pg_query.ConstrType_CONSTR_ATTR_DEFERRABLE:
					last.Deferrable = true
				case pg_query.ConstrType_CONSTR_ATTR_NOT_DEFERRABLE:
					last.Deferrable = false
				case pg_query.ConstrType_CONSTR_ATTR_DEFERRED:
					last.Initdeferred = true
				case pg_query.ConstrType_CONSTR_ATTR_IMMEDIATE:
					last.Initdeferred = false
				}
			}
		}
	}
	return c
}

// volatileDefault: the DEFAULT must be evaluated for every existing row.
func (c *columnAdd) volatileDefault() bool {
	return c.dflt != nil && volatileExpr(c.dflt.RawExpr)
}

// filled: PostgreSQL gives the existing rows a value (DEFAULT, serial,
// identity or generated).
func (c *columnAdd) filled() bool {
	return c.dflt != nil || c.serial != "" || c.identity != nil || c.generated != nil
}

// mustBeNotNull: the column ends up NOT NULL.
func (c *columnAdd) mustBeNotNull() bool {
	return c.notNull || c.pk != nil || c.serial != "" || c.identity != nil
}

// rewriteWhy says why PostgreSQL rewrites the table for this column ("" if
// it does not).
func (c *columnAdd) rewriteWhy() string {
	switch {
	case c.volatileDefault():
		return fmt.Sprintf("store the volatile DEFAULT %s in every existing row of new column %s", sqlExpr(c.dflt.RawExpr), c.col)
	case c.serial != "":
		return fmt.Sprintf("number every existing row in new %s column %s", c.serialName, c.col)
	case c.identity != nil:
		return fmt.Sprintf("number every existing row in new identity column %s", c.col)
	case c.generated != nil:
		return fmt.Sprintf("compute stored generated column %s = %s for every existing row", c.col, sqlExpr(c.generated.RawExpr))
	}
	return ""
}

// inlineWhy says which inline constraints make PostgreSQL scan the table or
// build an index under the lock ("" if none does). REFERENCES on a column
// that PostgreSQL leaves NULL in every existing row is not validated.
func (c *columnAdd) inlineWhy() string {
	var parts []string
	for _, con := range c.checks {
		parts = append(parts, fmt.Sprintf("checks every row against CHECK (%s)", sqlExpr(con.RawExpr)))
	}
	if c.filled() {
		for _, con := range c.fks {
			parts = append(parts, fmt.Sprintf("validates every row against REFERENCES %s", quoteName(rangeVarName(con.Pktable))))
		}
	}
	for range c.uniques {
		parts = append(parts, "builds the unique index")
	}
	if c.pk != nil {
		parts = append(parts, "builds the primary key index")
	}
	if len(parts) == 0 {
		return ""
	}
	return strings.Join(parts, " and ") + " for new column " + c.col
}

// notNullWithoutValue: NOT NULL (or PRIMARY KEY) and nothing that gives the
// existing rows a value, so the ALTER fails on a table with any row.
func (c *columnAdd) notNullWithoutValue() bool {
	return (c.notNull || c.pk != nil) && !c.filled()
}

// name returns a constraint name for this column: the one written, or the
// one PostgreSQL would choose (with its numbering of duplicates).
func (c *columnAdd) name(written string, cols []string, label string) string {
	if written != "" {
		c.names[written] = true
		return written
	}
	part := columnsPart(cols)
	if label == "pkey" {
		part = "" // <table>_pkey, whatever its columns
	}
	return c.names.choose(c.table, part, label)
}

// plan is the online form of this ADD COLUMN.
func (c *columnAdd) plan(s *Statement, constantDefault bool) []string {
	var out []string
	// 1. The column with what PostgreSQL can add without touching rows:
	// its type, collation, storage, a constant or stable DEFAULT (with NOT
	// NULL, which that DEFAULT satisfies), and REFERENCES when every
	// existing row stays NULL (not validated then).
	plain := proto.Clone(c.cd).(*pg_query.ColumnDef)
	plain.Constraints = nil
	keepNotNull := false
	var seq string // the sequence that numbers the rows, as SQL
	var createSeq *pg_query.CreateSeqStmt
	inlineFK := !c.filled() && !c.notNull && c.pk == nil
	switch {
	case c.serial != "":
		plain.TypeName = serialInteger(c.serial)
		createSeq = c.sequence(makeObjectName(c.table, c.cd.Colname, "seq"), plain.TypeName, nil)
	case c.identity != nil:
		// A sequence of our own numbers the rows until the identity
		// (which must not coexist with a DEFAULT) takes over.
		createSeq = c.sequence(makeObjectName(c.table, c.cd.Colname, "backfill_seq"), c.cd.TypeName, c.identity.Options)
	case c.dflt != nil && !c.volatileDefault():
		plain.Constraints = append(plain.Constraints, nodeOf(c.dflt))
		keepNotNull = c.notNull || c.pk != nil
	case constantDefault && c.notNullWithoutValue() && len(c.uniques) == 0 && c.pk == nil:
		plain.Constraints = append(plain.Constraints, nodeOf(&pg_query.Constraint{
			Contype: pg_query.ConstrType_CONSTR_DEFAULT, RawExpr: placeholderNode()}))
		keepNotNull = true
	}
	if keepNotNull {
		plain.Constraints = append(plain.Constraints, nodeOf(&pg_query.Constraint{Contype: pg_query.ConstrType_CONSTR_NOTNULL}))
	}
	if inlineFK {
		for _, fk := range c.fks {
			plain.Constraints = append(plain.Constraints, nodeOf(fk))
		}
	}
	if createSeq != nil {
		seq = quoteName(rangeVarName(createSeq.Sequence))
		out = append(out, deparse(&pg_query.Node{Node: &pg_query.Node_CreateSeqStmt{CreateSeqStmt: createSeq}})+";")
	}
	addCmd := proto.Clone(c.cmd).(*pg_query.AlterTableCmd)
	addCmd.Def = &pg_query.Node{Node: &pg_query.Node_ColumnDef{ColumnDef: plain}}
	out = append(out, withPlaceholder(alterTableSQL(c.a, addCmd), c.cd.TypeName)+";")

	// 2. Values for the existing rows, in batches.
	alter := "ALTER TABLE " + c.rel + " "
	switch {
	case c.volatileDefault():
		expr := sqlExpr(c.dflt.RawExpr)
		out = append(out, alter+"ALTER COLUMN "+c.col+" SET DEFAULT "+expr+";")
		out = append(out, backfill(c.rel, c.col+" = "+expr, c.col+" IS NULL", "")...)
	case createSeq != nil:
		next := fmt.Sprintf("nextval(%s)", sqlLiteral(seq))
		out = append(out, alter+"ALTER COLUMN "+c.col+" SET DEFAULT "+next+";")
		out = append(out, backfill(c.rel, c.col+" = "+next, c.col+" IS NULL", "")...)
		if c.serial != "" {
			out = append(out, fmt.Sprintf("ALTER SEQUENCE %s OWNED BY %s.%s;", seq, c.rel, c.col))
		}
	case c.generated != nil:
		expr := sqlExpr(c.generated.RawExpr)
		if s.sess.major() >= 18 {
			vdef := proto.Clone(c.cd).(*pg_query.ColumnDef)
			vdef.Constraints = []*pg_query.Node{nodeOf(c.generated)}
			virtual := &pg_query.AlterTableCmd{Subtype: pg_query.AlterTableType_AT_AddColumn,
				Def: &pg_query.Node{Node: &pg_query.Node_ColumnDef{ColumnDef: vdef}}}
			out = append([]string{
				"-- on PostgreSQL 18 a VIRTUAL generated column (computed when read, not stored) is added without a rewrite:",
				"-- " + strings.TrimSuffix(alterTableSQL(c.a, virtual), " STORED") + " VIRTUAL;",
				"-- to keep it STORED, without a long lock:"}, out...)
		}
		fn := quotedInSchemaOf(c.a.Relation, makeObjectName(c.table, c.cd.Colname, "fill"))
		trg := quoteIdent(makeObjectName(c.table, c.cd.Colname, "fill"))
		out = append(out,
			fmt.Sprintf("CREATE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS %s;", fn,
				dollarQuote(fmt.Sprintf("BEGIN new.%s := %s; RETURN new; END", c.col, sqlExpr(newRowExpr(c.generated.RawExpr))))),
			fmt.Sprintf("CREATE TRIGGER %s BEFORE INSERT OR UPDATE ON %s FOR EACH ROW EXECUTE FUNCTION %s();", trg, c.rel, fn))
		out = append(out, backfill(c.rel, c.col+" = "+expr, c.col+" IS DISTINCT FROM ("+expr+")", "")...)
	case c.notNullWithoutValue() && !(constantDefault && len(c.uniques) == 0 && c.pk == nil):
		v, note := placeholderValue(c.cd.TypeName), "the value each existing row needs"
		if len(c.uniques) > 0 || c.pk != nil {
			v, note = "<value>", "each existing row's own, unique value"
		}
		out = append(out, backfill(c.rel, c.col+" = "+v, c.col+" IS NULL", fmt.Sprintf(" (%s stands for %s)", v, note))...)
	}

	// 3. NOT NULL without a scan under ACCESS EXCLUSIVE: a validated
	// CHECK (col IS NOT NULL) lets SET NOT NULL skip its scan (PostgreSQL 12+).
	if c.mustBeNotNull() && !keepNotNull {
		check := c.name("", []string{c.cd.Colname}, "check")
		out = append(out, notNullSteps(c.rel, c.col, check)...)
		delete(c.names, check)
	}

	// 4. An identity replaces the backfill sequence in one short transaction.
	if c.identity != nil {
		ident := &pg_query.AlterTableCmd{Subtype: pg_query.AlterTableType_AT_AddIdentity, Name: c.cd.Colname,
			Def: nodeOf(c.identity)}
		// The deparser writes "ALTER col ADD GENERATED ... (START 5 )".
		add := alterTableSQL(c.a, ident)
		if i := strings.Index(add, " ADD GENERATED "); i >= 0 {
			add = alter + "ALTER COLUMN " + c.col + add[i:]
		}
		add = strings.Replace(add, " )", ")", 1)
		out = append(out, "BEGIN;",
			alter+"ALTER COLUMN "+c.col+" DROP DEFAULT;",
			add+";",
			fmt.Sprintf("SELECT setval(pg_get_serial_sequence(%s, %s), last_value) FROM %s;",
				sqlLiteral(c.rel), sqlLiteral(c.cd.Colname), seq),
			"COMMIT;",
			"DROP SEQUENCE "+seq+";")
	}

	// 5. The constraints, each the online way.
	for _, con := range c.checks {
		cols := exprColumns(con.RawExpr)
		if len(cols) != 1 {
			cols = nil
		}
		out = append(out, c.notValid(con, c.name(con.Conname, cols, "check"))...)
	}
	if !inlineFK {
		for _, con := range c.fks {
			fk := proto.Clone(con).(*pg_query.Constraint)
			fk.FkAttrs = []*pg_query.Node{pg_query.MakeStrNode(c.cd.Colname)}
			out = append(out, c.notValid(fk, c.name(con.Conname, []string{c.cd.Colname}, "fkey"))...)
		}
	}
	for _, con := range c.uniques {
		out = append(out, c.usingIndex(con, c.name(con.Conname, []string{c.cd.Colname}, "key"))...)
	}
	if c.pk != nil {
		out = append(out, c.usingIndex(c.pk, c.name(c.pk.Conname, nil, "pkey"))...)
	}
	return out
}

// serialInteger is the integer type behind a serial type.
func serialInteger(sqlType string) *pg_query.TypeName {
	name := map[string]string{"bigint": "int8", "smallint": "int2"}[sqlType]
	if name == "" {
		name = "int4"
	}
	return &pg_query.TypeName{Names: []*pg_query.Node{pg_query.MakeStrNode("pg_catalog"), pg_query.MakeStrNode(name)}, Typemod: -1}
}

// sequence is CREATE SEQUENCE name AS typ with the given options (an
// identity's sequence options, less its name), in the table's schema.
func (c *columnAdd) sequence(name string, typ *pg_query.TypeName, options []*pg_query.Node) *pg_query.CreateSeqStmt {
	opts := []*pg_query.Node{{Node: &pg_query.Node_DefElem{DefElem: &pg_query.DefElem{Defname: "as",
		Arg: &pg_query.Node{Node: &pg_query.Node_TypeName{TypeName: typ}}}}}}
	for _, o := range options {
		if o.GetDefElem().GetDefname() != "sequence_name" {
			opts = append(opts, o)
		}
	}
	return &pg_query.CreateSeqStmt{Options: opts, Sequence: &pg_query.RangeVar{Schemaname: c.schema, Relname: name,
		Inh: true, Relpersistence: "p"}}
}

// notValid adds a CHECK or FOREIGN KEY constraint NOT VALID and validates
// it separately (SHARE UPDATE EXCLUSIVE: reads and writes go on).
func (c *columnAdd) notValid(con *pg_query.Constraint, name string) []string {
	k := proto.Clone(con).(*pg_query.Constraint)
	k.Conname, k.SkipValidation, k.InitiallyValid = name, true, false
	add := &pg_query.AlterTableCmd{Subtype: pg_query.AlterTableType_AT_AddConstraint, Def: nodeOf(k)}
	return []string{
		alterTableSQL(c.a, add) + ";",
		fmt.Sprintf("ALTER TABLE %s VALIDATE CONSTRAINT %s;", c.rel, quoteIdent(name)),
	}
}

// usingIndex builds the index of a UNIQUE or PRIMARY KEY constraint
// CONCURRENTLY and attaches it (the index keeps the constraint's name).
func (c *columnAdd) usingIndex(con *pg_query.Constraint, name string) []string {
	ix := &pg_query.IndexStmt{
		Idxname: name, Relation: c.a.Relation, AccessMethod: "btree", Unique: true, Concurrent: true,
		IndexParams: []*pg_query.Node{{Node: &pg_query.Node_IndexElem{IndexElem: &pg_query.IndexElem{
			Name: c.cd.Colname, Ordering: pg_query.SortByDir_SORTBY_DEFAULT, NullsOrdering: pg_query.SortByNulls_SORTBY_NULLS_DEFAULT}}}},
		IndexIncludingParams: con.Including, Options: con.Options, TableSpace: con.Indexspace,
		NullsNotDistinct: con.NullsNotDistinct,
	}
	k := &pg_query.Constraint{Contype: con.Contype, Conname: name, Indexname: name,
		Deferrable: con.Deferrable, Initdeferred: con.Initdeferred}
	add := &pg_query.AlterTableCmd{Subtype: pg_query.AlterTableType_AT_AddConstraint, Def: nodeOf(k)}
	return []string{
		deparse(&pg_query.Node{Node: &pg_query.Node_IndexStmt{IndexStmt: ix}}) + ";",
		alterTableSQL(c.a, add) + ";",
	}
}

// placeholderSentinel marks where a human-chosen value goes in deparsed SQL.
const placeholderSentinel = "ddlguard_value_placeholder"

// placeholderValue is a stand-in constant of type t for a value a human
// must choose: the type's zero value where it is obvious, else <value>.
func placeholderValue(t *pg_query.TypeName) string {
	if t == nil || len(t.Names) == 0 {
		return "<value>"
	}
	if len(t.ArrayBounds) > 0 {
		return "'{}'"
	}
	switch lastName(t.Names) {
	case "int2", "int4", "int8", "smallint", "integer", "bigint", "int", "numeric", "decimal",
		"float4", "float8", "real", "money":
		return "0"
	case "text", "varchar", "bpchar", "char", "citext", "name", "bytea":
		return "''"
	case "bool", "boolean":
		return "false"
	case "json", "jsonb":
		return "'{}'"
	case "uuid":
		return "'00000000-0000-0000-0000-000000000000'"
	case "date":
		return "CURRENT_DATE"
	case "timestamp", "timestamptz":
		return "now()"
	case "interval":
		return "'0'"
	}
	return "<value>"
}

// placeholderNode is a node that deparses to the sentinel, replaced by
// withPlaceholder.
func placeholderNode() *pg_query.Node {
	return &pg_query.Node{Node: &pg_query.Node_ColumnRef{ColumnRef: &pg_query.ColumnRef{
		Fields: []*pg_query.Node{pg_query.MakeStrNode(placeholderSentinel)}}}}
}

// withPlaceholder replaces the sentinel in sql by the placeholder value.
func withPlaceholder(sql string, t *pg_query.TypeName) string {
	return strings.ReplaceAll(sql, placeholderSentinel, placeholderValue(t))
}
