package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Tests of the internal-query mechanism (internalquery.go) against a
// scripted fake server, in the manner of pgx's pgmock: each step expects
// one frame from ddlguard, then sends frames, pauses or hangs up. The
// upstream pump runs for real, with its hooks; the test goroutine plays
// the client pump, which is where ddlguard asks its own queries.

// fakeStep is one step of a fake server's script.
type fakeStep struct {
	expect     byte   // the frame type expected from ddlguard (0: read nothing)
	expectText string // text the expected frame's body contains
	pause      time.Duration
	send       [][]byte // whole frames sent after the pause
	hangUp     bool     // close the connection after sending
}

// internalQueryConn is a connection whose upstream is a fake server
// running script, with its upstream pump started.
type internalQueryConn struct {
	c        *clientConn
	toClient chan wireFrame // frames the client receives
	srvErr   chan error     // the fake server's verdict on its script
	pumpDone chan struct{}
}

func startInternalQueryConn(t *testing.T, script []fakeStep) *internalQueryConn {
	t.Helper()
	clientEnd, proxyClient := net.Pipe()
	proxyUp, serverEnd := net.Pipe()
	c := &clientConn{srv: fuzzServer(nil), idle: make(chan struct{}, 1), raw: proxyClient, client: proxyClient,
		cw: newFlushWriter(proxyClient), upstream: proxyUp, upstreamRaw: proxyUp,
		ur: bufio.NewReaderSize(proxyUp, relayBufferSize), uw: newFlushWriter(proxyUp)}
	c.sess.txStatus.Store(uint32(TxIdle))
	h := &internalQueryConn{c: c, toClient: make(chan wireFrame, 64), srvErr: make(chan error, 1),
		pumpDone: make(chan struct{})}
	go func() { h.srvErr <- runFakeServer(serverEnd, script) }()
	go func() {
		r := bufio.NewReader(clientEnd)
		for {
			typ, body, _, err := readMessage(r, DefaultMaxMessageSize, "upstream", nil)
			if err != nil {
				close(h.toClient)
				return
			}
			h.toClient <- wireFrame{typ, bytes.Clone(body)}
		}
	}()
	go func() {
		defer close(h.pumpDone)
		p := pump{r: c.ur, w: c.cw, limit: DefaultMaxMessageSize, side: "upstream", inspect: &upstreamInspect,
			hooks: upstreamHooks{c}, counter: &c.sess.bytesToClient, obs: nopObserver{}, wmu: &c.cwMu}
		p.run()
		close(c.upstreamEndedCh())
	}()
	t.Cleanup(func() {
		c.closeBoth()
		clientEnd.Close()
		serverEnd.Close()
		<-h.pumpDone
	})
	return h
}

// runFakeServer plays script on conn and reports the first deviation.
func runFakeServer(conn net.Conn, script []fakeStep) error {
	r := bufio.NewReader(conn)
	for i, st := range script {
		if st.expect != 0 {
			typ, body, _, err := readMessage(r, DefaultMaxMessageSize, "client", nil)
			if err != nil {
				return err
			}
			if typ != st.expect || !strings.Contains(string(body), st.expectText) {
				return errors.New("step " + string(rune('0'+i)) + ": got " + string(typ) + " " + string(body))
			}
		}
		time.Sleep(st.pause)
		for _, f := range st.send {
			if _, err := conn.Write(f); err != nil {
				return err
			}
		}
		if st.hangUp {
			return conn.Close()
		}
	}
	return nil
}

// backendFrame encodes a backend message.
func backendFrame(m pgproto3.BackendMessage) []byte {
	out, err := m.Encode(nil)
	if err != nil {
		panic(err)
	}
	return out
}

// clientFrames collects what the client received until nothing more comes
// for quiet.
func (h *internalQueryConn) clientFrames(quiet time.Duration) []wireFrame {
	var out []wireFrame
	for {
		select {
		case f, ok := <-h.toClient:
			if !ok {
				return out
			}
			out = append(out, f)
		case <-time.After(quiet):
			return out
		}
	}
}

var (
	fakeRowDesc = backendFrame(&pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte("x"), DataTypeOID: 25, DataTypeSize: -1}}})
	fakeRow     = backendFrame(&pgproto3.DataRow{Values: [][]byte{[]byte("42")}})
	fakeDone    = backendFrame(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 1")})
	fakeIdle    = backendFrame(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	fakeNotice  = backendFrame(&pgproto3.NoticeResponse{Severity: "NOTICE", Code: "00000", Message: "for the client"})
	fakeParam   = backendFrame(&pgproto3.ParameterStatus{Name: "TimeZone", Value: "UTC"})
)

// The answer to ddlguard's own query is diverted to it, up to and including
// ReadyForQuery; messages the server may send at any time (a notice, a
// parameter change) in the middle of it still go to the client.
func TestInternalQueryDivertsItsAnswer(t *testing.T) {
	h := startInternalQueryConn(t, []fakeStep{
		{expect: 'Q', expectText: "SELECT 'facts'", send: [][]byte{fakeRowDesc, fakeNotice, fakeRow, fakeParam, fakeDone, fakeIdle}},
	})
	frames, err := h.c.internalQuery("SELECT 'facts'", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got := frameTypes(toWire(frames)); got != `"TDCZ"` {
		t.Errorf("diverted answer %q, want TDCZ", got)
	}
	rows, err := dataRows(frames, 1)
	if err != nil || len(rows) != 1 || string(rows[0][0]) != "42" {
		t.Errorf("rows %q, err %v", rows, err)
	}
	if got := frameTypes(h.clientFrames(100 * time.Millisecond)); got != `"NS"` {
		t.Errorf("client received %q, want the notice and the parameter status only (NS)", got)
	}
	if h.c.sess.pending.Load() != 0 || h.c.divert.Load() != nil {
		t.Errorf("after the answer: pending %d, diverting %v", h.c.sess.pending.Load(), h.c.divert.Load() != nil)
	}
	if h.c.sess.TimeZone() != "UTC" {
		t.Errorf("the parameter status was not observed: TimeZone %q", h.c.sess.TimeZone())
	}
	if err := <-h.srvErr; err != nil {
		t.Error(err)
	}
}

func toWire(fs []divertedFrame) []wireFrame {
	out := make([]wireFrame, len(fs))
	for i, f := range fs {
		out[i] = wireFrame{f.typ, f.body}
	}
	return out
}

// An error answer is returned to ddlguard (hidden reports it), and the
// client sees nothing of it.
func TestInternalQueryErrorAnswer(t *testing.T) {
	fail := backendFrame(&pgproto3.ErrorResponse{Severity: "ERROR", Code: "22023", Message: "invalid value for parameter"})
	h := startInternalQueryConn(t, []fakeStep{
		{expect: 'Q', expectText: "SET lock_timeout", send: [][]byte{fail, fakeIdle}},
	})
	err := h.c.hidden("SET lock_timeout = 'x'")
	if err == nil || !strings.Contains(err.Error(), "invalid value for parameter") {
		t.Errorf("hidden: %v, want the server's error", err)
	}
	if got := h.clientFrames(100 * time.Millisecond); len(got) != 0 {
		t.Errorf("client received %q", frameTypes(got))
	}
}

// A server that hangs up before answering ends the wait at once.
func TestInternalQueryUpstreamEnds(t *testing.T) {
	h := startInternalQueryConn(t, []fakeStep{{expect: 'Q', hangUp: true}})
	start := time.Now()
	_, err := h.c.internalQuery("SELECT 1", 10*time.Second)
	if !errors.Is(err, errUpstreamEnded) {
		t.Errorf("err %v, want errUpstreamEnded", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("waited %s for a server that hung up", took)
	}
}

// An answer later than the limit fails the question but is still diverted
// when it comes: the client never sees it, and frames after it are the
// client's again.
func TestInternalQueryLateAnswerStaysDiverted(t *testing.T) {
	h := startInternalQueryConn(t, []fakeStep{
		{expect: 'Q', pause: 300 * time.Millisecond, send: [][]byte{fakeRowDesc, fakeRow, fakeDone, fakeIdle}},
		{pause: 100 * time.Millisecond, send: [][]byte{fakeNotice}},
	})
	_, err := h.c.internalQuery("SELECT 1", 50*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "no answer") {
		t.Fatalf("err %v, want a timeout", err)
	}
	if got := frameTypes(h.clientFrames(time.Second)); got != `"N"` {
		t.Errorf("client received %q, want only the notice sent after the late answer", got)
	}
	if h.c.sess.pending.Load() != 0 || h.c.divert.Load() != nil {
		t.Errorf("after the late answer: pending %d, diverting %v", h.c.sess.pending.Load(), h.c.divert.Load() != nil)
	}
}

// waitIdle waits until the server owes the client no ReadyForQuery, and
// gives up at its limit.
func TestWaitIdle(t *testing.T) {
	h := startInternalQueryConn(t, []fakeStep{{pause: 200 * time.Millisecond, send: [][]byte{fakeIdle}}})
	h.c.sess.pending.Store(1) // the client's own statement is in flight
	if h.c.waitIdle(20 * time.Millisecond) {
		t.Fatal("idle while a ReadyForQuery is owed")
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		if !h.c.waitIdle(5 * time.Second) {
			t.Error("not idle after the ReadyForQuery")
		}
	})
	wg.Wait()
	if got := frameTypes(h.clientFrames(100 * time.Millisecond)); got != `"Z"` {
		t.Errorf("client received %q, want its ReadyForQuery", got)
	}
}

// A row of the wrong shape in an answer is an error, not a panic.
func TestDataRowsMalformed(t *testing.T) {
	frames := []divertedFrame{{'D', fakeRow[5:]}, {'Z', []byte{'I'}}}
	if _, err := dataRows(frames, 2); err == nil {
		t.Error("a one-column row accepted where two were expected")
	}
	if _, err := dataRows([]divertedFrame{{'D', []byte{0, 5}}}, 1); err == nil {
		t.Error("a truncated row accepted")
	}
}
