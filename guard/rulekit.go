package guard

import (
	"fmt"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// Shared pieces for rules: findings and their messages, lock descriptions,
// and the questions rules start from (the ALTER TABLE being checked, whether
// a relation existed before the transaction). SQL rendering is in
// render.go, names in names.go, the safe sequences in plan_*.go.

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

// writtenSQL is the statement as the client wrote it, without its
// trailing semicolon.
func (s *stmt) writtenSQL() string { return strings.TrimSuffix(strings.TrimSpace(s.text), ";") }

// deparsedSQL is the statement as the deparser writes it, or as written
// when the deparser cannot render it.
func (s *stmt) deparsedSQL() string {
	if sql := deparse(s.node); sql != "" {
		return sql
	}
	return s.writtenSQL()
}

// outsideBlockNote introduces a CONCURRENTLY form in a hint for a statement
// that runs in a transaction block.
const outsideBlockNote = "-- outside a transaction block, as a query of its own (CONCURRENTLY cannot run inside one):"

// concurrentlyHint is the hint for a CONCURRENTLY form of the statement:
// the form itself, or inside a transaction block the form with the note to
// send it outside one.
func (s *stmt) concurrentlyHint(safe string) string {
	if s.inBlock {
		return outsideBlockNote + "\n" + safe + ";"
	}
	return safe
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
// (not created in it, not temporary) and, as far as fresh facts tell,
// still exists.
func (s *stmt) existing(rel string) bool {
	return !s.sess.isNew(rel) && !(s.factsFresh && absent(s.facts, rel))
}

// ifExists: the statement says IF EXISTS, so on an absent relation it does
// nothing (without IF EXISTS the server reports the missing relation).
func (s *stmt) ifExists() bool {
	switch n := s.node.Node.(type) {
	case *pg_query.Node_DropStmt:
		return n.DropStmt.MissingOk
	case *pg_query.Node_AlterTableStmt:
		return n.AlterTableStmt.MissingOk
	case *pg_query.Node_RenameStmt:
		return n.RenameStmt.MissingOk
	case *pg_query.Node_AlterObjectSchemaStmt:
		return n.AlterObjectSchemaStmt.MissingOk
	}
	return false
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

// tableAlterOfExisting is alterOfExisting for ALTER TABLE proper: not ALTER
// FOREIGN TABLE (whose constraints are never checked against the data),
// INDEX, VIEW or SEQUENCE.
func (s *stmt) tableAlterOfExisting() (*pg_query.AlterTableStmt, []*pg_query.AlterTableCmd, string) {
	a, cmds, rel := s.alterOfExisting()
	if a == nil || a.Relation == nil || a.Objtype != pg_query.ObjectType_OBJECT_TABLE {
		return nil, nil, ""
	}
	return a, cmds, rel
}

// addedConstraint is the constraint of an ADD CONSTRAINT subcommand.
func addedConstraint(cmd *pg_query.AlterTableCmd) *pg_query.Constraint {
	if cmd.Subtype != pg_query.AlterTableType_AT_AddConstraint {
		return nil
	}
	return cmd.Def.GetConstraint()
}
