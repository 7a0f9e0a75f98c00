package guard

import (
	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Volatility: whether an expression gives the same value each time it is
// evaluated, which decides whether a DEFAULT is stored once or computed for
// every row, and whether a batched UPDATE can be repeated.

// nonVolatileFuncs are functions known not to be volatile, so a DEFAULT
// using them is evaluated once and stored in the catalog (PostgreSQL 11+).
// Any function not listed counts as volatile: the safe answer.
var nonVolatileFuncs = map[string]bool{
	"now": true, "transaction_timestamp": true, "statement_timestamp": true,
	"current_date": true, "current_timestamp": true, "localtimestamp": true,
	"lower": true, "upper": true, "length": true, "abs": true, "round": true,
	"coalesce": true, "concat": true, "md5": true, "to_timestamp": true, "to_date": true,
	"make_interval": true, "make_date": true, "date_trunc": true, "timezone": true,
	"jsonb_build_object": true, "json_build_object": true, "jsonb_build_array": true,
	"json_build_array": true, "array_fill": true, "current_user": true, "current_setting": true,
}

// volatileExpr reports whether a default expression may be volatile.
func volatileExpr(n *pg_query.Node) bool {
	if n == nil {
		return false
	}
	switch {
	case n.GetAConst() != nil, n.GetSqlvalueFunction() != nil, n.GetParamRef() != nil:
		return false
	case n.GetTypeCast() != nil:
		return volatileExpr(n.GetTypeCast().Arg)
	case n.GetAExpr() != nil:
		return volatileExpr(n.GetAExpr().Lexpr) || volatileExpr(n.GetAExpr().Rexpr)
	case n.GetBoolExpr() != nil:
		return anyVolatile(n.GetBoolExpr().Args)
	case n.GetCoalesceExpr() != nil:
		return anyVolatile(n.GetCoalesceExpr().Args)
	case n.GetMinMaxExpr() != nil:
		return anyVolatile(n.GetMinMaxExpr().Args)
	case n.GetAArrayExpr() != nil:
		return anyVolatile(n.GetAArrayExpr().Elements)
	case n.GetFuncCall() != nil:
		f := n.GetFuncCall()
		return !nonVolatileFuncs[lastName(f.Funcname)] || anyVolatile(f.Args)
	}
	return true
}

func anyVolatile(ns []*pg_query.Node) bool {
	for _, n := range ns {
		if volatileExpr(n) {
			return true
		}
	}
	return false
}

// repeatableExpr: evaluating the expression again gives the same value
// for the same row: no subquery, and only functions known not to be
// volatile (nonVolatileFuncs; column references are fine).
func repeatableExpr(n *pg_query.Node) bool {
	ok := true
	walkTree(n.ProtoReflect(), func(m protoreflect.Message) bool {
		switch v := m.Interface().(type) {
		case *pg_query.SubLink:
			ok = false
		case *pg_query.FuncCall:
			if !nonVolatileFuncs[lastName(v.Funcname)] {
				ok = false
			}
		}
		return ok
	})
	return ok
}
