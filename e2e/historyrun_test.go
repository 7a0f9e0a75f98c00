package e2e

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/ddlguard/ddlguard/e2e/pgcluster"
)

// Two migration runners apply a history file by file: psql (the simple
// protocol, as golang-migrate, psql-driven tools and Rails' structure
// loads send it) and a runner on pgx's extended protocol (each statement
// one Parse/Bind/Execute/Sync, as drivers send statements with
// parameters). A file's outcome is "ok" or the error that stopped it.

// historyRunner applies history files to one database.
type historyRunner interface {
	apply(ctx context.Context, f historyFile) (outcome string)
	close()
}

// historyRunnerKinds names the runners, in the order the test uses them.
var historyRunnerKinds = []string{"psql", "pgx"}

// openHistoryRunner opens a runner of kind on dsn.
func openHistoryRunner(t testing.TB, kind, psql, dsn string) historyRunner {
	t.Helper()
	switch kind {
	case "psql":
		return &psqlRunner{psql: psql, dsn: dsn}
	case "pgx":
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatalf("pgx runner: %v", err)
		}
		return &pgxRunner{conn: conn.PgConn()}
	}
	t.Fatalf("no history runner %q", kind)
	return nil
}

// psqlRunner runs psql once per file, as a migration script would.
type psqlRunner struct {
	psql string
	dsn  string
}

// psqlError is psql's report of an error with VERBOSITY=verbose.
var psqlError = regexp.MustCompile(`(?m)ERROR:  ([0-9A-Z]{5}): (.*)$`)

func (r *psqlRunner) apply(ctx context.Context, f historyFile) string {
	args := []string{"-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose", "-d", r.dsn}
	switch f.mode {
	case wholeFile:
		args = append(args, "-c", f.sql)
	case inTransaction:
		args = append(args, "--single-transaction", "-f", f.path)
	default:
		args = append(args, "-f", f.path)
	}
	cmd := clientProgramCmd(ctx, r.psql, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	if err == nil {
		return "ok"
	}
	if m := psqlError.FindStringSubmatch(stderr.String()); m != nil {
		return m[1] + ": " + m[2]
	}
	return fmt.Sprintf("psql: %v: %s", err, strings.TrimSpace(stderr.String()))
}

func (r *psqlRunner) close() {}

// pgxRunner keeps one connection, as a migration library does, and sends
// each statement through the extended protocol. Whole-file and transaction
// files run inside one transaction it opens (an extended-protocol runner
// cannot send several statements in one Parse).
type pgxRunner struct {
	conn *pgconn.PgConn
}

func (r *pgxRunner) apply(ctx context.Context, f historyFile) string {
	stmts, err := pg_query.SplitWithScanner(f.sql, true)
	if err != nil {
		return "split: " + err.Error()
	}
	wrap := f.mode != eachStatement
	if wrap {
		stmts = append(append([]string{"BEGIN"}, stmts...), "COMMIT")
	}
	for _, s := range stmts {
		if onlyComments(s) {
			continue
		}
		if _, err := r.conn.ExecParams(ctx, s, nil, nil, nil, nil).Close(); err != nil {
			// Leave no transaction open for the next file, as a runner
			// that failed a migration does.
			if r.conn.TxStatus() != 'I' {
				r.conn.Exec(ctx, "ROLLBACK").Close()
			}
			var pe *pgconn.PgError
			if errors.As(err, &pe) {
				return pe.Code + ": " + pe.Message
			}
			return err.Error()
		}
	}
	return "ok"
}

func (r *pgxRunner) close() { r.conn.Close(context.Background()) }

// onlyComments: s holds no statement, only blanks and -- comments.
func onlyComments(s string) bool {
	for line := range strings.SplitSeq(s, "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "--") {
			return false
		}
	}
	return true
}

// historySchema describes a database's public schema from the catalogs,
// with the row count of every table: two databases with the same history
// applied must describe themselves identically.
func historySchema(ctx context.Context, c *pgcluster.Cluster, db string) ([]string, error) {
	conn, err := pgx.Connect(ctx, c.DSN(pgcluster.Superuser, db, "sslmode", "disable"))
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, `
SELECT format('relation %s kind=%s persistence=%s parent=%s bound=%s', c.relname, c.relkind, c.relpersistence,
              coalesce((SELECT p.relname FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent WHERE i.inhrelid = c.oid), '-'),
              coalesce(pg_get_expr(c.relpartbound, c.oid), '-'))
  FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
UNION ALL
SELECT format('column %s.%s %s notnull=%s default=%s identity=%s generated=%s', c.relname, a.attname,
              format_type(a.atttypid, a.atttypmod), a.attnotnull, coalesce(pg_get_expr(d.adbin, d.adrelid), '-'),
              a.attidentity, a.attgenerated)
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE c.relnamespace = 'public'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
   AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
UNION ALL
SELECT format('index %s on %s valid=%s ready=%s: %s', c.relname, t.relname, x.indisvalid, x.indisready,
              pg_get_indexdef(x.indexrelid))
  FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
 WHERE c.relnamespace = 'public'::regnamespace
UNION ALL
SELECT format('constraint %s.%s type=%s validated=%s: %s', coalesce(r.relname, y.typname), k.conname, k.contype,
              k.convalidated, pg_get_constraintdef(k.oid))
  FROM pg_constraint k LEFT JOIN pg_class r ON r.oid = k.conrelid LEFT JOIN pg_type y ON y.oid = k.contypid
 WHERE k.connamespace = 'public'::regnamespace
UNION ALL
SELECT format('view %s: %s', c.relname, pg_get_viewdef(c.oid))
  FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('v', 'm')
UNION ALL
SELECT format('type %s kind=%s labels=%s', y.typname, y.typtype,
              coalesce((SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = y.oid), '-'))
  FROM pg_type y WHERE y.typnamespace = 'public'::regnamespace AND y.typtype IN ('e', 'd')
UNION ALL
SELECT format('trigger %s.%s enabled=%s: %s', c.relname, g.tgname, g.tgenabled, pg_get_triggerdef(g.oid))
  FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
 WHERE c.relnamespace = 'public'::regnamespace AND NOT g.tgisinternal
UNION ALL
SELECT format('function %s(%s)', p.proname, pg_get_function_identity_arguments(p.oid))
  FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
UNION ALL
SELECT format('comment %s: %s', d.objoid::regclass, d.description)
  FROM pg_description d JOIN pg_class c ON c.oid = d.objoid
 WHERE d.classoid = 'pg_class'::regclass AND c.relnamespace = 'public'::regnamespace
UNION ALL
SELECT format('rows %s=%s', c.relname,
              (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM %I', c.relname), false, true, '')))[1]::text)
  FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'm') AND c.relispopulated
ORDER BY 1`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// setDiff lists the lines only in a ("- ") and only in b ("+ "), sorted.
func setDiff(a, b []string) []string {
	count := map[string]int{}
	for _, l := range a {
		count[l]--
	}
	for _, l := range b {
		count[l]++
	}
	var out []string
	for l, n := range count {
		for ; n < 0; n++ {
			out = append(out, "- "+l)
		}
		for ; n > 0; n-- {
			out = append(out, "+ "+l)
		}
	}
	slices.Sort(out)
	return out
}

// historyStatements counts the statements of f.
func historyStatements(t testing.TB, f historyFile) int {
	t.Helper()
	stmts, err := pg_query.SplitWithScanner(f.sql, true)
	if err != nil {
		t.Fatalf("%s: %v", f.name, err)
	}
	n := 0
	for _, s := range stmts {
		if !onlyComments(s) {
			n++
		}
	}
	return n
}
