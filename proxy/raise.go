package proxy

import (
	"strings"

	"github.com/ddlguard/ddlguard/guard"
	"github.com/jackc/pgx/v5/pgproto3"
)

// rejectStatement is the SQL that makes the server raise the rejection of d.
func rejectStatement(d *guard.Decision) string {
	f := d.Deciding
	msg := "ddlguard: " + f.Rule + ": " + f.Message
	return raiseStatement(msg, f.Detail, f.Hint, CodeRejected)
}

// raiseStatement builds a DO block that raises an ERROR with these fields.
func raiseStatement(msg, detail, hint, code string) string {
	all := msg + detail + hint
	tag := "ddlguard"
	for strings.Contains(all, "$"+tag+"$") {
		tag += "x"
	}
	var b strings.Builder
	b.WriteString("DO $" + tag + "$BEGIN RAISE EXCEPTION USING MESSAGE = ")
	b.WriteString(sqlLiteral(msg))
	if detail != "" {
		b.WriteString(", DETAIL = " + sqlLiteral(detail))
	}
	if hint != "" {
		b.WriteString(", HINT = " + sqlLiteral(hint))
	}
	b.WriteString(", ERRCODE = '" + code + "'; END$" + tag + "$")
	return b.String()
}

// sqlLiteral quotes s as a standard SQL string literal. Backslashes are
// doubled into an E” literal so the text survives either setting of
// standard_conforming_strings.
func sqlLiteral(s string) string {
	q := "'" + strings.ReplaceAll(s, "'", "''") + "'"
	if strings.Contains(s, `\`) {
		q = "E'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "'", "''") + "'"
	}
	return q
}

// sqlstateOr returns code when it is a well-formed SQLSTATE (five digits
// or upper-case letters), else def: a code from the upstream is never
// pasted into SQL unchecked.
func sqlstateOr(code, def string) string {
	if len(code) != 5 {
		return def
	}
	for i := 0; i < 5; i++ {
		if c := code[i]; !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z') {
			return def
		}
	}
	return code
}

// reraiseStatement is a DO block that raises e again with every field
// RAISE accepts (so clients and ORMs see the same schema, table, column
// and constraint names).
func reraiseStatement(e *pgproto3.ErrorResponse) string {
	all := e.Message + e.Detail + e.Hint + e.SchemaName + e.TableName + e.ColumnName + e.ConstraintName + e.DataTypeName
	tag := "ddlguard"
	for strings.Contains(all, "$"+tag+"$") {
		tag += "x"
	}
	var b strings.Builder
	b.WriteString("DO $" + tag + "$BEGIN RAISE EXCEPTION USING MESSAGE = " + sqlLiteral(e.Message))
	for _, f := range []struct{ name, v string }{{"DETAIL", e.Detail}, {"HINT", e.Hint}, {"SCHEMA", e.SchemaName},
		{"TABLE", e.TableName}, {"COLUMN", e.ColumnName}, {"CONSTRAINT", e.ConstraintName}, {"DATATYPE", e.DataTypeName}} {
		if f.v != "" {
			b.WriteString(", " + f.name + " = " + sqlLiteral(f.v))
		}
	}
	b.WriteString(", ERRCODE = '" + sqlstateOr(e.Code, "XX000") + "'; END$" + tag + "$")
	return b.String()
}
