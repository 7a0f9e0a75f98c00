package guard

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Reading the parse tree: walking it, and the small node shapes many
// statements share (lists of String nodes, DefElem options).

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

// lastName is the last part of a qualified name given as String nodes
// (pg_catalog.int4 -> "int4"; "" for an empty list).
func lastName(ns []*pg_query.Node) string {
	if len(ns) == 0 {
		return ""
	}
	return ns[len(ns)-1].GetString_().GetSval()
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

// optionOn reports whether a parenthesised option list (VACUUM (FULL),
// REINDEX (CONCURRENTLY), EXPLAIN (ANALYZE)) turns option name on.
func optionOn(options []*pg_query.Node, name string) bool {
	for _, o := range options {
		if d := o.GetDefElem(); d != nil && d.Defname == name && defElemTrue(d) {
			return true
		}
	}
	return false
}

// defElemTrue reads an option's value as PostgreSQL's defGetBoolean does:
// no value, true, on, 1, yes or a non-zero number.
func defElemTrue(d *pg_query.DefElem) bool {
	if d.Arg == nil {
		return true
	}
	if b := d.Arg.GetBoolean(); b != nil {
		return b.Boolval
	}
	if st := d.Arg.GetString_(); st != nil {
		v := strings.ToLower(st.Sval)
		return v == "true" || v == "on" || v == "1" || v == "yes"
	}
	if i := d.Arg.GetInteger(); i != nil {
		return i.Ival != 0
	}
	return true
}

// isNullConst reports whether an expression is the NULL constant (possibly cast).
func isNullConst(n *pg_query.Node) bool {
	for n.GetTypeCast() != nil {
		n = n.GetTypeCast().Arg
	}
	c := n.GetAConst()
	return c != nil && c.Isnull
}
