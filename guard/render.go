package guard

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// Rendering SQL text: deparsing parse-tree nodes, quoting identifiers and
// literals the way PostgreSQL needs them.

// pgQueryVersion is the parse-tree version the deparser expects: the
// PostgreSQL grammar version pg_query_go was built from.
var pgQueryVersion = func() int32 {
	t, err := pg_query.Parse("SELECT")
	if err != nil {
		panic("guard: pg_query cannot parse SELECT: " + err.Error())
	}
	return t.Version
}()

// deparse renders a statement node as SQL.
func deparse(n *pg_query.Node) string {
	out, err := pg_query.Deparse(&pg_query.ParseResult{Version: pgQueryVersion, Stmts: []*pg_query.RawStmt{{Stmt: n}}})
	if err != nil {
		return ""
	}
	return out
}

// alterTableSQL renders "ALTER TABLE rel <subcommand>" for one subcommand.
func alterTableSQL(a *pg_query.AlterTableStmt, cmd *pg_query.AlterTableCmd) string {
	one := &pg_query.AlterTableStmt{Relation: a.Relation, Objtype: a.Objtype, MissingOk: a.MissingOk,
		Cmds: []*pg_query.Node{{Node: &pg_query.Node_AlterTableCmd{AlterTableCmd: cmd}}}}
	return deparse(&pg_query.Node{Node: &pg_query.Node_AlterTableStmt{AlterTableStmt: one}})
}

// nodeOf wraps a constraint as a node.
func nodeOf(con *pg_query.Constraint) *pg_query.Node {
	return &pg_query.Node{Node: &pg_query.Node_Constraint{Constraint: con}}
}

// notNullCheck is CHECK (column IS NOT NULL) NOT VALID, named name: what
// proves a column (or a domain's VALUE) has no NULL once validated, where a
// NOT NULL cannot be added without a scan under a strong lock.
func notNullCheck(name, column string) *pg_query.Constraint {
	return &pg_query.Constraint{Contype: pg_query.ConstrType_CONSTR_CHECK, Conname: name, SkipValidation: true,
		RawExpr: &pg_query.Node{Node: &pg_query.Node_NullTest{NullTest: &pg_query.NullTest{
			Arg:          pg_query.MakeColumnRefNode([]*pg_query.Node{pg_query.MakeStrNode(column)}, -1),
			Nulltesttype: pg_query.NullTestType_IS_NOT_NULL, Location: -1}}}}
}

// sqlExpr renders an expression as SQL ("" when the deparser cannot),
// as the target list of a SELECT with the SELECT taken off.
func sqlExpr(n *pg_query.Node) string {
	sel := &pg_query.SelectStmt{TargetList: []*pg_query.Node{{Node: &pg_query.Node_ResTarget{
		ResTarget: &pg_query.ResTarget{Val: n, Location: -1}}}}}
	out, ok := strings.CutPrefix(deparse(&pg_query.Node{Node: &pg_query.Node_SelectStmt{SelectStmt: sel}}), "SELECT ")
	if !ok {
		return ""
	}
	return out
}

// sqlTypeName renders a type name as SQL.
func sqlTypeName(t *pg_query.TypeName) string {
	if t == nil {
		return ""
	}
	cast := &pg_query.Node{Node: &pg_query.Node_TypeCast{TypeCast: &pg_query.TypeCast{
		Arg: &pg_query.Node{Node: &pg_query.Node_AConst{AConst: &pg_query.A_Const{Isnull: true}}}, TypeName: t}}}
	return strings.TrimPrefix(sqlExpr(cast), "NULL::")
}

// quoteIdent quotes an identifier when PostgreSQL would need it: anything
// but lower-case letters, digits, _ and $ (not leading digit or $), or a
// keyword that is not unreserved (classified by PostgreSQL's own lexer).
func quoteIdent(s string) string {
	plain := s != "" && (s[0] == '_' || (s[0] >= 'a' && s[0] <= 'z'))
	for i := 0; i < len(s) && plain; i++ {
		c := s[i]
		plain = c == '_' || c == '$' || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
	}
	if plain && !needsKeywordQuote(s) {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// needsKeywordQuote reports whether s is a keyword that cannot be used as a
// bare column name. Answers are cached (identifiers repeat); the cache stops
// growing at keywordCacheMax entries.
func needsKeywordQuote(s string) bool {
	if v, ok := keywordCache.Load(s); ok {
		return v.(bool)
	}
	res, err := pg_query.Scan(s)
	quote := err != nil || len(res.Tokens) != 1
	if !quote {
		k := res.Tokens[0].KeywordKind
		quote = k != pg_query.KeywordKind_NO_KEYWORD && k != pg_query.KeywordKind_UNRESERVED_KEYWORD
	}
	if keywordCacheLen.Add(1) <= keywordCacheMax {
		keywordCache.Store(s, quote)
	}
	return quote
}

const keywordCacheMax = 10000

var (
	keywordCache    sync.Map
	keywordCacheLen atomic.Int64
)

// quotedInSchemaOf is nameInSchemaOf as SQL, schema and name quoted each
// on its own.
func quotedInSchemaOf(rv *pg_query.RangeVar, name string) string {
	if schema := rv.GetSchemaname(); schema != "" {
		return quoteIdent(schema) + "." + quoteIdent(name)
	}
	return quoteIdent(name)
}

// quoteName quotes each part of a dotted relation name.
func quoteName(name string) string {
	parts := strings.Split(name, ".")
	for i, p := range parts {
		parts[i] = quoteIdent(p)
	}
	return strings.Join(parts, ".")
}

// sqlLiteral quotes s as a string literal.
func sqlLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// dollarQuote quotes a function body with a dollar tag it does not contain.
func dollarQuote(body string) string {
	tag := "$$"
	for i := 0; strings.Contains(body, tag); i++ {
		tag = fmt.Sprintf("$f%d$", i)
	}
	return tag + body + tag
}

// allowComment is the inline override for a statement the guard cannot
// see is safe (roles allowed by inline_override_roles).
func allowComment(rule, reason string) string {
	return "/* ddlguard:allow " + rule + ` reason="` + reason + `" */ `
}
