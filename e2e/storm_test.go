package e2e

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/ddlguard/ddlguard/e2e/pgcluster"
	"github.com/ddlguard/ddlguard/proxy"
)

// A storm of bad clients against one ddlguard: garbage instead of a
// startup packet, bad lengths, truncated packets and messages, startups
// that never finish, unknown message types, messages over
// max_message_size, TLS and GSS requests abandoned half-way, cancel
// requests for keys nobody issued, and plain connect-and-drop, 3000
// connections in parallel batches. Each must end with a clean close (EOF
// or, where the client left first, a reset) within a bound, with a FATAL
// where the protocol allows one. Meanwhile a normal client keeps running
// queries, and opening new sessions, without a single failure. Afterwards
// no goroutine, file descriptor or connection of ddlguard is left behind.

const (
	stormConnections  = 3000
	stormWorkers      = 64
	stormStartupLimit = 300 * time.Millisecond
)

// stormCase is one kind of bad client; run does its thing on a fresh
// connection and returns what went wrong ("" when all is well).
type stormCase struct {
	name   string
	weight int
	run    func(addr string) string
}

// stormEnd reads what ddlguard sends until it closes, at most for d.
// closed is false when the connection was still open after d.
func stormEnd(conn net.Conn, d time.Duration) (data []byte, closed bool, err error) {
	conn.SetReadDeadline(time.Now().Add(d))
	data, err = io.ReadAll(conn)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return data, false, err
	}
	return data, true, err
}

// expectClose checks the end of a connection: closed in time, nothing but
// whole ErrorResponse frames, the last a FATAL with code (none at all when
// code is ""). A reset after the FATAL is a clean close too.
func expectClose(conn net.Conn, code, contains string, within time.Duration) string {
	data, closed, err := stormEnd(conn, within)
	if !closed {
		return fmt.Sprintf("still open after %s (got %q)", within, data)
	}
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		return fmt.Sprintf("read error %v", err)
	}
	if code == "" {
		if len(data) > 0 {
			return fmt.Sprintf("got %q, want a silent close", data)
		}
		return ""
	}
	var last *pgproto3.ErrorResponse
	for rest := data; len(rest) > 0; {
		if len(rest) < 5 {
			return fmt.Sprintf("partial frame %q", rest)
		}
		n := int(binary.BigEndian.Uint32(rest[1:5]))
		if rest[0] != 'E' || n < 4 || len(rest) < 1+n {
			return fmt.Sprintf("got %q, want ErrorResponse frames only", data)
		}
		last = &pgproto3.ErrorResponse{}
		if err := last.Decode(rest[5 : 1+n]); err != nil {
			return fmt.Sprintf("bad ErrorResponse %q", rest[5:1+n])
		}
		rest = rest[1+n:]
	}
	if last == nil {
		return fmt.Sprintf("closed without the FATAL %s %q (read error %v)", code, contains, err)
	}
	if last.Severity != "FATAL" || last.Code != code || !strings.Contains(last.Message, contains) {
		return fmt.Sprintf("got %s %s %q, want FATAL %s containing %q", last.Severity, last.Code, last.Message, code, contains)
	}
	return ""
}

func stormDial(addr string) (net.Conn, error) {
	return net.DialTimeout("tcp", addr, 5*time.Second)
}

// preStartup sends raw bytes before any startup and expects the close.
func preStartup(payload []byte, halfClose bool, code, contains string, within time.Duration) func(string) string {
	return func(addr string) string {
		conn, err := stormDial(addr)
		if err != nil {
			return "dial: " + err.Error()
		}
		defer conn.Close()
		if len(payload) > 0 {
			if _, err := conn.Write(payload); err != nil {
				return "write: " + err.Error()
			}
		}
		if halfClose {
			conn.(*net.TCPConn).CloseWrite()
		}
		return expectClose(conn, code, contains, within)
	}
}

// afterStartup logs in (trust) and then sends payload.
func afterStartup(payload []byte, halfClose bool, code, contains string) func(string) string {
	return func(addr string) string {
		conn, err := stormDial(addr)
		if err != nil {
			return "dial: " + err.Error()
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(20 * time.Second))
		r := newRawConn(conn)
		if err := r.handshake(pgproto3.ProtocolVersion30, map[string]string{"application_name": "storm"}); err != nil {
			return "login: " + err.Error()
		}
		if payload == nil { // drop with a reset, nothing to check
			conn.(*net.TCPConn).SetLinger(0)
			return ""
		}
		if _, err := conn.Write(payload); err != nil {
			return "write: " + err.Error()
		}
		if halfClose {
			conn.(*net.TCPConn).CloseWrite()
		}
		return expectClose(conn, code, contains, 10*time.Second)
	}
}

func stormCases() []stormCase {
	quick := 3 * time.Second
	timeout := stormStartupLimit + 2*time.Second
	ssl := []byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}
	gss := []byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30}
	cancel := []byte{0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e, 0x7f, 0xff, 0xff, 0xfe, 1, 2, 3, 4}
	partial := append([]byte{0, 0, 0, 40}, startupPacket(3<<16, []string{"user", "x"})[4:12]...)
	return []stormCase{
		{"connect, half-close", 300, preStartup(nil, true, "", "", quick)},
		{"connect, reset", 300, func(addr string) string {
			conn, err := stormDial(addr)
			if err != nil {
				return "dial: " + err.Error()
			}
			conn.(*net.TCPConn).SetLinger(0)
			conn.Close()
			return ""
		}},
		{"HTTP request", 300, preStartup([]byte("GET / HTTP/1.1\r\nHost: ddlguard\r\n\r\n"), false, "08P01", "invalid length of startup packet", quick)},
		{"startup length 3", 150, preStartup([]byte{0, 0, 0, 3, 0, 3, 0, 0}, false, "08P01", "invalid length of startup packet", quick)},
		{"startup length 10001", 150, preStartup([]byte{0, 0, 0x27, 0x11, 0, 3, 0, 0}, false, "08P01", "invalid length of startup packet", quick)},
		{"startup length 2 GiB", 50, preStartup([]byte{0x80, 0, 0, 0, 0, 3, 0, 0}, false, "08P01", "invalid length of startup packet", quick)},
		{"truncated startup, half-close", 300, preStartup(partial, true, "", "", quick)},
		{"silent", 150, preStartup(nil, false, "", "", timeout)},
		{"startup never finishes", 150, preStartup(partial, false, "", "", timeout)},
		{"protocol 2.0", 150, preStartup(startupPacket(2<<16, []string{"user", "x"}), false, "0A000", "unsupported frontend protocol 2.0", quick)},
		{"no user", 100, preStartup(startupPacket(3<<16, []string{"database", "postgres"}), false, "28000", "no PostgreSQL user name", quick)},
		{"no terminator", 50, preStartup(func() []byte {
			b := startupPacket(3<<16, []string{"user", "x"})
			b[len(b)-1] = 'y'
			return b
		}(), false, "08P01", "invalid startup packet layout", quick)},
		{"replication", 100, preStartup(startupPacket(3<<16, []string{"user", "x", "replication", "database"}), false, "0A000", "replication", quick)},
		{"SSLRequest, then drop", 150, func(addr string) string {
			conn, problem := sslAccepted(addr, ssl, quick)
			if conn == nil {
				return problem
			}
			defer conn.Close()
			conn.(*net.TCPConn).CloseWrite()
			return expectClose(conn, "", "", quick)
		}},
		{"SSLRequest, then garbage", 100, func(addr string) string {
			conn, problem := sslAccepted(addr, ssl, quick)
			if conn == nil {
				return problem
			}
			defer conn.Close()
			conn.Write([]byte("this is not a TLS ClientHello\r\n"))
			data, closed, _ := stormEnd(conn, quick)
			if !closed {
				return "still open after a failed TLS handshake"
			}
			if len(data) > 0 && data[0] != 0x15 { // a TLS alert record at most
				return fmt.Sprintf("got %q after a failed TLS handshake", data)
			}
			return ""
		}},
		{"GSSENCRequest twice", 100, func(addr string) string {
			conn, err := stormDial(addr)
			if err != nil {
				return "dial: " + err.Error()
			}
			defer conn.Close()
			conn.Write(gss)
			var b [1]byte
			conn.SetReadDeadline(time.Now().Add(quick))
			if _, err := io.ReadFull(conn, b[:]); err != nil || b[0] != 'N' {
				return fmt.Sprintf("GSSENCRequest answered %q, %v", b[0], err)
			}
			conn.Write(gss)
			return expectClose(conn, "08P01", "unexpected GSSENCRequest", quick)
		}},
		{"cancel, unknown key", 100, preStartup(cancel, false, "", "", quick)},
		// After a trust login; each of these costs a backend.
		{"unknown message type", 60, afterStartup(frameBytes('z', []byte("zzz")), false, "08P01", "invalid frontend message type")},
		{"message over max_message_size", 60, afterStartup(frameBytes('Q', make([]byte, 100<<10)), false, "08P01", "invalid message length")},
		{"message length 2 GiB", 20, afterStartup([]byte{'Q', 0x7f, 0xff, 0xff, 0xff}, false, "08P01", "invalid message length")},
		{"message length 3", 20, afterStartup([]byte{'Q', 0, 0, 0, 3}, false, "08P01", "invalid message length")},
		{"truncated message, half-close", 60, afterStartup([]byte{'Q', 0, 0, 0, 100, 'S', 'E', 'L'}, true, "", "")},
		{"reset after login", 40, afterStartup(nil, false, "", "")},
		{"terminate", 40, afterStartup(frameBytes('X', nil), false, "", "")},
	}
}

// frameBytes encodes one typed frame.
func frameBytes(typ byte, body []byte) []byte {
	b := []byte{typ, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(4+len(body)))
	return append(b, body...)
}

// openFDs counts this process's open file descriptors.
func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// steadyClient runs queries, and now and then a new session, through p
// until stop; it reports how many of each succeeded and the first errors.
type steadyClient struct {
	queries, sessions atomic.Int64
	mu                sync.Mutex
	errs              []string
}

func (s *steadyClient) fail(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.errs) < 10 {
		s.errs = append(s.errs, fmt.Sprintf(format, args...))
	}
}

func (s *steadyClient) run(dsn string, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		s.fail("connect: %v", err)
		return
	}
	defer conn.Close(ctx)
	lastSession := time.Now()
	for {
		select {
		case <-stop:
			return
		default:
		}
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var n int
		err := conn.QueryRow(qctx, "SELECT $1::int + 1", s.queries.Load()).Scan(&n)
		cancel()
		if err != nil || int64(n) != s.queries.Load()+1 {
			s.fail("query %d: %v (got %d)", s.queries.Load(), err, n)
			return
		}
		s.queries.Add(1)
		if time.Since(lastSession) > 200*time.Millisecond {
			lastSession = time.Now()
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			c2, err := pgx.Connect(cctx, dsn)
			if err == nil {
				_, err = c2.Exec(cctx, "SELECT 1")
				c2.Close(cctx)
			}
			cancel()
			if err != nil {
				s.fail("new session: %v", err)
				return
			}
			s.sessions.Add(1)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestStormBadClients(t *testing.T) {
	p := startProxy(t, keepTLS, func(c *proxy.Config) {
		c.StartupTimeout = stormStartupLimit
		c.MaxMessageSize = 64 << 10
	})
	super := superConn(t, "postgres")
	runtime.GC()
	baseGoroutines, baseFDs := runtime.NumGoroutine(), openFDs(t)

	steady := &steadyClient{}
	stop, steadyDone := make(chan struct{}), make(chan struct{})
	go steady.run(p.DSN(pgcluster.RoleTrust, "postgres", "sslmode", "disable", "application_name", "storm-steady"), stop, steadyDone)

	cases := stormCases()
	var jobs []int
	for i, c := range cases {
		for range c.weight {
			jobs = append(jobs, i)
		}
	}
	if len(jobs) != stormConnections {
		t.Fatalf("%d storm connections planned, want %d", len(jobs), stormConnections)
	}
	rng := rand.New(rand.NewPCG(10, 2026))
	rng.Shuffle(len(jobs), func(i, j int) { jobs[i], jobs[j] = jobs[j], jobs[i] })

	type tally struct {
		ok     int
		failed []string
	}
	var mu sync.Mutex
	results := make([]tally, len(cases))
	next := atomic.Int64{}
	begin := time.Now()
	var wg sync.WaitGroup
	for range stormWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(len(jobs)) {
					return
				}
				k := jobs[i]
				problem := cases[k].run(p.Addr())
				mu.Lock()
				if problem == "" {
					results[k].ok++
				} else {
					results[k].failed = append(results[k].failed, problem)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	stormTook := time.Since(begin)
	close(stop)
	<-steadyDone

	total := 0
	for i, c := range cases {
		r := results[i]
		total += r.ok
		if len(r.failed) > 0 {
			t.Errorf("%s: %d of %d connections went wrong, e.g. %s", c.name, len(r.failed), c.weight, r.failed[0])
		}
	}
	t.Logf("storm: %d connections (%d kinds) in %s, %d ended as expected", len(jobs), len(cases), stormTook.Round(time.Millisecond), total)
	t.Logf("steady client: %d queries and %d new sessions during the storm", steady.queries.Load(), steady.sessions.Load())
	if len(steady.errs) > 0 {
		t.Errorf("the steady client failed during the storm: %s", strings.Join(steady.errs, "; "))
	}
	if steady.queries.Load() < 20 || steady.sessions.Load() < 1 {
		t.Errorf("the steady client ran only %d queries and %d sessions", steady.queries.Load(), steady.sessions.Load())
	}

	waitProxyIdle(t, p)
	deadline := time.Now().Add(15 * time.Second)
	var g, fds int
	for {
		runtime.GC()
		g, fds = runtime.NumGoroutine(), openFDs(t)
		if (g <= baseGoroutines+5 && fds <= baseFDs+2) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("goroutines %d -> %d, file descriptors %d -> %d", baseGoroutines, g, baseFDs, fds)
	if g > baseGoroutines+5 {
		buf := make([]byte, 1<<20)
		t.Errorf("goroutine leak: %d before the storm, %d after\n%s", baseGoroutines, g, buf[:runtime.Stack(buf, true)])
	}
	if fds > baseFDs+2 {
		t.Errorf("file descriptor leak: %d before the storm, %d after", baseFDs, fds)
	}
	// The cluster has no backend left from the storm.
	eventually(t, 10*time.Second, "the storm's backends to exit", func() bool {
		var n int
		super.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE application_name = 'storm'`).Scan(&n)
		return n == 0
	})
}

// sslAccepted dials addr and sends an SSLRequest, which must be answered
// 'S'; it returns the connection, or nil and what went wrong.
func sslAccepted(addr string, sslRequest []byte, wait time.Duration) (net.Conn, string) {
	conn, err := stormDial(addr)
	if err != nil {
		return nil, "dial: " + err.Error()
	}
	conn.Write(sslRequest)
	var b [1]byte
	conn.SetReadDeadline(time.Now().Add(wait))
	if _, err := io.ReadFull(conn, b[:]); err != nil || b[0] != 'S' {
		conn.Close()
		return nil, fmt.Sprintf("SSLRequest answered %q, %v", b[0], err)
	}
	return conn, ""
}
