package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/ddlguard/ddlguard/e2e/pgcluster"
	"github.com/ddlguard/ddlguard/guard"
	"github.com/ddlguard/ddlguard/proxy"
)

// A real migration tool, goose (as a library, with pgx's database/sql
// driver), runs its migrations through ddlguard: the safe online forms pass
// on a table larger than small_table_bytes; an unsafe one stops the run
// with ddlguard's error, the version not advanced, the schema untouched;
// and a plain CREATE INDEX in a migration without a transaction is run as
// CREATE INDEX CONCURRENTLY in its place, with the end state of the
// original.

// migSafe are goose migrations that only use the online forms. The
// first one fills accounts past the size where the size rules apply.
var migSafe = map[string]string{
	"00001_accounts.sql": `-- +goose Up
CREATE TABLE accounts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email text NOT NULL,
    payload text NOT NULL
);
INSERT INTO accounts (email, payload)
SELECT 'user' || g || '@example.com', repeat(md5(g::text), 2)
FROM generate_series(1, 100000) g;
ANALYZE accounts;

-- +goose Down
DROP TABLE accounts;
`,
	"00002_orders.sql": `-- +goose Up
CREATE TABLE orders (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id bigint NOT NULL,
    amount numeric(12, 2) NOT NULL
);
INSERT INTO orders (account_id, amount) SELECT g, g % 100 FROM generate_series(1, 1000) g;
ANALYZE orders;

-- +goose Down
DROP TABLE orders;
`,
	"00003_accounts_nickname.sql": `-- +goose Up
SET LOCAL lock_timeout = '2s';
ALTER TABLE accounts ADD COLUMN nickname text;

-- +goose Down
ALTER TABLE accounts DROP COLUMN nickname;
`,
	"00004_accounts_status.sql": `-- +goose Up
SET LOCAL lock_timeout = '2s';
ALTER TABLE accounts ADD COLUMN status text NOT NULL DEFAULT 'active';

-- +goose Down
ALTER TABLE accounts DROP COLUMN status;
`,
	"00005_indexes.sql": `-- +goose NO TRANSACTION
-- +goose Up
CREATE INDEX CONCURRENTLY accounts_email_idx ON accounts (email);
CREATE INDEX CONCURRENTLY orders_account_id_idx ON orders (account_id);

-- +goose Down
DROP INDEX CONCURRENTLY orders_account_id_idx;
DROP INDEX CONCURRENTLY accounts_email_idx;
`,
	"00006_accounts_email_check.sql": `-- +goose Up
SET LOCAL lock_timeout = '2s';
ALTER TABLE accounts ADD CONSTRAINT accounts_email_check CHECK (email LIKE '%@%') NOT VALID;

-- +goose Down
ALTER TABLE accounts DROP CONSTRAINT accounts_email_check;
`,
	"00007_orders_account_fk.sql": `-- +goose Up
SET LOCAL lock_timeout = '2s';
ALTER TABLE orders ADD CONSTRAINT orders_account_id_fkey
    FOREIGN KEY (account_id) REFERENCES accounts (id) NOT VALID;

-- +goose Down
ALTER TABLE orders DROP CONSTRAINT orders_account_id_fkey;
`,
	"00008_validate.sql": `-- +goose Up
ALTER TABLE accounts VALIDATE CONSTRAINT accounts_email_check;
ALTER TABLE orders VALIDATE CONSTRAINT orders_account_id_fkey;

-- +goose Down
SELECT 1;
`,
	// A plain CREATE INDEX is fine on a table the statistics show small.
	"00009_orders_amount_index.sql": `-- +goose Up
SET LOCAL lock_timeout = '2s';
CREATE INDEX orders_amount_idx ON orders (amount);

-- +goose Down
DROP INDEX orders_amount_idx;
`,
}

// migLastSafe is the version of the last of migSafe.
const migLastSafe = 9

// migUnsafe are each added, one at a time, after migSafe.
var migUnsafe = []struct {
	file, sql, rule string
}{
	{"00010_accounts_created.sql", `-- +goose Up
SET LOCAL lock_timeout = '2s';
ALTER TABLE accounts ADD COLUMN created timestamptz DEFAULT clock_timestamp();

-- +goose Down
ALTER TABLE accounts DROP COLUMN created;
`, "add-column-rewrite"},
	{"00010_accounts_nickname_index.sql", `-- +goose Up
SET LOCAL lock_timeout = '2s';
CREATE INDEX accounts_nickname_idx ON accounts (nickname);

-- +goose Down
DROP INDEX accounts_nickname_idx;
`, "create-index-not-concurrently"},
	// Outside a transaction too, a statement whose rule has no safe
	// sequence is rejected (one that has one is rewritten: migRewritten).
	{"00010_accounts_created_no_tx.sql", `-- +goose NO TRANSACTION
-- +goose Up
ALTER TABLE accounts ADD COLUMN created timestamptz DEFAULT clock_timestamp();

-- +goose Down
ALTER TABLE accounts DROP COLUMN created;
`, "add-column-rewrite"},
}

// migRewritten is added after migSafe once the unsafe ones are done: a
// plain CREATE INDEX outside a transaction, which ddlguard runs as CREATE
// INDEX CONCURRENTLY.
var migRewritten = struct{ file, sql, rule, index string }{"00010_accounts_nickname_index_no_tx.sql", `-- +goose NO TRANSACTION
-- +goose Up
CREATE INDEX accounts_nickname_idx ON accounts (nickname);

-- +goose Down
DROP INDEX CONCURRENTLY accounts_nickname_idx;
`, "create-index-not-concurrently",
	"index accounts_nickname_idx valid=t ready=t: CREATE INDEX accounts_nickname_idx ON public.accounts USING btree (nickname)"}

// migWrite writes files into a new directory and returns it.
func migWrite(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// migLogger sends goose's output to the test log.
type migLogger struct{ t *testing.T }

func (l migLogger) Printf(format string, v ...any) {
	l.t.Logf("goose: "+strings.TrimSuffix(format, "\n"), v...)
}
func (l migLogger) Fatalf(format string, v ...any) { l.t.Fatalf("goose: "+format, v...) }

// migSetupGoose configures goose's package-level settings for this test.
func migSetupGoose(t *testing.T) {
	t.Helper()
	if err := goose.SetDialect("postgres"); err != nil {
		t.Fatal(err)
	}
	goose.SetLogger(migLogger{t})
	t.Cleanup(func() { goose.SetLogger(goose.NopLogger()) })
}

// migOpenDB opens a database/sql handle with pgx's driver, as goose
// users do; notices go to the returned log.
func migOpenDB(t *testing.T, dsn string) (*sql.DB, *noticeLog) {
	t.Helper()
	cfg, notices := configNotices(t, dsn)
	db := stdlib.OpenDB(*cfg)
	t.Cleanup(func() { db.Close() })
	return db, notices
}

// migVersions lists goose's version table, in order.
func migVersions(t *testing.T, database string) []string {
	t.Helper()
	conn := superConn(t, database)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rows, err := conn.Query(ctx, "SELECT version_id, is_applied FROM goose_db_version ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var v int64
		var applied bool
		err := r.Scan(&v, &applied)
		return fmt.Sprintf("%d:%t", v, applied), err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// migSchema describes database's public schema from the catalogs:
// columns, indexes (and whether they are valid), constraints (and whether
// they are validated), and the row counts of the migrated tables.
func migSchema(t *testing.T, database string) []string {
	t.Helper()
	conn := superConn(t, database)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rows, err := conn.Query(ctx, `
SELECT format('column %s.%s %s nullable=%s default=%s identity=%s', table_name, column_name, data_type,
              is_nullable, coalesce(column_default, '-'), is_identity)
  FROM information_schema.columns WHERE table_schema = 'public'
UNION ALL
SELECT format('index %s valid=%s ready=%s: %s', c.relname, x.indisvalid, x.indisready, pg_get_indexdef(x.indexrelid))
  FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid
 WHERE c.relnamespace = 'public'::regnamespace
UNION ALL
SELECT format('constraint %s.%s type=%s validated=%s: %s', r.relname, k.conname, k.contype, k.convalidated,
              pg_get_constraintdef(k.oid))
  FROM pg_constraint k JOIN pg_class r ON r.oid = k.conrelid
 WHERE k.connamespace = 'public'::regnamespace
UNION ALL
SELECT format('rows accounts=%s status=%s orders=%s', (SELECT count(*) FROM accounts),
              (SELECT string_agg(DISTINCT status, ',') FROM accounts), (SELECT count(*) FROM orders))
ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// goose up through ddlguard with the default guard: the safe migrations all
// apply, with the same end state as applied directly; each unsafe one is
// rejected (ZG001) and leaves the version and the schema as they were; a
// plain CREATE INDEX without a transaction applies through the executed
// rewrite (a 01Z03 notice) and leaves the schema it leaves applied directly.
func TestMigrateGooseThroughGuard(t *testing.T) {
	migSetupGoose(t)
	const guarded, direct = "migrate_guarded", "migrate_direct"
	audDatabase(t, guarded)
	audDatabase(t, direct)
	p := startGuardProxy(t, guard.DefaultConfig())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// The safe migrations: through ddlguard, and directly on a second
	// database for comparison.
	dir := migWrite(t, migSafe)
	db, notices := migOpenDB(t, p.DSN(pgcluster.RoleSCRAM, guarded, "sslmode", "disable", "application_name", "goose"))
	start := time.Now()
	if err := goose.UpContext(ctx, db, dir); err != nil {
		t.Fatalf("goose up through ddlguard: %v\nnotices: %v", err, audNoticeSummary(notices.take()))
	}
	t.Logf("safe migrations through ddlguard: %s", time.Since(start).Round(time.Millisecond))
	for _, n := range notices.take() {
		if strings.HasPrefix(n.Message, "ddlguard: ") {
			t.Errorf("safe migrations drew a ddlguard notice: %s %s %s", n.Severity, n.Code, n.Message)
		}
	}
	directDB, _ := migOpenDB(t, cluster.DSN(pgcluster.RoleSCRAM, direct, "sslmode", "disable"))
	if err := goose.UpContext(ctx, directDB, dir); err != nil {
		t.Fatalf("goose up directly: %v", err)
	}

	admin := superConn(t, guarded)
	audCheckBig(t, ctx, admin, "accounts")
	wantVersions := []string{"0:true"}
	for v := 1; v <= migLastSafe; v++ {
		wantVersions = append(wantVersions, fmt.Sprintf("%d:true", v))
	}
	if got := migVersions(t, guarded); strings.Join(got, " ") != strings.Join(wantVersions, " ") {
		t.Fatalf("goose versions through ddlguard: %v, want %v", got, wantVersions)
	}
	if v, err := goose.GetDBVersionContext(ctx, db); err != nil || v != migLastSafe {
		t.Fatalf("goose version through ddlguard: %d, %v; want %d", v, err, migLastSafe)
	}
	if got := migVersions(t, direct); strings.Join(got, " ") != strings.Join(wantVersions, " ") {
		t.Fatalf("goose versions directly: %v, want %v", got, wantVersions)
	}
	schema := migSchema(t, guarded)
	if directSchema := migSchema(t, direct); !slices.Equal(directSchema, schema) {
		t.Fatalf("schema through ddlguard differs from the schema migrated directly (- direct, + through ddlguard):\n%s",
			diffLines(directSchema, schema))
	}
	for _, want := range []string{
		"column accounts.nickname text nullable=YES default=- identity=NO",
		"column accounts.status text nullable=NO default='active'::text identity=NO",
		"index orders_amount_idx valid=t ready=t: CREATE INDEX orders_amount_idx ON public.orders USING btree (amount)",
		"index accounts_email_idx valid=t ready=t: CREATE INDEX accounts_email_idx ON public.accounts USING btree (email)",
		"constraint accounts.accounts_email_check type=c validated=t: CHECK ((email ~~ '%@%'::text))",
		"constraint orders.orders_account_id_fkey type=f validated=t: FOREIGN KEY (account_id) REFERENCES accounts(id)",
		"rows accounts=100000 status=active orders=1000",
	} {
		if !slices.Contains(schema, want) {
			t.Errorf("schema lacks %q:\n%s", want, strings.Join(schema, "\n"))
		}
	}
	if t.Failed() {
		return
	}

	// Each unsafe migration stops goose with ddlguard's error; nothing of it
	// is applied.
	for _, m := range migUnsafe {
		t.Run(strings.TrimSuffix(m.file, ".sql"), func(t *testing.T) {
			files := map[string]string{m.file: m.sql}
			for k, v := range migSafe {
				files[k] = v
			}
			err := goose.UpContext(ctx, db, migWrite(t, files))
			if err == nil {
				t.Fatalf("goose up with %s through ddlguard succeeded", m.file)
			}
			t.Logf("goose: %v", err)
			if !strings.Contains(err.Error(), "ddlguard: "+m.rule+": ") || !strings.Contains(err.Error(), proxy.CodeRejected) {
				t.Errorf("goose's error does not carry ddlguard's rejection by %s (%s): %v", m.rule, proxy.CodeRejected, err)
			}
			pe := pgErrorOf(err)
			if pe == nil {
				t.Fatalf("goose's error does not wrap a *pgconn.PgError: %T %v", err, err)
			}
			audWantRejected(t, m.file, pe, m.rule)
			if got := migVersions(t, guarded); strings.Join(got, " ") != strings.Join(wantVersions, " ") {
				t.Errorf("goose versions after the rejected migration: %v, want %v", got, wantVersions)
			}
			if v, err := goose.GetDBVersionContext(ctx, db); err != nil || v != migLastSafe {
				t.Errorf("goose version after the rejected migration: %d, %v; want %d", v, err, migLastSafe)
			}
			if after := migSchema(t, guarded); !slices.Equal(schema, after) {
				t.Errorf("the rejected migration changed the schema (- before, + after):\n%s", diffLines(schema, after))
			}
			// The connection pool is still usable: goose can still read.
			if err := db.PingContext(ctx); err != nil {
				t.Errorf("ping after the rejection: %v", err)
			}
		})
	}

	// A plain CREATE INDEX in a migration without a transaction: ddlguard
	// runs CREATE INDEX CONCURRENTLY in its place; goose sees success, and
	// the schema is the one the same migrations leave applied directly.
	t.Run(strings.TrimSuffix(migRewritten.file, ".sql"), func(t *testing.T) {
		files := map[string]string{migRewritten.file: migRewritten.sql}
		for k, v := range migSafe {
			files[k] = v
		}
		dir := migWrite(t, files)
		notices.take()
		if err := goose.UpContext(ctx, db, dir); err != nil {
			t.Fatalf("goose up with %s through ddlguard: %v", migRewritten.file, err)
		}
		var got []pgconn.Notice
		for _, n := range notices.take() {
			if strings.HasPrefix(n.Message, "ddlguard: ") {
				got = append(got, n)
			}
		}
		wantMsg := "ddlguard: " + migRewritten.rule + ": ran the safe sequence instead of the statement: " +
			"CREATE INDEX CONCURRENTLY accounts_nickname_idx ON accounts"
		if len(got) != 1 || got[0].Severity != "WARNING" || got[0].Code != "01Z03" || !strings.HasPrefix(got[0].Message, wantMsg) {
			t.Errorf("ddlguard notices %v, want one WARNING 01Z03 %q...", audNoticeSummary(got), wantMsg)
		}
		if err := goose.UpContext(ctx, directDB, dir); err != nil {
			t.Fatalf("goose up with %s directly: %v", migRewritten.file, err)
		}
		want := append(slices.Clone(wantVersions), fmt.Sprintf("%d:true", migLastSafe+1))
		for _, database := range []string{guarded, direct} {
			if got := migVersions(t, database); strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("goose versions in %s: %v, want %v", database, got, want)
			}
		}
		after := migSchema(t, guarded)
		if directAfter := migSchema(t, direct); !slices.Equal(directAfter, after) {
			t.Errorf("schema through ddlguard differs from the schema migrated directly (- direct, + through ddlguard):\n%s",
				diffLines(directAfter, after))
		}
		if !slices.Contains(after, migRewritten.index) {
			t.Errorf("schema lacks %q:\n%s", migRewritten.index, strings.Join(after, "\n"))
		}
		// The index is all that changed.
		if rest := slices.DeleteFunc(slices.Clone(after), func(l string) bool { return l == migRewritten.index }); !slices.Equal(rest, schema) {
			t.Errorf("the rewritten migration changed more than %q (- before, + after):\n%s", migRewritten.index, diffLines(schema, after))
		}
	})

	// The audit log has one rejection per unsafe migration and the one
	// rewrite, from goose's connections.
	var rejections, rewrites []string
	for _, rec := range audDecisions(t, p.Logs()) {
		t.Logf("decision: %s %s [%s] rule=%s warnings=%s", audField(rec, "action"), audField(rec, "executed_as"),
			audField(rec, "statement"), audField(rec, "rule"), audField(rec, "warnings"))
		if audField(rec, "rule") != "" {
			if audField(rec, "application_name") != "goose" || audField(rec, "database") != guarded {
				t.Errorf("decision line: %v", rec)
			}
			switch {
			case audField(rec, "action") == "reject", audField(rec, "executed_as") == "reject":
				rejections = append(rejections, audField(rec, "rule"))
			case audField(rec, "action") == "rewrite":
				rewrites = append(rewrites, audField(rec, "rule"))
			default:
				t.Errorf("decision line with a rule: %v", rec)
			}
		}
	}
	var want []string
	for _, m := range migUnsafe {
		want = append(want, m.rule)
	}
	if strings.Join(rejections, " ") != strings.Join(want, " ") {
		t.Errorf("rejections in the audit log: %v, want %v", rejections, want)
	}
	if strings.Join(rewrites, " ") != migRewritten.rule {
		t.Errorf("rewrites in the audit log: %v, want [%s]", rewrites, migRewritten.rule)
	}
}
