package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/ddlguard/ddlguard/guard"
)

// Fuzz targets for the frontend messages ddlguard decodes: Query, Parse,
// Bind (in the relay, through the guard) and CancelRequest (in the startup
// phase). The relay ones run the real pumps against a fake upstream (see
// relayHarness) and check, besides "no panic, no hang", the two promises
// of the product: nothing is let through (a statement the guard rejects
// never reaches the server as the client wrote it; one that needs the lock
// timeout reaches it only after ddlguard's SET lock_timeout) and the
// protocol stays in step (the client gets exactly one ReadyForQuery per
// Query or Sync, whole frames only).

var fuzzGuard = sync.OnceValue(func() *guard.Guard {
	g, err := guard.New(guard.DefaultConfig())
	if err != nil {
		panic(err)
	}
	return g
})

// fuzzSQLSeeds cover every action of the default configuration.
var fuzzSQLSeeds = []string{
	"SELECT 1",
	"INSERT INTO t VALUES (1)",
	"ALTER TABLE t ADD COLUMN c int", // timeout
	"ALTER TABLE t ADD COLUMN c timestamptz DEFAULT clock_timestamp()", // reject (rewrite)
	"CREATE INDEX i ON t (a)", // rewrite (CONCURRENTLY)
	"DROP TABLE t",            // reject
	"BEGIN; ALTER TABLE t ADD COLUMN c int; COMMIT", // timeout in a block
	"ALTER TABLE t ALTER COLUMN c SET NOT NULL",     // rewrite
	"VACUUM FULL t", // reject
	"ALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (a) REFERENCES u (a)",
	"ALTER TABLE t ADD COLUMN c int; DROP TABLE u",
	"COPY t FROM STDIN",
	"ALTER TABLE t RENAME TO u /* ddlguard:allow rename reason=\"x\" */",
	"ALTER TABLE t ADD COLUMN c int GENERATED ALWAYS AS IDENTITY",
	"",
	";",
}

// serverView is what the server would run for a Query body: its string,
// when the message is well-formed (one NUL, at the end).
func serverView(body []byte) (string, bool) {
	if len(body) == 0 || body[len(body)-1] != 0 || bytes.IndexByte(body, 0) != len(body)-1 {
		return "", false
	}
	return string(body[:len(body)-1]), true
}

// referenceSession is the guard session a fresh relayHarness connection
// decides its first statement in.
func referenceSession() *guard.Session {
	return &guard.Session{ServerMajor: 15, Role: "fuzz", Database: "fuzz"}
}

// checkLetThrough checks the upstream's frames against the guard's
// reference decision for sql: rejected statements never arrive as
// written; statements that need the lock timeout arrive only after a SET
// lock_timeout. sent reports whether each received frame carries sql
// (a Query of it, or a Parse of it).
func checkLetThrough(t *testing.T, sql string, received []wireFrame, sent func(wireFrame) bool) {
	t.Helper()
	res := fuzzGuard().Decide(sql, referenceSession(), guard.NoFacts{})
	rejected, timeout, copyStmt := false, false, false
	for _, d := range res.Statements {
		switch {
		case d.Action == guard.Reject, d.Action == guard.Rewrite && len(res.Statements) > 1:
			rejected = true
		case d.Action == guard.Timeout:
			timeout = true
		}
		copyStmt = copyStmt || d.Kind == "COPY"
	}
	if len(res.Statements) == 1 && res.Action == guard.Rewrite {
		// The safe sequence runs instead; it may end with the statement
		// itself, made cheap by the steps before it (SET NOT NULL after
		// a validated CHECK), under the lock timeout.
		rejected = true
		for _, step := range res.Statements[0].Deciding.Rewrite {
			if step == sql {
				rejected, timeout = false, true
			}
		}
	}
	var lt serverTimeout
	for _, fr := range received {
		lt.see(fr)
		if !sent(fr) {
			continue
		}
		if rejected {
			t.Fatalf("%q (guard: %s) reached the server as written", sql, res.Action)
		}
		if timeout && !lt.on() && !copyStmt {
			t.Fatalf("%q (guard: timeout) reached the server without a lock timeout; server got %s", sql, frameTypes(received))
		}
	}
}

// lockTimeoutSet reads one of ddlguard's hidden lock_timeout statements:
// ok when body is one, on when it sets ddlguard's short timeout (the
// restore sets the session's previous value, "0" with the fake upstream).
func lockTimeoutSet(body []byte) (on, ok bool) {
	q, _ := serverView(body)
	v, ok := strings.CutPrefix(q, "SET lock_timeout = ")
	if !ok {
		v, ok = strings.CutPrefix(q, "SET LOCAL lock_timeout = ")
	}
	v, _, _ = strings.Cut(v, "; ") // SET LOCAL in front of the client's string
	return ok && v != "'0'" && strings.HasSuffix(v, "ms'"), ok
}

// serverTimeout follows, frame by frame, whether what the server gets
// next runs under a lock timeout ddlguard set: a session or local SET (a
// Query), or the lead set_config of an extended batch, which holds until
// the batch's Sync.
type serverTimeout struct{ set, lead bool }

func (s *serverTimeout) see(fr wireFrame) {
	switch fr.typ {
	case 'Q':
		if on, ok := lockTimeoutSet(fr.body); ok {
			s.set = on
		}
	case 'P':
		if _, q, ok := parseFields(fr.body); ok && strings.HasPrefix(q, "SELECT pg_catalog.set_config('lock_timeout', '") &&
			strings.HasSuffix(q, "ms', true)") {
			s.lead = true
		}
	case 'S':
		s.lead = false
	}
}

func (s *serverTimeout) on() bool { return s.set || s.lead }

// FuzzQuery: a simple Query through the guard.
func FuzzQuery(f *testing.F) {
	for _, s := range fuzzSQLSeeds {
		f.Add([]byte(s + "\x00"))
	}
	f.Add([]byte("SELECT 1"))                     // no terminator
	f.Add([]byte("SELECT 1\x00DROP TABLE t\x00")) // two strings
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) > 8<<10 {
			return
		}
		h := startRelay(t, fuzzGuard())
		got := h.send(t, frame('Q', body), 1)
		h.close(t)
		if got[len(got)-1].typ != 'Z' {
			t.Fatalf("client got %s", frameTypes(got))
		}
		sql, ok := serverView(body)
		if !ok {
			return // the server refuses the message whatever ddlguard does
		}
		checkLetThrough(t, sql, h.upstreamFrames(), func(fr wireFrame) bool {
			q, _ := serverView(fr.body)
			// As written, or after the SET LOCAL of its own implicit
			// transaction.
			return fr.typ == 'Q' && (q == sql || strings.HasPrefix(q, "SET LOCAL lock_timeout = ") && strings.HasSuffix(q, "; "+sql))
		})
	})
}

// parseFields splits a Parse body as the server does: name, query, and
// the parameter types (ok false when the server would refuse it).
func parseFields(body []byte) (name, query string, ok bool) {
	var p pgproto3.Parse
	if p.Decode(body) != nil {
		return "", "", false
	}
	return p.Name, p.Query, true
}

// FuzzParse: a Parse through the guard, in a batch that binds and runs it.
func FuzzParse(f *testing.F) {
	for _, s := range fuzzSQLSeeds {
		f.Add("", s, []byte{0, 0})
		f.Add("stmt1", s, []byte{0, 1, 0, 0, 0, 23})
	}
	f.Add("", "SELECT $1", []byte{0})
	f.Fuzz(func(t *testing.T, name, sql string, params []byte) {
		if len(name)+len(sql)+len(params) > 8<<10 {
			return
		}
		body := append(append(append([]byte(name), 0), sql...), 0)
		body = append(body, params...)
		bind := append(append([]byte{0}, name...), 0, 0, 0, 0, 0, 0, 0)
		in := bytes.Join([][]byte{frame('P', body), frame('B', bind), frame('E', []byte{0, 0, 0, 0, 0}), frame('S', nil)}, nil)
		h := startRelay(t, fuzzGuard())
		h.send(t, in, 1)
		h.close(t)
		if strings.IndexByte(name, 0) >= 0 || strings.IndexByte(sql, 0) >= 0 {
			return
		}
		if _, _, ok := parseFields(body); !ok {
			return
		}
		checkLetThrough(t, sql, h.upstreamFrames(), func(fr wireFrame) bool {
			_, q, ok := parseFields(fr.body)
			return fr.typ == 'P' && ok && q == sql
		})
	})
}

// FuzzBind: a Bind of a prepared statement that needs the lock timeout is
// always run under it, however the Bind is written; other Binds pass.
func FuzzBind(f *testing.F) {
	f.Add([]byte("\x00guarded\x00\x00\x00\x00\x00\x00\x00"))
	f.Add([]byte("portal\x00guarded\x00\x00\x01\x00\x01\x00\x01\x00\x00\x00\x011\x00\x00"))
	f.Add([]byte("\x00other\x00\x00\x00\x00\x00\x00\x00"))
	f.Add([]byte("\x00guarded"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, bind []byte) {
		if len(bind) > 8<<10 {
			return
		}
		h := startRelay(t, fuzzGuard())
		prepare := bytes.Join([][]byte{
			frame('P', []byte("guarded\x00ALTER TABLE t ADD COLUMN c int\x00\x00\x00")),
			frame('P', []byte("other\x00SELECT 1\x00\x00\x00")),
			frame('S', nil)}, nil)
		h.send(t, prepare, 1)
		before := len(h.upstreamFrames())
		h.send(t, bytes.Join([][]byte{frame('B', bind), frame('E', []byte{0, 0, 0, 0, 0}), frame('S', nil)}, nil), 1)
		h.close(t)
		var b pgproto3.Bind
		if b.Decode(bind) != nil || b.PreparedStatement != "guarded" {
			return
		}
		var lt serverTimeout
		for _, fr := range h.upstreamFrames()[before:] {
			lt.see(fr)
			if fr.typ == 'B' && bytes.Equal(fr.body, bind) && !lt.on() {
				t.Fatalf("Bind %q of the guarded statement reached the server without a lock timeout", bind)
			}
		}
	})
}

// FuzzCancelRequest: the startup phase (readStartup) on any bytes; a
// CancelRequest of valid length is passed on to the upstream unchanged,
// byte for byte, and nothing else is.
func FuzzCancelRequest(f *testing.F) {
	cancel := func(key ...byte) []byte {
		b := binary.BigEndian.AppendUint32(nil, uint32(8+len(key)))
		b = binary.BigEndian.AppendUint32(b, cancelRequestCode)
		return append(b, key...)
	}
	f.Add(cancel(0, 0, 0x30, 0x39, 1, 2, 3, 4))
	f.Add(cancel(append([]byte{0, 0, 0x30, 0x39}, bytes.Repeat([]byte{9}, 32)...)...)) // protocol 3.2 key
	f.Add(cancel(0, 0, 0x30, 0x39))
	f.Add(cancel(append([]byte{0, 0, 0x30, 0x39}, bytes.Repeat([]byte{9}, 257)...)...))
	f.Add(append([]byte{0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f}, cancel(0, 0, 0, 1, 0, 0, 0, 2)...)) // SSLRequest, then cancel
	f.Add(startupBytes(3<<16, "user", "u"))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { ln.Close() })
	got := make(chan []byte, 16)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(5 * time.Second))
				r := bufio.NewReader(conn)
				pkt, err := readStartupPacket(r)
				if err != nil {
					got <- nil
					return
				}
				got <- pkt
			}()
		}
	}()
	f.Fuzz(func(t *testing.T, in []byte) {
		srv := fuzzServer(nil)
		srv.cfg.Upstream = ln.Addr().String()
		if err := srv.SetTLS(nil, UpstreamTLSDisable, nil); err != nil {
			t.Fatal(err)
		}
		client, peer := net.Pipe()
		defer client.Close()
		defer peer.Close()
		go io.Copy(io.Discard, peer)
		c := &clientConn{srv: srv, idle: make(chan struct{}, 1), raw: client, client: client,
			cr: bufio.NewReaderSize(bytes.NewReader(in), 4096), cw: newFlushWriter(client)}
		ctx, cancelCtx := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancelCtx()
		pkt, err := c.readStartup(ctx)
		// The listener hands over what it read before it closes, and
		// forwardCancel returns only once it has closed.
		var forwarded []byte
		select {
		case forwarded = <-got:
		default:
		}
		// Which packet did the client's bytes end with? Skip SSL and GSS
		// requests, answered 'N' here, as readStartup does.
		rest := in
		var last []byte
		gss := false
		for len(rest) >= 8 {
			n := int(binary.BigEndian.Uint32(rest))
			if n < 8 || n > maxStartupPacket || n > len(rest) {
				break
			}
			last, rest = rest[:n], rest[n:]
			code := binary.BigEndian.Uint32(last[4:8])
			if (code != sslRequestCode && code != gssEncRequestCode) || n != 8 || (code == gssEncRequestCode && gss) {
				break
			}
			gss = gss || code == gssEncRequestCode
		}
		isCancel := len(last) >= 8 && binary.BigEndian.Uint32(last[4:8]) == cancelRequestCode
		validCancel := isCancel && len(last) >= minCancelPacket && len(last) <= maxCancelPacket
		switch {
		case validCancel:
			if pkt != nil || !bytes.Equal(forwarded, last) {
				t.Fatalf("cancel %x: upstream got %x (readStartup: %x, %v)", last, forwarded, pkt, err)
			}
		case forwarded != nil:
			t.Fatalf("input %x: upstream got %x", in, forwarded)
		case isCancel && err == nil:
			t.Fatalf("cancel of invalid length %d accepted", len(last))
		}
		if pkt != nil && (err != nil || c.sess.User == "") {
			t.Fatalf("startup packet returned without a user (err %v)", err)
		}
	})
}
