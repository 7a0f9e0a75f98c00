package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/ddlguard/ddlguard/e2e/pgcluster"
	"github.com/ddlguard/ddlguard/proxy"
)

// bindingRefusal is the message ddlguard sends when a client's SCRAM
// exchange would be refused by the server as a channel binding downgrade.
const bindingRefusal = "SCRAM channel binding cannot pass through ddlguard's TLS termination"

// withServerCertToClients makes ddlguard present PostgreSQL's own
// certificate (and key) on the client leg, so that SCRAM channel binding
// can pass through.
func withServerCertToClients(t testing.TB) func(*proxy.Config) {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(cluster.ServerCertFile, cluster.ServerKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	return func(c *proxy.Config) {
		c.ClientTLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
}

// wireRecorder keeps a copy of the first bytes a client writes after its
// TLS handshake (if any): the StartupMessage and the authentication answers.
type wireRecorder struct {
	w   io.Writer
	mu  sync.Mutex
	buf bytes.Buffer
}

func (r *wireRecorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	if r.buf.Len() < 64<<10 {
		r.buf.Write(p)
	}
	r.mu.Unlock()
	return r.w.Write(p)
}

func (r *wireRecorder) bytes() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.buf.Bytes())
}

// recordedAttempt is the outcome of one pgx connection attempt.
type recordedAttempt struct {
	conn *pgx.Conn
	err  error
	sent func() []byte // what the client wrote, from the StartupMessage on
}

// connectRecording connects with pgx to dsn, recording what the client
// sends. A successful connection is closed when the test ends.
func connectRecording(t testing.TB, dsn string) recordedAttempt {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatalf("parse %q: %v", dsn, err)
	}
	var rec *wireRecorder
	var recMu sync.Mutex
	cfg.BuildFrontend = func(r io.Reader, w io.Writer) *pgproto3.Frontend {
		recMu.Lock()
		rec = &wireRecorder{w: w}
		recMu.Unlock()
		return pgproto3.NewFrontend(r, rec)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err == nil {
		t.Cleanup(func() { conn.Close(context.Background()) })
	}
	return recordedAttempt{conn: conn, err: err, sent: func() []byte {
		recMu.Lock()
		defer recMu.Unlock()
		if rec == nil {
			return nil
		}
		return rec.bytes()
	}}
}

// saslInitialResponse returns the SASLInitialResponse in sent (a client's
// byte stream starting with its StartupMessage), or nil if there is none.
func saslInitialResponse(sent []byte) *pgproto3.SASLInitialResponse {
	if len(sent) < 4 {
		return nil
	}
	n := int(binary.BigEndian.Uint32(sent))
	if n < 8 || n > len(sent) {
		return nil
	}
	rest := sent[n:]
	for len(rest) >= 5 {
		size := int(binary.BigEndian.Uint32(rest[1:5]))
		if size < 4 || 1+size > len(rest) {
			return nil
		}
		if rest[0] == 'p' {
			// The first 'p' after the startup of a SASL exchange is the
			// SASLInitialResponse.
			var m pgproto3.SASLInitialResponse
			if m.Decode(rest[5:1+size]) != nil {
				return nil
			}
			return &m
		}
		rest = rest[1+size:]
	}
	return nil
}

// TestAuthMethods relays every pg_hba method the cluster offers, over a
// plaintext and a TLS client leg, and checks which method the server really
// asked for (require_auth makes pgx refuse any other).
func TestAuthMethods(t *testing.T) {
	t.Parallel()
	p := startProxy(t)
	for _, role := range []struct{ name, method string }{
		{pgcluster.RoleTrust, "none"},
		{pgcluster.RolePassword, "password"},
		{pgcluster.RoleMD5, "md5"},
		{pgcluster.RoleSCRAM, "scram-sha-256"},
	} {
		for _, sslmode := range []string{"disable", "require"} {
			t.Run(role.name+"/sslmode="+sslmode, func(t *testing.T) {
				t.Parallel()
				// Upstream prefer means TLS on both legs for sslmode=require:
				// SCRAM needs channel_binding=disable there (see
				// TestAuthSCRAMChannelBinding).
				conn := p.Connect(t, role.name, pgcluster.AppDatabase, "sslmode", sslmode,
					"require_auth", role.method, "channel_binding", "disable")
				if got := queryString(t, conn, "SELECT current_user"); got != role.name {
					t.Fatalf("current_user = %q, want %q", got, role.name)
				}
				if got := queryString(t, conn, "SELECT current_database()"); got != pgcluster.AppDatabase {
					t.Fatalf("current_database() = %q, want %q", got, pgcluster.AppDatabase)
				}
			})
		}
	}
	for _, role := range []string{pgcluster.RolePassword, pgcluster.RoleMD5, pgcluster.RoleSCRAM} {
		t.Run(role+"/wrong-password", func(t *testing.T) {
			t.Parallel()
			a := connectRecording(t, p.DSN(role, pgcluster.AppDatabase, "sslmode", "require", "channel_binding", "disable", "password", "not-the-password"))
			if a.err == nil {
				t.Fatal("connected with a wrong password")
			}
			pe := pgErrorOf(a.err)
			if pe == nil {
				t.Fatalf("want the server's ErrorResponse, got %v", a.err)
			}
			if pe.Code != "28P01" || pe.Severity != "FATAL" {
				t.Fatalf("got %s %s %q, want FATAL 28P01", pe.Severity, pe.Code, pe.Message)
			}
			if want := `password authentication failed for user "` + role + `"`; pe.Message != want {
				t.Fatalf("message %q, want the server's %q", pe.Message, want)
			}
		})
	}
}

// TestAuthSCRAMChannelBinding runs SCRAM through every combination of client
// leg TLS, upstream leg TLS, ddlguard certificate and channel_binding, and
// checks the outcome and the GS2 header the client actually sent.
func TestAuthSCRAMChannelBinding(t *testing.T) {
	t.Parallel()
	upstreams := []struct {
		name string
		mode proxy.UpstreamTLSMode
		ca   string
	}{
		{"up=disable", proxy.UpstreamTLSDisable, ""},
		{"up=require", proxy.UpstreamTLSRequire, ""},
		{"up=verify-full", proxy.UpstreamTLSVerifyFull, cluster.CAFile},
	}
	clients := []struct {
		name string
		kv   []string
		tls  bool
	}{
		{"client=disable", []string{"sslmode", "disable"}, false},
		{"client=require", []string{"sslmode", "require"}, true},
		{"client=verify-full", []string{"sslmode", "verify-full", "sslrootcert", cluster.CAFile}, true},
	}
	for _, serverCert := range []bool{false, true} {
		certName := "cert=proxy"
		if serverCert {
			certName = "cert=server"
		}
		for _, up := range upstreams {
			t.Run(certName+"/"+up.name, func(t *testing.T) {
				t.Parallel()
				opts := []func(*proxy.Config){withUpstreamTLS(t, up.mode, up.ca, "")}
				if serverCert {
					opts = append(opts, withServerCertToClients(t))
				}
				p := startProxy(t, opts...)
				for _, cl := range clients {
					for _, cb := range []string{"disable", "prefer", "require"} {
						t.Run(cl.name+"/channel_binding="+cb, func(t *testing.T) {
							t.Parallel()
							kv := append([]string{"channel_binding", cb, "require_auth", "scram-sha-256"}, cl.kv...)
							a := connectRecording(t, p.DSN(pgcluster.RoleSCRAM, pgcluster.AppDatabase, kv...))
							bothTLS := cl.tls && up.mode != proxy.UpstreamTLSDisable
							through := bothTLS && serverCert
							first := saslInitialResponse(a.sent())
							switch {
							case cb == "require" && !through:
								// SCRAM-SHA-256-PLUS is not offered: pgx
								// gives up before sending any proof.
								if a.err == nil {
									t.Fatal("channel_binding=require connected although channel binding cannot work")
								}
								if pe := pgErrorOf(a.err); pe != nil {
									t.Fatalf("want a client-side error, got the server-style error %s %s %q", pe.Severity, pe.Code, pe.Message)
								}
								if !strings.Contains(a.err.Error(), "channel binding required") {
									t.Fatalf("unclear error: %v", a.err)
								}
								if first != nil {
									t.Fatalf("client sent a SASLInitialResponse (%s) before failing", first.AuthMechanism)
								}
							case cb == "prefer" && bothTLS && !through:
								if a.err == nil {
									t.Fatal("connected although the server would see a channel binding downgrade")
								}
								pe := pgErrorOf(a.err)
								if pe == nil {
									t.Fatalf("want ddlguard's FATAL 28000, got %v", a.err)
								}
								if pe.Severity != "FATAL" || pe.Code != "28000" || !strings.Contains(pe.Message, bindingRefusal) {
									t.Fatalf("got %s %s %q, want FATAL 28000 %q", pe.Severity, pe.Code, pe.Message, bindingRefusal)
								}
								if pe.Detail == "" {
									t.Error("the refusal carries no DETAIL on how to fix it")
								}
								if first == nil || !bytes.HasPrefix(first.Data, []byte("y,")) {
									t.Fatalf("refused exchange did not start with GS2 flag y: %+v", first)
								}
							default:
								if a.err != nil {
									t.Fatalf("connect: %v", a.err)
								}
								if got := queryString(t, a.conn, "SELECT current_user"); got != pgcluster.RoleSCRAM {
									t.Fatalf("current_user = %q", got)
								}
								if first == nil {
									t.Fatal("no SASLInitialResponse recorded")
								}
								wantMech, wantFlag := "SCRAM-SHA-256", "n,"
								switch {
								case through && cb != "disable":
									wantMech, wantFlag = "SCRAM-SHA-256-PLUS", "p=tls-server-end-point,"
								case cl.tls && cb == "prefer":
									wantMech, wantFlag = "SCRAM-SHA-256", "y,"
								}
								if first.AuthMechanism != wantMech || !bytes.HasPrefix(first.Data, []byte(wantFlag)) {
									t.Fatalf("client used %s with %q, want %s with GS2 header %q",
										first.AuthMechanism, first.Data[:min(len(first.Data), 24)], wantMech, wantFlag)
								}
								s := sessionByBackendPID(t, p, a.conn.PgConn().PID())
								if s.TLS != cl.tls || s.UpstreamTLS != (up.mode != proxy.UpstreamTLSDisable) {
									t.Fatalf("session TLS=%v UpstreamTLS=%v", s.TLS, s.UpstreamTLS)
								}
							}
						})
					}
				}
			})
		}
	}
}

// TestAuthSCRAMSSLRole uses the hostssl-only role: it works whenever
// ddlguard's upstream leg is TLS, whatever the client leg, and the server
// itself refuses it over a plaintext upstream leg.
func TestAuthSCRAMSSLRole(t *testing.T) {
	t.Parallel()
	for _, up := range []struct {
		mode proxy.UpstreamTLSMode
		ca   string
	}{
		{proxy.UpstreamTLSPrefer, ""},
		{proxy.UpstreamTLSRequire, ""},
		{proxy.UpstreamTLSVerifyFull, cluster.CAFile},
		{proxy.UpstreamTLSDisable, ""},
	} {
		t.Run("up="+string(up.mode), func(t *testing.T) {
			t.Parallel()
			p := startProxy(t, withUpstreamTLS(t, up.mode, up.ca, ""))
			for _, sslmode := range []string{"disable", "require"} {
				t.Run("client="+sslmode, func(t *testing.T) {
					a := connectRecording(t, p.DSN(pgcluster.RoleSCRAMSSL, pgcluster.AppDatabase,
						"sslmode", sslmode, "channel_binding", "disable"))
					if up.mode == proxy.UpstreamTLSDisable {
						if a.err == nil {
							t.Fatal("hostssl-only role connected over a plaintext upstream leg")
						}
						pe := pgErrorOf(a.err)
						if pe == nil || pe.Code != "28000" || !strings.Contains(pe.Message, "pg_hba.conf rejects connection") {
							t.Fatalf("want the server's pg_hba refusal (28000), got %v", a.err)
						}
						if !strings.Contains(pe.Message, "no encryption") {
							t.Errorf("server did not refuse for lack of encryption: %q", pe.Message)
						}
						return
					}
					if a.err != nil {
						t.Fatalf("connect: %v", a.err)
					}
					if got := queryString(t, a.conn, "SELECT current_user"); got != pgcluster.RoleSCRAMSSL {
						t.Fatalf("current_user = %q", got)
					}
					if got := queryString(t, a.conn, "SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()"); got != "true" {
						t.Fatalf("server sees ssl=%s on the upstream leg", got)
					}
				})
			}
		})
	}
}

// TestAuthUpstreamTLSVerification checks that ddlguard verifies the upstream
// certificate as configured and tells the client why it could not connect.
func TestAuthUpstreamTLSVerification(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		mode       proxy.UpstreamTLSMode
		ca         string
		serverName string
		sslmode    string
		wantErr    []string // substrings of ddlguard's FATAL 08006; nil: success
	}{
		{"verify-ca/right-ca", proxy.UpstreamTLSVerifyCA, cluster.CAFile, "", "disable", nil},
		{"verify-ca/other-ca", proxy.UpstreamTLSVerifyCA, cluster.OtherCAFile, "", "disable",
			[]string{"ddlguard could not connect to the upstream server", "TLS handshake (upstream_tls.mode=verify-ca)", "unknown authority"}},
		{"verify-ca/other-ca/client-tls", proxy.UpstreamTLSVerifyCA, cluster.OtherCAFile, "", "require",
			[]string{"TLS handshake (upstream_tls.mode=verify-ca)", "unknown authority"}},
		{"verify-ca/any-name", proxy.UpstreamTLSVerifyCA, cluster.CAFile, "wrong.example", "require", nil},
		{"verify-full/ip", proxy.UpstreamTLSVerifyFull, cluster.CAFile, "", "require", nil},
		{"verify-full/localhost", proxy.UpstreamTLSVerifyFull, cluster.CAFile, "localhost", "require", nil},
		{"verify-full/wrong-name", proxy.UpstreamTLSVerifyFull, cluster.CAFile, "wrong.example", "require",
			[]string{"TLS handshake (upstream_tls.mode=verify-full)", "wrong.example"}},
		{"verify-full/other-ca", proxy.UpstreamTLSVerifyFull, cluster.OtherCAFile, "", "disable",
			[]string{"TLS handshake (upstream_tls.mode=verify-full)", "unknown authority"}},
		{"require/other-ca", proxy.UpstreamTLSRequire, cluster.OtherCAFile, "", "disable",
			[]string{"TLS handshake (upstream_tls.mode=require)", "unknown authority"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := startProxy(t, withUpstreamTLS(t, tc.mode, tc.ca, tc.serverName))
			a := connectRecording(t, p.DSN(pgcluster.RoleSCRAM, pgcluster.AppDatabase,
				"sslmode", tc.sslmode, "channel_binding", "disable"))
			if tc.wantErr == nil {
				if a.err != nil {
					t.Fatalf("connect: %v", a.err)
				}
				if got := queryString(t, a.conn, "SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()"); got != "true" {
					t.Fatalf("server sees ssl=%s", got)
				}
				return
			}
			if a.err == nil {
				t.Fatal("connected although the upstream certificate should have been refused")
			}
			pe := pgErrorOf(a.err)
			if pe == nil {
				t.Fatalf("want ddlguard's FATAL 08006, got %v", a.err)
			}
			if pe.Severity != "FATAL" || pe.Code != "08006" {
				t.Fatalf("got %s %s %q, want FATAL 08006", pe.Severity, pe.Code, pe.Message)
			}
			for _, s := range tc.wantErr {
				if !strings.Contains(pe.Message, s) {
					t.Errorf("message %q lacks %q", pe.Message, s)
				}
			}
			if !strings.Contains(pe.Message, cluster.Addr()) {
				t.Errorf("message %q does not name the upstream %s", pe.Message, cluster.Addr())
			}
			waitProxyIdle(t, p)
			if logs := p.Logs(); !strings.Contains(logs, "connection failed during startup") {
				t.Errorf("ddlguard did not log the failure:\n%s", logs)
			}
		})
	}
}

// TestAuthRequireClientTLS checks client_tls.require: plaintext sessions are
// refused by ddlguard itself, TLS sessions go through.
func TestAuthRequireClientTLS(t *testing.T) {
	t.Parallel()
	p := startProxy(t, func(c *proxy.Config) { c.RequireClientTLS = true })

	a := connectRecording(t, p.DSN(pgcluster.RoleTrust, pgcluster.AppDatabase, "sslmode", "disable"))
	if a.err == nil {
		t.Fatal("plaintext client accepted although client TLS is required")
	}
	pe := pgErrorOf(a.err)
	if pe == nil || pe.Severity != "FATAL" || pe.Code != "28000" || !strings.Contains(pe.Message, "requires TLS") {
		t.Fatalf("want ddlguard's FATAL 28000 about TLS, got %v", a.err)
	}
	if first := saslInitialResponse(a.sent()); first != nil {
		t.Fatal("authentication went on after the refusal")
	}

	for _, kv := range [][]string{
		{"sslmode", "require"},
		{"sslmode", "verify-full", "sslrootcert", cluster.CAFile},
	} {
		conn := p.Connect(t, pgcluster.RoleSCRAM, pgcluster.AppDatabase, append(kv, "channel_binding", "disable")...)
		if got := queryString(t, conn, "SELECT current_user"); got != pgcluster.RoleSCRAM {
			t.Fatalf("current_user = %q", got)
		}
		if s := sessionByBackendPID(t, p, conn.PgConn().PID()); !s.TLS {
			t.Fatal("session over TLS reports TLS=false")
		}
	}
}

// TestAuthSession checks what a Session reports for each combination of
// client and upstream TLS, against what the client and the server see.
func TestAuthSession(t *testing.T) {
	t.Parallel()
	for _, up := range []struct {
		mode proxy.UpstreamTLSMode
		ca   string
	}{
		{proxy.UpstreamTLSDisable, ""},
		{proxy.UpstreamTLSVerifyFull, cluster.CAFile},
	} {
		t.Run("up="+string(up.mode), func(t *testing.T) {
			t.Parallel()
			p := startProxy(t, withUpstreamTLS(t, up.mode, up.ca, ""))
			for _, sslmode := range []string{"disable", "verify-full"} {
				t.Run("client="+sslmode, func(t *testing.T) {
					before := time.Now()
					app := "ddlguard-auth-" + sslmode + "-" + string(up.mode)
					conn := p.Connect(t, pgcluster.RoleMD5, pgcluster.AppDatabase, "sslmode", sslmode,
						"sslrootcert", cluster.CAFile, "application_name", app)
					s := sessionByBackendPID(t, p, conn.PgConn().PID())
					if s.User != pgcluster.RoleMD5 || s.Database != pgcluster.AppDatabase || s.ApplicationName != app {
						t.Errorf("session user=%q database=%q application_name=%q", s.User, s.Database, s.ApplicationName)
					}
					if wantTLS := sslmode != "disable"; s.TLS != wantTLS {
						t.Errorf("session TLS = %v, want %v", s.TLS, wantTLS)
					}
					if wantUp := up.mode != proxy.UpstreamTLSDisable; s.UpstreamTLS != wantUp {
						t.Errorf("session UpstreamTLS = %v, want %v", s.UpstreamTLS, wantUp)
					}
					serverSSL := queryString(t, conn, "SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
					if (serverSSL == "true") != s.UpstreamTLS {
						t.Errorf("server sees ssl=%s, session UpstreamTLS=%v", serverSSL, s.UpstreamTLS)
					}
					if got := queryString(t, conn, "SELECT current_setting('application_name')"); got != app {
						t.Errorf("server application_name = %q, want %q", got, app)
					}
					if local := conn.PgConn().Conn().LocalAddr().String(); s.ClientAddr != local {
						t.Errorf("session ClientAddr = %q, client's local address %q", s.ClientAddr, local)
					}
					if s.ProtocolVersion != pgproto3.ProtocolVersion30 {
						t.Errorf("session ProtocolVersion = %#x", s.ProtocolVersion)
					}
					if s.Started.Before(before.Add(-time.Second)) || s.Started.After(time.Now()) {
						t.Errorf("session Started = %v, connect began %v", s.Started, before)
					}
					if v := conn.PgConn().ParameterStatus("server_version"); v == "" || s.ServerVersion() != v {
						t.Errorf("session ServerVersion = %q, client saw %q", s.ServerVersion(), v)
					}
					if s.TxStatus() != proxy.TxIdle || s.Busy() {
						t.Errorf("idle session: TxStatus %q Busy %v", s.TxStatus(), s.Busy())
					}
				})
			}
		})
	}
}
