package e2e

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/ddlguard/ddlguard/e2e/pgcluster"
	"github.com/ddlguard/ddlguard/proxy"
)

// pgxLeg says how the two legs of a protocol test are secured.
type pgxLeg int

const (
	plaintextLegs pgxLeg = iota // sslmode=disable, upstream_tls.mode=disable
	tlsLegs                     // sslmode=verify-full, upstream_tls.mode=verify-full
)

// startPgxProxy starts ddlguard for a protocol test and returns the DSN
// options a client needs for it.
func startPgxProxy(t testing.TB, legs pgxLeg) (*testProxy, []string) {
	t.Helper()
	if legs == tlsLegs {
		p := startProxy(t, withUpstreamTLS(t, proxy.UpstreamTLSVerifyFull, cluster.CAFile, ""))
		// Both legs TLS with ddlguard's own certificate: SCRAM needs
		// channel_binding=disable (see TestAuthSCRAMChannelBinding).
		return p, []string{"sslmode", "verify-full", "sslrootcert", cluster.CAFile, "channel_binding", "disable"}
	}
	return startProxy(t, withUpstreamTLS(t, proxy.UpstreamTLSDisable, "", "")), []string{"sslmode", "disable"}
}

// checkLegs fails unless the session of conn has the TLS state legs says.
func checkLegs(t testing.TB, p *testProxy, conn *pgx.Conn, legs pgxLeg) *proxy.Session {
	t.Helper()
	s := sessionByBackendPID(t, p, conn.PgConn().PID())
	if want := legs == tlsLegs; s.TLS != want || s.UpstreamTLS != want {
		t.Fatalf("session TLS=%v UpstreamTLS=%v, want both %v", s.TLS, s.UpstreamTLS, want)
	}
	return s
}

// testContext is a context for one test step.
func testContext(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// checkIdle fails unless ddlguard sees the session idle and owed nothing.
func checkIdle(t testing.TB, s *proxy.Session) {
	t.Helper()
	if s.TxStatus() != proxy.TxIdle || s.Busy() {
		t.Fatalf("session after the exchange: TxStatus %q Busy %v, want 'I' and not busy", s.TxStatus(), s.Busy())
	}
}

// TestPgxSimpleQueryMultiStatement sends several statements in one simple
// Query message and reads every result.
func TestPgxSimpleQueryMultiStatement(t *testing.T) {
	t.Parallel()
	p, kv := startPgxProxy(t, plaintextLegs)
	conn := p.Connect(t, pgcluster.RoleSCRAM, pgcluster.AppDatabase, kv...)
	s := checkLegs(t, p, conn, plaintextLegs)
	ctx := testContext(t, 10*time.Second)

	results, err := conn.PgConn().Exec(ctx, "SELECT 1; SELECT 2").ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 2 {
		t.Fatalf("got %d results, want 2", len(results))
	}
	for i, r := range results {
		want := strconv.Itoa(i + 1)
		if r.Err != nil || len(r.Rows) != 1 || string(r.Rows[0][0]) != want || r.CommandTag.String() != "SELECT 1" {
			t.Fatalf("result %d: rows %q tag %q err %v, want one row %q", i, r.Rows, r.CommandTag, r.Err, want)
		}
	}
	checkIdle(t, s)

	// An error stops the rest of the string; the connection goes on.
	results, err = conn.PgConn().Exec(ctx, "SELECT 'a'; SELECT 1/0; SELECT 'never'").ReadAll()
	if pe := pgErrorOf(err); pe == nil || pe.Code != "22012" {
		t.Fatalf("want division_by_zero, got %v", err)
	}
	if len(results) == 0 || len(results[0].Rows) != 1 || string(results[0].Rows[0][0]) != "a" {
		t.Fatalf("first result of the failed string: %+v", results)
	}
	for _, r := range results[1:] {
		if len(r.Rows) != 0 {
			t.Fatalf("a statement after the error returned rows %q", r.Rows)
		}
	}
	checkIdle(t, s)
	if got := queryString(t, conn, "SELECT 'still usable'"); got != "still usable" {
		t.Fatalf("got %q", got)
	}
}

// pipelineStep reads the next pipeline result: "prepare", "result" (with
// the rows), "sync", "error" (with the error) or "none".
func pipelineStep(t testing.TB, pl *pgconn.Pipeline) (string, *pgconn.Result, error) {
	t.Helper()
	r, err := pl.GetResults()
	if err != nil {
		return "error", nil, err
	}
	switch v := r.(type) {
	case nil:
		return "none", nil, nil
	case *pgconn.StatementDescription:
		return "prepare", nil, nil
	case *pgconn.ResultReader:
		res := v.Read()
		if res.Err != nil {
			return "error", res, res.Err
		}
		return "result", res, nil
	case *pgconn.PipelineSync:
		return "sync", nil, nil
	default:
		t.Fatalf("unexpected pipeline result %T", r)
		return "", nil, nil
	}
}

// TestPgxPipeline sends many extended-protocol requests with one Sync, then
// a pipeline with an error in the middle.
func TestPgxPipeline(t *testing.T) {
	t.Parallel()
	p, kv := startPgxProxy(t, tlsLegs)
	conn := p.Connect(t, pgcluster.RoleSCRAM, pgcluster.AppDatabase, kv...)
	s := checkLegs(t, p, conn, tlsLegs)
	ctx := testContext(t, 20*time.Second)
	pc := conn.PgConn()

	const n = 400
	pl := pc.StartPipeline(ctx)
	pl.SendPrepare("pipeline_double", "SELECT $1::int4 * 2", nil)
	for i := range n {
		arg := [][]byte{[]byte(strconv.Itoa(i))}
		if i%2 == 0 {
			pl.SendQueryParams("SELECT $1::int4 + 1", arg, nil, nil, nil)
		} else {
			pl.SendQueryPrepared("pipeline_double", arg, nil, nil)
		}
	}
	if err := pl.Sync(); err != nil {
		t.Fatal(err)
	}
	if kind, _, err := pipelineStep(t, pl); kind != "prepare" {
		t.Fatalf("first result %s (%v), want the prepared statement", kind, err)
	}
	for i := range n {
		want := i + 1
		if i%2 == 1 {
			want = i * 2
		}
		kind, res, err := pipelineStep(t, pl)
		if kind != "result" || len(res.Rows) != 1 || string(res.Rows[0][0]) != strconv.Itoa(want) {
			t.Fatalf("request %d: %s %v (%v), want %d", i, kind, res, err, want)
		}
	}
	if kind, _, err := pipelineStep(t, pl); kind != "sync" {
		t.Fatalf("after the requests: %s (%v), want the sync", kind, err)
	}
	if kind, _, err := pipelineStep(t, pl); kind != "none" {
		t.Fatalf("after the sync: %s (%v), want nothing", kind, err)
	}
	if err := pl.Close(); err != nil {
		t.Fatal(err)
	}
	checkIdle(t, s)

	// An error in the middle: the server skips everything up to the Sync
	// and rolls back the implicit transaction; the next Sync works.
	if _, err := conn.Exec(ctx, "CREATE TEMP TABLE pipeline_rows (id int)"); err != nil {
		t.Fatal(err)
	}
	pl = pc.StartPipeline(ctx)
	pl.SendQueryParams("INSERT INTO pipeline_rows VALUES (1)", nil, nil, nil, nil)
	pl.SendQueryParams("SELECT 1/0", nil, nil, nil, nil)
	pl.SendQueryParams("INSERT INTO pipeline_rows VALUES (2)", nil, nil, nil, nil)
	pl.SendQueryParams("SELECT 'skipped'", nil, nil, nil, nil)
	pl.SendPipelineSync()
	pl.SendQueryParams("INSERT INTO pipeline_rows VALUES (3)", nil, nil, nil, nil)
	pl.SendQueryParams("SELECT 'after'", nil, nil, nil, nil)
	if err := pl.Sync(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		kind, res, err := pipelineStep(t, pl)
		if kind == "none" {
			break
		}
		switch kind {
		case "error":
			if pe := pgErrorOf(err); pe == nil || pe.Code != "22012" {
				t.Fatalf("pipeline error %v, want division_by_zero", err)
			}
		case "result":
			kind += " " + res.CommandTag.String()
			if len(res.Rows) == 1 {
				kind += " " + string(res.Rows[0][0])
			}
		}
		got = append(got, kind)
	}
	want := []string{"result INSERT 0 1", "error", "sync", "result INSERT 0 1", "result SELECT 1 after", "sync"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("pipeline results\n got %q\nwant %q", got, want)
	}
	if err := pl.Close(); err != nil {
		t.Fatal(err)
	}
	checkIdle(t, s)
	if ids := queryString(t, conn, "SELECT array_agg(id ORDER BY id)::text FROM pipeline_rows"); ids != "{3}" {
		t.Fatalf("rows %s, want {3}: statements after the error ran or the failed block committed", ids)
	}
}

// TestPgxBatchAndPreparedStatements covers pgx.Batch and prepared
// statements, named and unnamed, each reused many times.
func TestPgxBatchAndPreparedStatements(t *testing.T) {
	t.Parallel()
	p, kv := startPgxProxy(t, plaintextLegs)
	conn := p.Connect(t, pgcluster.RoleMD5, pgcluster.AppDatabase, kv...)
	s := checkLegs(t, p, conn, plaintextLegs)
	ctx := testContext(t, 20*time.Second)

	t.Run("Batch", func(t *testing.T) {
		// pgx describes every batch statement before running any, so the
		// table must exist first.
		if _, err := conn.Exec(ctx, "CREATE TEMP TABLE batch_rows (id int8, sq int8)"); err != nil {
			t.Fatal(err)
		}
		b := &pgx.Batch{}
		const n = 200
		for i := range n {
			b.Queue("INSERT INTO batch_rows VALUES ($1::int8, $1::int8 * $1::int8) RETURNING sq", int64(i))
		}
		b.Queue("SELECT count(*), sum(sq) FROM batch_rows")
		br := conn.SendBatch(ctx, b)
		for i := range n {
			var sq int64
			if err := br.QueryRow().Scan(&sq); err != nil || sq != int64(i*i) {
				t.Fatalf("insert %d returned %d, %v", i, sq, err)
			}
		}
		var count, sum int64
		if err := br.QueryRow().Scan(&count, &sum); err != nil {
			t.Fatal(err)
		}
		if err := br.Close(); err != nil {
			t.Fatal(err)
		}
		if want := int64((n - 1) * n * (2*n - 1) / 6); count != n || sum != want {
			t.Fatalf("count %d sum %d, want %d and %d", count, sum, n, want)
		}
		checkIdle(t, s)
	})

	t.Run("Named", func(t *testing.T) {
		sd, err := conn.Prepare(ctx, "mul_named", "SELECT $1::int8 * $2::int8")
		if err != nil {
			t.Fatal(err)
		}
		if sd.Name != "mul_named" || len(sd.ParamOIDs) != 2 {
			t.Fatalf("statement description %+v", sd)
		}
		for i := range 500 {
			var v int64
			if err := conn.QueryRow(ctx, "mul_named", i, 7).Scan(&v); err != nil || v != int64(7*i) {
				t.Fatalf("execution %d: %d, %v", i, v, err)
			}
		}
		var known bool
		if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_prepared_statements WHERE name = 'mul_named')").Scan(&known); err != nil || !known {
			t.Fatalf("the server does not know mul_named: %v %v", known, err)
		}
		if err := conn.Deallocate(ctx, "mul_named"); err != nil {
			t.Fatal(err)
		}
		if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_prepared_statements WHERE name = 'mul_named')").Scan(&known); err != nil || known {
			t.Fatalf("mul_named survived Deallocate: %v %v", known, err)
		}
		checkIdle(t, s)
	})

	t.Run("Unnamed", func(t *testing.T) {
		pc := conn.PgConn()
		if _, err := pc.Prepare(ctx, "", "SELECT $1::text || '!'", nil); err != nil {
			t.Fatal(err)
		}
		for i := range 500 {
			arg := "v" + strconv.Itoa(i)
			res := pc.ExecPrepared(ctx, "", [][]byte{[]byte(arg)}, nil, nil).Read()
			if res.Err != nil || len(res.Rows) != 1 || string(res.Rows[0][0]) != arg+"!" {
				t.Fatalf("execution %d of the unnamed statement: %q %v", i, res.Rows, res.Err)
			}
		}
		// ExecParams parses into the unnamed statement every time.
		for i := range 500 {
			res := pc.ExecParams(ctx, "SELECT $1::int4 - 1", [][]byte{[]byte(strconv.Itoa(i))}, nil, nil, nil).Read()
			if res.Err != nil || len(res.Rows) != 1 || string(res.Rows[0][0]) != strconv.Itoa(i-1) {
				t.Fatalf("ExecParams %d: %q %v", i, res.Rows, res.Err)
			}
		}
		checkIdle(t, s)
	})
}

// countingHash hashes and counts what is written to it.
type countingHash struct {
	h hash.Hash
	n int64
}

func (c *countingHash) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return c.h.Write(p)
}

// TestPgxCopy copies several megabytes in and out and compares checksums
// computed by the client and by the server.
func TestPgxCopy(t *testing.T) {
	t.Parallel()
	p, kv := startPgxProxy(t, tlsLegs)
	conn := p.Connect(t, pgcluster.RoleSCRAM, pgcluster.AppDatabase, kv...)
	s := checkLegs(t, p, conn, tlsLegs)
	ctx := testContext(t, 30*time.Second)
	pc := conn.PgConn()

	const rows = 200_000
	rng := rand.New(rand.NewPCG(1, 2))
	var data bytes.Buffer
	var raw [24]byte
	for i := range rows {
		for j := 0; j < len(raw); j += 8 {
			binary.LittleEndian.PutUint64(raw[j:], rng.Uint64())
		}
		data.WriteString(strconv.Itoa(i))
		data.WriteByte('\t')
		data.WriteString(hex.EncodeToString(raw[:]))
		data.WriteByte('\n')
	}
	if data.Len() <= 8<<20 {
		t.Fatalf("test data is only %d bytes", data.Len())
	}
	sum := md5.Sum(data.Bytes())
	wantSum := hex.EncodeToString(sum[:])

	if _, err := conn.Exec(ctx, "CREATE TEMP TABLE copy_rows (id int PRIMARY KEY, payload text NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	tag, err := pc.CopyFrom(ctx, bytes.NewReader(data.Bytes()), "COPY copy_rows (id, payload) FROM STDIN")
	if err != nil {
		t.Fatal(err)
	}
	if tag.RowsAffected() != rows {
		t.Fatalf("COPY FROM: %s, want %d rows", tag, rows)
	}
	checkIdle(t, s)

	var count int64
	var serverSum string
	err = conn.QueryRow(ctx, `SELECT count(*), md5(string_agg(id::text || E'\t' || payload || E'\n', '' ORDER BY id)) FROM copy_rows`).Scan(&count, &serverSum)
	if err != nil {
		t.Fatal(err)
	}
	if count != rows || serverSum != wantSum {
		t.Fatalf("server has %d rows with md5 %s, client sent %d rows with md5 %s", count, serverSum, rows, wantSum)
	}

	out := &countingHash{h: md5.New()}
	tag, err = pc.CopyTo(ctx, out, "COPY (SELECT id, payload FROM copy_rows ORDER BY id) TO STDOUT")
	if err != nil {
		t.Fatal(err)
	}
	if tag.RowsAffected() != rows {
		t.Fatalf("COPY TO: %s, want %d rows", tag, rows)
	}
	if got := hex.EncodeToString(out.h.Sum(nil)); out.n != int64(data.Len()) || got != wantSum {
		t.Fatalf("COPY TO gave %d bytes with md5 %s, want %d bytes with md5 %s", out.n, got, data.Len(), wantSum)
	}
	checkIdle(t, s)
}

// TestPgxListenNotify delivers a notification from another connection to a
// listener idle in WaitForNotification.
func TestPgxListenNotify(t *testing.T) {
	t.Parallel()
	p, kv := startPgxProxy(t, plaintextLegs)
	listener := p.Connect(t, pgcluster.RoleSCRAM, pgcluster.AppDatabase, kv...)
	notifier := p.Connect(t, pgcluster.RoleTrust, pgcluster.AppDatabase, kv...)
	ls := checkLegs(t, p, listener, plaintextLegs)
	ctx := testContext(t, 10*time.Second)

	if _, err := listener.Exec(ctx, "LISTEN ddlguard_e2e"); err != nil {
		t.Fatal(err)
	}
	type received struct {
		n   *pgconn.Notification
		err error
		at  time.Time
	}
	got := make(chan received, 1)
	go func() {
		n, err := listener.WaitForNotification(ctx)
		got <- received{n, err, time.Now()}
	}()

	// The listener sits idle; nothing is owed to it.
	time.Sleep(300 * time.Millisecond)
	select {
	case r := <-got:
		t.Fatalf("WaitForNotification returned before any NOTIFY: %+v", r)
	default:
	}
	checkIdle(t, ls)

	sent := time.Now()
	if _, err := notifier.Exec(ctx, "SELECT pg_notify('ddlguard_e2e', 'payload through ddlguard')"); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.n.Channel != "ddlguard_e2e" || r.n.Payload != "payload through ddlguard" || r.n.PID != notifier.PgConn().PID() {
			t.Fatalf("notification %+v, want channel ddlguard_e2e from pid %d", r.n, notifier.PgConn().PID())
		}
		if d := r.at.Sub(sent); d > 2*time.Second {
			t.Fatalf("notification took %s to arrive", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no notification reached the idle listener through ddlguard")
	}
	if got := queryString(t, listener, "SELECT 'listener usable'"); got != "listener usable" {
		t.Fatal(got)
	}
}

// TestPgxNoticeAndParameterStatus checks NoticeResponse and ParameterStatus
// relaying, and what the Session keeps of them.
func TestPgxNoticeAndParameterStatus(t *testing.T) {
	t.Parallel()
	p, kv := startPgxProxy(t, tlsLegs)
	cfg, err := pgx.ParseConfig(p.DSN(pgcluster.RoleSCRAM, pgcluster.AppDatabase, append(kv, "application_name", "pgx-startup")...))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var notices []*pgconn.Notice
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		mu.Lock()
		notices = append(notices, n)
		mu.Unlock()
	}
	ctx := testContext(t, 10*time.Second)
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	s := checkLegs(t, p, conn, tlsLegs)
	pc := conn.PgConn()

	if _, err := conn.Exec(ctx, `DO $$BEGIN RAISE NOTICE 'ddlguard notice %', 42; RAISE WARNING 'ddlguard warning'; END$$`); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	got := append([]*pgconn.Notice(nil), notices...)
	mu.Unlock()
	if len(got) != 2 ||
		got[0].Severity != "NOTICE" || got[0].Code != "00000" || got[0].Message != "ddlguard notice 42" ||
		got[1].Severity != "WARNING" || got[1].Code != "01000" || got[1].Message != "ddlguard warning" {
		t.Fatalf("notices %+v", got)
	}

	if v := pc.ParameterStatus("application_name"); v != "pgx-startup" {
		t.Fatalf("application_name at startup %q", v)
	}
	if _, err := conn.Exec(ctx, "SET application_name = 'pgx-changed'"); err != nil {
		t.Fatal(err)
	}
	if v := pc.ParameterStatus("application_name"); v != "pgx-changed" {
		t.Fatalf("after SET, ParameterStatus(application_name) = %q", v)
	}
	// A SET undone by ROLLBACK is reported again.
	if _, err := conn.Exec(ctx, "BEGIN; SET application_name = 'pgx-rolled-back'; SET TimeZone = 'Asia/Tokyo'; ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	if v := pc.ParameterStatus("application_name"); v != "pgx-changed" {
		t.Fatalf("after ROLLBACK, ParameterStatus(application_name) = %q", v)
	}
	if _, err := conn.Exec(ctx, "SET TimeZone = 'Asia/Tokyo'"); err != nil {
		t.Fatal(err)
	}
	if v := pc.ParameterStatus("TimeZone"); v != "Asia/Tokyo" {
		t.Fatalf("ParameterStatus(TimeZone) = %q", v)
	}

	if s.ApplicationName != "pgx-startup" {
		t.Errorf("session ApplicationName = %q, want the startup value", s.ApplicationName)
	}
	version := queryString(t, conn, "SHOW server_version")
	if s.ServerVersion() != version || pc.ParameterStatus("server_version") != version {
		t.Errorf("session ServerVersion %q, client's %q, SHOW server_version %q",
			s.ServerVersion(), pc.ParameterStatus("server_version"), version)
	}
	checkIdle(t, s)
}

// TestPgxLargeValues moves values larger than 16 MiB both ways.
func TestPgxLargeValues(t *testing.T) {
	t.Parallel()
	p, kv := startPgxProxy(t, tlsLegs)
	conn := p.Connect(t, pgcluster.RoleSCRAM, pgcluster.AppDatabase, kv...)
	s := checkLegs(t, p, conn, tlsLegs)
	ctx := testContext(t, 30*time.Second)

	const textLen = 17 << 20
	var text string
	if err := conn.QueryRow(ctx, "SELECT repeat('x', $1::int)", textLen).Scan(&text); err != nil {
		t.Fatal(err)
	}
	if len(text) != textLen || strings.Count(text, "x") != textLen {
		t.Fatalf("got %d bytes (%d x), want %d x", len(text), strings.Count(text, "x"), textLen)
	}

	blob := make([]byte, 20<<20)
	rand.NewChaCha8([32]byte{7}).Read(blob)
	sum := md5.Sum(blob)
	var back []byte
	var serverSum string
	var serverLen int
	if err := conn.QueryRow(ctx, "SELECT $1::bytea, md5($1::bytea), length($1::bytea)", blob).Scan(&back, &serverSum, &serverLen); err != nil {
		t.Fatal(err)
	}
	if serverLen != len(blob) || serverSum != hex.EncodeToString(sum[:]) {
		t.Fatalf("server got %d bytes with md5 %s, client sent %d with md5 %x", serverLen, serverSum, len(blob), sum)
	}
	if !bytes.Equal(back, blob) {
		t.Fatalf("bytea read back differs (%d bytes, want %d)", len(back), len(blob))
	}
	checkIdle(t, s)
}

// TestPgxFunctionCall uses the function call sub-protocol over a raw
// pgproto3 connection through ddlguard.
func TestPgxFunctionCall(t *testing.T) {
	t.Parallel()
	p := startProxy(t)
	rc := dialRaw(t, p.Addr())
	rc.startup(t, pgproto3.ProtocolVersion30, map[string]string{"database": pgcluster.AppDatabase, "application_name": "fastpath"})
	if rc.txStatus != 'I' {
		t.Fatalf("startup ended with status %q", rc.txStatus)
	}
	if rc.pid == 0 {
		t.Fatalf("no BackendKeyData among the startup messages %v", rc.summary)
	}
	fe := rc.fe
	s := sessionByBackendPID(t, p, rc.pid)
	if s.TLS || s.ApplicationName != "fastpath" {
		t.Fatalf("session TLS=%v application_name=%q", s.TLS, s.ApplicationName)
	}

	fe.Send(&pgproto3.Query{String: "SELECT 'int4pl'::regproc::oid"})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	row, _ := rawReceive[*pgproto3.DataRow](t, fe)
	oid, err := strconv.ParseUint(string(row.Values[0]), 10, 32)
	if err != nil {
		t.Fatalf("oid of int4pl: %q: %v", row.Values[0], err)
	}
	rawReceive[*pgproto3.ReadyForQuery](t, fe)

	int4 := func(v int32) []byte { return binary.BigEndian.AppendUint32(nil, uint32(v)) }
	for _, c := range []struct{ a, b int32 }{{40, 2}, {-7, 3}, {1 << 30, 12345}} {
		fe.Send(&pgproto3.FunctionCall{
			Function:         uint32(oid),
			ArgFormatCodes:   []uint16{1},
			Arguments:        [][]byte{int4(c.a), int4(c.b)},
			ResultFormatCode: 1,
		})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		res, _ := rawReceive[*pgproto3.FunctionCallResponse](t, fe)
		if !bytes.Equal(res.Result, int4(c.a+c.b)) {
			t.Fatalf("int4pl(%d, %d) = %x, want %d", c.a, c.b, res.Result, c.a+c.b)
		}
		if z, _ := rawReceive[*pgproto3.ReadyForQuery](t, fe); z.TxStatus != 'I' {
			t.Fatalf("status after the call %q", z.TxStatus)
		}
		checkIdle(t, s)
	}

	// Text arguments and result.
	fe.Send(&pgproto3.FunctionCall{Function: uint32(oid), Arguments: [][]byte{[]byte("20"), []byte("22")}})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	if res, _ := rawReceive[*pgproto3.FunctionCallResponse](t, fe); string(res.Result) != "42" {
		t.Fatalf("text int4pl(20, 22) = %q", res.Result)
	}
	rawReceive[*pgproto3.ReadyForQuery](t, fe)
	checkIdle(t, s)

	fe.Send(&pgproto3.Terminate{})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	// ddlguard and the backend hang up. (That nothing at all arrives first
	// is TestPgxTerminateNoSpuriousFatal's business.)
	if _, err := io.ReadAll(rc); err != nil {
		t.Fatalf("connection not closed after Terminate: %v", err)
	}
}

// TestPgxTxStatus follows the transaction status ddlguard tracks.
func TestPgxTxStatus(t *testing.T) {
	t.Parallel()
	p, kv := startPgxProxy(t, tlsLegs)
	conn := p.Connect(t, pgcluster.RoleSCRAM, pgcluster.AppDatabase, kv...)
	ctx := testContext(t, 10*time.Second)
	var pid uint32
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	s := sessionByBackendPID(t, p, pid)
	for _, step := range []struct {
		sql     string
		wantErr bool
		want    byte
	}{
		{"SELECT 1", false, proxy.TxIdle},
		{"BEGIN", false, proxy.TxInBlock},
		{"SELECT 2", false, proxy.TxInBlock},
		{"SELECT 1/0", true, proxy.TxFailed},
		{"SELECT 3", true, proxy.TxFailed},
		{"ROLLBACK", false, proxy.TxIdle},
		{"BEGIN; SELECT 1", false, proxy.TxInBlock},
		{"COMMIT", false, proxy.TxIdle},
	} {
		_, err := conn.Exec(ctx, step.sql)
		if (err != nil) != step.wantErr {
			t.Fatalf("%s: error %v", step.sql, err)
		}
		if got := s.TxStatus(); got != step.want {
			t.Fatalf("after %q: session TxStatus %q, want %q", step.sql, got, step.want)
		}
		if got := conn.PgConn().TxStatus(); got != step.want {
			t.Fatalf("after %q: client TxStatus %q, want %q", step.sql, got, step.want)
		}
		if s.Busy() {
			t.Fatalf("after %q: session busy", step.sql)
		}
	}
}

// TestPgxCancel cancels a running statement through a cancelled context.
func TestPgxCancel(t *testing.T) {
	t.Parallel()

	// With CancelRequestContextWatcherHandler pgconn sends a CancelRequest
	// (over TLS, to ddlguard) and waits for the server's answer: the query
	// fails with 57014 and the connection stays usable.
	t.Run("CancelRequest", func(t *testing.T) {
		t.Parallel()
		p, kv := startPgxProxy(t, tlsLegs)
		cfg, err := pgx.ParseConfig(p.DSN(pgcluster.RoleSCRAM, pgcluster.AppDatabase, kv...))
		if err != nil {
			t.Fatal(err)
		}
		cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
			return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, DeadlineDelay: 5 * time.Second}
		}
		conn, err := pgx.ConnectConfig(testContext(t, 10*time.Second), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close(context.Background()) })
		s := checkLegs(t, p, conn, tlsLegs)

		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		time.AfterFunc(300*time.Millisecond, cancel)
		start := time.Now()
		_, err = conn.Exec(ctx, "SELECT pg_sleep(30)")
		elapsed := time.Since(start)
		if elapsed > 2*time.Second || elapsed < 300*time.Millisecond {
			t.Fatalf("cancelled query returned after %s", elapsed)
		}
		pe := pgErrorOf(err)
		if pe == nil || pe.Code != "57014" {
			t.Fatalf("want query_canceled (57014), got %v", err)
		}
		if conn.IsClosed() {
			t.Fatal("pgx closed the connection after a CancelRequest")
		}
		if got := queryString(t, conn, "SELECT 'usable after cancel'"); got != "usable after cancel" {
			t.Fatal(got)
		}
		checkIdle(t, s)
		want := `"msg":"cancel request","client":`
		logs := p.Logs()
		if !strings.Contains(logs, want) || !strings.Contains(logs, fmt.Sprintf(`"backend_pid":%d,"known_key":true`, conn.PgConn().PID())) {
			t.Fatalf("ddlguard did not log the cancel request for pid %d:\n%s", conn.PgConn().PID(), logs)
		}
	})

	// pgx's default handler gives up on the connection: the query returns
	// context.Canceled and the connection is closed (pgconn cancels the
	// backend on its way out). The backend must not sleep on for 30 s.
	t.Run("DefaultHandler", func(t *testing.T) {
		t.Parallel()
		p, kv := startPgxProxy(t, plaintextLegs)
		conn := p.Connect(t, pgcluster.RoleSCRAM, pgcluster.AppDatabase, kv...)
		pid := conn.PgConn().PID()
		super := superConn(t, "postgres")

		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		time.AfterFunc(300*time.Millisecond, cancel)
		start := time.Now()
		_, err := conn.Exec(ctx, "SELECT pg_sleep(30)")
		if elapsed := time.Since(start); elapsed > 2*time.Second {
			t.Fatalf("cancelled query returned after %s", elapsed)
		}
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("want context.Canceled, got %v", err)
		}
		if !conn.IsClosed() {
			t.Fatal("pgx kept the connection open after a deadline-interrupted query")
		}
		waitBackendGone(t, super, pid, 5*time.Second)
		waitProxyIdle(t, p)
	})
}

// TestPgxTerminate closes a connection with Terminate and checks that
// ddlguard and the backend both let go.
func TestPgxTerminate(t *testing.T) {
	t.Parallel()
	p, kv := startPgxProxy(t, plaintextLegs)
	super := superConn(t, "postgres")
	ctx := testContext(t, 10*time.Second)
	conn, err := pgx.Connect(ctx, p.DSN(pgcluster.RoleSCRAM, pgcluster.AppDatabase, kv...))
	if err != nil {
		t.Fatal(err)
	}
	pid := conn.PgConn().PID()
	if p.Server.ConnCount() != 1 || !backendAlive(t, super, pid) {
		t.Fatalf("before Close: %d ddlguard connections, backend %d exists %v", p.Server.ConnCount(), pid, backendAlive(t, super, pid))
	}
	if err := conn.Close(ctx); err != nil {
		t.Fatal(err)
	}
	waitProxyIdle(t, p)
	waitBackendGone(t, super, pid, 5*time.Second)
	if len(p.Server.Sessions()) != 0 {
		t.Fatal("a session outlived its connection")
	}
}

// TestPgxTerminateNoSpuriousFatal says goodbye many times from raw clients
// that read until EOF after Terminate, as libpq-style clients may: ddlguard
// must send them nothing more and log every close as the client's doing.
// The race it looks for (the backend closing after a relayed Terminate
// before ddlguard notes that the client asked for it) shows up in a few
// percent of connections, so the test makes a few hundred.
func TestPgxTerminateNoSpuriousFatal(t *testing.T) {
	t.Parallel()
	p := startProxy(t, withUpstreamTLS(t, proxy.UpstreamTLSRequire, "", ""))
	const workers, perWorker = 8, 32
	var mu sync.Mutex
	var spurious []string
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perWorker {
				got, err := terminateRaw(p.Addr())
				if err != nil {
					t.Error(err)
					return
				}
				if len(got) > 0 {
					mu.Lock()
					spurious = append(spurious, fmt.Sprintf("%q", got))
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	waitProxyIdle(t, p)

	closes, wrong := 0, 0
	var example string
	for _, line := range strings.Split(p.Logs(), "\n") {
		if !strings.Contains(line, `"msg":"connection closed"`) {
			continue
		}
		closes++
		if !strings.Contains(line, `"reason":"client terminated"`) {
			wrong++
			example = line
		}
	}
	if closes != workers*perWorker {
		t.Errorf("%d closes logged, want %d", closes, workers*perWorker)
	}
	if wrong > 0 {
		t.Errorf("%d of %d connections ended by Terminate were logged with another reason, e.g.\n%s", wrong, closes, example)
	}
	if len(spurious) > 0 {
		t.Errorf("%d of %d clients received data after their Terminate, e.g. %s", len(spurious), workers*perWorker, spurious[0])
	}
}

// terminateRaw opens a plaintext app_trust session, sends Terminate and
// returns whatever arrives before EOF.
func terminateRaw(addr string) ([]byte, error) {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	rc := newRawConn(nc)
	if err := rc.handshake(pgproto3.ProtocolVersion30, map[string]string{"database": pgcluster.AppDatabase}); err != nil {
		return nil, err
	}
	rc.fe.Send(&pgproto3.Terminate{})
	if err := rc.fe.Flush(); err != nil {
		return nil, err
	}
	rest, err := io.ReadAll(nc)
	if err != nil {
		return rest, fmt.Errorf("reading after Terminate: %w", err)
	}
	return rest, nil
}
