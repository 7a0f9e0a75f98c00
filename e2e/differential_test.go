package e2e

// Differential tests: the same scripted protocol conversation, written with
// pgproto3 over a plain TCP socket, once straight to PostgreSQL and once
// through ddlguard (upstream TLS off, so both conversations are plaintext end
// to end). ddlguard promises that a client receives exactly what the server
// sent, so the two transcripts must be equal message by message, after
// normalizing only what legitimately differs between two sessions: the
// BackendKeyData of the session and the process id of a notifying backend.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/ddlguard/ddlguard/e2e/pgcluster"
	"github.com/ddlguard/ddlguard/proxy"
)

// diffTimeout bounds one whole scripted conversation.
const diffTimeout = 10 * time.Second

// diffMarkerPrefix starts transcript lines that are not messages.
const diffMarkerPrefix = "<connection "

// diffWire drives one raw protocol conversation and records, normalized,
// every message the other side sends.
type diffWire struct {
	t     *testing.T
	conn  net.Conn
	fe    *pgproto3.Frontend
	lines []string
	dead  bool
	pid   uint32 // from BackendKeyData, as received
}

// send encodes msgs and writes them in one go.
func (w *diffWire) send(msgs ...pgproto3.FrontendMessage) {
	if w.dead {
		return
	}
	for _, m := range msgs {
		w.fe.Send(m)
	}
	if err := w.fe.Flush(); err != nil {
		w.closed(err)
	}
}

// sendRaw writes bytes that pgproto3 cannot produce.
func (w *diffWire) sendRaw(b []byte) {
	if w.dead {
		return
	}
	if _, err := w.conn.Write(b); err != nil {
		w.closed(err)
	}
}

// receive reads and records one message.
func (w *diffWire) receive() (pgproto3.BackendMessage, bool) {
	if w.dead {
		return nil, false
	}
	msg, err := w.fe.Receive()
	if err != nil {
		w.closed(err)
		return nil, false
	}
	if k, ok := msg.(*pgproto3.BackendKeyData); ok {
		w.pid = k.ProcessID
	}
	w.lines = append(w.lines, diffDescribe(msg))
	return msg, true
}

// next records the next n messages.
func (w *diffWire) next(n int) {
	for i := 0; i < n; i++ {
		if _, ok := w.receive(); !ok {
			return
		}
	}
}

// untilReady records messages up to and including the n-th ReadyForQuery.
func (w *diffWire) untilReady(n int) {
	for n > 0 {
		msg, ok := w.receive()
		if !ok {
			return
		}
		if _, rfq := msg.(*pgproto3.ReadyForQuery); rfq {
			n--
		}
	}
}

// untilClosed records messages until the other side closes.
func (w *diffWire) untilClosed() {
	for !w.dead {
		w.receive()
	}
}

// query sends a simple Query and records its answer.
func (w *diffWire) query(sql string) {
	w.send(&pgproto3.Query{String: sql})
	w.untilReady(1)
}

// closed records how the conversation ended.
func (w *diffWire) closed(err error) {
	w.dead = true
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		w.lines = append(w.lines, diffMarkerPrefix+"closed>")
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		w.lines = append(w.lines, diffMarkerPrefix+"reset>")
	case errors.As(err, &ne) && ne.Timeout():
		w.lines = append(w.lines, diffMarkerPrefix+"TIMED OUT>")
	default:
		w.lines = append(w.lines, diffMarkerPrefix+"error: "+err.Error()+">")
	}
}

// diffDescribe renders a message as "Type {json}", with the per-session
// values normalized.
func diffDescribe(msg pgproto3.BackendMessage) string {
	var v any = msg
	switch m := msg.(type) {
	case *pgproto3.BackendKeyData:
		c := *m
		c.ProcessID = 0
		c.SecretKey = make([]byte, len(m.SecretKey)) // keep only the length
		v = c
	case *pgproto3.NotificationResponse:
		c := *m
		c.PID = 0
		v = c
	}
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%T <json: %v>", msg, err)
	}
	return strings.TrimPrefix(reflect.TypeOf(msg).String(), "*pgproto3.") + " " + string(data)
}

// diffScript is one scripted conversation.
type diffScript struct {
	name string
	// startup replaces the default StartupMessage (protocol 3.0, app_trust
	// to the app database).
	startup *pgproto3.StartupMessage
	// run continues after the startup answer (up to the first
	// ReadyForQuery or the connection's end). Unless it ends the
	// connection, a Terminate follows.
	run func(w *diffWire)
	// want are substrings that must appear, in this order, in lines of the
	// direct transcript: a check that the script exercises what it claims.
	want []string
}

// diffConverse runs s against addr and returns the transcript and the
// session's backend pid (0 when there was none). onReady, when not nil, is
// called once startup has finished.
func diffConverse(t *testing.T, addr string, s diffScript, onReady func(pid uint32)) ([]string, uint32) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(diffTimeout))
	w := &diffWire{t: t, conn: conn, fe: pgproto3.NewFrontend(conn, conn)}

	startup := s.startup
	if startup == nil {
		startup = &pgproto3.StartupMessage{
			ProtocolVersion: pgproto3.ProtocolVersion30,
			Parameters:      map[string]string{"user": pgcluster.RoleTrust, "database": pgcluster.AppDatabase},
		}
	}
	w.send(startup)
	w.untilReady(1)
	if !w.dead && onReady != nil {
		onReady(w.pid)
	}
	if s.run != nil {
		s.run(w)
	}
	if !w.dead {
		w.send(&pgproto3.Terminate{})
		w.untilClosed()
	}
	return w.lines, w.pid
}

// diffRender shows a line, shortened when it is huge.
func diffRender(line string) string {
	const max = 320
	if len(line) <= max {
		return line
	}
	return fmt.Sprintf("%s ...(%d bytes)... %s", line[:max-80], len(line), line[len(line)-60:])
}

// diffLines is a line diff of a (direct, "-") and b (through ddlguard,
// "+") based on their longest common subsequence.
func diffLines(a, b []string) string {
	n, m := len(a), len(b)
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out strings.Builder
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && a[i] == b[j]:
			fmt.Fprintf(&out, "    %3d   %s\n", i+1, diffRender(a[i]))
			i++
			j++
		case j < m && (i == n || lcs[i][j+1] >= lcs[i+1][j]):
			fmt.Fprintf(&out, "  + %3d   %s\n", j+1, diffRender(b[j]))
			j++
		default:
			fmt.Fprintf(&out, "  - %3d   %s\n", i+1, diffRender(a[i]))
			i++
		}
	}
	return out.String()
}

// diffWantInOrder checks that each of want occurs in lines, in order; one
// line may hold several of them.
func diffWantInOrder(lines, want []string) error {
	line, off := 0, 0
	for _, w := range want {
		for {
			if line == len(lines) {
				return fmt.Errorf("%q not found (in order)", w)
			}
			if i := strings.Index(lines[line][off:], w); i >= 0 {
				off += i + len(w)
				break
			}
			line, off = line+1, 0
		}
	}
	return nil
}

// diffEnv is what a differential test needs: ddlguard in front of the
// cluster with upstream TLS off, a direct superuser connection to watch
// backends, and a direct connection to send notifications from.
type diffEnv struct {
	p        *testProxy
	super    *pgx.Conn
	notifier *pgx.Conn
}

func newDiffEnv(t *testing.T) *diffEnv {
	t.Helper()
	return &diffEnv{
		p:        startProxy(t, func(c *proxy.Config) { c.UpstreamTLSMode = proxy.UpstreamTLSDisable }),
		super:    superConn(t, "postgres"),
		notifier: connectDirect(t, cluster, pgcluster.RoleTrust, pgcluster.AppDatabase),
	}
}

// notify sends a notification from the second connection.
func (e *diffEnv) notify(w *diffWire, channel, payload string) {
	if _, err := e.notifier.Exec(context.Background(), "SELECT pg_notify($1, $2)", channel, payload); err != nil {
		w.t.Fatalf("NOTIFY from a second connection: %v", err)
	}
}

// compare runs s directly and through ddlguard and reports every
// difference between the transcripts.
func (e *diffEnv) compare(t *testing.T, s diffScript) {
	t.Helper()
	direct, directPID := diffConverse(t, cluster.Addr(), s, nil)
	waitBackendGone(t, e.super, directPID, 5*time.Second)

	var sessionSeen bool
	proxied, proxiedPID := diffConverse(t, e.p.Addr(), s, func(pid uint32) {
		// ddlguard relays BackendKeyData untouched and knows the session by it.
		for _, sess := range e.p.Server.Sessions() {
			sessionSeen = sessionSeen || sess.BackendPID() == pid
		}
	})
	waitBackendGone(t, e.super, proxiedPID, 5*time.Second)
	waitProxyIdle(t, e.p)
	if proxiedPID != 0 && !sessionSeen {
		t.Errorf("ddlguard has no session for backend pid %d", proxiedPID)
	}

	if err := diffWantInOrder(direct, s.want); err != nil {
		t.Errorf("the direct transcript does not show what the script is for: %v\n%s", err, diffLines(direct, direct))
	}
	for _, tr := range [][]string{direct, proxied} {
		for _, l := range tr {
			if strings.Contains(l, "TIMED OUT") {
				t.Errorf("a conversation timed out after %s (does the script wait for more than the server sends?)", diffTimeout)
			}
		}
	}
	if !reflect.DeepEqual(direct, proxied) {
		t.Errorf("through ddlguard the client saw something else than direct (- direct, + through ddlguard):\n%s",
			diffLines(direct, proxied))
	} else {
		t.Logf("%d messages, identical", len(direct))
	}
}

func TestDifferential(t *testing.T) {
	e := newDiffEnv(t)
	big := strings.Repeat("x", 100_000) // larger than ddlguard's 32 KiB relay buffer

	scripts := []diffScript{
		{
			name: "startup",
			want: []string{"AuthenticationOk", `"Name":"server_version"`, `"Name":"session_authorization","Value":"app_trust"`,
				"BackendKeyData", "ReadyForQuery", "<connection closed>"},
		},
		{
			name: "startup-error",
			startup: &pgproto3.StartupMessage{
				ProtocolVersion: pgproto3.ProtocolVersion30,
				Parameters:      map[string]string{"user": pgcluster.RoleTrust, "database": "ddlguard_no_such_db"},
			},
			want: []string{`"Severity":"FATAL"`, `"Code":"3D000"`, "<connection closed>"},
		},
		{
			name: "simple-multi-statement",
			run: func(w *diffWire) {
				w.query("SELECT 1 AS one, 'two'::text AS two; SELECT g FROM generate_series(1, 3) g; " +
					"SET application_name = 'ddlguard-diff'; SELECT NULL::int AS n, repeat('y', 100000) AS big")
			},
			want: []string{"RowDescription", "DataRow", `"CommandTag":"SELECT 1"`, `"CommandTag":"SELECT 3"`, `"CommandTag":"SET"`,
				"yyyyy", `"Name":"application_name","Value":"ddlguard-diff"`, "ReadyForQuery"},
		},
		{
			name: "error-then-query",
			run: func(w *diffWire) {
				w.query("SELECT 1/0")
				w.query("SELECT 'next' AS after_error")
				w.query("BEGIN; SELECT 1/0")
				w.query("SELECT 1")
				w.query("ROLLBACK")
			},
			want: []string{`"Code":"22012"`, `"TxStatus":"I"`, `"text":"next"`, `"Code":"22012"`, `"TxStatus":"E"`,
				`"Code":"25P02"`, `"CommandTag":"ROLLBACK"`, `"TxStatus":"I"`},
		},
		{
			name: "extended",
			run: func(w *diffWire) {
				w.send(&pgproto3.Parse{Name: "s1", Query: "SELECT $1::int + 1 AS n, $2::text AS t"}, &pgproto3.Flush{})
				w.next(1) // ParseComplete, thanks to Flush, before any Sync
				w.send(
					&pgproto3.Describe{ObjectType: 'S', Name: "s1"},
					&pgproto3.Bind{DestinationPortal: "p1", PreparedStatement: "s1",
						Parameters: [][]byte{[]byte("41"), []byte("hi")}, ResultFormatCodes: []int16{1, 0}},
					&pgproto3.Describe{ObjectType: 'P', Name: "p1"},
					&pgproto3.Execute{Portal: "p1"},
					&pgproto3.Parse{Name: "s2", Query: "SELECT g FROM generate_series(1, 5) g"},
					&pgproto3.Bind{DestinationPortal: "p2", PreparedStatement: "s2"},
					&pgproto3.Execute{Portal: "p2", MaxRows: 2},
					&pgproto3.Execute{Portal: "p2", MaxRows: 2},
					&pgproto3.Execute{Portal: "p2"},
					&pgproto3.Close{ObjectType: 'P', Name: "p1"},
					&pgproto3.Close{ObjectType: 'S', Name: "s1"},
					&pgproto3.Sync{},
				)
				w.untilReady(1)
				// The closed statement is gone.
				w.send(&pgproto3.Bind{PreparedStatement: "s1"}, &pgproto3.Sync{})
				w.untilReady(1)
			},
			want: []string{"ParseComplete", "ParameterDescription", "RowDescription", "BindComplete", "RowDescription",
				`"binary":"0000002a"`, "CommandComplete", "ParseComplete", "BindComplete", "DataRow", "DataRow",
				"PortalSuspended", "DataRow", "DataRow", "PortalSuspended", "DataRow", `"CommandTag":"SELECT 1"`,
				"CloseComplete", "CloseComplete", "ReadyForQuery", `"Code":"26000"`, "ReadyForQuery"},
		},
		{
			name: "pipeline-error-sync-sync",
			run: func(w *diffWire) {
				var msgs []pgproto3.FrontendMessage
				for _, q := range []string{"SELECT 1 AS a", "SELECT 1/g AS b FROM generate_series(0, 0) g", "SELECT 3 AS c"} {
					msgs = append(msgs, &pgproto3.Parse{Query: q}, &pgproto3.Bind{}, &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{})
				}
				msgs = append(msgs, &pgproto3.Sync{}, &pgproto3.Sync{},
					&pgproto3.Parse{Query: "SELECT 4 AS d"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})
				w.send(msgs...)
				w.untilReady(3)
			},
			want: []string{"ParseComplete", "BindComplete", "RowDescription", `"text":"1"`, "CommandComplete",
				"ParseComplete", "BindComplete", "RowDescription", `"Code":"22012"`, "ReadyForQuery", "ReadyForQuery",
				"ParseComplete", "BindComplete", `"text":"4"`, "ReadyForQuery"},
		},
		{
			name: "copy-in",
			run: func(w *diffWire) {
				w.query("CREATE TEMP TABLE diff_copy (a int, b text)")
				w.send(&pgproto3.Query{String: "COPY diff_copy FROM STDIN"})
				w.next(1) // CopyInResponse
				w.send(
					&pgproto3.CopyData{Data: []byte("1\tone\n2\ttwo\n")},
					&pgproto3.CopyData{Data: []byte("3\t" + big + "\n")},
					&pgproto3.CopyData{Data: []byte("4\tfo")},
					&pgproto3.CopyData{Data: []byte("ur\n")},
					&pgproto3.CopyDone{},
				)
				w.untilReady(1)
				w.query("SELECT count(*), sum(a), sum(length(b)), string_agg(left(b, 4), ',' ORDER BY a) FROM diff_copy")
			},
			want: []string{"CopyInResponse", `"CommandTag":"COPY 4"`, `"text":"100010"`, `"text":"one,two,xxxx,four"`},
		},
		{
			name: "copy-fail",
			run: func(w *diffWire) {
				w.query("CREATE TEMP TABLE diff_copy (a int, b text)")
				w.send(&pgproto3.Query{String: "COPY diff_copy FROM STDIN"})
				w.next(1) // CopyInResponse
				w.send(&pgproto3.CopyData{Data: []byte("1\tone\n")}, &pgproto3.CopyFail{Message: "ddlguard differential test gave up"})
				w.untilReady(1)
				w.query("SELECT count(*) FROM diff_copy")
			},
			want: []string{"CopyInResponse", `"Code":"57014"`, "ddlguard differential test gave up", "ReadyForQuery", `"text":"0"`},
		},
		{
			name: "copy-out",
			run: func(w *diffWire) {
				w.query("COPY (SELECT g, repeat(chr(64 + g), g * 3) FROM generate_series(1, 5) g) TO STDOUT")
				w.query("COPY (SELECT repeat('z', 100000)) TO STDOUT")
				w.query("COPY (SELECT 1 AS a, 'b'::text AS b) TO STDOUT (FORMAT binary)")
			},
			want: []string{"CopyOutResponse", "CopyData", "CopyDone", `"CommandTag":"COPY 5"`, "7a7a7a7a7a7a", `"CommandTag":"COPY 1"`,
				"CopyOutResponse", `"CommandTag":"COPY 1"`},
		},
		{
			name: "listen-notify",
			run: func(w *diffWire) {
				w.query("LISTEN ddlguard_diff")
				e.notify(w, "ddlguard_diff", "first")
				w.next(1) // NotificationResponse, arriving while the session is idle
				e.notify(w, "ddlguard_diff", "second")
				w.next(1)
				w.query("SELECT 'after notifications' AS s")
			},
			want: []string{`"CommandTag":"LISTEN"`, `NotificationResponse {"Type":"NotificationResponse","PID":0,"Channel":"ddlguard_diff","Payload":"first"}`,
				`"Payload":"second"`, `"text":"after notifications"`},
		},
		{
			name: "empty-query",
			run: func(w *diffWire) {
				w.query("")
				w.query(" ; ")
				w.send(&pgproto3.Parse{Query: ""}, &pgproto3.Bind{}, &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{})
				w.untilReady(1)
			},
			want: []string{"EmptyQueryResponse", "ReadyForQuery", "EmptyQueryResponse", "ReadyForQuery",
				"ParseComplete", "BindComplete", "NoData", "EmptyQueryResponse", "ReadyForQuery"},
		},
		{
			name: "notice",
			run: func(w *diffWire) {
				w.query("DO $$BEGIN RAISE NOTICE 'ddlguard notice %', 42; END$$")
				w.query("DROP TABLE IF EXISTS ddlguard_no_such_table")
				w.query("SET client_min_messages = warning; DO $$BEGIN RAISE NOTICE 'suppressed'; RAISE WARNING 'shown'; END$$")
			},
			want: []string{`NoticeResponse`, "ddlguard notice 42", `"CommandTag":"DO"`, `does not exist, skipping`,
				`"CommandTag":"DROP TABLE"`, `"Severity":"WARNING"`, `"Message":"shown"`},
		},
		{
			name: "protocol-3.9999",
			startup: &pgproto3.StartupMessage{
				ProtocolVersion: 3<<16 | 9999,
				Parameters: map[string]string{"user": pgcluster.RoleTrust, "database": pgcluster.AppDatabase,
					"_pq_.test_protocol_negotiation": "on"},
			},
			run: func(w *diffWire) { w.query("SELECT 'negotiated' AS s") },
			want: []string{`NegotiateProtocolVersion {"Type":"NegotiateProtocolVersion","NewestMinorProtocol":196608,"UnrecognizedOptions":["_pq_.test_protocol_negotiation"]}`,
				"AuthenticationOk", "BackendKeyData", "ReadyForQuery", `"text":"negotiated"`},
		},
		{
			name: "function-call",
			run: func(w *diffWire) {
				// int4pl(40, 2), function OID 177, binary arguments and result.
				w.send(&pgproto3.FunctionCall{Function: 177, ArgFormatCodes: []uint16{1},
					Arguments: [][]byte{{0, 0, 0, 40}, {0, 0, 0, 2}}, ResultFormatCode: 1})
				w.untilReady(1)
			},
			want: []string{"FunctionCallResponse", "ReadyForQuery"},
		},
		{
			name: "unknown-message-type",
			run: func(w *diffWire) {
				w.query("SELECT 1")
				w.sendRaw([]byte{'?', 0, 0, 0, 4})
				w.untilClosed()
			},
			want: []string{"ReadyForQuery", `"Severity":"FATAL"`, `"Code":"08P01"`, "invalid frontend message type 63", "<connection closed>"},
		},
		{
			name: "terminate",
			run: func(w *diffWire) {
				w.query("SELECT 1")
				w.send(&pgproto3.Terminate{})
				w.untilClosed()
			},
			want: []string{"ReadyForQuery", "<connection closed>"},
		},
	}

	for _, s := range scripts {
		t.Run(s.name, func(t *testing.T) { e.compare(t, s) })
	}
}

// TestDifferentialTerminateAfterQuery pipelines Terminate behind a query
// that is still running when ddlguard relays the Terminate. PostgreSQL
// handles messages in order: it answers the query, then closes. ddlguard
// must relay that answer too instead of closing the upstream leg as soon
// as it has forwarded the Terminate.
func TestDifferentialTerminateAfterQuery(t *testing.T) {
	e := newDiffEnv(t)
	e.compare(t, diffScript{
		name: "query-then-terminate",
		run: func(w *diffWire) {
			// The short sleep makes the answer come after ddlguard has
			// forwarded the Terminate.
			w.send(&pgproto3.Query{String: "SELECT 'answered before close' AS s, pg_sleep(0.1)::text AS slept"}, &pgproto3.Terminate{})
			w.untilClosed()
		},
		want: []string{"RowDescription", `"text":"answered before close"`, "CommandComplete", "ReadyForQuery", "<connection closed>"},
	})
}
