package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Fuzz targets for every backend message ddlguard decodes. Seeds: the
// f.Add calls below and testdata/fuzz/<Target>/, recorded from real
// PostgreSQL traffic (pgx and psql, through ddlguard) by
// e2e/fuzzseeds_test.go.

// FuzzAuthRelay feeds relayAuth whatever the upstream might send during
// authentication (requests of every kind, SASL mechanisms, ParameterStatus,
// BackendKeyData, NoticeResponse, NegotiateProtocolVersion, ErrorResponse,
// ReadyForQuery) and whatever the client answers, with the upstream leg in
// plaintext or TLS. It never panics; it lets a session start only after
// AuthenticationOk and a well-formed ReadyForQuery; the client gets whole
// frames only and is never offered SCRAM-SHA-256-PLUS (channel binding
// cannot pass through this connection); what reaches the upstream is what
// the client sent, except that over an upstream TLS leg a SCRAM answer
// with the GS2 flag "y" (a downgrade the server would refuse) never does.
func FuzzAuthRelay(f *testing.F) {
	sasl := authFrame(authSASL, []byte("SCRAM-SHA-256-PLUS\x00SCRAM-SHA-256\x00\x00")...)
	answers := bytes.Repeat(frame('p', []byte("SCRAM-SHA-256\x00\x00\x00\x00\x04n,,n=")), 4)
	downgrade := frame('p', []byte("SCRAM-SHA-256\x00\x00\x00\x00\x04y,,n="))
	scram := bytes.Join([][]byte{sasl, authFrame(11, []byte("r=abc,s=c2FsdA==,i=4096")...),
		authFrame(authSASLFinal, []byte("v=xyz")...), authStart, readyIdle}, nil)
	f.Add(bytes.Join([][]byte{authStart, frame('S', []byte("server_version\x0015.8\x00")),
		frame('K', []byte{0, 0, 0x30, 0x39, 1, 2, 3, 4}), readyIdle}, nil), answers, false)
	f.Add(scram, answers, false)
	f.Add(scram, answers, true)
	f.Add(scram, downgrade, true)
	f.Add(bytes.Join([][]byte{authFrame(5, 1, 2, 3, 4), authStart, readyIdle}, nil), frame('p', []byte("md5abc\x00")), false)
	f.Add(bytes.Join([][]byte{authFrame(3), frame('E', []byte("SFATAL\x00C28P01\x00Mpassword authentication failed\x00\x00"))}, nil),
		frame('p', []byte("secret\x00")), false)
	f.Add(bytes.Join([][]byte{frame('v', []byte{0, 0, 0, 0, 0, 0, 0, 1, '_', 'p', 'q', '_', '.', 'x', 0}), authStart,
		frame('N', []byte("SNOTICE\x00Mhi\x00\x00")), readyIdle}, nil), []byte(nil), false)
	f.Add(readyIdle, []byte(nil), false) // ReadyForQuery before authentication
	f.Add(authFrame(3), frame('X', nil), false)
	f.Fuzz(func(t *testing.T, upstream, answers []byte, upstreamTLS bool) {
		if len(upstream) > 4*maxAuthMessage || len(answers) > 4*maxAuthMessage {
			return
		}
		c, toClient, toUpstream := authConn(fuzzServer(nil), upstream, answers)
		if upstreamTLS {
			// A TLS leg that never shook hands: no certificate to match,
			// so channel binding cannot pass through.
			c.upstream = tls.Client(nopConn{}, &tls.Config{InsecureSkipVerify: true})
		}
		err := c.relayAuth()
		frames, rest := splitFrames(toClient.Bytes())
		if len(rest) != 0 {
			t.Fatalf("client got a partial frame: %q", rest)
		}
		sawOK := false
		for _, fr := range frames {
			if fr.typ != 'R' || len(fr.body) < 4 {
				continue
			}
			switch binary.BigEndian.Uint32(fr.body) {
			case authOK:
				sawOK = true
			case authSASL:
				var m pgproto3.AuthenticationSASL
				if m.Decode(fr.body) != nil {
					t.Fatalf("client got an AuthenticationSASL it cannot decode: %q", fr.body)
				}
				for _, mech := range m.AuthMechanisms {
					if mech == scramPlus {
						t.Fatalf("client was offered %s through TLS termination", scramPlus)
					}
				}
			}
		}
		if err == nil {
			last := frames[len(frames)-1]
			if !sawOK || last.typ != 'Z' || len(last.body) != 1 || c.sess.TxStatus() != last.body[0] {
				t.Fatalf("session started without AuthenticationOk and a ReadyForQuery: %s", frameTypes(frames))
			}
		}
		if !bytes.HasPrefix(answers, toUpstream.Bytes()) {
			t.Fatalf("upstream got bytes the client did not send")
		}
		sent, _ := splitFrames(toUpstream.Bytes())
		for _, fr := range sent {
			var m pgproto3.SASLInitialResponse
			if upstreamTLS && fr.typ == 'p' && m.Decode(fr.body) == nil && bytes.HasPrefix(m.Data, []byte("y,")) {
				t.Fatalf("a SCRAM answer with channel binding flag y reached a TLS upstream: %q", fr.body)
			}
		}
		if len(c.keyID) > 0 && c.srv.keys[c.keyID] != c {
			t.Fatalf("cancel key %x not registered", c.keyID)
		}
	})
}

// FuzzReadyForQuery: the transaction status is taken from a ReadyForQuery
// of exactly one byte, during startup and in the relay, and the frame is
// relayed unchanged; anything else is refused at startup and passed
// through (for the client to judge) in the relay.
func FuzzReadyForQuery(f *testing.F) {
	for _, b := range []string{"I", "T", "E", "", "II", "\x00"} {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) > inspectLimit { // larger ones are refused at startup (maxAuthMessage) or malformed
			return
		}
		in := append(bytes.Clone(authStart), frame('Z', body)...)
		c, toClient, _ := authConn(fuzzServer(nil), in, nil)
		err := c.relayAuth()
		if (err == nil) != (len(body) == 1) {
			t.Fatalf("startup with ReadyForQuery %q: err %v", body, err)
		}
		if err == nil && (!bytes.Equal(toClient.Bytes(), in) || c.sess.TxStatus() != body[0]) {
			t.Fatalf("ReadyForQuery %q: client got %q, status %q", body, toClient.Bytes(), c.sess.TxStatus())
		}

		c, _, _ = authConn(fuzzServer(nil), nil, nil)
		c.sess.txStatus.Store(uint32(TxInBlock))
		c.sess.pending.Store(1)
		act, _ := upstreamHooks{c}.onFrame('Z', body, false)
		if act != forwardFrame {
			t.Fatalf("ReadyForQuery %q: action %d, want forward", body, act)
		}
		want := TxInBlock
		if len(body) == 1 {
			want = body[0]
		}
		if c.sess.TxStatus() != want || c.sess.Busy() {
			t.Fatalf("ReadyForQuery %q: status %q busy %v", body, c.sess.TxStatus(), c.sess.Busy())
		}
		c.syncSession() // whatever the status byte, the guard's view follows without panicking
	})
}

// FuzzParameterStatus: ParameterStatus is relayed unchanged; the values
// ddlguard tracks are exactly what pgproto3 decodes; the server version
// parses to a sane major.
func FuzzParameterStatus(f *testing.F) {
	for _, b := range []string{"server_version\x0015.8 (Debian 15.8-1)\x00", "TimeZone\x00Europe/Paris\x00",
		"server_version\x0018beta1\x00", "server_version\x00\x00", "application_name\x00x\x00", "x", ""} {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) > inspectLimit { // larger ones are refused at startup (maxAuthMessage) or malformed
			return
		}
		in := bytes.Join([][]byte{authStart, frame('S', body), readyIdle}, nil)
		c, toClient, _ := authConn(fuzzServer(nil), in, nil)
		if err := c.relayAuth(); err != nil || !bytes.Equal(toClient.Bytes(), in) {
			t.Fatalf("startup with ParameterStatus %q: err %v, client got %q", body, err, toClient.Bytes())
		}
		c2, _, _ := authConn(fuzzServer(nil), nil, nil)
		if act, _ := (upstreamHooks{c2}).onFrame('S', body, false); act != forwardFrame {
			t.Fatalf("ParameterStatus %q: action %d, want forward", body, act)
		}
		var ps pgproto3.ParameterStatus
		decoded := ps.Decode(body) == nil
		for _, s := range []*Session{&c.sess, &c2.sess} {
			switch {
			case decoded && ps.Name == "server_version":
				if s.ServerVersion() != ps.Value {
					t.Fatalf("server_version %q recorded as %q", ps.Value, s.ServerVersion())
				}
			case decoded && ps.Name == "TimeZone":
				if s.TimeZone() != ps.Value {
					t.Fatalf("TimeZone %q recorded as %q", ps.Value, s.TimeZone())
				}
			default:
				if s.ServerVersion() != "" || s.TimeZone() != "" {
					t.Fatalf("ParameterStatus %q recorded %q %q", body, s.ServerVersion(), s.TimeZone())
				}
			}
		}
		if m := serverMajor(c.sess.ServerVersion()); m < 0 {
			t.Fatalf("server_version %q: major %d", c.sess.ServerVersion(), m)
		}
		c.syncSession()
	})
}

// FuzzBackendKeyData: the key is relayed unchanged and registered, and a
// CancelRequest carrying it (what a client sends) finds the session.
func FuzzBackendKeyData(f *testing.F) {
	f.Add([]byte{0, 0, 0x30, 0x39, 0xde, 0xad, 0xbe, 0xef})
	f.Add(append([]byte{0, 0, 0x30, 0x39}, bytes.Repeat([]byte{7}, 32)...)) // protocol 3.2 key
	f.Add([]byte{0, 0, 0x30})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) > inspectLimit { // larger ones are refused at startup (maxAuthMessage) or malformed
			return
		}
		srv := fuzzServer(nil)
		in := bytes.Join([][]byte{authStart, frame('K', body), readyIdle}, nil)
		c, toClient, _ := authConn(srv, in, nil)
		if err := c.relayAuth(); err != nil || !bytes.Equal(toClient.Bytes(), in) {
			t.Fatalf("startup with BackendKeyData %x: err %v, client got %x", body, err, toClient.Bytes())
		}
		if len(body) < 8 {
			if c.keyID != "" || len(srv.keys) != 0 {
				t.Fatalf("short key %x registered", body)
			}
			return
		}
		if srv.keys[string(body)] != c || c.sess.BackendPID() != binary.BigEndian.Uint32(body) {
			t.Fatalf("key %x not registered (pid %d)", body, c.sess.BackendPID())
		}
		pkt := binary.BigEndian.AppendUint32(nil, uint32(8+len(body)))
		pkt = binary.BigEndian.AppendUint32(pkt, cancelRequestCode)
		pkt = append(pkt, body...)
		// While ddlguard waits on the session's behalf the cancel is its
		// own to honour: no dialing, the session is told.
		c.waitingForClient.Store(true)
		err := srv.forwardCancel(context.Background(), pkt, "fuzz")
		if len(pkt) > maxCancelPacket {
			if err == nil {
				t.Fatalf("cancel packet of %d bytes accepted", len(pkt))
			}
		} else if err != nil || !c.userCancel.Load() {
			t.Fatalf("cancel with key %x: err %v, honoured %v", body, err, c.userCancel.Load())
		}
		srv.conns[c] = struct{}{}
		srv.wg.Add(1)
		srv.forget(c)
		if len(srv.keys) != 0 {
			t.Fatal("key still registered after the session ended")
		}
	})
}

// FuzzErrorResponse: ddlguard's error handling (rewriteGuardError for its
// own rejections, stripContext for re-raised rewrite steps, upstreamError
// for logs) never panics, and what it re-encodes is a well-formed
// ErrorResponse with every field of the original but the PL/pgSQL
// context. NoticeResponse is relayed untouched.
func FuzzErrorResponse(f *testing.F) {
	guardErr := "SERROR\x00VERROR\x00CZG001\x00Mddlguard: drop-table: DROP TABLE t takes ACCESS EXCLUSIVE\x00" +
		"HUse a migration\x00WPL/pgSQL function inline_code_block line 1 at RAISE\x00Fpl_exec.c\x00L3911\x00Rexec_stmt_raise\x00\x00"
	f.Add([]byte(guardErr), false)
	f.Add([]byte(guardErr), true)
	f.Add([]byte("SERROR\x00C42P01\x00Mrelation \"x\" does not exist\x00P15\x00Fparse_relation.c\x00L1392\x00\x00"), false)
	f.Add([]byte("SFATAL\x00C57P01\x00Mterminating connection due to administrator command\x00\x00"), false)
	f.Add([]byte("Mddlguard\x00Winline_code_block\x00"), false) // no terminator
	f.Add([]byte{}, true)
	f.Fuzz(func(t *testing.T, body []byte, reraised bool) {
		if len(body) > inspectLimit {
			return
		}
		var in pgproto3.ErrorResponse
		decodes := in.Decode(body) == nil
		check := func(what string, out []byte) {
			if out == nil {
				return
			}
			if !decodes {
				t.Fatalf("%s re-encoded an error pgproto3 cannot decode: %q", what, body)
			}
			frames, rest := splitFrames(out)
			if len(frames) != 1 || len(rest) != 0 || frames[0].typ != 'E' {
				t.Fatalf("%s: not one ErrorResponse frame: %q", what, out)
			}
			var got pgproto3.ErrorResponse
			if err := got.Decode(frames[0].body); err != nil {
				t.Fatalf("%s: output does not decode: %v", what, err)
			}
			want := in
			want.Where, want.File, want.Line, want.Routine = "", "", 0, ""
			if !sameError(&got, &want) {
				t.Fatalf("%s changed the error:\n got %+v\nwant %+v", what, got, want)
			}
		}
		g := rewriteGuardError(body)
		if g != nil && !bytes.Contains(body, []byte("ddlguard")) {
			t.Fatalf("rewriteGuardError changed an error that is not ddlguard's: %q", body)
		}
		check("rewriteGuardError", g)
		check("stripContext", stripContext(body))
		if upstreamError(body) == nil {
			t.Fatal("upstreamError returned nil")
		}

		c, _, _ := authConn(fuzzServer(nil), nil, nil)
		c.stripNextContext.Store(reraised)
		act, out := upstreamHooks{c}.onFrame('E', body, false)
		switch act {
		case forwardFrame:
		case replaceFrame:
			check("the relay", out)
		default:
			t.Fatalf("ErrorResponse: action %d", act)
		}
		if c.stripNextContext.Load() {
			t.Fatal("the strip flag outlived the error it was for")
		}

		// Errors and notices during startup reach the client unchanged.
		in2 := bytes.Join([][]byte{authStart, frame('N', body), readyIdle}, nil)
		c, toClient, _ := authConn(fuzzServer(nil), in2, nil)
		if err := c.relayAuth(); err != nil || !bytes.Equal(toClient.Bytes(), in2) {
			t.Fatalf("startup with NoticeResponse %q: %v", body, err)
		}
		in3 := frame('E', body)
		c, toClient, _ = authConn(fuzzServer(nil), in3, nil)
		if err := c.relayAuth(); err == nil || !bytes.Equal(toClient.Bytes(), in3) {
			t.Fatalf("startup with ErrorResponse %q: err %v, client got %q", body, err, toClient.Bytes())
		}
	})
}

// nopConn is a net.Conn that is never used.
type nopConn struct{ net.Conn }

// sameError compares every field pgproto3 decodes.
func sameError(a, b *pgproto3.ErrorResponse) bool {
	if len(a.UnknownFields) != len(b.UnknownFields) {
		return false
	}
	for k, v := range a.UnknownFields {
		if w, ok := b.UnknownFields[k]; !ok || w != v {
			return false
		}
	}
	return a.Severity == b.Severity && a.SeverityUnlocalized == b.SeverityUnlocalized && a.Code == b.Code &&
		a.Message == b.Message && a.Detail == b.Detail && a.Hint == b.Hint && a.Position == b.Position &&
		a.InternalPosition == b.InternalPosition && a.InternalQuery == b.InternalQuery && a.Where == b.Where &&
		a.SchemaName == b.SchemaName && a.TableName == b.TableName && a.ColumnName == b.ColumnName &&
		a.DataTypeName == b.DataTypeName && a.ConstraintName == b.ConstraintName && a.File == b.File &&
		a.Line == b.Line && a.Routine == b.Routine
}

// FuzzSSLAnswer: whatever the upstream answers to ddlguard's SSLRequest,
// dialUpstream returns promptly; it goes on in plaintext only after 'N' and
// only in prefer mode, and otherwise only over a completed TLS handshake.
func FuzzSSLAnswer(f *testing.F) {
	f.Add([]byte("N"), false)
	f.Add([]byte("N"), true)
	f.Add([]byte("S"), false)
	f.Add([]byte("S\x16\x03\x01\x00\x05hello"), true)
	f.Add([]byte("E\x00\x00\x00\x4bSFATAL\x00C0A000\x00Munsupported frontend protocol 1234.5679\x00\x00"), false)
	f.Add([]byte{}, false)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { ln.Close() })
	var mu sync.Mutex
	var answer []byte
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			a := answer
			mu.Unlock()
			go func() {
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(5 * time.Second))
				var req [8]byte
				if _, err := io.ReadFull(conn, req[:]); err != nil {
					return
				}
				conn.Write(a)
				conn.(*net.TCPConn).CloseWrite()
				io.Copy(io.Discard, conn)
			}()
		}
	}()
	f.Fuzz(func(t *testing.T, ans []byte, require bool) {
		mu.Lock()
		answer = ans
		mu.Unlock()
		srv := fuzzServer(nil)
		srv.cfg.ConnectTimeout = 3 * time.Second
		mode := UpstreamTLSPrefer
		if require {
			mode = UpstreamTLSRequire
		}
		if err := srv.SetTLS(nil, mode, nil); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		conn, raw, err := srv.dialUpstream(context.Background(), ln.Addr().String(), nil)
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("answer %q: dialUpstream took %s", ans, d)
		}
		if err != nil {
			if conn != nil || raw != nil {
				t.Fatal("connection returned with an error")
			}
			if len(ans) > 0 && ans[0] != 'N' && ans[0] != 'S' && !strings.Contains(err.Error(), "answered SSLRequest") {
				t.Fatalf("answer %q: error %v does not say what the upstream answered", ans, err)
			}
			return
		}
		defer raw.Close()
		_, isTLS := conn.(*tls.Conn)
		switch {
		case len(ans) == 0:
			t.Fatal("no answer accepted")
		case ans[0] == 'N' && (require || isTLS):
			t.Fatalf("answer N accepted in mode %s (TLS %v)", mode, isTLS)
		case ans[0] == 'S' && !isTLS:
			t.Fatal("answer S went on in plaintext")
		case ans[0] != 'N' && ans[0] != 'S':
			t.Fatalf("answer %q accepted", ans)
		}
	})
}
