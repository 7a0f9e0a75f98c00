// Package guard decides what happens to each SQL statement: it parses
// statements with the real PostgreSQL parser, knows which locks each takes and
// for how long, and returns one decision per statement (allow, timeout,
// rewrite, reject, or warn). It is a pure function of the statement, the
// session context and catalog facts handed to it.
//
// It must not know about sockets, the wire protocol, or database
// connections: it never imports package proxy or pgx connection packages.
// The proxy and the `ddlguard lint` command share it.
//
// The rule catalogue arrives with the guard issue; this package is empty
// until then.
package guard
