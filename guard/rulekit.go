package guard

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"google.golang.org/protobuf/reflect/protoreflect"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// Shared pieces for rules: messages, lock descriptions, SQL rendering and
// PostgreSQL's naming of constraints.

// finding builds a finding whose message names what the statement would
// hold on rel and why it is dangerous, with the locks as detail.
func (s *stmt) finding(rel, why, hint string) *Finding {
	mode := NoLock
	for _, l := range s.locks {
		if l.Relation == rel {
			mode = l.Mode
		}
	}
	msg := fmt.Sprintf("%s on %s would hold %s lock (%s) %s", s.kind, rel, mode, mode.Blocks(), why)
	return &Finding{Message: msg, Detail: locksDetail(s.locks), Hint: hint}
}

// locksDetail lists locks: "locks: t ACCESS EXCLUSIVE (rewrite); u SHARE ROW EXCLUSIVE".
func locksDetail(locks []Lock) string {
	if len(locks) == 0 {
		return ""
	}
	parts := make([]string, 0, len(locks))
	for _, l := range locks {
		p := l.Relation + " " + l.Mode.String()
		if l.Work != WorkNone {
			p += " (" + l.Work.String() + ")"
		}
		parts = append(parts, p)
	}
	return "locks: " + strings.Join(parts, "; ")
}

// workWhy says why holding the lock lasts: "while it rewrites the whole table".
func workWhy(w Work) string {
	switch w {
	case WorkScan:
		return "while it scans every row"
	case WorkIndexBuild:
		return "while it builds the index"
	case WorkRewrite:
		return "while it rewrites the whole table"
	case WorkTruncate:
		return "and removes every row"
	}
	return "and every later query on it queues behind the lock while it waits"
}

// lockOn returns the statement's lock on rel (zero Lock if none).
func (s *stmt) lockOn(rel string) Lock {
	for _, l := range s.locks {
		if l.Relation == rel {
			return l
		}
	}
	return Lock{}
}

// existing reports whether rel existed before the current transaction
// (not created in it, not temporary).
func (s *stmt) existing(rel string) bool { return !s.sess.isNew(rel) }

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

// alterTableCmd returns the single subcommand of an ALTER TABLE statement
// (nil when the statement is not ALTER TABLE or has several subcommands).
func (s *stmt) alterTableCmd() (*pg_query.AlterTableStmt, *pg_query.AlterTableCmd) {
	a := s.node.GetAlterTableStmt()
	if a == nil || len(a.Cmds) != 1 {
		return a, nil
	}
	return a, a.Cmds[0].GetAlterTableCmd()
}

// alterTableCmds returns every subcommand of an ALTER TABLE statement.
func (s *stmt) alterTableCmds() (*pg_query.AlterTableStmt, []*pg_query.AlterTableCmd) {
	a := s.node.GetAlterTableStmt()
	if a == nil {
		return nil, nil
	}
	cmds := make([]*pg_query.AlterTableCmd, 0, len(a.Cmds))
	for _, c := range a.Cmds {
		if cmd := c.GetAlterTableCmd(); cmd != nil {
			cmds = append(cmds, cmd)
		}
	}
	return a, cmds
}

// alterOfExisting returns an ALTER TABLE's subcommands and relation name
// when the relation existed before the transaction (a nil statement
// otherwise: not an ALTER TABLE, or a new or temporary relation).
func (s *stmt) alterOfExisting() (*pg_query.AlterTableStmt, []*pg_query.AlterTableCmd, string) {
	a, cmds := s.alterTableCmds()
	if a == nil {
		return nil, nil, ""
	}
	rel := rangeVarName(a.Relation)
	if !s.existing(rel) {
		return nil, nil, ""
	}
	return a, cmds, rel
}

// alterTableSQL renders "ALTER TABLE rel <subcommand>" for one subcommand.
func alterTableSQL(a *pg_query.AlterTableStmt, cmd *pg_query.AlterTableCmd) string {
	one := &pg_query.AlterTableStmt{Relation: a.Relation, Objtype: a.Objtype, MissingOk: a.MissingOk,
		Cmds: []*pg_query.Node{{Node: &pg_query.Node_AlterTableCmd{AlterTableCmd: cmd}}}}
	return deparse(&pg_query.Node{Node: &pg_query.Node_AlterTableStmt{AlterTableStmt: one}})
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

// quoteName quotes each part of a dotted relation name.
func quoteName(name string) string {
	parts := strings.Split(name, ".")
	for i, p := range parts {
		parts[i] = quoteIdent(p)
	}
	return strings.Join(parts, ".")
}

// maxIdentifierBytes is NAMEDATALEN-1.
const maxIdentifierBytes = 63

// makeObjectName builds a name the way PostgreSQL's makeObjectName does:
// name1_name2_label, shortening the longer of name1 and name2 (one
// character at a time, never splitting a multibyte character) until the
// whole fits in 63 bytes.
func makeObjectName(name1, name2, label string) string {
	overhead := 0
	if label != "" {
		overhead += len(label) + 1
	}
	if name2 != "" {
		overhead += 1
	}
	avail := maxIdentifierBytes - overhead
	n1, n2 := len(name1), len(name2)
	for n1+n2 > avail {
		if n1 > n2 {
			n1 = clipBytes(name1, n1-1)
		} else {
			n2 = clipBytes(name2, n2-1)
		}
	}
	out := name1[:n1]
	if name2 != "" {
		out += "_" + name2[:n2]
	}
	if label != "" {
		out += "_" + label
	}
	return out
}

// clipBytes returns the largest length <= n that ends on a character boundary.
func clipBytes(s string, n int) int {
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return n
}

// columnsPart joins column names with "_" as PostgreSQL does when naming
// constraints and indexes after their columns.
func columnsPart(cols []string) string {
	out := ""
	for _, c := range cols {
		if out != "" {
			out += "_"
		}
		out += c
		if len(out) >= maxIdentifierBytes {
			break
		}
	}
	return out
}

// stringList extracts the values of a list of String nodes.
func stringList(ns []*pg_query.Node) []string {
	out := make([]string, 0, len(ns))
	for _, n := range ns {
		if s := n.GetString_(); s != nil {
			out = append(out, s.Sval)
		}
	}
	return out
}

// exprColumns returns the distinct column names an expression references,
// in order of appearance, walking every node type (CASE, arrays, rows,
// function arguments, ...).
func exprColumns(n *pg_query.Node) []string {
	var out []string
	if n == nil {
		return nil
	}
	walkTree(n.ProtoReflect(), func(m protoreflect.Message) bool {
		c, ok := m.Interface().(*pg_query.ColumnRef)
		if !ok {
			return true
		}
		if f := stringList(c.Fields); len(f) > 0 && len(f) == len(c.Fields) {
			out = appendUnique(out, f[len(f)-1])
		}
		return false
	})
	return out
}

// walkTree visits every message of a parse tree depth first, m included;
// visit returns whether to descend into the message's children.
func walkTree(m protoreflect.Message, visit func(protoreflect.Message) bool) {
	if !visit(m) {
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.Message() == nil || fd.IsMap():
		case fd.IsList():
			for i, l := 0, v.List(); i < l.Len(); i++ {
				walkTree(l.Get(i).Message(), visit)
			}
		default:
			walkTree(v.Message(), visit)
		}
		return true
	})
}

// constraintName is the name PostgreSQL would give an unnamed constraint
// of kind label ("fkey", "check", "key", "pkey", "excl", "not_null") on
// table over cols.
func constraintName(table string, cols []string, label string) string {
	table = unqualified(table)
	if label == "pkey" {
		return makeObjectName(table, "", "pkey")
	}
	return makeObjectName(table, columnsPart(cols), label)
}
