package guard_test

import (
	"strings"
	"testing"

	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/ddlguard/ddlguard/guard"
)

// precheckCase is one pre-check expectation. parserDiffers marks a case
// where the real (PostgreSQL 17) parser does not agree with want: the string
// does not parse, or it parses into plain statements while the pre-check
// conservatively says true.
type precheckCase struct {
	name          string
	sql           string
	want          bool
	parserDiffers bool
}

const (
	pgbenchSelect = `SELECT abalance FROM pgbench_accounts WHERE aid = $1;`
	pgbenchInsert = `INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 2, 3, 4, CURRENT_TIMESTAMP);`
	pgbenchUpdate = `UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2;`
)

var precheckCases = []precheckCase{
	// Plain DML and queries.
	{"pgbench select", pgbenchSelect, false, false},
	{"pgbench insert", pgbenchInsert, false, false},
	{"pgbench update", pgbenchUpdate, false, false},
	{"empty", ``, false, false},
	{"only whitespace", " \t\r\n\f\v", false, false},
	{"only semicolons", ` ; ;;`, false, false},
	{"only line comment", `-- ALTER TABLE t`, false, false},
	{"only block comment", `/* DROP TABLE t */`, false, false},
	{"select lower case", `select 1`, false, false},
	{"select mixed case", `SeLeCt 1;`, false, false},
	{"delete", `DELETE FROM t WHERE id = ANY($1::int[])`, false, false},
	{"merge", `MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET v = s.v`, false, false},
	{"values", `VALUES (1, 'a'), (2, 'b')`, false, false},
	{"table", `TABLE t`, false, false},
	{"with", `WITH x AS (SELECT 1) SELECT * FROM x`, false, false},
	{"with insert", `WITH x AS (INSERT INTO t VALUES (1) RETURNING id) SELECT * FROM x`, false, false},
	{"show", `SHOW lock_timeout`, false, false},
	{"declare fetch move close", `DECLARE c CURSOR WITH HOLD FOR SELECT 1; FETCH 10 FROM c; MOVE NEXT IN c; CLOSE c`, false, false},
	{"listen notify unlisten", `LISTEN ch; NOTIFY ch, 'x'; UNLISTEN *`, false, false},
	{"copy", `COPY t (a, b) FROM STDIN WITH (FORMAT csv)`, false, false},
	{"explain", `EXPLAIN SELECT 1`, false, false},
	{"explain analyze", `EXPLAIN (ANALYZE, BUFFERS) UPDATE t SET a = 1`, false, false},
	{"explain create in string", `EXPLAIN SELECT 'CREATE TABLE x'`, false, false},
	{"explain create as quoted identifier", `EXPLAIN SELECT "create" FROM t`, false, false},
	{"explain created word", `EXPLAIN SELECT created FROM t`, false, false},
	{"parenthesized", `(SELECT 1) UNION (SELECT 2)`, false, false},
	{"nested parentheses and comments", `( /* c */ ( -- d` + "\n" + `SELECT 1))`, false, false},
	{"several plain statements", `SELECT 1; INSERT INTO t VALUES (1); UPDATE t SET a = 2; DELETE FROM t;`, false, false},
	{"guarded words as column names", `SELECT "alter", "drop" FROM t WHERE "begin" = 1; UPDATE t SET "set" = 1`, false, false},
	{"trailing line comment", `SELECT 1 -- ; DROP TABLE x`, false, false},
	{"semicolon in string", `SELECT '; ALTER TABLE x'`, false, false},
	{"semicolon in doubled-quote string", `SELECT 'it''s; DROP TABLE x'`, false, false},
	{"semicolon in dollar quote", `SELECT $$; DROP TABLE x$$`, false, false},
	{"semicolon in tagged dollar quote", `SELECT $tag$ $$; DROP TABLE x; $$ $tag$`, false, false},
	{"dollar tags are case-sensitive", `SELECT $a$ $A$; DROP TABLE x; $a$`, false, false},
	{"dollar tag with underscore and digits", `SELECT $_1$; DROP TABLE x$_1$`, false, false},
	{"non-ASCII dollar tag", `SELECT $été$; DROP TABLE x $été$`, false, false},
	{"semicolon in block comment", `SELECT 1 /* ; DROP TABLE x */`, false, false},
	{"semicolon in nested block comment", `SELECT /* a /* b */ ; DROP TABLE x */ 1`, false, false},
	{"comment glued to operator", `SELECT 2 */* ; DROP TABLE x */ 3`, false, false},
	{"semicolon in quoted identifier", `SELECT 1 AS "; DROP TABLE x"`, false, false},
	{"doubled quote in quoted identifier", `SELECT 1 AS "a"";DROP TABLE x"`, false, false},
	{"escaped quote in E string", `SELECT E'\'; DROP TABLE x; --'`, false, false},
	{"escaped backslash in E string", `SELECT E'\\'; SELECT 1`, false, false},
	{"lower-case e string", `SELECT e'\'; DROP TABLE x; --'`, false, false},
	{"E string continued across newline", "SELECT E'a'\n'\\'; DROP TABLE x; --'", false, false},
	// PostgreSQL 17 no longer continues a string across a comment (a syntax
	// error); older servers do, and then the backslash escapes the quote.
	{"E string continued after comment", "SELECT E'a' -- c\n'\\'; DROP TABLE x; --'", false, true},
	{"U& string", `SELECT U&'d\0061t\+000061; DROP TABLE x'`, false, false},
	{"U& identifier", `SELECT 1 AS U&"; DROP TABLE x"`, false, false},
	{"B X and N strings", `SELECT B'1010', X'FF', N'; DROP TABLE x'`, false, false},
	{"plain string backslash not before quote", `SELECT 'a\b; DROP TABLE x'`, false, false},
	{"parameters", `SELECT $1, $2 FROM t WHERE a = $3 AND b = $10`, false, false},
	{"dollar inside identifier", `SELECT a$b FROM t`, false, false},
	{"non-ASCII text", `SELECT 'ü; DROP TABLE x', "ñ" FROM t`, false, false},
	{"crlf line comment", "SELECT 1 -- c\r\n; SELECT 2", false, false},
	{"carriage return ends comment in same statement", "SELECT 1 -- c\rDROP", false, false},
	{"select into", `SELECT * INTO new_t FROM t`, false, false},

	// Guarded statements.
	{"alter", `ALTER TABLE t ADD COLUMN c int`, true, false},
	{"alter lower case", `alter table t add column c int`, true, false},
	{"create", `CREATE INDEX i ON t (c)`, true, false},
	{"create function body", `CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$BEGIN ALTER TABLE t ADD c int; END$$`, true, false},
	{"drop", `DROP TABLE x`, true, false},
	{"truncate", `TRUNCATE t`, true, false},
	{"vacuum", `VACUUM (ANALYZE) t`, true, false},
	{"cluster", `CLUSTER t USING i`, true, false},
	{"reindex", `REINDEX INDEX i`, true, false},
	{"refresh", `REFRESH MATERIALIZED VIEW CONCURRENTLY mv`, true, false},
	{"lock", `LOCK TABLE t IN ACCESS EXCLUSIVE MODE`, true, false},
	{"comment", `COMMENT ON TABLE t IS 'x'`, true, false},
	{"grant", `GRANT SELECT ON t TO r`, true, false},
	{"revoke", `REVOKE SELECT ON t FROM r`, true, false},
	{"begin", `BEGIN`, true, false},
	{"start", `START TRANSACTION ISOLATION LEVEL SERIALIZABLE`, true, false},
	{"commit", `COMMIT`, true, false},
	{"end", `END`, true, false},
	{"rollback", `ROLLBACK`, true, false},
	{"abort", `ABORT`, true, false},
	{"savepoint", `SAVEPOINT s1`, true, false},
	{"release", `RELEASE SAVEPOINT s1`, true, false},
	{"prepare transaction", `PREPARE TRANSACTION 'gx'`, true, false},
	{"prepare statement", `PREPARE p (int) AS SELECT $1`, true, false},
	{"execute", `EXECUTE p(1)`, true, false},
	{"deallocate", `DEALLOCATE p`, true, false},
	{"do", `DO $$BEGIN PERFORM 1; END$$`, true, false},
	{"call", `CALL p(1)`, true, false},
	{"set", `SET lock_timeout = '2s'`, true, false},
	{"set local", `set local statement_timeout to 0`, true, false},
	{"reset", `RESET ALL`, true, false},
	{"import", `IMPORT FOREIGN SCHEMA s FROM SERVER srv INTO public`, true, false},
	{"security label", `SECURITY LABEL FOR selinux ON TABLE t IS 'x'`, true, false},
	{"reassign", `REASSIGN OWNED BY a TO b`, true, false},
	{"analyze", `ANALYZE t`, true, false},
	{"analyse", `ANALYSE t`, true, false},
	{"checkpoint", `CHECKPOINT`, true, false},
	{"discard", `DISCARD ALL`, true, false},
	{"load", `LOAD 'auto_explain'`, true, false},
	{"explain create table as", `EXPLAIN ANALYZE CREATE TABLE x AS SELECT 1`, true, false},
	{"explain create materialized view", `explain (analyze) create materialized view mv as select 1`, true, false},
	{"explain execute", `EXPLAIN EXECUTE p(1)`, true, false},
	{"ddl after select", `SELECT 1; ALTER TABLE t ADD c int`, true, false},
	{"ddl after select without space", `SELECT 1;DROP TABLE x`, true, false},
	{"ddl third", `INSERT INTO t VALUES (1); UPDATE t SET a = 1; TRUNCATE t`, true, false},
	{"ddl after line comment", "-- hello\nALTER TABLE t ADD c int", true, false},
	{"ddl after block comment", `/* a /* nested */ b */DROP TABLE x`, true, false},
	{"ddl after every kind of whitespace", "\t\f\v\r\nDROP TABLE x", true, false},
	{"set after with", `WITH x AS (SELECT 1) SELECT * FROM x; SET lock_timeout = 0`, true, false},
	{"ddl after string", `SELECT 'a'; DROP TABLE x`, true, false},
	{"ddl after E string escape", `SELECT E'\''; DROP TABLE x`, true, false},
	{"ddl after doubled quote in E string", `SELECT e'it''s'; DROP TABLE x`, true, false},
	{"ddl after dollar quote", `SELECT $t$ ; $t$; DROP TABLE x`, true, false},
	{"ddl after quoted identifier", `SELECT "a""b"; DROP TABLE x`, true, false},
	{"ddl after U& string", `SELECT U&'d\0061t'; DROP TABLE x`, true, false},
	{"ddl after comment-ended statement", "SELECT 1 -- c\r; DROP TABLE x", true, false},
	{"ddl after E string continuation", "SELECT E'a'\n'\\''; DROP TABLE x", true, false},
	{"identifier ending in e is no E string", `SELECT 1 AS xe, 'a'; DROP TABLE x`, true, false},
	{"dollar dollar inside identifier is no quote", `SELECT a$$; DROP TABLE x; SELECT 1$$`, true, true},
	{"parameter is no dollar quote", `SELECT $1; DROP TABLE x; SELECT $1`, true, false},
	{"semicolon between comment and ddl", `SELECT 1 /* c */; -- d` + "\n" + `CREATE TABLE y (a int)`, true, false},
	{"ddl inside parentheses", `((VACUUM))`, true, true},

	// Conservative answers.
	{"unterminated string", `SELECT 'abc; DROP TABLE x`, true, true},
	{"unterminated E string", `SELECT E'abc\'`, true, true},
	{"unterminated quoted identifier", `SELECT "abc`, true, true},
	{"unterminated dollar quote", `SELECT $$abc`, true, true},
	{"dollar quote closed by other case", `SELECT $t$ abc $T$`, true, true},
	{"unterminated block comment", `SELECT 1 /* abc`, true, true},
	{"unterminated nested block comment", `SELECT 1 /* a /* b */`, true, true},
	{"backslash before quote in plain string", `SELECT 'a\'' ; DROP TABLE x; --'`, true, true},
	{"backslash before closing quote", `SELECT 'C:\dir\'`, true, true},
	{"backslash after non-ASCII byte in E string", "SELECT E'\x95\\'; DROP TABLE x; --'", true, true},
	{"unknown first word", `FROBNICATE t`, true, true},
	{"keyword prefix", `SELECTX 1`, true, true},
	{"number first", `1; SELECT 2`, true, true},
	{"string first", `'x'`, true, true},
	{"E string first", `E'x'`, true, true},
	{"explain with column named execute", `EXPLAIN SELECT execute FROM t`, true, true},
}

func TestMightBeGuarded(t *testing.T) {
	if n := len(precheckCases); n < 60 {
		t.Fatalf("only %d cases", n)
	}
	for _, c := range precheckCases {
		if got := guard.MightBeGuarded(c.sql); got != c.want {
			t.Errorf("%s: MightBeGuarded(%q) = %v, want %v", c.name, c.sql, got, c.want)
		}
	}
}

// TestMightBeGuardedAgreesWithParser checks each expectation above against
// the real PostgreSQL parser: a string that parses is guarded exactly when
// one of its statements is not a plain query or DML.
func TestMightBeGuardedAgreesWithParser(t *testing.T) {
	for _, c := range precheckCases {
		guarded, ok := precheckParserGuarded(c.sql)
		switch {
		case !ok && !c.parserDiffers:
			t.Errorf("%s: %q does not parse; mark it parserDiffers", c.name, c.sql)
		case ok && guarded != c.want && !c.parserDiffers:
			t.Errorf("%s: parser says guarded=%v for %q, case says %v", c.name, guarded, c.sql, c.want)
		case ok && c.parserDiffers && guarded == c.want:
			t.Errorf("%s: parser agrees on %q; drop parserDiffers", c.name, c.sql)
		case ok && guarded && !c.want:
			t.Errorf("%s: %q misses a guarded statement", c.name, c.sql)
		}
	}
}

// precheckParserGuarded parses sql with the real parser and reports whether
// one of its statements is outside the pre-check's allow-list of plain
// statements. ok is false when sql does not parse.
func precheckParserGuarded(sql string) (guarded, ok bool) {
	tree, err := pg_query.Parse(sql)
	if err != nil {
		return false, false
	}
	for _, rs := range tree.GetStmts() {
		if !precheckPlainNode(rs.GetStmt()) {
			return true, true
		}
	}
	return false, true
}

func precheckPlainNode(n *pg_query.Node) bool {
	switch x := n.GetNode().(type) {
	case *pg_query.Node_SelectStmt, *pg_query.Node_InsertStmt, *pg_query.Node_UpdateStmt,
		*pg_query.Node_DeleteStmt, *pg_query.Node_MergeStmt, *pg_query.Node_VariableShowStmt,
		*pg_query.Node_FetchStmt, *pg_query.Node_ClosePortalStmt, *pg_query.Node_DeclareCursorStmt,
		*pg_query.Node_ListenStmt, *pg_query.Node_NotifyStmt, *pg_query.Node_UnlistenStmt,
		*pg_query.Node_CopyStmt:
		return true
	case *pg_query.Node_ExplainStmt:
		return precheckPlainNode(x.ExplainStmt.GetQuery())
	}
	return false
}

// precheckLongSelect is a 4 KiB SELECT full of string literals, parameters,
// quoted identifiers and arithmetic, the shape of an ORM's IN list.
var precheckLongSelect = func() string {
	var b strings.Builder
	b.WriteString(`SELECT "id", "name", "created_at" - interval '1 day' FROM "public"."accounts" WHERE "name" IN (`)
	for i := 0; b.Len() < 4096-64; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(`'customer-`)
		b.WriteByte(byte('a' + i%26))
		b.WriteString(`-it''s'`)
		b.WriteString(`, $`)
		b.WriteByte(byte('1' + i%9))
	}
	b.WriteString(`) AND "balance" / 2 > 10 ORDER BY 1;`)
	return b.String()
}()

var precheckBenchCases = []struct {
	name, sql string
	want      bool
}{
	{"select", pgbenchSelect, false},
	{"insert", pgbenchInsert, false},
	{"update", pgbenchUpdate, false},
	{"long4k", precheckLongSelect, false},
	{"ddl", `ALTER TABLE pgbench_accounts ADD COLUMN note text;`, true},
}

var precheckSink bool

func BenchmarkMightBeGuarded(b *testing.B) {
	for _, c := range precheckBenchCases {
		b.Run(c.name, func(b *testing.B) {
			if got := guard.MightBeGuarded(c.sql); got != c.want {
				b.Fatalf("MightBeGuarded(%q) = %v, want %v", c.sql, got, c.want)
			}
			b.SetBytes(int64(len(c.sql)))
			b.ReportAllocs()
			for b.Loop() {
				precheckSink = guard.MightBeGuarded(c.sql)
			}
		})
	}
}

func TestMightBeGuardedZeroAllocs(t *testing.T) {
	if len(precheckLongSelect) < 4000 || len(precheckLongSelect) > 4200 {
		t.Fatalf("long select is %d bytes", len(precheckLongSelect))
	}
	for _, c := range precheckBenchCases {
		if got := guard.MightBeGuarded(c.sql); got != c.want {
			t.Fatalf("%s: MightBeGuarded = %v, want %v", c.name, got, c.want)
		}
		if n := testing.AllocsPerRun(200, func() { precheckSink = guard.MightBeGuarded(c.sql) }); n != 0 {
			t.Errorf("%s: %v allocations per call, want 0", c.name, n)
		}
	}
}

// precheckSwapCase swaps the case of every ASCII letter. Keywords are
// case-insensitive and dollar-quote tags compare equal after the swap
// exactly when they did before, so the answer must not change.
func precheckSwapCase(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' {
			b[i] = c ^ 0x20
		}
	}
	return string(b)
}

func FuzzMightBeGuarded(f *testing.F) {
	for _, c := range precheckCases {
		f.Add(c.sql)
	}
	f.Add("SELECT E'a'\n\n -- x\n  'b' FROM t")
	f.Add("SELECT $x$a$x$, $1, a$b, 'a''b', \"c\"\"d\" FROM t /* /* */ */ -- e")
	f.Fuzz(func(t *testing.T, s string) {
		got := guard.MightBeGuarded(s)

		// Whatever s is, DDL in a statement after it is never missed: s
		// either leaves a quote or block comment open, which makes the
		// whole string conservatively true (the suffix closes none of
		// them), or the newline ends a trailing -- comment, the ';' ends
		// the last statement of s and ALTER starts the next one. (With the
		// ';' before the newline, a trailing comment would swallow it and
		// ALTER would be a word inside the last statement of s.)
		const ddl = "\n;ALTER TABLE t ADD c int"
		if !guard.MightBeGuarded(s + ddl) {
			t.Fatalf("missed DDL after %q", s)
		}

		// A plain statement after s, or before it, changes nothing.
		if g := guard.MightBeGuarded(s + "\n;SELECT 1"); g != got {
			t.Fatalf("MightBeGuarded(%q) = %v but with a SELECT after it %v", s, got, g)
		}
		if g := guard.MightBeGuarded("SELECT 1;\n" + s); g != got {
			t.Fatalf("MightBeGuarded(%q) = %v but with a SELECT before it %v", s, got, g)
		}

		// ASCII case does not matter.
		if g := guard.MightBeGuarded(precheckSwapCase(s)); g != got {
			t.Fatalf("MightBeGuarded(%q) = %v but %v with case swapped", s, got, g)
		}

		// Against the real parser: when s parses, a guarded statement must
		// never be missed, and a true answer for plain statements needs one
		// of the documented conservative reasons (a backslash, which the
		// server may read differently, or a word CREATE/EXECUTE in an
		// EXPLAIN that is not a keyword there).
		// (The parser reads a C string, as the server does: the protocol
		// cannot carry a NUL inside a query, so such inputs are skipped.)
		if strings.IndexByte(s, 0) >= 0 {
			return
		}
		guarded, ok := precheckParserGuarded(s)
		if !ok {
			return
		}
		if guarded && !got {
			t.Fatalf("MightBeGuarded(%q) = false, but the parser finds a guarded statement", s)
		}
		if !guarded && got && !strings.Contains(s, `\`) && !strings.Contains(strings.ToLower(s), "explain") {
			t.Fatalf("MightBeGuarded(%q) = true, but the parser finds only plain statements", s)
		}
	})
}

// TestMightBeGuardedExhaustive compares the pre-check with the real parser
// on every short string w over an alphabet of the bytes that matter to the
// lexer, spliced into templates around a DROP (w is also repeated or
// mirrored after the DROP, so that what opens before it can close after
// it): wherever the result is valid SQL, the pre-check must find the DROP
// exactly when the parser finds it (unless a backslash makes the answer
// conservatively true).
func TestMightBeGuardedExhaustive(t *testing.T) {
	const alphabet = "'\"$E\\;-/*\r\na1"
	same := func(w string) string { return w }
	mirror := func(w string) string {
		b := []byte(w)
		for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
			b[i], b[j] = b[j], b[i]
		}
		return string(b)
	}
	none := func(string) string { return "" }
	templates := []struct {
		before, mid, after string
		tail               func(string) string
		maxLen             int
	}{
		{"SELECT 1", "DROP TABLE x", "", none, 5},
		{"SELECT ", ";DROP TABLE x", "", none, 5},
		{"SELECT ", ";DROP TABLE x;", "", same, 4},
		{"SELECT 1", ";DROP TABLE x;", "", mirror, 4},
		{"SELECT 1", "DROP TABLE x", "", same, 4},
		{"SELECT $$", "$$;DROP TABLE x", "", none, 4},
		{"SELECT E'", "';DROP TABLE x", "", none, 4},
		{"SELECT 1 AS \"", "\";DROP TABLE x", "", none, 4},
		{"SELECT 1 /*", "*/;DROP TABLE x", "", none, 4},
		{"SELECT E'", ";DROP TABLE x", "'", same, 3},
	}
	for _, tpl := range templates {
		maxLen := tpl.maxLen
		if testing.Short() {
			maxLen = min(maxLen, 3)
		}
		var valid, guarded int
		w := make([]byte, 0, maxLen)
		var walk func()
		walk = func() {
			s := tpl.before + string(w) + tpl.mid + tpl.tail(string(w)) + tpl.after
			if want, ok := precheckParserGuarded(s); ok {
				valid++
				if want {
					guarded++
				}
				got := guard.MightBeGuarded(s)
				if got != want && !(got && strings.Contains(s, `\`)) {
					t.Errorf("MightBeGuarded(%q) = %v, parser says guarded=%v", s, got, want)
				}
			}
			if len(w) == maxLen {
				return
			}
			for i := 0; i < len(alphabet); i++ {
				w = append(w, alphabet[i])
				walk()
				w = w[:len(w)-1]
			}
		}
		walk()
		t.Logf("%q w %q tail(w) %q: %d valid strings, %d guarded", tpl.before, tpl.mid, tpl.after, valid, guarded)
	}
}
