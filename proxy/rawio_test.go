//go:build linux

package proxy

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// rawOnly makes every relay call in this test take the raw path (no
// sysmon keep-alive call through net.Conn) until the test ends.
func rawOnly(t *testing.T) {
	saved := lastRuntimeIO.Load()
	lastRuntimeIO.Store(int64(24 * time.Hour * 365))
	t.Cleanup(func() { lastRuntimeIO.Store(saved) })
}

// relaySocketKinds are the socket types the relay reads and writes
// through: a net.Conn with raw I/O (rawio_linux.go), and a socket taken
// over by an event loop (ownedsocket_linux.go). Both must behave as a
// net.Conn does.
var relaySocketKinds = []struct {
	name string
	wrap func(t *testing.T, c net.Conn) net.Conn
}{
	{"rawio", func(t *testing.T, c net.Conn) net.Conn {
		r, ok := withRawIO(c).(*rawIOConn)
		if !ok {
			t.Fatalf("withRawIO(%T) = %T, want *rawIOConn", c, withRawIO(c))
		}
		return r
	}},
	{"owned", func(t *testing.T, c net.Conn) net.Conn {
		loops, err := eventLoops()
		if err != nil {
			t.Fatal(err)
		}
		s, err := own(c, loops[0])
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}},
}

// forEachSocketKind runs f as a subtest for each relay socket kind.
func forEachSocketKind(t *testing.T, f func(t *testing.T, wrap func(*testing.T, net.Conn) net.Conn)) {
	for _, k := range relaySocketKinds {
		t.Run(k.name, func(t *testing.T) { f(t, k.wrap) })
	}
}

// rawPair returns a loopback TCP connection wrapped by wrap and its plain
// peer.
func rawPair(t *testing.T, wrap func(*testing.T, net.Conn) net.Conn) (net.Conn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer := <-accepted
	if peer == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); peer.Close() })
	return wrap(t, c), peer.(*net.TCPConn)
}

// closeWrite shuts down the sending side of c's socket.
func closeWrite(t *testing.T, c net.Conn) {
	if r, ok := c.(*rawIOConn); ok {
		c = r.Conn
	}
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Error(err)
		return
	}
	rc.Control(func(fd uintptr) { syscall.Shutdown(int(fd), syscall.SHUT_WR) })
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// Large transfers both ways at once: reads that find the socket empty and
// writes that find it full wait in the poller and resume; every byte
// arrives once, in order.
func TestRelaySocketTransfersBothWays(t *testing.T) {
	rawOnly(t)
	forEachSocketKind(t, testTransfersBothWays)
}

func testTransfersBothWays(t *testing.T, wrap func(*testing.T, net.Conn) net.Conn) {
	c, peer := rawPair(t, wrap)
	in, out := randomBytes(t, 8<<20), randomBytes(t, 8<<20)
	peerGot := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(peer)
		peerGot <- b
	}()
	go func() {
		peer.Write(in)
		peer.CloseWrite()
	}()
	writeErr := make(chan error, 1)
	go func() {
		_, err := c.Write(out) // one call: larger than any socket buffer
		closeWrite(t, c)
		writeErr <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading: %v", err)
	}
	if !bytes.Equal(got, in) {
		t.Errorf("read %d bytes, want the %d sent", len(got), len(in))
	}
	if err := <-writeErr; err != nil {
		t.Fatalf("writing: %v", err)
	}
	if b := <-peerGot; !bytes.Equal(b, out) {
		t.Errorf("peer read %d bytes, want the %d written", len(b), len(out))
	}
}

func TestRelaySocketErrorsAsNetConn(t *testing.T) {
	rawOnly(t)
	forEachSocketKind(t, testErrorsAsNetConn)
}

func testErrorsAsNetConn(t *testing.T, wrap func(*testing.T, net.Conn) net.Conn) {
	t.Run("EOF", func(t *testing.T) {
		c, peer := rawPair(t, wrap)
		peer.Write([]byte("abc"))
		peer.Close()
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "abc" {
			t.Errorf("ReadAll = %q, %v; want abc, nil (EOF ends it)", got, err)
		}
		if n, err := c.Read(make([]byte, 8)); n != 0 || err != io.EOF {
			t.Errorf("Read after EOF = %d, %v; want 0, io.EOF", n, err)
		}
	})
	t.Run("ReadDeadline", func(t *testing.T) {
		c, _ := rawPair(t, wrap)
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		_, err := c.Read(make([]byte, 8))
		var ne net.Error
		if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("Read past the deadline: %v; want a timeout net.Error wrapping os.ErrDeadlineExceeded", err)
		}
		if oe, ok := errors.AsType[*net.OpError](err); !ok || oe.Op != "read" {
			t.Errorf("error %#v, want *net.OpError with Op read", err)
		}
	})
	t.Run("WriteDeadline", func(t *testing.T) {
		c, _ := rawPair(t, wrap) // the peer never reads: the buffers fill
		c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		n, err := c.Write(make([]byte, 64<<20))
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Write to a full socket past the deadline: %d, %v; want os.ErrDeadlineExceeded", n, err)
		}
		if n <= 0 || n >= 64<<20 {
			t.Errorf("Write reported %d bytes written, want the part that fit", n)
		}
	})
	t.Run("ClosedWhileReading", func(t *testing.T) {
		c, _ := rawPair(t, wrap)
		done := make(chan error, 1)
		go func() {
			_, err := c.Read(make([]byte, 8))
			done <- err
		}()
		time.Sleep(20 * time.Millisecond)
		c.Close()
		if err := <-done; !errors.Is(err, net.ErrClosed) {
			t.Errorf("Read on a connection closed under it: %v; want net.ErrClosed", err)
		}
	})
	t.Run("Reset", func(t *testing.T) {
		c, peer := rawPair(t, wrap)
		peer.SetLinger(0)
		peer.Close()
		time.Sleep(20 * time.Millisecond)
		_, err := c.Read(make([]byte, 8))
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("Read after the peer reset: %v; want ECONNRESET", err)
		}
		if oe, ok := errors.AsType[*net.OpError](err); !ok || oe.Op != "read" || oe.Addr == nil {
			t.Errorf("error %#v, want *net.OpError with Op read and the peer address", err)
		}
	})
}

// viaRuntime lets one call in per sysmonKeepalive through net.Conn, however
// many goroutines ask.
func TestViaRuntimeAtMostOncePerInterval(t *testing.T) {
	begin := time.Now()
	var got int
	for time.Since(begin) < 5*sysmonKeepalive {
		if viaRuntime() {
			got++
		}
	}
	max := int(time.Since(begin)/sysmonKeepalive) + 1
	if got < 1 || got > max {
		t.Errorf("%d calls through net.Conn in %s, want 1 to %d", got, time.Since(begin), max)
	}
}

// Other connection types are relayed through their own Read and Write.
func TestWithRawIOLeavesOtherConnsAlone(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if got := withRawIO(a); got != a {
		t.Errorf("withRawIO(net.Pipe end) = %T, want it unchanged", got)
	}
}

// Unix sockets (ddlguard's own Unix listener) take the raw path too.
func TestRelaySocketUnix(t *testing.T) {
	rawOnly(t)
	forEachSocketKind(t, testUnixSocket)
}

func testUnixSocket(t *testing.T, wrap func(*testing.T, net.Conn) net.Conn) {
	ln, err := net.Listen("unix", t.TempDir()+"/s")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		io.Copy(c, c) // echo until EOF
		c.Close()
	}()
	c, err := net.Dial("unix", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := wrap(t, c)
	want := randomBytes(t, 1<<20)
	go func() {
		r.Write(want)
		closeWrite(t, r)
	}()
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("echo through a Unix socket: %d bytes, %v; want the %d written", len(got), err, len(want))
	}
}
