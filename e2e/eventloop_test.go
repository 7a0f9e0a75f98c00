package e2e

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ddlguard/ddlguard/e2e/pgcluster"
	"github.com/ddlguard/ddlguard/guard"
	"github.com/ddlguard/ddlguard/metrics"
	"github.com/ddlguard/ddlguard/proxy"
)

// The event loop (proxy/eventloop_linux.go) relays idle plain connections
// and hands a connection back to its goroutines for anything it cannot do
// without waiting. Each subtest drives one hand-back path through a real
// server, checks that what the client sees is what PostgreSQL answers,
// and checks ddlguard_relay_loop_handbacks_total for the reason (so the
// loop was really relaying when it happened).

// loopProxy is ddlguard with a guard and its own metrics registry.
type loopProxy struct {
	*testProxy
	reg *prometheus.Registry
}

func startLoopProxy(t *testing.T) *loopProxy {
	reg := prometheus.NewRegistry()
	obs := metrics.NewProxy(reg, "test", nil)
	p := startGuardProxy(t, guard.DefaultConfig(), func(c *proxy.Config) {
		c.Observer = obs
		plainBothWays(c)
	})
	return &loopProxy{testProxy: p, reg: reg}
}

// plainBothWays turns TLS off on both legs: the loop takes only plain
// connections.
func plainBothWays(c *proxy.Config) {
	c.ClientTLS = nil
	c.UpstreamTLSMode = proxy.UpstreamTLSDisable
}

// handBacks is the hand-back counter for reason.
func (p *loopProxy) handBacks(t *testing.T, reason string) float64 {
	t.Helper()
	return p.counter(t, "ddlguard_relay_loop_handbacks_total", "reason", reason)
}

// counter is the value of counter name{label="value"}.
func (p *loopProxy) counter(t *testing.T, name, label, value string) float64 {
	t.Helper()
	fams, err := p.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{%s=%q}", name, label, value)
	return 0
}

// waitHandBacks waits until the counter for reason is above before.
func (p *loopProxy) waitHandBacks(t *testing.T, reason string, before float64) {
	t.Helper()
	eventually(t, 5*time.Second, "a hand-back for "+reason, func() bool { return p.handBacks(t, reason) > before })
}

// rawSession is a plain protocol connection through p, logged in.
func rawSession(t *testing.T, p *loopProxy) *rawConn {
	rc := dialRaw(t, p.Addr())
	rc.startup(t, pgproto3.ProtocolVersion30, nil)
	return rc
}

func TestEventLoopHandBacks(t *testing.T) {
	p := startLoopProxy(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := adminExec(ctx,
		"DROP TABLE IF EXISTS loop_t",
		"CREATE TABLE loop_t (id int PRIMARY KEY, v text)",
		"ALTER TABLE loop_t OWNER TO "+pgcluster.RoleTrust); err != nil {
		t.Fatal(err)
	}

	t.Run("a DDL in the middle of a DML stream", func(t *testing.T) {
		rc := rawSession(t, p)
		before := p.handBacks(t, proxy.HandBackDecision)
		for i := range 50 {
			got := rc.simpleQuery(t, fmt.Sprintf("SELECT %d + 1", i))
			if len(got) != 1 || got[0] != strconv.Itoa(i+1) {
				t.Fatalf("SELECT %d + 1 = %v", i, got)
			}
		}
		rc.simpleQuery(t, "ALTER TABLE loop_t ADD COLUMN IF NOT EXISTS w int")
		p.waitHandBacks(t, proxy.HandBackDecision, before)
		// The session goes on, relayed by the loop again.
		for i := range 50 {
			rc.simpleQuery(t, fmt.Sprintf("INSERT INTO loop_t (id, v) VALUES (%d, 'x') ON CONFLICT DO NOTHING", i))
		}
		if got := rc.simpleQuery(t, "SELECT count(*) FROM loop_t"); len(got) != 1 || got[0] != "50" {
			t.Errorf("count = %v, want 50", got)
		}
		before = p.handBacks(t, proxy.HandBackDecision)
		rc.simpleQuery(t, "ALTER TABLE loop_t ADD COLUMN IF NOT EXISTS w2 int")
		p.waitHandBacks(t, proxy.HandBackDecision, before)
	})

	t.Run("a client that does not read a large result", func(t *testing.T) {
		rc := rawSession(t, p)
		rc.simpleQuery(t, "SELECT 1") // the pumps are idle, in the loop
		before := p.handBacks(t, proxy.HandBackSocketFull)
		const rows, width = 4000, 2000 // 8 MB: more than both socket buffers
		rc.fe.SendQuery(&pgproto3.Query{String: fmt.Sprintf("SELECT repeat('y', %d) FROM generate_series(1, %d)", width, rows)})
		if err := rc.fe.Flush(); err != nil {
			t.Fatal(err)
		}
		p.waitHandBacks(t, proxy.HandBackSocketFull, before)
		n := 0
		for {
			msg, err := rc.fe.Receive()
			if err != nil {
				t.Fatal(err)
			}
			if d, ok := msg.(*pgproto3.DataRow); ok {
				if len(d.Values[0]) != width {
					t.Fatalf("row %d is %d bytes, want %d", n, len(d.Values[0]), width)
				}
				n++
			}
			if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
				break
			}
		}
		if n != rows {
			t.Errorf("%d rows, want %d", n, rows)
		}
		if got := rc.simpleQuery(t, "SELECT 'after'"); len(got) != 1 || got[0] != "after" {
			t.Errorf("after the large result: %v", got)
		}
	})

	t.Run("a message that arrives in pieces", func(t *testing.T) {
		rc := rawSession(t, p)
		rc.simpleQuery(t, "SELECT 1")
		frame, err := (&pgproto3.Query{String: "SELECT 'pieces' || 1"}).Encode(nil)
		if err != nil {
			t.Fatal(err)
		}
		// The header in two parts, then the body in two: the loop must
		// keep what came and relay the frame once it is whole.
		for _, part := range [][]byte{frame[:2], frame[2:5], frame[5:9], frame[9:]} {
			if _, err := rc.Write(part); err != nil {
				t.Fatal(err)
			}
			time.Sleep(30 * time.Millisecond)
		}
		row, _ := rawReceive[*pgproto3.DataRow](t, rc.fe)
		if string(row.Values[0]) != "pieces1" {
			t.Errorf("got %q, want pieces1", row.Values[0])
		}
		rawReceive[*pgproto3.ReadyForQuery](t, rc.fe)
	})

	t.Run("a message larger than the read buffer", func(t *testing.T) {
		rc := rawSession(t, p)
		rc.simpleQuery(t, "SELECT 1")
		before := p.handBacks(t, proxy.HandBackLargeFrame)
		big := strings.Repeat("z", 100<<10)
		got := rc.simpleQuery(t, "SELECT length('"+big+"')")
		if len(got) != 1 || got[0] != strconv.Itoa(len(big)) {
			t.Errorf("length = %v, want %d", got, len(big))
		}
		p.waitHandBacks(t, proxy.HandBackLargeFrame, before)
		if got := rc.simpleQuery(t, "SELECT 2"); len(got) != 1 || got[0] != "2" {
			t.Errorf("after the large message: %v", got)
		}
	})

	t.Run("a client that resets its connection", func(t *testing.T) {
		rc := rawSession(t, p)
		rc.simpleQuery(t, "SELECT 1")
		pid := rc.pid
		before := p.handBacks(t, proxy.HandBackPeerGone)
		rc.Conn.(*net.TCPConn).SetLinger(0)
		rc.Close()
		p.waitHandBacks(t, proxy.HandBackPeerGone, before)
		waitBackendGone(t, superConn(t, "postgres"), pid, 5*time.Second)
	})

	t.Run("ddlguard closes an idle connection", func(t *testing.T) {
		q := startLoopProxy(t)
		rc := rawSession(t, q)
		rc.simpleQuery(t, "SELECT 1")
		pid := rc.pid
		before := q.handBacks(t, proxy.HandBackClosed)
		q.Server.Close()
		q.waitHandBacks(t, proxy.HandBackClosed, before)
		rc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := rc.fe.Receive(); err == nil {
			t.Error("the client's connection stayed open after Close")
		}
		waitBackendGone(t, superConn(t, "postgres"), pid, 5*time.Second)
	})
}

// With the event loop turned off, every connection is relayed by its
// goroutines: nothing is ever handed back.
func TestEventLoopDisabled(t *testing.T) {
	reg := prometheus.NewRegistry()
	p := &loopProxy{testProxy: startGuardProxy(t, guard.DefaultConfig(), func(c *proxy.Config) {
		c.Observer = metrics.NewProxy(reg, "test", nil)
		plainBothWays(c)
		c.DisableEventLoop = true
	}), reg: reg}
	rc := rawSession(t, p)
	rc.simpleQuery(t, "SELECT 1")
	rc.simpleQuery(t, "CREATE TEMP TABLE loop_off (id int)")
	rc.simpleQuery(t, "ALTER TABLE loop_off ADD COLUMN v int")
	rc.simpleQuery(t, "SELECT repeat('z', 200000)")
	for _, r := range proxy.HandBackReasons {
		if n := p.handBacks(t, r); n != 0 {
			t.Errorf("handbacks{reason=%q} = %v with the event loop off, want 0", r, n)
		}
	}
}

// countingConn counts the bytes a client reads and writes.
type countingConn struct {
	net.Conn
	read, written atomic.Int64
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.read.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.written.Add(int64(n))
	return n, err
}

// The byte counters hear of every byte the loop relays exactly once (it
// sums them per pass of the loop), also across hand-backs to the pump
// goroutines and back: after a session's traffic, the counters have moved
// by exactly what the client wrote and read.
func TestEventLoopCountsBytes(t *testing.T) {
	p := startLoopProxy(t)
	conn, err := net.DialTimeout("tcp", p.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	cc := &countingConn{Conn: conn}
	rc := newRawConn(cc)
	rc.startup(t, pgproto3.ProtocolVersion30, nil)
	rc.simpleQuery(t, "SELECT 1") // the pumps are idle, in the loop

	const up, down = "client_to_upstream", "upstream_to_client"
	name := "ddlguard_relayed_bytes_total"
	// The loop reports a pass after it relays: wait for the counters to
	// catch up with the client before taking them as the baseline.
	settled := func(wantUp, wantDown float64) bool {
		return p.counter(t, name, "direction", up) == wantUp && p.counter(t, name, "direction", down) == wantDown
	}
	time.Sleep(100 * time.Millisecond)
	baseUp, baseDown := p.counter(t, name, "direction", up), p.counter(t, name, "direction", down)
	readBefore, writtenBefore := cc.read.Load(), cc.written.Load()

	before := p.handBacks(t, proxy.HandBackDecision)
	for i := range 300 {
		q := fmt.Sprintf("SELECT %d, repeat('b', %d)", i, i*7)
		if i%100 == 50 {
			q = "CREATE TEMP TABLE IF NOT EXISTS loop_bytes (id int)" // not relayed by the loop
		}
		rc.simpleQuery(t, q)
	}
	rc.simpleQuery(t, "SELECT repeat('y', 2000) FROM generate_series(1, 3000)") // 6 MB
	if p.handBacks(t, proxy.HandBackDecision) == before {
		t.Error("no statement was handed back for a decision: the loop did not relay this session")
	}
	wantUp := baseUp + float64(cc.written.Load()-writtenBefore)
	wantDown := baseDown + float64(cc.read.Load()-readBefore)
	eventually(t, 5*time.Second, "the byte counters to match the client's bytes", func() bool {
		return settled(wantUp, wantDown)
	})
}

// processCPU is the CPU time this process has used so far.
func processCPU(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// With event_loop_spin the loop relays as without it (a DDL still goes
// back to the pump goroutines for its decision, and the session carries on
// in the loop), and the spinning stops when the traffic stops: a loop
// still polling would cost the idle process a whole CPU.
func TestEventLoopSpin(t *testing.T) {
	reg := prometheus.NewRegistry()
	p := &loopProxy{testProxy: startGuardProxy(t, guard.DefaultConfig(), func(c *proxy.Config) {
		c.Observer = metrics.NewProxy(reg, "test", nil)
		plainBothWays(c)
		c.EventLoopSpin = proxy.MaxEventLoopSpin
	}), reg: reg}
	rc := rawSession(t, p)
	query := func(i int) {
		t.Helper()
		if got := rc.simpleQuery(t, fmt.Sprintf("SELECT %d * 2", i)); len(got) != 1 || got[0] != strconv.Itoa(i*2) {
			t.Fatalf("SELECT %d * 2 = %v", i, got)
		}
	}
	for i := range 200 {
		query(i)
	}
	before := p.handBacks(t, proxy.HandBackDecision)
	rc.simpleQuery(t, "CREATE TEMP TABLE loop_spin (id int)")
	rc.simpleQuery(t, "ALTER TABLE loop_spin ADD COLUMN v int")
	p.waitHandBacks(t, proxy.HandBackDecision, before)
	for i := range 200 {
		query(i)
	}
	if got := rc.simpleQuery(t, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'loop_spin'::regclass AND attname = 'v'"); len(got) != 1 || got[0] != "1" {
		t.Fatalf("the ALTER's column: %v", got)
	}

	// Idle: the loop spins at most 1 ms after its last relay, then sleeps.
	const idle = time.Second
	time.Sleep(50 * time.Millisecond)
	cpu0 := processCPU(t)
	time.Sleep(idle)
	if used := processCPU(t) - cpu0; used > idle/5 {
		t.Errorf("the process used %s of CPU in %s with its one client idle, want at most %s (is the loop still spinning?)", used, idle, idle/5)
	}
}
