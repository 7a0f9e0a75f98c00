// Package e2e holds ddlguard's end-to-end tests: real PostgreSQL servers
// (started by e2e/pgcluster), ddlguard in front of them, and real clients
// (pgx, psql, pgbench, psycopg, raw pgproto3 sequences). Nothing here mocks
// the server. Test helpers shared by the test files live in main_test.go.
package e2e
