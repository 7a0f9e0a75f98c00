package e2e

// Driver parity: the same statement gets the same ddlguard decision from
// psql (simple protocol) and from three extended-protocol drivers: pgx,
// psycopg 3 and node-postgres. DESIGN.md: "A statement that cannot hurt
// anyone (empty or small table, ...) must pass, with the same decision from
// every protocol and driver."
//
// Every size-dependent rule (a relaxable rule of guard/, relaxed by
// slowOnExistingLarge, and statement-after-access-exclusive, which asks
// isSmall itself) has a case on a small analyzed table, where every client
// must succeed, and the same case on a table past small_table_bytes, where
// every client must get what psql gets: the same SQLSTATE and first message
// line (so the same rule id) for a refusal, success with the same 01Z03
// notice for a rewrite. Rules with a rewrite have a second case inside a
// transaction block, where the rewrite cannot run and the statement is
// refused. Every case also runs directly on PostgreSQL (no ddlguard), where
// every statement must succeed: a refusal is ddlguard's, not the server's.
//
// Each client (a "lane") works in a database of its own, cloned from one
// template built once (the large table is filled once), so that every lane
// starts from the same state; after each case the lane's database is put
// back as it was by the case's undo statements, run directly as the owner.
// Each case opens a new connection, so ddlguard's per-connection facts
// cache and session state start afresh too. The lanes run in parallel.
//
// How each driver is made to use the extended protocol, and how that is
// checked: every proxied lane connects through a small tap (dpTap) that
// reads the client's messages on their way to ddlguard and counts Query
// ('Q') and Parse ('P') messages per case. psql must have sent one Query
// and no Parse per statement; each driver one Parse and no Query per
// statement.
//   - pgx: conn.PgConn().ExecParams(ctx, sql, nil, nil, nil, nil).Read()
//     sends Parse/Bind/Describe/Execute/Sync with the unnamed statement.
//   - psycopg 3 (3.1.7 here): Cursor._execute_send uses PQsendQueryParams
//     only when `force_extended or query.params or fmt == BINARY`; an empty
//     params tuple dumps to an empty (false) list, so execute(sql, ()) still
//     sends a simple Query (the tap shows it: with execute(sql, ()) every
//     statement arrives as a Query). A utility statement cannot take a
//     parameter, so the script asks for binary results instead
//     (cursor.execute(sql, binary=True)): PQsendQueryParams with no
//     parameters, i.e. Parse/Bind/Describe/Execute/Sync; and it turns
//     prepared statements off (prepare_threshold=None), so that every
//     statement is the unnamed one, as with the other drivers.
//   - node-postgres 8.16.3: Query.requiresPreparation() returns true for
//     queryMode 'extended' (lib/query.js), and prepare() then sends
//     Parse/Bind/Describe/Execute/Sync with the unnamed statement.

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ddlguard/ddlguard/e2e/pgcluster"
	"github.com/ddlguard/ddlguard/guard"
	"github.com/ddlguard/ddlguard/proxy"
)

const (
	// dpTemplate is the database the lanes' databases are cloned from.
	dpTemplate = "driverparity_tpl"
	// dpBigRows fills big and its materialized view past the default
	// small_table_bytes (10 MiB; checked, and the sizes logged).
	dpBigRows = 100000
	// dpSmallRows is the small table's row count.
	dpSmallRows = 5
	// dpUser owns the databases and is the role of every lane.
	dpUser = pgcluster.RoleSCRAM
	// dpCodeRewritten is the SQLSTATE of ddlguard's notice for an executed
	// rewrite (proxy.codeRewritten).
	dpCodeRewritten = "01Z03"
)

// The lanes: direct runs the cases straight on PostgreSQL; the others
// through ddlguard.
const (
	dpDirect  = "direct"
	dpPsql    = "psql"
	dpPgx     = "pgx"
	dpPsycopg = "psycopg"
	dpNode    = "node"
)

var (
	dpLanes   = []string{dpDirect, dpPsql, dpPgx, dpPsycopg, dpNode}
	dpDrivers = []string{dpPgx, dpPsycopg, dpNode}
)

// dpTableSQL creates one table of the fixture, {t} (small or big), with
// rows rows, and everything its cases need: a primary key to cluster on, a
// materialized view with a unique index (so that REFRESH has a rewrite; it
// reads no column a case retypes), a domain only {t} (and its parent) use,
// and an empty partitioned table with {t}'s columns to attach {t} to. Every
// column a case constrains holds values the constraint accepts, so that
// every statement succeeds directly.
func dpTableSQL(t string, rows int) []string {
	r := strings.NewReplacer("{t}", t, "{rows}", strconv.Itoa(rows))
	var out []string
	for _, s := range []string{
		`CREATE DOMAIN {t}_dom AS int`,
		`CREATE TABLE {t} (id bigint NOT NULL, a int, c int, ref_id int, p {t}_dom, pad text)
		   WITH (autovacuum_enabled = false)`,
		`INSERT INTO {t} SELECT g, g % 1000, g, g % 100 + 1, g % 1000 + 1, repeat('x', 100)
		   FROM generate_series(1, {rows}) g`,
		`ALTER TABLE {t} ADD CONSTRAINT {t}_pkey PRIMARY KEY (id)`,
		`CREATE MATERIALIZED VIEW {t}_mv WITH (autovacuum_enabled = false) AS SELECT id, pad FROM {t}`,
		`CREATE UNIQUE INDEX {t}_mv_id_idx ON {t}_mv (id)`,
		`CREATE TABLE {t}_parent (LIKE {t}) PARTITION BY RANGE (id)`,
		`VACUUM ANALYZE {t}`,
		`VACUUM ANALYZE {t}_mv`,
	} {
		out = append(out, r.Replace(s))
	}
	return out
}

// dpFixtureSQL builds the template, as dpUser. ref is the (small) table
// the foreign keys reference.
func dpFixtureSQL() []string {
	sqls := []string{
		`CREATE TABLE ref (id int PRIMARY KEY) WITH (autovacuum_enabled = false)`,
		`INSERT INTO ref SELECT generate_series(1, 100)`,
		`VACUUM ANALYZE ref`,
	}
	sqls = append(sqls, dpTableSQL("small", dpSmallRows)...)
	return append(sqls, dpTableSQL("big", dpBigRows)...)
}

// dpRule is one size-dependent rule's statement, {t} standing for the
// table (small or big).
type dpRule struct {
	rule string
	// sql are the statements, in order; a transaction block has its BEGIN
	// and ROLLBACK here, sent by the client like the others.
	sql []string
	// at is the index in sql of the statement the rule decides on.
	at int
	// undo puts the lane's database back (run directly, as the owner,
	// after the case, whatever happened); idempotent.
	undo []string
	// rewrite: on the large table, outside a transaction block, ddlguard
	// runs the rule's safe sequence (success with a 01Z03 notice); without
	// it, the statement is refused.
	rewrite bool
}

// dpRules are the size-dependent rules: the relaxable rules of guard/ (the
// rule_*.go files whose Relaxable() is true; the engine skips them when
// slowOnExistingLarge is false) and statement-after-access-exclusive
// (rule_statement_after_access_exclusive.go, which asks isSmall itself).
var dpRules = []dpRule{
	{rule: "attach-partition",
		sql: []string{"ALTER TABLE {t}_parent ATTACH PARTITION {t} FOR VALUES FROM (MINVALUE) TO (MAXVALUE)"},
		undo: []string{`DO $$BEGIN IF (SELECT relispartition FROM pg_class WHERE oid = '{t}'::regclass) THEN
			ALTER TABLE {t}_parent DETACH PARTITION {t}; END IF; END$$`}},
	{rule: "create-index-not-concurrently", rewrite: true,
		sql:  []string{"CREATE INDEX {t}_a_idx ON {t} (a)"},
		undo: []string{"DROP INDEX IF EXISTS {t}_a_idx"}},
	{rule: "alter-column-type",
		sql:  []string{"ALTER TABLE {t} ALTER COLUMN a TYPE bigint"},
		undo: []string{"ALTER TABLE {t} ALTER COLUMN a TYPE int"}},
	{rule: "add-unique-constraint", rewrite: true,
		sql:  []string{"ALTER TABLE {t} ADD CONSTRAINT {t}_c_key UNIQUE (c)"},
		undo: []string{"ALTER TABLE {t} DROP CONSTRAINT IF EXISTS {t}_c_key", "DROP INDEX IF EXISTS {t}_c_key"}},
	{rule: "set-not-null", rewrite: true,
		sql:  []string{"ALTER TABLE {t} ALTER COLUMN c SET NOT NULL"},
		undo: []string{"ALTER TABLE {t} ALTER COLUMN c DROP NOT NULL"}},
	{rule: "add-check-validated", rewrite: true,
		sql:  []string{"ALTER TABLE {t} ADD CONSTRAINT {t}_a_check CHECK (a >= 0)"},
		undo: []string{"ALTER TABLE {t} DROP CONSTRAINT IF EXISTS {t}_a_check"}},
	{rule: "add-foreign-key-validated", rewrite: true,
		sql:  []string{"ALTER TABLE {t} ADD CONSTRAINT {t}_ref_fk FOREIGN KEY (ref_id) REFERENCES ref (id)"},
		undo: []string{"ALTER TABLE {t} DROP CONSTRAINT IF EXISTS {t}_ref_fk"}},
	{rule: "add-column-rewrite",
		sql:  []string{"ALTER TABLE {t} ADD COLUMN added_at timestamptz DEFAULT clock_timestamp()"},
		undo: []string{"ALTER TABLE {t} DROP COLUMN IF EXISTS added_at"}},
	{rule: "add-column-inline-constraint",
		sql:  []string{"ALTER TABLE {t} ADD COLUMN f int CHECK (f > 0)"},
		undo: []string{"ALTER TABLE {t} DROP COLUMN IF EXISTS f"}},
	// btree's equality: an exclusion constraint without an extension
	// (gist on scalars would need btree_gist).
	{rule: "add-exclusion-constraint",
		sql:  []string{"ALTER TABLE {t} ADD CONSTRAINT {t}_id_excl EXCLUDE USING btree (id WITH =)"},
		undo: []string{"ALTER TABLE {t} DROP CONSTRAINT IF EXISTS {t}_id_excl"}},
	{rule: "rewrite-table",
		sql:  []string{"ALTER TABLE {t} SET UNLOGGED"},
		undo: []string{"ALTER TABLE {t} SET LOGGED"}},
	{rule: "cluster",
		sql:  []string{"CLUSTER {t} USING {t}_pkey"},
		undo: []string{"ALTER TABLE {t} SET WITHOUT CLUSTER"}},
	{rule: "vacuum-full",
		sql: []string{"VACUUM FULL {t}"}},
	{rule: "reindex-not-concurrently", rewrite: true,
		sql: []string{"REINDEX TABLE {t}"}},
	{rule: "refresh-materialized-view", rewrite: true,
		sql: []string{"REFRESH MATERIALIZED VIEW {t}_mv"}},
	{rule: "alter-domain-add-constraint", rewrite: true,
		sql:  []string{"ALTER DOMAIN {t}_dom ADD CONSTRAINT {t}_dom_positive CHECK (VALUE > 0)"},
		undo: []string{"ALTER DOMAIN {t}_dom DROP CONSTRAINT IF EXISTS {t}_dom_positive"}},
	{rule: "statement-after-access-exclusive", at: 2,
		sql:  []string{"BEGIN", "ALTER TABLE {t} ADD COLUMN g int", "UPDATE {t} SET g = 1", "ROLLBACK"},
		undo: []string{"ALTER TABLE {t} DROP COLUMN IF EXISTS g"}},
	{rule: "validate-in-same-transaction", at: 2,
		sql: []string{"BEGIN", "ALTER TABLE {t} ADD CONSTRAINT {t}_c_positive CHECK (c > 0) NOT VALID",
			"ALTER TABLE {t} VALIDATE CONSTRAINT {t}_c_positive", "ROLLBACK"},
		undo: []string{"ALTER TABLE {t} DROP CONSTRAINT IF EXISTS {t}_c_positive"}},
}

// dpCase is one rule's statements on one table.
type dpCase struct {
	name string // rule/size[/tx]
	rule string
	// large: on big (else on small).
	large bool
	sql   []string
	at    int
	undo  []string
	// rewrite: the statement at is rewritten (large only); else refused
	// (large) or allowed (small).
	rewrite bool
}

// dpCases expands dpRules: each rule on small and on big, and each rule
// with a rewrite also inside a transaction block (BEGIN, the statement,
// ROLLBACK), where ddlguard cannot run its rewrite.
func dpCases() []dpCase {
	type form struct {
		suffix  string
		sql     []string
		at      int
		rewrite bool
	}
	var out []dpCase
	for _, r := range dpRules {
		forms := []form{{"", r.sql, r.at, r.rewrite}}
		if r.rewrite {
			tx := append(append([]string{"BEGIN"}, r.sql...), "ROLLBACK")
			forms = append(forms, form{"/in-transaction", tx, r.at + 1, false})
		}
		for _, f := range forms {
			for _, table := range []string{"small", "big"} {
				rep := strings.NewReplacer("{t}", table)
				c := dpCase{name: r.rule + "/" + table + f.suffix, rule: r.rule, large: table == "big", at: f.at,
					rewrite: f.rewrite && table == "big"}
				for _, s := range f.sql {
					c.sql = append(c.sql, rep.Replace(s))
				}
				for _, s := range r.undo {
					c.undo = append(c.undo, rep.Replace(s))
				}
				out = append(out, c)
			}
		}
	}
	return out
}

// dpResult is what a client saw for one statement.
type dpResult struct {
	OK       bool       `json:"ok"`
	SQLState string     `json:"sqlstate"`
	Message  string     `json:"message"`
	Tag      string     `json:"tag"`
	Notices  []dpNotice `json:"notices"`
}

// dpNotice is a NoticeResponse a client received.
type dpNotice struct {
	SQLState string `json:"sqlstate"`
	Message  string `json:"message"`
}

// dpFirstLine is s up to its first newline, trimmed.
func dpFirstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(l)
}

// normalize keeps what parity is judged on: first message lines (psql
// prints only those on the line it tags), the command tag trimmed.
func (r dpResult) normalize() dpResult {
	r.Message, r.Tag = dpFirstLine(r.Message), strings.TrimSpace(r.Tag)
	notices := make([]dpNotice, 0, len(r.Notices))
	for _, n := range r.Notices {
		notices = append(notices, dpNotice{SQLState: n.SQLState, Message: dpFirstLine(n.Message)})
	}
	r.Notices = notices
	return r
}

// rule is the ddlguard rule id a message names ("ddlguard: <rule>: ...").
func (r dpResult) rule() string {
	rest, ok := strings.CutPrefix(r.Message, "ddlguard: ")
	if !ok {
		return ""
	}
	id, _, _ := strings.Cut(rest, ":")
	return id
}

// rewrittenBy is the rule of the 01Z03 notice among r's notices, or "".
func (r dpResult) rewrittenBy() string {
	for _, n := range r.Notices {
		if n.SQLState == dpCodeRewritten {
			return dpResult{Message: n.Message}.rule()
		}
	}
	return ""
}

// summary is a short form of r for the case table.
func (r dpResult) summary() string {
	switch {
	case !r.OK && r.rule() != "":
		return r.SQLState + " " + r.rule()
	case !r.OK:
		return r.SQLState + " " + r.Message
	case r.rewrittenBy() != "":
		return "ok+" + dpCodeRewritten + " (rewritten)"
	}
	var codes []string
	for _, n := range r.Notices {
		codes = append(codes, n.SQLState)
	}
	if len(codes) > 0 {
		return "ok+" + strings.Join(codes, ",")
	}
	return "ok"
}

// dpDiff describes how got (from lane) differs from psql's ref, or "".
// node-postgres reports only the first word of a command tag (its
// Result.command), so that is all that is compared for it.
func dpDiff(ref, got dpResult, lane string) string {
	var d []string
	if got.OK != ref.OK || got.SQLState != ref.SQLState || got.Message != ref.Message {
		d = append(d, fmt.Sprintf("outcome ok=%v %s %q, psql: ok=%v %s %q", got.OK, got.SQLState, got.Message,
			ref.OK, ref.SQLState, ref.Message))
	}
	refTag := ref.Tag
	if lane == dpNode {
		refTag, _, _ = strings.Cut(refTag, " ")
	}
	if got.Tag != refTag {
		d = append(d, fmt.Sprintf("command tag %q, psql: %q", got.Tag, refTag))
	}
	if !slices.Equal(got.Notices, ref.Notices) {
		d = append(d, fmt.Sprintf("notices %v, psql: %v", got.Notices, ref.Notices))
	}
	return strings.Join(d, "; ")
}

// dpTap is a TCP relay in front of ddlguard that counts the messages a
// client sends, by type, so the test can tell which protocol a driver used.
type dpTap struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	counts map[byte]int
	tls    bool // a client asked for TLS: its messages could not be read
	conns  []net.Conn
}

// dpStartTap relays connections to target; closed at test end.
func dpStartTap(t *testing.T, target string) *dpTap {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tap := &dpTap{ln: ln, target: target, counts: map[byte]int{}}
	go tap.serve()
	t.Cleanup(func() {
		ln.Close()
		tap.mu.Lock()
		defer tap.mu.Unlock()
		for _, c := range tap.conns {
			c.Close()
		}
	})
	return tap
}

// port is the tap's listening port.
func (tap *dpTap) port() int { return tap.ln.Addr().(*net.TCPAddr).Port }

func (tap *dpTap) serve() {
	for {
		client, err := tap.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", tap.target)
		if err != nil {
			client.Close()
			continue
		}
		tap.mu.Lock()
		tap.conns = append(tap.conns, client, up)
		tap.mu.Unlock()
		go func() {
			io.Copy(client, up)
			client.Close()
			up.Close()
		}()
		go tap.pump(client, up)
	}
}

// pump relays client -> upstream, counting each message before it
// forwards it (so a message is counted before ddlguard can answer it).
func (tap *dpTap) pump(client, up net.Conn) {
	defer client.Close()
	defer up.Close()
	r := bufio.NewReader(client)
	// Untyped packets: SSLRequest or GSSENCRequest (the lanes use
	// sslmode=disable and send neither), CancelRequest, StartupMessage.
	for {
		var hdr [8]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint32(hdr[:4]))
		if n < 8 || n > 1<<20 {
			return
		}
		pkt := make([]byte, n)
		copy(pkt, hdr[:])
		if _, err := io.ReadFull(r, pkt[8:]); err != nil {
			return
		}
		if _, err := up.Write(pkt); err != nil {
			return
		}
		switch binary.BigEndian.Uint32(hdr[4:]) {
		case 80877103, 80877104: // SSLRequest, GSSENCRequest
			tap.mu.Lock()
			tap.tls = true
			tap.mu.Unlock()
			io.Copy(up, r)
			return
		case 80877102: // CancelRequest
			io.Copy(up, r)
			return
		}
		break
	}
	for {
		msg, err := readTypedFrame(r)
		if err != nil {
			return
		}
		tap.mu.Lock()
		tap.counts[msg[0]]++
		tap.mu.Unlock()
		if _, err := up.Write(msg); err != nil {
			return
		}
	}
}

// take returns the Query and Parse counts since the last call, and whether
// a client asked for TLS, and starts counting afresh.
func (tap *dpTap) take() (queries, parses int, tls bool) {
	tap.mu.Lock()
	defer tap.mu.Unlock()
	queries, parses, tls = tap.counts['Q'], tap.counts['P'], tap.tls
	tap.counts, tap.tls = map[byte]int{}, false
	return queries, parses, tls
}

// dpExec runs one case's statements on a new connection and returns what
// the client saw for each.
type dpExec func(sqls []string) ([]dpResult, error)

// dpPsycopgScript reads one JSON case per stdin line ({"sql": [...]}) and
// answers one JSON line per case: {"results": [...]} or {"error": "..."}.
// argv[1] is the DSN. Its first line says it is ready, with the versions.
const dpPsycopgScript = `
import json
import sys

import psycopg

dsn = sys.argv[1]
print(json.dumps({"ready": True, "version": psycopg.__version__, "impl": psycopg.pq.__impl__}), flush=True)


def run_case(sqls):
    results = []
    notices = []

    def on_notice(diag):
        notices.append({"sqlstate": diag.sqlstate or "", "message": diag.message_primary or ""})

    # autocommit: the case's own BEGIN and ROLLBACK are the only
    # transaction control; prepare_threshold=None: never a named statement.
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
        conn.add_notice_handler(on_notice)
        for sql in sqls:
            del notices[:]
            res = {"ok": True, "sqlstate": "", "message": "", "tag": ""}
            try:
                with conn.cursor() as cur:
                    # binary=True: PQsendQueryParams (Parse/Bind/Describe/
                    # Execute/Sync) although there are no parameters.
                    cur.execute(sql, binary=True)
                    res["tag"] = cur.statusmessage or ""
            except psycopg.Error as e:
                if e.sqlstate is None:
                    raise
                res["ok"] = False
                res["sqlstate"] = e.sqlstate
                res["message"] = e.diag.message_primary or str(e)
            res["notices"] = list(notices)
            results.append(res)
    return results


while True:
    line = sys.stdin.readline()
    if not line:
        break
    try:
        out = {"results": run_case(json.loads(line)["sql"])}
    except Exception as e:
        out = {"error": "%s: %s" % (type(e).__name__, e)}
    print(json.dumps(out), flush=True)
`

// dpNodeScript is dpPsycopgScript for node-postgres. argv[2] is the
// node_modules directory holding pg, argv[3] the connection config (JSON).
const dpNodeScript = `'use strict'
const path = require('path')
const readline = require('readline')

const modules = process.argv[2]
const config = JSON.parse(process.argv[3])
const { Client } = require(path.join(modules, 'pg'))
const version = require(path.join(modules, 'pg', 'package.json')).version

async function runCase(sqls) {
  const client = new Client(config)
  let notices = []
  client.on('notice', (n) => notices.push({ sqlstate: n.code || '', message: n.message || '' }))
  client.on('error', () => {})
  await client.connect()
  const results = []
  try {
    for (const sql of sqls) {
      notices = []
      const res = { ok: true, sqlstate: '', message: '', tag: '' }
      try {
        // queryMode 'extended': Parse/Bind/Describe/Execute/Sync, unnamed.
        const r = await client.query({ text: sql, queryMode: 'extended' })
        res.tag = r.command || ''
      } catch (e) {
        if (!e.code) throw e
        res.ok = false
        res.sqlstate = e.code
        res.message = e.message
      }
      res.notices = notices
      results.push(res)
    }
  } finally {
    await client.end()
  }
  return results
}

async function main() {
  process.stdout.write(JSON.stringify({ ready: true, version }) + '\n')
  const rl = readline.createInterface({ input: process.stdin })
  for await (const line of rl) {
    let out
    try {
      out = { results: await runCase(JSON.parse(line).sql) }
    } catch (e) {
      out = { error: String((e && e.stack) || e) }
    }
    process.stdout.write(JSON.stringify(out) + '\n')
  }
}

main()
`

// dpProc is a long-running client script that answers one JSON line per
// case.
type dpProc struct {
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	stderr *lockedBuffer
}

// dpStartProc starts program and waits for its "ready" line, which it
// returns. The process ends when the test does.
func dpStartProc(t *testing.T, name, program string, args ...string) (*dpProc, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := clientProgramCmd(ctx, program, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &dpProc{name: name, cmd: cmd, stdin: stdin, lines: make(chan string, 1), stderr: &lockedBuffer{}}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		defer close(p.lines)
		r := bufio.NewReaderSize(stdout, 1<<20)
		for {
			line, err := r.ReadString('\n')
			if line != "" {
				p.lines <- line
			}
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cancel()
			<-done
		}
		cancel()
		if t.Failed() && p.stderr.String() != "" {
			t.Logf("%s stderr:\n%s", name, p.stderr.String())
		}
	})
	ready, err := p.next(30 * time.Second)
	if err != nil {
		t.Fatalf("%s did not start: %v", name, err)
	}
	return p, ready
}

// next is the script's next output line.
func (p *dpProc) next(timeout time.Duration) (string, error) {
	select {
	case line, ok := <-p.lines:
		if !ok {
			return "", fmt.Errorf("%s exited\nstderr:\n%s", p.name, p.stderr.String())
		}
		return line, nil
	case <-time.After(timeout):
		return "", fmt.Errorf("%s gave no answer within %s\nstderr:\n%s", p.name, timeout, p.stderr.String())
	}
}

// exec sends one case and reads the answer.
func (p *dpProc) exec(sqls []string) ([]dpResult, error) {
	req, err := json.Marshal(map[string][]string{"sql": sqls})
	if err != nil {
		return nil, err
	}
	if _, err := p.stdin.Write(append(req, '\n')); err != nil {
		return nil, fmt.Errorf("%s: write: %v\nstderr:\n%s", p.name, err, p.stderr.String())
	}
	line, err := p.next(90 * time.Second)
	if err != nil {
		return nil, err
	}
	var out struct {
		Results []dpResult `json:"results"`
		Error   string     `json:"error"`
	}
	if err := json.Unmarshal([]byte(line), &out); err != nil {
		return nil, fmt.Errorf("%s: answer %q: %v", p.name, line, err)
	}
	if out.Error != "" {
		return nil, fmt.Errorf("%s: %s", p.name, out.Error)
	}
	return out.Results, nil
}

// dpPsqlMessage is a message line psql prints to stderr with VERBOSITY
// verbose: "psql:<stdin>:3: ERROR:  ZG001: ddlguard: ...".
var dpPsqlMessage = regexp.MustCompile(`^(?:psql:\S*:\d+: )?(ERROR|FATAL|WARNING|NOTICE|INFO|LOG|DEBUG):  (?:([0-9A-Z]{5}): )?(.*)$`)

// dpPsqlExec runs each case as one psql process reading the statements
// from stdin, each followed by markers: on stdout (after the command tag)
// and on stderr (after any error and notices, with the statement's
// SQLSTATE, psql's :SQLSTATE variable, "00000" on success).
func dpPsqlExec(ctx context.Context, dsn string) dpExec {
	return func(sqls []string) ([]dpResult, error) {
		var script strings.Builder
		script.WriteString("\\set VERBOSITY verbose\n\\set SHOW_CONTEXT never\n")
		for _, sql := range sqls {
			script.WriteString(sql + ";\n\\echo @@end\n\\warn @@end :SQLSTATE\n")
		}
		ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		defer cancel()
		cmd := clientProgramCmd(ctx, cluster.Psql(), "-X", "-d", dsn)
		cmd.Stdin = strings.NewReader(script.String())
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		res := clientRun{stdout: stdout.String(), stderr: stderr.String()}
		if err != nil {
			return nil, fmt.Errorf("psql: %v\n%s", err, res)
		}
		out, err := dpParsePsql(res.stdout, res.stderr, len(sqls))
		if err != nil {
			return nil, fmt.Errorf("%v\n%s", err, res)
		}
		return out, nil
	}
}

// dpParsePsql splits psql's output at the markers into n statements.
func dpParsePsql(stdout, stderr string, n int) ([]dpResult, error) {
	var tags []string
	var cur []string
	for _, line := range strings.Split(stdout, "\n") {
		if line == "@@end" {
			tags = append(tags, strings.Join(cur, "\n"))
			cur = nil
			continue
		}
		if strings.TrimSpace(line) != "" {
			cur = append(cur, line)
		}
	}
	if len(tags) != n || len(cur) != 0 {
		return nil, fmt.Errorf("psql stdout has %d statement markers (want %d) and %q after the last", len(tags), n, cur)
	}
	out := make([]dpResult, 0, n)
	r := dpResult{}
	for _, line := range strings.Split(stderr, "\n") {
		if code, ok := strings.CutPrefix(line, "@@end "); ok {
			r.SQLState = strings.TrimSpace(code)
			r.OK = r.SQLState == "00000"
			if r.OK {
				r.SQLState = ""
			} else if r.Message == "" {
				return nil, fmt.Errorf("psql: statement %d failed with %s but printed no ERROR line", len(out)+1, r.SQLState)
			}
			r.Tag = tags[len(out)]
			out = append(out, r)
			r = dpResult{}
			if len(out) > n {
				return nil, fmt.Errorf("psql stderr has more than %d statement markers", n)
			}
			continue
		}
		m := dpPsqlMessage.FindStringSubmatch(line)
		if m == nil {
			continue // DETAIL, HINT, LOCATION and continuation lines
		}
		if m[1] == "ERROR" || m[1] == "FATAL" {
			if r.Message == "" {
				r.Message = m[3]
			}
			continue
		}
		r.Notices = append(r.Notices, dpNotice{SQLState: m[2], Message: m[3]})
	}
	if len(out) != n {
		return nil, fmt.Errorf("psql stderr has %d statement markers, want %d", len(out), n)
	}
	return out, nil
}

// dpPgxExec runs each statement with ExecParams (Parse, Bind, Describe,
// Execute, Sync; unnamed statement) on a new connection per case.
func dpPgxExec(ctx context.Context, dsn string) dpExec {
	return func(sqls []string) ([]dpResult, error) {
		cfg, err := pgx.ParseConfig(dsn)
		if err != nil {
			return nil, err
		}
		notices := &noticeLog{}
		cfg.OnNotice = notices.add
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("pgx connect: %w", err)
		}
		defer conn.Close(context.Background())
		var out []dpResult
		for _, sql := range sqls {
			rr := conn.PgConn().ExecParams(ctx, sql, nil, nil, nil, nil).Read()
			r := dpResult{OK: rr.Err == nil, Tag: rr.CommandTag.String()}
			if rr.Err != nil {
				pe := pgErrorOf(rr.Err)
				if pe == nil {
					return nil, fmt.Errorf("pgx: %s: %w", sql, rr.Err)
				}
				r.SQLState, r.Message = pe.Code, pe.Message
			}
			for _, n := range notices.take() {
				r.Notices = append(r.Notices, dpNotice{SQLState: n.Code, Message: n.Message})
			}
			out = append(out, r)
		}
		return out, nil
	}
}

// dpDirectExec runs the statements straight on PostgreSQL (simple
// protocol), on conn.
func dpDirectExec(ctx context.Context, conn *pgx.Conn) dpExec {
	return func(sqls []string) ([]dpResult, error) {
		var out []dpResult
		for _, sql := range sqls {
			tag, err := conn.PgConn().Exec(ctx, sql).ReadAll()
			r := dpResult{OK: err == nil}
			if err != nil {
				pe := pgErrorOf(err)
				if pe == nil {
					return nil, fmt.Errorf("direct: %s: %w", sql, err)
				}
				r.SQLState, r.Message = pe.Code, pe.Message
			} else if len(tag) > 0 {
				r.Tag = tag[len(tag)-1].CommandTag.String()
			}
			out = append(out, r)
		}
		return out, nil
	}
}

// dpBuildFixture builds the template database and clones one database per
// lane from it; all are dropped at test end. It returns the lanes'
// database names.
func dpBuildFixture(t *testing.T) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dbs := map[string]string{}
	for _, lane := range dpLanes {
		dbs[lane] = "driverparity_" + lane
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, db := range append([]string{dpTemplate}, dpSortedValues(dbs)...) {
			if err := adminExec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{db}.Sanitize()+" WITH (FORCE)"); err != nil {
				t.Errorf("drop database %s: %v", db, err)
			}
		}
	})
	owner, err := createFixtureDatabase(ctx, dpTemplate, dpUser, dpFixtureSQL())
	if err != nil {
		t.Fatalf("driver parity fixture: %v", err)
	}
	for _, rel := range []string{"big", "big_mv"} {
		if err := checkLarge(ctx, owner, rel); err != nil {
			owner.Close(ctx)
			t.Fatalf("driver parity fixture: %v", err)
		}
	}
	var sizes []string
	for _, rel := range []string{"big", "big_mv", "small", "small_mv", "ref"} {
		var size int64
		if err := owner.QueryRow(ctx, "SELECT pg_total_relation_size($1::regclass)", rel).Scan(&size); err != nil {
			owner.Close(ctx)
			t.Fatal(err)
		}
		if !strings.HasPrefix(rel, "big") && size >= guard.DefaultSmallTableBytes/10 {
			owner.Close(ctx)
			t.Fatalf("driver parity fixture: %s is %d bytes, not small", rel, size)
		}
		sizes = append(sizes, fmt.Sprintf("%s %.1f MiB", rel, float64(size)/(1<<20)))
	}
	owner.Close(ctx)
	t.Logf("fixture sizes (pg_total_relation_size): %s", strings.Join(sizes, ", "))
	for _, db := range dpSortedValues(dbs) {
		ident := pgx.Identifier{db}.Sanitize()
		if err := adminExec(ctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)",
			"CREATE DATABASE "+ident+" TEMPLATE "+pgx.Identifier{dpTemplate}.Sanitize()+" OWNER "+dpUser); err != nil {
			t.Fatalf("clone %s: %v", db, err)
		}
	}
	return dbs
}

func dpSortedValues(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	slices.Sort(out)
	return out
}

// dpLaneRun is what one lane saw: per case, per statement.
type dpLaneRun struct {
	results [][]dpResult
	// caseTook is how long each case took in this lane (its undo
	// included).
	caseTook []time.Duration
	// protocol describes the messages the tap counted for the whole run.
	protocol string
	// owner is the owner's direct connection to the lane's database; tap
	// (nil for the direct lane) the relay the client connects through.
	owner   *pgx.Conn
	tap     *dpTap
	version string
	took    time.Duration
}

// TestDriverParity: see the top of this file.
func TestDriverParity(t *testing.T) {
	begin := time.Now()
	for _, r := range dpRules {
		if !slices.Contains(guard.RuleIDs(), r.rule) {
			t.Errorf("dpRules names unknown rule %s", r.rule)
		}
	}
	cases := dpCases()

	dbs := dpBuildFixture(t)
	fixtureTook := time.Since(begin)
	p := startGuardProxy(t, guard.DefaultConfig())
	nodeModules := filepath.Dir(filepath.Dir(filepath.Dir(nodePgMigrate(t))))

	// The lanes are set up here (on the test goroutine), then run their
	// cases at the same time, each in its own database. Each lane fills
	// its own dpLaneRun case by case, so that a lane that stops early is
	// still judged on the cases it ran.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	runs := map[string]*dpLaneRun{}
	execs := map[string]dpExec{}
	for _, lane := range dpLanes {
		runs[lane] = &dpLaneRun{}
		execs[lane] = dpSetUpLane(t, ctx, runs[lane], lane, dbs[lane], p, nodeModules)
	}
	var wg sync.WaitGroup
	for _, lane := range dpLanes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := dpRunLane(t, ctx, runs[lane], lane, execs[lane], cases); err != nil {
				t.Errorf("%s lane stopped: %v", lane, err)
			}
		}()
	}
	wg.Wait()

	// result is lane's answers to case i, nil if the lane did not get there.
	result := func(lane string, i int) []dpResult {
		if run := runs[lane]; i < len(run.results) {
			return run.results[i]
		}
		return nil
	}
	var table []string
	table = append(table, fmt.Sprintf("%-50s %-30s %-30s %-30s %-30s %s", "case", "psql", "pgx", "psycopg", "node", "direct"))
	for i, c := range cases {
		ref := result(dpPsql, i)
		row := []string{fmt.Sprintf("%-50s", c.name)}
		for _, lane := range []string{dpPsql, dpPgx, dpPsycopg, dpNode, dpDirect} {
			res := result(lane, i)
			if res == nil {
				row = append(row, fmt.Sprintf("%-30s", "(not run)"))
				continue
			}
			s := res[c.at].summary()
			if lane != dpPsql && lane != dpDirect && ref != nil && !dpSameCase(ref, res, lane) {
				s = "DIFFERS: " + s
			}
			row = append(row, fmt.Sprintf("%-30s", s))
		}
		table = append(table, strings.TrimRight(strings.Join(row, " "), " "))

		// Directly on PostgreSQL every statement succeeds.
		for j, r := range result(dpDirect, i) {
			if !r.OK {
				t.Errorf("%s: directly on PostgreSQL, %s failed: %s %s", c.name, c.sql[j], r.SQLState, r.Message)
			}
		}
		if ref == nil {
			continue
		}
		// psql gets what the case expects.
		dpCheckExpected(t, c, ref)
		// Every driver gets what psql gets.
		for _, lane := range dpDrivers {
			res := result(lane, i)
			for j := range res {
				if d := dpDiff(ref[j], res[j], lane); d != "" {
					t.Errorf("PARITY: %s: %s got a different answer than psql for statement %d %q: %s",
						c.name, lane, j+1, c.sql[j], d)
				}
			}
		}
	}
	t.Logf("case table (the outcome of the statement the rule decides on):\n%s", strings.Join(table, "\n"))
	for _, lane := range dpLanes {
		run := runs[lane]
		t.Logf("%-8s %-28s %d cases in %s, %s; slowest: %s", lane, run.version, len(run.results),
			run.took.Round(time.Millisecond), run.protocol, dpSlowest(cases, run.caseTook, 4))
	}
	t.Logf("fixture (template + %d clones) %s; %d cases x %d lanes; total %s", len(dpLanes),
		fixtureTook.Round(time.Millisecond), len(cases), len(dpLanes), time.Since(begin).Round(time.Millisecond))
}

// dpSlowest names the n slowest cases.
func dpSlowest(cases []dpCase, took []time.Duration, n int) string {
	idx := make([]int, len(took))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return int(took[b] - took[a]) })
	var out []string
	for _, i := range idx[:min(n, len(idx))] {
		out = append(out, fmt.Sprintf("%s %s", cases[i].name, took[i].Round(time.Millisecond)))
	}
	return strings.Join(out, ", ")
}

// dpSameCase reports whether lane saw what psql saw for every statement.
func dpSameCase(ref, got []dpResult, lane string) bool {
	for j := range ref {
		if dpDiff(ref[j], got[j], lane) != "" {
			return false
		}
	}
	return true
}

// dpCheckExpected checks psql's answers against the case: on the small
// table every statement succeeds without a ddlguard notice; on the large
// one the statement at is refused by the case's rule (ZG001, "ddlguard:
// <rule>: ..."), or rewritten (success with one 01Z03 notice naming the
// rule), and every other statement succeeds.
func dpCheckExpected(t *testing.T, c dpCase, res []dpResult) {
	t.Helper()
	for j, r := range res {
		decided := c.large && j == c.at
		switch {
		case decided && !c.rewrite:
			if r.OK || r.SQLState != proxy.CodeRejected || r.rule() != c.rule {
				t.Errorf("%s: psql got %s for %q, want a refusal by %s (%s)", c.name, r.summary(), c.sql[j], c.rule, proxy.CodeRejected)
			}
		case decided && c.rewrite:
			if !r.OK || r.rewrittenBy() != c.rule {
				t.Errorf("%s: psql got %s (notices %v) for %q, want success with ddlguard's %s notice of %s",
					c.name, r.summary(), r.Notices, c.sql[j], dpCodeRewritten, c.rule)
			}
		default:
			if !r.OK {
				t.Errorf("%s: psql got %s for %q, want success", c.name, r.summary(), c.sql[j])
			}
			for _, n := range r.Notices {
				if strings.HasPrefix(n.SQLState, "01Z") {
					t.Errorf("%s: psql got ddlguard notice %s %q for %q, want none", c.name, n.SQLState, n.Message, c.sql[j])
				}
			}
		}
	}
}

// dpSetUpLane prepares lane: the owner's direct connection (for the undo
// statements, and the direct lane's own statements), the tap in front of
// ddlguard and the client. It returns how the lane runs a case.
func dpSetUpLane(t *testing.T, ctx context.Context, run *dpLaneRun, lane, db string, p *testProxy, nodeModules string) dpExec {
	t.Helper()
	run.owner = connectDirect(t, cluster, dpUser, db)
	var dsn string
	if lane != dpDirect {
		run.tap = dpStartTap(t, p.Addr())
		dsn = cluster.DSN(dpUser, db, "host", "127.0.0.1", "port", strconv.Itoa(run.tap.port()), "sslmode", "disable",
			"application_name", "driverparity-"+lane)
	}
	switch lane {
	case dpDirect:
		run.version = "PostgreSQL " + strconv.Itoa(cluster.Version())
		return dpDirectExec(ctx, run.owner)
	case dpPsql:
		res := runClientProgram(t, 10*time.Second, nil, cluster.Psql(), "--version")
		run.version = strings.TrimSpace(res.stdout)
		return dpPsqlExec(ctx, dsn)
	case dpPgx:
		run.version = "pgx v5"
		return dpPgxExec(ctx, dsn)
	case dpPsycopg:
		script := filepath.Join(t.TempDir(), "driverparity_psycopg.py")
		if err := os.WriteFile(script, []byte(dpPsycopgScript), 0o644); err != nil {
			t.Fatal(err)
		}
		proc, ready := dpStartProc(t, "psycopg", psycopgPython, script, dsn)
		run.version = "psycopg " + dpReadyVersion(t, "psycopg", ready)
		return proc.exec
	case dpNode:
		script := filepath.Join(t.TempDir(), "driverparity_node.js")
		if err := os.WriteFile(script, []byte(dpNodeScript), 0o644); err != nil {
			t.Fatal(err)
		}
		config, err := json.Marshal(map[string]any{
			"host": "127.0.0.1", "port": run.tap.port(), "user": dpUser, "password": cluster.Passwords[dpUser],
			"database": db, "ssl": false, "application_name": "driverparity-node",
		})
		if err != nil {
			t.Fatal(err)
		}
		proc, ready := dpStartProc(t, "node", "node", script, nodeModules, string(config))
		run.version = "pg " + dpReadyVersion(t, "node", ready)
		return proc.exec
	}
	t.Fatalf("unknown lane %s", lane)
	return nil
}

// dpRunLane runs every case in lane, each followed by its undo statements,
// and checks the protocol the lane's client used (through t.Errorf: it runs
// on a goroutine of its own). An error stops the lane.
func dpRunLane(t *testing.T, ctx context.Context, run *dpLaneRun, lane string, exec dpExec, cases []dpCase) error {
	begin := time.Now()
	var totalQ, totalP int
	defer func() {
		run.took = time.Since(begin)
		if run.tap != nil {
			run.protocol = fmt.Sprintf("sent %d Query and %d Parse messages to ddlguard", totalQ, totalP)
		} else {
			run.protocol = "no ddlguard"
		}
	}()
	if run.tap != nil {
		run.tap.take() // start counting with the first case
	}
	for _, c := range cases {
		caseBegin := time.Now()
		res, err := exec(c.sql)
		if err != nil {
			return fmt.Errorf("%s: %v", c.name, err)
		}
		if len(res) != len(c.sql) {
			return fmt.Errorf("%s: %d answers for %d statements: %v", c.name, len(res), len(c.sql), res)
		}
		for j := range res {
			res[j] = res[j].normalize()
		}
		run.results = append(run.results, res)
		if run.tap != nil {
			q, parses, tls := run.tap.take()
			totalQ, totalP = totalQ+q, totalP+parses
			wantQ, wantP := 0, len(c.sql)
			if lane == dpPsql {
				wantQ, wantP = len(c.sql), 0
			}
			if tls || q != wantQ || parses != wantP {
				t.Errorf("%s: %s sent %d Query and %d Parse messages (TLS %v) for %d statements, want %d Query and %d Parse",
					c.name, lane, q, parses, tls, len(c.sql), wantQ, wantP)
			}
		}
		if err := execEach(ctx, run.owner, c.undo...); err != nil {
			return fmt.Errorf("%s: undo: %v", c.name, err)
		}
		run.caseTook = append(run.caseTook, time.Since(caseBegin))
	}
	return nil
}

// dpReadyVersion reads the version from a script's ready line.
func dpReadyVersion(t *testing.T, name, line string) string {
	t.Helper()
	var ready struct {
		Ready   bool   `json:"ready"`
		Version string `json:"version"`
		Impl    string `json:"impl"`
	}
	if err := json.Unmarshal([]byte(line), &ready); err != nil || !ready.Ready {
		t.Fatalf("%s: unexpected first line %q (%v)", name, line, err)
	}
	if ready.Impl != "" {
		return ready.Version + " (" + ready.Impl + ")"
	}
	return ready.Version
}
