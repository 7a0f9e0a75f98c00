package proxy

// Benchmarks of the relay loop (pump.run), for the relay throughput work:
//
//	go test -run '^$' -bench 'Pump|RelayRoundTrip' -benchmem ./proxy
//
// BenchmarkPump* push frames from memory through one pump into a discarding
// writer: the loop's own cost per frame (framing, inspect table, hook,
// copy, counters), without syscalls. One op is one frame, or one pgbench -S
// response for BenchmarkPumpResponse.
//
// BenchmarkRelayRoundTrip measures a query's round trip over loopback TCP
// against a fake server that answers every Query like PostgreSQL answers
// pgbench -S: directly, and through the two pumps of a relay (client pump
// and upstream pump, each on its own goroutine, as in clientConn.relay).
// The difference is what relaying adds per query: two more socket reads and
// writes and two goroutine wake-ups. The hooks there do nothing, so policy
// (intercept.go) is not in it; `ddlguard-bench profile` covers the whole
// proxy.

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Frames shaped like pgbench -S traffic.
var (
	benchQuery = frame('Q', []byte("SELECT abalance FROM pgbench_accounts WHERE aid = 454545;\x00"))
	// RowDescription (one int4 column "abalance"), DataRow, CommandComplete,
	// ReadyForQuery: the answer to benchQuery.
	benchRowDesc = frame('T', append(append([]byte{0, 1}, "abalance\x00"...),
		0, 0, 0x40, 0x05, 0, 3, 0, 0, 0, 23, 0, 4, 0xff, 0xff, 0xff, 0xff, 0, 0))
	benchDataRow  = frame('D', []byte{0, 1, 0, 0, 0, 1, '0'})
	benchComplete = frame('C', []byte("SELECT 1\x00"))
	benchReady    = frame('Z', []byte{'I'})
	benchResponse = bytes.Join([][]byte{benchRowDesc, benchDataRow, benchComplete, benchReady}, nil)
)

// repeatReader yields data over and over, count times, then io.EOF. It
// fills each Read completely, as a busy socket would fill the read buffer.
type repeatReader struct {
	data  []byte
	off   int // position in data
	count int // whole copies of data still to yield, the current one included
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) && r.count > 0 {
		k := copy(p[n:], r.data[r.off:])
		n += k
		r.off += k
		if r.off == len(r.data) {
			r.off = 0
			r.count--
		}
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// benchPump runs one pump over b.N copies of unit (one or more frames) and
// checks that every byte went through.
func benchPump(b *testing.B, unit []byte, inspect *[256]bool) {
	var relayed atomic.Int64
	hook := func(typ byte, body []byte) (frameAction, []byte) { return forwardFrame, nil }
	b.ReportAllocs()
	b.SetBytes(int64(len(unit)))
	b.ResetTimer()
	p := pump{
		r:     bufio.NewReaderSize(&repeatReader{data: unit, count: b.N}, relayBufferSize),
		w:     newFlushWriter(io.Discard),
		limit: DefaultMaxMessageSize, side: "upstream", inspect: inspect, hooks: hookFunc(hook), counter: &relayed,
	}
	_, _, err := p.run()
	b.StopTimer()
	if !errors.Is(err, io.EOF) {
		b.Fatalf("pump stopped with %v, want EOF", err)
	}
	if want := int64(len(unit)) * int64(b.N); relayed.Load() != want {
		b.Fatalf("relayed %d bytes, want %d", relayed.Load(), want)
	}
}

// BenchmarkPumpDataRow: small DataRows, not inspected (the bulk of a result
// set), through the upstream pump's inspect table.
func BenchmarkPumpDataRow(b *testing.B) { benchPump(b, benchDataRow, &upstreamInspect) }

// BenchmarkPumpQuery: small Query frames, inspected, through the client
// pump's inspect table with a hook that forwards.
func BenchmarkPumpQuery(b *testing.B) { benchPump(b, benchQuery, &clientInspect) }

// BenchmarkPumpResponse: a whole pgbench -S answer (RowDescription,
// DataRow, CommandComplete, ReadyForQuery; the last one inspected) per op.
func BenchmarkPumpResponse(b *testing.B) { benchPump(b, benchResponse, &upstreamInspect) }

// BenchmarkRelayRoundTrip: one Query and its answer over loopback TCP, per
// op. pumps-rawio relays over withRawIO as the proxy does; in this one
// process the client's and the fake server's net.Conn calls keep sysmon
// awake anyway, so the gain of raw I/O (no sysmon wake-ups) shows only
// against separate processes: make bench, docs/perf/README.md.
func BenchmarkRelayRoundTrip(b *testing.B) {
	b.Run("direct", func(b *testing.B) {
		server := startFakeServer(b)
		benchRoundTrips(b, server)
	})
	b.Run("pumps", func(b *testing.B) {
		server := startFakeServer(b)
		proxyAddr := startPumpRelay(b, server, false)
		benchRoundTrips(b, proxyAddr)
	})
	b.Run("pumps-rawio", func(b *testing.B) {
		server := startFakeServer(b)
		proxyAddr := startPumpRelay(b, server, true)
		benchRoundTrips(b, proxyAddr)
	})
}

// benchRoundTrips connects to addr and sends benchQuery b.N times, reading
// the whole answer each time.
func benchRoundTrips(b *testing.B, addr string) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	if err := roundTrips(conn, 100); err != nil { // warm up: connections, goroutines, buffers
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	if err := roundTrips(conn, b.N); err != nil {
		b.Fatal(err)
	}
}

// roundTrips sends benchQuery n times on conn and reads and checks the
// whole answer each time.
func roundTrips(conn net.Conn, n int) error {
	resp := make([]byte, len(benchResponse))
	for range n {
		if _, err := conn.Write(benchQuery); err != nil {
			return err
		}
		if _, err := io.ReadFull(conn, resp); err != nil {
			return err
		}
	}
	if n > 0 && !bytes.Equal(resp, benchResponse) {
		return errors.New("the answer arrived altered")
	}
	return nil
}

// startFakeServer listens on loopback and answers every benchQuery on every
// connection with benchResponse, until the benchmark ends.
func startFakeServer(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	b.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				b.Cleanup(func() { conn.Close() })
				answerQueries(conn)
			})
		}
	})
	return ln.Addr().String()
}

// answerQueries answers every benchQuery on conn with benchResponse until
// conn fails, then closes it.
func answerQueries(conn net.Conn) {
	defer conn.Close()
	q := make([]byte, len(benchQuery))
	for {
		if _, err := io.ReadFull(conn, q); err != nil {
			return
		}
		if _, err := conn.Write(benchResponse); err != nil {
			return
		}
	}
}

// startPumpRelay listens on loopback and relays each connection to upstream
// with two pumps, as clientConn.relay does after startup: the client pump
// with clientInspect, the upstream pump with upstreamInspect, hooks that
// forward every frame, buffers of relayBufferSize; raw: over withRawIO, as
// clientConn does, else over the plain net.Conns.
func startPumpRelay(b *testing.B, upstream string, raw bool) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	b.Cleanup(func() { ln.Close(); wg.Wait() })
	forward := func(typ byte, body []byte) (frameAction, []byte) { return forwardFrame, nil }
	wg.Go(func() {
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", upstream)
			if err != nil {
				client.Close()
				return
			}
			b.Cleanup(func() { client.Close(); server.Close() })
			var toServer, toClient atomic.Int64
			if raw {
				client, server = withRawIO(client), withRawIO(server)
			}
			up := pump{r: bufio.NewReaderSize(client, relayBufferSize), w: newFlushWriter(server),
				limit: DefaultMaxMessageSize, side: "client", inspect: &clientInspect, hooks: hookFunc(forward),
				counter: &toServer, toUpstream: true}
			down := pump{r: bufio.NewReaderSize(server, relayBufferSize), w: newFlushWriter(client),
				limit: DefaultMaxMessageSize, side: "upstream", inspect: &upstreamInspect, hooks: hookFunc(forward),
				counter: &toClient}
			wg.Go(func() { up.run(); server.Close() })
			wg.Go(func() { down.run(); client.Close() })
		}
	})
	return ln.Addr().String()
}
