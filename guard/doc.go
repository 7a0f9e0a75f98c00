// Package guard decides what happens to each SQL statement: it parses
// statements with the real PostgreSQL parser (pg_query_go), knows which
// locks each takes and for how long, and returns one decision per statement
// (allow, timeout, rewrite or reject, with warnings beside it). It is a pure
// function of the statement, the session context and the catalog facts
// handed to it. The proxy and the `ddlguard lint` command share it.
//
// It owns parsing and the parse cache, lock-mode knowledge, the rule
// catalogue and its configuration, verdicts, and rewrites as SQL text. It
// must not know about sockets, the wire protocol, or database connections:
// it never imports package proxy or pgx connection packages. Catalog facts
// come from the caller (Facts); the guard never asks a server for them.
//
// Where things are:
//
//   - engine.go: the entry points. Guard.Ask is the proxy's (a query string,
//     the session before it, facts, whether a rewrite can run there);
//     Decide and DecideScript are the linter's; FactsNeeded says which facts
//     to fetch before asking. decide runs the rules on one statement.
//     decision.go holds the answers (Result, Decision, Finding), precheck.go
//     the lexical pre-check (MightBeGuarded) that keeps plain DML away from
//     the parser, parse.go the parser and its cache.
//   - analyze.go: the analysis of one statement, a type switch over its
//     parse node: its kind, the locks it takes on which relations and the
//     work it does under them (scan, index build, rewrite), its effects on
//     the session. analyze_alter_table.go and analyze_alter_domain.go take
//     those statements apart.
//   - rule_<id>.go: one rule, a small type (ID, DefaultMode, Relaxable,
//     Check) registered from the file's init, plus what only it uses. Its
//     cases and expected outputs are testdata/rules/<id>.txt. Adding a rule
//     is that one file and its golden file: the registry and the golden test
//     find them.
//   - plan_*.go: the safe sequences the rules offer as hints and rewrites:
//     plan_constraints.go (constraints and SET NOT NULL), plan_columns.go
//     with plan_add_column.go and plan_column_type.go (ADD COLUMN, ALTER
//     COLUMN TYPE), plan_batches.go (UPDATE and DELETE in batches).
//   - rulekit.go: what rules share (findings and their messages, the ALTER
//     TABLE being checked); render.go renders SQL text, names.go holds
//     relation names and the names PostgreSQL generates, tree.go reads the
//     parse tree, volatile.go knows which expressions are volatile,
//     repack.go writes pg_repack commands.
//   - lock.go: lock modes, what each conflicts with and blocks, and the work
//     done under a lock.
//   - context.go: Session, what the guard knows of a connection (its open
//     transaction, the locks that holds, settings), advanced by Observe; and
//     Facts, the catalog facts the caller hands in.
//   - config.go: Config, rule modes per rule, database and role.
//   - rewrite.go: UndoStatement, which takes back a failed rewrite's steps.
package guard
