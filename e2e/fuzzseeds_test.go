package e2e

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/ddlguard/ddlguard/e2e/pgcluster"
	"github.com/ddlguard/ddlguard/guard"
	"github.com/ddlguard/ddlguard/proxy"
)

// Seed corpora for the proxy's fuzz targets, recorded from real traffic.
// A tap between ddlguard and PostgreSQL cuts what passes into frames and
// keeps, per fuzz target, the inputs that target takes: startup packets,
// cancel requests, the SSLRequest answer, the whole authentication stream
// of a session, ParameterStatus, BackendKeyData, ReadyForQuery,
// ErrorResponse/NoticeResponse bodies, Query, Parse and Bind bodies. The
// traffic is pgx (SCRAM, md5, cleartext and trust logins, simple and
// extended queries, errors, notices, a cancel, guarded DDL that ddlguard
// times out, rewrites and rejects) and psql.
//
// The test always records and checks that every target got seeds and has
// recorded seeds checked in under proxy/testdata/fuzz/<Target>/; with
// DDLGUARD_RECORD_FUZZ_SEEDS=1 it (re)writes them there.

// fuzzSeedTargets are the targets the recording feeds.
var fuzzSeedTargets = []string{
	"FuzzStartupPacket", "FuzzCancelRequest", "FuzzSSLAnswer", "FuzzAuthRelay", "FuzzParameterStatus",
	"FuzzBackendKeyData", "FuzzReadyForQuery", "FuzzErrorResponse", "FuzzQuery", "FuzzParse", "FuzzBind",
	"FuzzCopyFrames",
}

// seedsPerTarget bounds each target's recorded corpus (Query sees the most
// variety: the clients' statements and ddlguard's own).
func seedsPerTarget(target string) int {
	if target == "FuzzQuery" {
		return 40
	}
	return 16
}

// seedRecorder collects fuzz inputs by target, without duplicates.
type seedRecorder struct {
	mu    sync.Mutex
	seeds map[string][]string // target -> encoded corpus files
}

// add records one input (the target's arguments, in order).
func (r *seedRecorder) add(target string, args ...any) {
	var b strings.Builder
	b.WriteString("go test fuzz v1\n")
	for _, a := range args {
		switch v := a.(type) {
		case []byte:
			b.WriteString("[]byte(" + strconv.Quote(string(v)) + ")\n")
		case string:
			b.WriteString("string(" + strconv.Quote(v) + ")\n")
		case bool:
			b.WriteString("bool(" + strconv.FormatBool(v) + ")\n")
		default:
			panic(fmt.Sprintf("seed argument of type %T", a))
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seeds == nil {
		r.seeds = map[string][]string{}
	}
	if len(r.seeds[target]) < seedsPerTarget(target) && !slices.Contains(r.seeds[target], b.String()) {
		r.seeds[target] = append(r.seeds[target], b.String())
	}
}

// tap relays connections to upstream and records what passes.
func (r *seedRecorder) tap(t *testing.T, upstream string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				r.relay(c, upstream)
			}()
		}
	}()
	return ln.Addr().String()
}

// relay is one tapped connection: the startup phase packet by packet, then
// frames both ways.
func (r *seedRecorder) relay(client net.Conn, upstream string) {
	defer client.Close()
	server, err := net.DialTimeout("tcp", upstream, 5*time.Second)
	if err != nil {
		return
	}
	defer server.Close()
	cr, sr := bufio.NewReader(client), bufio.NewReader(server)
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(cr, hdr[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint32(hdr[:]))
		if n < 8 || n > 10000 {
			return
		}
		pkt := make([]byte, n)
		copy(pkt, hdr[:])
		if _, err := io.ReadFull(cr, pkt[4:]); err != nil {
			return
		}
		if _, err := server.Write(pkt); err != nil {
			return
		}
		switch code := binary.BigEndian.Uint32(pkt[4:8]); code {
		case 80877103, 80877104: // SSLRequest, GSSENCRequest: one byte answers
			ans, err := sr.ReadByte()
			if err != nil {
				return
			}
			if code == 80877103 {
				r.add("FuzzSSLAnswer", []byte{ans}, false)
				r.add("FuzzSSLAnswer", []byte{ans}, true)
			}
			client.Write([]byte{ans})
			if ans == 'S' { // encrypted from here on: relay blind
				go io.Copy(server, cr)
				io.Copy(client, sr)
				return
			}
			continue
		case 80877102: // CancelRequest
			r.add("FuzzCancelRequest", pkt)
			io.Copy(client, sr)
			return
		}
		r.add("FuzzStartupPacket", pkt)
		r.add("FuzzCancelRequest", pkt)
		break
	}
	done := make(chan []byte)
	go func() { done <- r.frames(cr, server, true) }()
	serverAuth := r.frames(sr, client, false)
	server.Close()
	client.Close()
	clientAuth := <-done
	if len(serverAuth) > 0 {
		r.add("FuzzAuthRelay", serverAuth, clientAuth, false)
	}
}

// frames relays typed frames from src to dst and records them. It returns
// the side's part of the authentication exchange: the upstream's frames up
// to the first ReadyForQuery (or error), the client's answers.
func (r *seedRecorder) frames(src *bufio.Reader, dst net.Conn, fromClient bool) (auth []byte) {
	var stream []byte // the first frames of the session
	authDone := false
	for {
		f, err := readTypedFrame(src)
		if err != nil {
			break
		}
		if _, err := dst.Write(f); err != nil {
			break
		}
		if len(stream)+len(f) <= 4<<10 {
			stream = append(stream, f...)
		}
		typ, body := f[0], f[5:]
		switch {
		case authDone:
		case fromClient && typ != 'p':
			authDone = true
		case fromClient:
			auth = append(auth, f...)
		default:
			auth = append(auth, f...)
			authDone = typ == 'Z' || typ == 'E'
		}
		switch {
		case fromClient && typ == 'Q':
			r.add("FuzzQuery", body)
		case fromClient && typ == 'P':
			var p pgproto3.Parse
			if p.Decode(body) == nil {
				name, rest, _ := strings.Cut(string(body), "\x00")
				_, params, _ := strings.Cut(rest, "\x00")
				r.add("FuzzParse", name, p.Query, []byte(params))
			}
		case fromClient && typ == 'B':
			r.add("FuzzBind", body)
		case !fromClient && typ == 'S':
			r.add("FuzzParameterStatus", body)
		case !fromClient && typ == 'K':
			r.add("FuzzBackendKeyData", body)
		case !fromClient && typ == 'Z':
			r.add("FuzzReadyForQuery", body)
		case !fromClient && (typ == 'E' || typ == 'N'):
			r.add("FuzzErrorResponse", body, false)
		}
	}
	if len(stream) > 0 {
		r.add("FuzzCopyFrames", stream)
	}
	return auth
}

func TestFuzzSeedsFromTraffic(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rec := &seedRecorder{}
	tapAddr := rec.tap(t, cluster.Addr())

	owner := connectDirect(t, cluster, pgcluster.RoleSCRAM, pgcluster.AppDatabase)
	if err := execEach(ctx, owner, "DROP TABLE IF EXISTS fuzzseed_t",
		"CREATE TABLE fuzzseed_t (a int)", "GRANT ALL ON fuzzseed_t TO PUBLIC"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { owner.Exec(context.Background(), "DROP TABLE IF EXISTS fuzzseed_t") })

	p := startGuardProxy(t, guard.DefaultConfig(), func(c *proxy.Config) {
		c.Upstream = tapAddr
		c.UpstreamTLSMode = proxy.UpstreamTLSDisable
	})
	// The SSLRequest answer: a proxy that negotiates TLS upstream.
	tlsProxy := startProxy(t, keepTLS, func(c *proxy.Config) { c.Upstream = tapAddr })
	tlsConn := tlsProxy.Connect(t, pgcluster.RoleTrust, "postgres", "sslmode", "disable")
	if _, err := tlsConn.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	tlsConn.Close(ctx)

	// Logins of every kind.
	for _, role := range []string{pgcluster.RoleTrust, pgcluster.RolePassword, pgcluster.RoleMD5} {
		conn := p.Connect(t, role, pgcluster.AppDatabase, "sslmode", "disable")
		if _, err := conn.Exec(ctx, "SELECT current_user"); err != nil {
			t.Fatal(err)
		}
		conn.Close(ctx)
	}
	conn := p.Connect(t, pgcluster.RoleSCRAM, pgcluster.AppDatabase, "sslmode", "disable",
		"channel_binding", "disable", "application_name", "fuzz-seeds")
	for _, step := range []struct {
		sql  string
		args []any
		code string // expected SQLSTATE ("" for success, "*" for either)
	}{
		{"SELECT 1", []any{pgx.QueryExecModeSimpleProtocol}, ""},
		{"SELECT $1::int + $2::int, $3::text", []any{1, 2, "three"}, ""},
		{"SELECT $1::bytea", []any{pgx.QueryExecModeExec, []byte{0, 1, 2}}, ""},
		{"INSERT INTO fuzzseed_t VALUES ($1)", []any{pgx.QueryExecModeDescribeExec, 42}, ""},
		{"SELECT 1/0", nil, "22012"},
		{"DO $$BEGIN RAISE NOTICE 'fuzz seed notice'; END$$", nil, ""},
		{"BEGIN", nil, ""},
		{"SELECT * FROM fuzzseed_t", nil, ""},
		{"SELECT no_such_column FROM fuzzseed_t", nil, "42703"},
		{"ROLLBACK", nil, ""},
		{"SET TimeZone = 'Europe/Paris'", nil, ""},
		{"ALTER TABLE fuzzseed_t ADD COLUMN b int", nil, ""},                                    // timeout
		{"CREATE INDEX fuzzseed_i ON fuzzseed_t (a)", nil, ""},                                  // rewrite
		{"ALTER TABLE fuzzseed_t ADD COLUMN c timestamptz DEFAULT clock_timestamp()", nil, "*"}, // small table: allowed or not
		{"ALTER TABLE fuzzseed_t ADD COLUMN d int NOT NULL", nil, proxy.CodeRejected},
	} {
		_, err := conn.Exec(ctx, step.sql, step.args...)
		if got := pgErrorOf(err); step.code != "*" && ((step.code == "" && err != nil) || (step.code != "" && (got == nil || got.Code != step.code))) {
			t.Fatalf("%s: %v, want SQLSTATE %q", step.sql, err, step.code)
		}
	}
	// A cancel request, forwarded upstream by ddlguard.
	errc := make(chan error, 1)
	go func() { _, err := conn.Exec(ctx, "SELECT pg_sleep(10)"); errc <- err }()
	super2 := superConn(t, "postgres")
	if err := waitActive(ctx, super2, conn.PgConn().PID(), "SELECT pg_sleep(10)"); err != nil {
		t.Fatal(err)
	}
	if err := conn.PgConn().CancelRequest(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; pgErrorOf(err) == nil || pgErrorOf(err).Code != "57014" {
		t.Fatalf("cancelled pg_sleep: %v", err)
	}
	conn.Close(ctx)

	// psql, as it talks.
	res := runClientProgram(t, 20*time.Second, nil, cluster.Psql(), psqlClientArgs(
		p.DSN(pgcluster.RoleMD5, pgcluster.AppDatabase, "sslmode", "disable"),
		"-c", "SELECT count(*) FROM fuzzseed_t; SELECT version()", "-c", "\\d fuzzseed_t")...)
	if res.code != 0 {
		t.Fatalf("psql through the tap:\n%s", res)
	}
	waitProxyIdle(t, p)
	waitProxyIdle(t, tlsProxy)

	dir := filepath.Join("..", "proxy", "testdata", "fuzz")
	write := os.Getenv("DDLGUARD_RECORD_FUZZ_SEEDS") == "1"
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, target := range fuzzSeedTargets {
		seeds := rec.seeds[target]
		if len(seeds) == 0 {
			t.Errorf("%s: the traffic gave no seed", target)
			continue
		}
		tdir := filepath.Join(dir, target)
		if write {
			old, _ := filepath.Glob(filepath.Join(tdir, "traffic-*"))
			for _, f := range old {
				os.Remove(f)
			}
			if err := os.MkdirAll(tdir, 0o755); err != nil {
				t.Fatal(err)
			}
			for _, s := range seeds {
				sum := sha256.Sum256([]byte(s))
				if err := os.WriteFile(filepath.Join(tdir, "traffic-"+hex.EncodeToString(sum[:8])), []byte(s), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		files, _ := filepath.Glob(filepath.Join(tdir, "traffic-*"))
		if len(files) == 0 {
			t.Errorf("%s: no recorded seeds in %s (run with DDLGUARD_RECORD_FUZZ_SEEDS=1)", target, tdir)
		}
		t.Logf("%s: %d seeds recorded, %d checked in", target, len(seeds), len(files))
	}
}

// readTypedFrame reads one typed protocol frame (type byte, length, body)
// whole; a length under 4 or over 64 MiB is an error.
func readTypedFrame(r io.Reader) ([]byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint32(hdr[1:]))
	if n < 4 || n > 1<<26 {
		return nil, fmt.Errorf("frame %q with length %d", hdr[0], n)
	}
	f := make([]byte, 1+n)
	copy(f, hdr[:])
	if _, err := io.ReadFull(r, f[5:]); err != nil {
		return nil, err
	}
	return f, nil
}
