package guard

import (
	"strconv"
	"strings"
	"unicode/utf8"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// Names: relation names as statements write them ("rel", "schema.rel";
// unquoted identifiers already lower case), and the names PostgreSQL
// chooses for unnamed constraints and indexes.

// rangeVarName is a relation's name as written: "schema.rel" or "rel"
// (unquoted identifiers are already lower case).
func rangeVarName(rv *pg_query.RangeVar) string {
	if rv == nil {
		return ""
	}
	return nameInSchemaOf(rv, rv.Relname)
}

// nameInSchemaOf is name written in the schema relation rv is written in:
// an object created or renamed next to rv ("app.t" and "t_idx" give
// "app.t_idx").
func nameInSchemaOf(rv *pg_query.RangeVar, name string) string {
	if schema := rv.GetSchemaname(); schema != "" {
		return schema + "." + name
	}
	return name
}

// nameOf renders a list of String nodes ("schema", "rel") as a dotted name.
func nameOf(items []*pg_query.Node) string { return strings.Join(stringList(items), ".") }

func unqualified(name string) string {
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		return name[i+1:]
	}
	return name
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

// checkNameColumn is the column part of the name PostgreSQL gives an
// unnamed CHECK constraint: the column when the expression references
// exactly one, else nothing (<table>_check).
func checkNameColumn(expr *pg_query.Node) string {
	if cols := exprColumns(expr); len(cols) == 1 {
		return cols[0]
	}
	return ""
}

// names hands out constraint and index names as PostgreSQL's
// ChooseConstraintName / ChooseRelationName do within one statement: on a
// clash the label gets a number (t_a_check, t_a_check1, ...).
type names map[string]bool

func (n names) choose(name1, name2, label string) string {
	for pass := 0; ; pass++ {
		l := label
		if pass > 0 {
			l += strconv.Itoa(pass)
		}
		name := makeObjectName(name1, name2, l)
		if !n[name] {
			n[name] = true
			return name
		}
	}
}

// sameRelationName compares names as written, a qualified name matching
// its unqualified form ("app.t" and "t").
func sameRelationName(a, b string) bool {
	return a == b || unqualified(a) == unqualified(b) && (a == unqualified(a) || b == unqualified(b))
}

func appendUnique(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}
