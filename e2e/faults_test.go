package e2e

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/ddlguard/ddlguard/e2e/pgcluster"
	"github.com/ddlguard/ddlguard/proxy"
)

// expectFatal reads until an ErrorResponse and then end of stream.
func expectFatal(t *testing.T, conn net.Conn, code, contains string) {
	t.Helper()
	fe := pgproto3.NewFrontend(conn, conn)
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	for {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatalf("expected FATAL %s, got read error %v", code, err)
		}
		if e, ok := msg.(*pgproto3.ErrorResponse); ok {
			if e.Severity != "FATAL" || e.Code != code || !strings.Contains(e.Message, contains) {
				t.Fatalf("got %s %s %q, want FATAL %s containing %q", e.Severity, e.Code, e.Message, code, contains)
			}
			break
		}
	}
	if _, err := fe.Receive(); err == nil {
		t.Fatal("connection still open after FATAL")
	}
}

// A client that vanishes mid-statement leaves no backend behind: the
// backend is cancelled and its socket closed at once (a backend sleeping or
// waiting for a lock would not notice a closed socket by itself).
func TestFaultClientKilledMidQuery(t *testing.T) {
	p := startProxy(t)
	super := superConn(t, "postgres")
	for _, how := range []string{"close", "reset", "execute without sync"} {
		t.Run(how, func(t *testing.T) {
			r := dialRaw(t, p.Addr())
			r.startup(t, pgproto3.ProtocolVersion30, nil)
			const q = "SELECT pg_sleep(60)"
			if how == "execute without sync" {
				// Extended protocol with Flush instead of Sync: the backend
				// runs the statement but owes no ReadyForQuery.
				r.fe.Send(&pgproto3.Parse{Query: q})
				r.fe.Send(&pgproto3.Bind{})
				r.fe.Send(&pgproto3.Execute{})
				r.fe.Send(&pgproto3.Flush{})
			} else {
				r.fe.Send(&pgproto3.Query{String: q})
			}
			if err := r.fe.Flush(); err != nil {
				t.Fatal(err)
			}
			if err := waitActive(context.Background(), super, r.pid, q); err != nil {
				t.Fatal(err)
			}
			if how == "reset" {
				r.Conn.(*net.TCPConn).SetLinger(0)
			}
			r.Conn.Close()
			gone := time.Now()
			waitBackendGone(t, super, r.pid, time.Second)
			t.Logf("backend %d gone %s after the client", r.pid, time.Since(gone).Round(time.Millisecond))
		})
	}
}

// A client that vanishes inside a transaction holding a lock releases the
// lock at once.
func TestFaultClientGoneReleasesLocks(t *testing.T) {
	p := startProxy(t)
	super := superConn(t, "postgres")
	ctx := context.Background()
	if _, err := super.Exec(ctx, "CREATE TABLE IF NOT EXISTS fault_locked(a int); GRANT ALL ON fault_locked TO PUBLIC"); err != nil {
		t.Fatal(err)
	}
	r := dialRaw(t, p.Addr())
	r.startup(t, pgproto3.ProtocolVersion30, nil)
	r.fe.Send(&pgproto3.Query{String: "BEGIN; LOCK TABLE fault_locked IN ACCESS EXCLUSIVE MODE"})
	r.fe.Flush()
	if rfq, _ := rawReceive[*pgproto3.ReadyForQuery](t, r.fe); rfq.TxStatus != 'T' {
		t.Fatalf("tx status %c, want T", rfq.TxStatus)
	}
	r.Conn.Close()
	eventually(t, time.Second, "lock to be released", func() bool {
		var n int
		super.QueryRow(ctx, "SELECT count(*) FROM pg_locks WHERE relation = 'fault_locked'::regclass").Scan(&n)
		return n == 0
	})
}

// When the backend dies, the client reads the server's own FATAL, and the
// proxy keeps serving new connections.
func TestFaultUpstreamBackendTerminated(t *testing.T) {
	p := startProxy(t)
	super := superConn(t, "postgres")
	ctx := context.Background()
	conn := p.Connect(t, pgcluster.RoleSCRAM, "app", "channel_binding", "disable")
	var pid int32
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if _, err := super.Exec(ctx, "SELECT pg_terminate_backend($1)", pid); err != nil {
		t.Fatal(err)
	}
	_, err := conn.Exec(ctx, "SELECT 1")
	if pe := pgErrorOf(err); pe == nil || pe.Code != "57P01" {
		t.Fatalf("after pg_terminate_backend: got %v, want the server's FATAL 57P01", err)
	}
	other := p.Connect(t, pgcluster.RoleSCRAM, "app", "channel_binding", "disable")
	if _, err := other.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("new connection after a backend died: %v", err)
	}
	eventually(t, 2*time.Second, "dead session to be dropped", func() bool { return p.Server.ConnCount() == 1 })
}

// A backend killed without a goodbye (the socket just closes) yields a FATAL
// from ddlguard, not a hang.
func TestFaultUpstreamVanishes(t *testing.T) {
	// A TCP listener that accepts, answers 'N' to SSLRequest, then closes.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var hdr [4]byte
				if _, err := io.ReadFull(c, hdr[:]); err != nil {
					return
				}
				io.CopyN(io.Discard, c, int64(binary.BigEndian.Uint32(hdr[:])-4))
			}()
		}
	}()
	p := startProxy(t, func(c *proxy.Config) {
		c.Upstream = ln.Addr().String()
		c.UpstreamTLSMode = proxy.UpstreamTLSDisable
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = pgx.Connect(ctx, p.DSN(pgcluster.RoleTrust, "postgres", "sslmode", "disable"))
	if pe := pgErrorOf(err); pe == nil || pe.Code != "08006" || pe.Severity != "FATAL" {
		t.Fatalf("got %v, want ddlguard's FATAL 08006", err)
	}
}

func TestFaultUpstreamUnreachable(t *testing.T) {
	dead := freeAddr(t)
	p := startProxy(t, func(c *proxy.Config) { c.Upstream = dead })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := pgx.Connect(ctx, p.DSN(pgcluster.RoleTrust, "postgres", "sslmode", "disable"))
	if pe := pgErrorOf(err); pe == nil || pe.Code != "08006" || !strings.Contains(pe.Message, "could not connect to the upstream server "+dead) {
		t.Fatalf("got %v, want FATAL 08006 naming the upstream", err)
	}
}

// Frames over max_message_size are refused with FATAL from either side,
// without affecting other connections.
func TestFaultOversizedFrames(t *testing.T) {
	p := startProxy(t, func(c *proxy.Config) { c.MaxMessageSize = 64 << 10 })
	super := superConn(t, "postgres")

	t.Run("from client", func(t *testing.T) {
		r := dialRaw(t, p.Addr())
		r.startup(t, pgproto3.ProtocolVersion30, nil)
		r.fe.Send(&pgproto3.Query{String: "SELECT '" + strings.Repeat("x", 100<<10) + "'"})
		r.fe.Flush()
		expectFatal(t, r.Conn, "08P01", "invalid message length")
		waitBackendGone(t, super, r.pid, time.Second)
	})
	t.Run("declared 2 GiB", func(t *testing.T) {
		r := dialRaw(t, p.Addr())
		r.startup(t, pgproto3.ProtocolVersion30, nil)
		r.Conn.Write([]byte{'Q', 0x7f, 0xff, 0xff, 0xff})
		expectFatal(t, r.Conn, "08P01", "invalid length")
	})
	t.Run("length below 4", func(t *testing.T) {
		r := dialRaw(t, p.Addr())
		r.startup(t, pgproto3.ProtocolVersion30, nil)
		r.Conn.Write([]byte{'Q', 0, 0, 0, 3})
		expectFatal(t, r.Conn, "08P01", "invalid length 3")
	})
	t.Run("from upstream", func(t *testing.T) {
		r := dialRaw(t, p.Addr())
		r.startup(t, pgproto3.ProtocolVersion30, nil)
		r.fe.Send(&pgproto3.Query{String: "SELECT repeat('x', 100000)"})
		r.fe.Flush()
		expectFatal(t, r.Conn, "08P01", "upstream sent")
	})
	conn := p.Connect(t, pgcluster.RoleSCRAM, "app", "channel_binding", "disable")
	if _, err := conn.Exec(context.Background(), "SELECT 1"); err != nil {
		t.Fatalf("an unrelated connection after the bad frames: %v", err)
	}
}

// Bytes sent after SSLRequest in the same packet, before the handshake, are
// never processed (CVE-2021-23214 class): the connection is closed and no
// backend is started.
func TestFaultPlaintextAfterSSLRequest(t *testing.T) {
	p := startProxy(t, keepTLS)
	conn, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ssl, _ := (&pgproto3.SSLRequest{}).Encode(nil)
	startup, _ := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30,
		Parameters: map[string]string{"user": pgcluster.RoleTrust, "database": "postgres"}}).Encode(nil)
	if _, err := conn.Write(append(ssl, startup...)); err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	all, _ := io.ReadAll(conn)
	if len(all) == 0 || all[0] != 'E' || !strings.Contains(string(all), "received unencrypted data after SSL request") {
		t.Fatalf("got %q, want a FATAL about unencrypted data and a closed connection", all)
	}
	if strings.Contains(p.Logs(), `"msg":"connection opened"`) {
		t.Fatal("a session was opened from injected plaintext")
	}
}

func TestFaultStartupRefusals(t *testing.T) {
	p := startProxy(t, func(c *proxy.Config) { c.StartupTimeout = 500 * time.Millisecond })
	cases := []struct {
		name, code, contains string
		packet               []byte
	}{
		{"protocol 2.0", "0A000", "unsupported frontend protocol 2.0", startupPacket(2<<16, nil)},
		{"no user", "28000", "no PostgreSQL user name", startupPacket(3<<16, []string{"database", "postgres"})},
		{"replication", "0A000", "replication", startupPacket(3<<16, []string{"user", pgcluster.Superuser, "replication", "database"})},
		{"bad length", "08P01", "invalid length of startup packet", []byte{0, 0, 0, 3, 0, 0, 0, 0}},
		{"garbage", "08P01", "invalid length of startup packet", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")},
		{"no terminator", "08P01", "invalid startup packet layout", func() []byte {
			b := startupPacket(3<<16, []string{"user", "x"})
			return append(b[:len(b)-1:len(b)-1], 'y') // last byte not NUL
		}()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", p.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.Write(tc.packet)
			expectFatal(t, conn, tc.code, tc.contains)
		})
	}
	t.Run("startup timeout", func(t *testing.T) {
		conn, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		start := time.Now()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadAll(conn); err != nil {
			t.Fatalf("want the proxy to close the silent connection, got %v", err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("silent connection closed after %s, want ~500ms", d)
		}
	})
	t.Run("GSSENCRequest answered N", func(t *testing.T) {
		r := dialRaw(t, p.Addr())
		gss, _ := (&pgproto3.GSSEncRequest{}).Encode(nil)
		r.Conn.Write(gss)
		var b [1]byte
		if _, err := io.ReadFull(r.Conn, b[:]); err != nil || b[0] != 'N' {
			t.Fatalf("GSSENCRequest answer %q, %v; want N", b[0], err)
		}
		r.startup(t, pgproto3.ProtocolVersion30, nil)
	})
	conn := p.Connect(t, pgcluster.RoleSCRAM, "app", "channel_binding", "disable")
	if _, err := conn.Exec(context.Background(), "SELECT 1"); err != nil {
		t.Fatalf("a good connection after the bad ones: %v", err)
	}
}

func startupPacket(version uint32, kv []string) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint32(b[4:], version)
	for _, s := range kv {
		b = append(append(b, s...), 0)
	}
	b = append(b, 0)
	binary.BigEndian.PutUint32(b, uint32(len(b)))
	return b
}

// Replication connections pass only when configured.
func TestFaultReplicationAllowed(t *testing.T) {
	p := startProxy(t, func(c *proxy.Config) { c.AllowReplication = true })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgconn.Connect(ctx, p.DSN(pgcluster.Superuser, "postgres", "replication", "database", "sslmode", "disable"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	res := conn.Exec(ctx, "IDENTIFY_SYSTEM")
	rows, err := res.ReadAll()
	if err != nil || len(rows) != 1 || len(rows[0].Rows) != 1 {
		t.Fatalf("IDENTIFY_SYSTEM through ddlguard: %v %v", rows, err)
	}
}

// The acceptance case as a user meets it: a psql process killed with SIGKILL
// while its `SELECT pg_sleep(60)` runs leaves no backend one second later.
func TestFaultPsqlKilledMidQuery(t *testing.T) {
	p := startProxy(t)
	super := superConn(t, "postgres")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const app = "fault-psql-killed"
	cmd := clientProgramCmd(ctx, cluster.Psql(), psqlClientArgs(
		p.DSN(pgcluster.RoleSCRAM, "app", "sslmode", "disable", "application_name", app),
		"-c", "SELECT pg_sleep(60)")...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int32
	eventually(t, 10*time.Second, "psql's backend to run pg_sleep", func() bool {
		return super.QueryRow(ctx, `SELECT pid FROM pg_stat_activity
			WHERE application_name = $1 AND state = 'active' AND query = 'SELECT pg_sleep(60)'`, app).Scan(&pid) == nil
	})
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	waitBackendGone(t, super, uint32(pid), time.Second)
}
