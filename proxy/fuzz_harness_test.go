package proxy

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ddlguard/ddlguard/guard"
)

// Harness for the fuzz targets of fuzz_backend_test.go and
// fuzz_frontend_test.go: a Server with no listener and connections built
// around in-memory streams or pipes, so that the real decoding functions
// run on exactly the bytes a peer could send.

// fuzzServer is a Server ready for connections built by hand: defaults,
// no logs, the given guard (nil: relay only).
func fuzzServer(g *guard.Guard) *Server {
	cfg := Config{Upstream: "127.0.0.1:1", Logger: slog.New(slog.DiscardHandler), Guard: g}.withDefaults()
	s := &Server{cfg: cfg, log: cfg.Logger, obs: cfg.Observer,
		listeners: map[net.Listener]struct{}{}, conns: map[*clientConn]struct{}{}, keys: map[string]*clientConn{}}
	ut, err := newUpstreamTLS(cfg)
	if err != nil {
		panic(err)
	}
	s.tls.Store(&tlsState{upstream: ut})
	if g != nil {
		s.guard.Store(g)
	}
	return s
}

// authConn is a connection in its authentication phase: the upstream sends
// upstream, the client answers from client; what each side is sent is
// collected.
func authConn(srv *Server, upstream, client []byte) (c *clientConn, toClient, toUpstream *bytes.Buffer) {
	toClient, toUpstream = &bytes.Buffer{}, &bytes.Buffer{}
	c = &clientConn{srv: srv, idle: make(chan struct{}, 1),
		cr: bufio.NewReaderSize(bytes.NewReader(client), 4096),
		cw: newFlushWriter(toClient),
		ur: bufio.NewReaderSize(bytes.NewReader(upstream), 4096),
		uw: newFlushWriter(toUpstream)}
	c.sess.User, c.sess.Database = "fuzz", "fuzz"
	return c, toClient, toUpstream
}

// wireFrame is one whole frame as seen on the wire.
type wireFrame struct {
	typ  byte
	body []byte
}

// splitFrames cuts b into whole frames; rest is what does not form one.
func splitFrames(b []byte) (frames []wireFrame, rest []byte) {
	for len(b) >= 5 {
		n := int(binary.BigEndian.Uint32(b[1:5]))
		if n < 4 || len(b) < 1+n {
			break
		}
		frames = append(frames, wireFrame{b[0], b[5 : 1+n]})
		b = b[1+n:]
	}
	return frames, b
}

// authFrame is an authentication request with code and payload.
func authFrame(code uint32, payload ...byte) []byte {
	body := binary.BigEndian.AppendUint32(nil, code)
	return frame('R', append(body, payload...))
}

// authStart is what a server sends before the session's parameters: a
// trust login.
var authStart = authFrame(authOK)

// readyIdle is ReadyForQuery, idle.
var readyIdle = frame('Z', []byte{'I'})

// relayHarness runs the real relay (both pumps, hooks, policy) of one
// connection between the fuzz target, acting as the client, and a fake
// upstream that answers every Query and every Sync with ReadyForQuery
// (idle) and nothing else: catalog facts come back empty (unknown), the
// blocker check finds nobody, every statement "succeeds".
type relayHarness struct {
	c      *clientConn
	client net.Conn // the target's end of the client leg
	done   chan struct{}

	mu       sync.Mutex
	received []wireFrame // frames the fake upstream received, in order
	srvDone  chan struct{}
}

// startRelay starts a session that is past authentication, on a server
// with guard g (nil: relay only), and its fake upstream.
func startRelay(tb testing.TB, g *guard.Guard) *relayHarness {
	clientEnd, proxyClient := net.Pipe()
	proxyUp, serverEnd := net.Pipe()
	srv := fuzzServer(g)
	c := &clientConn{srv: srv, idle: make(chan struct{}, 1), raw: proxyClient, client: proxyClient,
		cr: bufio.NewReaderSize(proxyClient, relayBufferSize), cw: newFlushWriter(proxyClient),
		upstream: proxyUp, upstreamRaw: proxyUp, upstreamAddr: "127.0.0.1:1",
		ur: bufio.NewReaderSize(proxyUp, relayBufferSize), uw: newFlushWriter(proxyUp)}
	c.sess.User, c.sess.Database = "fuzz", "fuzz"
	v := "15.0"
	c.sess.serverVersion.Store(&v)
	c.sess.txStatus.Store(uint32(TxIdle))
	c.relaying.Store(true)
	h := &relayHarness{c: c, client: clientEnd, done: make(chan struct{}), srvDone: make(chan struct{})}
	go h.serve(serverEnd)
	go func() {
		defer close(h.done)
		c.relay()
	}()
	return h
}

// serve is the fake upstream.
func (h *relayHarness) serve(conn net.Conn) {
	defer close(h.srvDone)
	defer conn.Close()
	r := bufio.NewReader(conn)
	for {
		typ, body, _, err := readMessage(r, DefaultMaxMessageSize, "client", nil)
		if err != nil {
			return
		}
		h.mu.Lock()
		h.received = append(h.received, wireFrame{typ, bytes.Clone(body)})
		h.mu.Unlock()
		switch typ {
		case 'Q', 'S':
			if _, err := conn.Write(readyIdle); err != nil {
				return
			}
		case 'X':
			return
		}
	}
}

// send writes frames as the client and reads what comes back until
// readies ReadyForQuery have arrived (or the connection ends).
func (h *relayHarness) send(tb testing.TB, frames []byte, readies int) []wireFrame {
	tb.Helper()
	h.client.SetDeadline(time.Now().Add(10 * time.Second))
	werr := make(chan error, 1)
	go func() { _, err := h.client.Write(frames); werr <- err }()
	var got []wireFrame
	r := bufio.NewReader(h.client)
	for n := 0; n < readies; {
		typ, body, _, err := readMessage(r, DefaultMaxMessageSize, "upstream", nil)
		if err != nil {
			tb.Fatalf("client read after %d frames (%s): %v", len(got), frameTypes(got), err)
		}
		got = append(got, wireFrame{typ, bytes.Clone(body)})
		if typ == 'Z' {
			n++
		}
	}
	if err := <-werr; err != nil {
		tb.Fatalf("client write: %v", err)
	}
	if r.Buffered() > 0 {
		tb.Fatalf("client got %d bytes after the last ReadyForQuery", r.Buffered())
	}
	return got
}

// close hangs up as the client and waits for the relay to end.
func (h *relayHarness) close(tb testing.TB) {
	tb.Helper()
	h.client.Close()
	select {
	case <-h.done:
	case <-time.After(10 * time.Second):
		tb.Fatal("the relay did not end after the client hung up")
	}
	select {
	case <-h.srvDone:
	case <-time.After(10 * time.Second):
		tb.Fatal("the upstream leg stayed open after the client hung up")
	}
}

// upstreamFrames returns what the fake upstream received.
func (h *relayHarness) upstreamFrames() []wireFrame {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]wireFrame(nil), h.received...)
}

func frameTypes(fs []wireFrame) string {
	var b []byte
	for _, f := range fs {
		b = append(b, f.typ)
	}
	return fmt.Sprintf("%q", b)
}
