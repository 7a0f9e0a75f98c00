package proxy

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
)

func frame(typ byte, body []byte) []byte {
	b := make([]byte, 5, 5+len(body))
	b[0] = typ
	binary.BigEndian.PutUint32(b[1:], uint32(4+len(body)))
	return append(b, body...)
}

// copyAll runs a pump over in and returns what it wrote and the hook calls.
func copyAll(in []byte, limit int, inspect *[256]bool) (out []byte, seen []string, err error) {
	var buf bytes.Buffer
	var n atomic.Int64
	w := newFlushWriter(&buf)
	p := pump{r: bufio.NewReaderSize(bytes.NewReader(in), relayBufferSize), w: w, limit: limit, side: "client",
		inspect: inspect, counter: &n,
		hooks: hookFunc(func(typ byte, body []byte) (frameAction, []byte) {
			seen = append(seen, string(typ)+":"+string(body[:min(len(body), 8)]))
			return forwardFrame, nil
		})}
	_, _, err = p.run()
	w.Flush()
	return buf.Bytes(), seen, err
}

// Frames of every size, inspected or not, come out byte for byte.
func TestCopyFramesIsByteExact(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789"), 100_000) // 1 MB, larger than the buffer
	in := bytes.Join([][]byte{
		frame('Q', []byte("SELECT 1\x00")),
		frame('d', big),                     // streamed
		frame('Q', append(big, 0)),          // inspected, larger than the buffer
		frame('S', nil),                     // empty body
		frame('d', big[:relayBufferSize-5]), // exactly fills the buffer
	}, nil)
	var inspect [256]bool
	inspect['Q'], inspect['S'] = true, true
	out, seen, err := copyAll(in, 1<<30, &inspect)
	if !errors.Is(err, io.EOF) {
		t.Fatalf("err %v, want EOF at the end of input", err)
	}
	if !bytes.Equal(out, in) {
		t.Fatalf("output differs from input (%d vs %d bytes)", len(out), len(in))
	}
	want := []string{"Q:SELECT 1", "Q:01234567", "S:"}
	if strings.Join(seen, ",") != strings.Join(want, ",") {
		t.Fatalf("hook saw %q, want %q", seen, want)
	}
}

func TestCopyFramesRejectsBadLengths(t *testing.T) {
	for name, in := range map[string][]byte{
		"short":    {'Q', 0, 0, 0, 3},
		"negative": {'Q', 0x80, 0, 0, 0},
		"2 GiB":    {'Q', 0x7f, 0xff, 0xff, 0xff},
		"over":     frame('Q', make([]byte, 100)),
	} {
		out, _, err := copyAll(in, 64, &[256]bool{})
		var fe *frameError
		if !errors.As(err, &fe) {
			t.Errorf("%s: err %v, want a frame error", name, err)
		}
		if len(out) != 0 {
			t.Errorf("%s: %d bytes forwarded from a bad frame", name, len(out))
		}
	}
}

// A truncated frame is an unexpected EOF, never a forwarded fragment
// followed by silence.
func TestCopyFramesTruncated(t *testing.T) {
	in := frame('Q', []byte("SELECT 1\x00"))
	_, _, err := copyAll(in[:len(in)-2], 1<<30, &[256]bool{'Q': true})
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err %v, want unexpected EOF", err)
	}
}

// Whatever the bytes, a pump never panics, never forwards more than it
// read, and forwards only whole frames it accepted (plus, for a streamed
// frame cut short, a prefix of it).
func FuzzCopyFrames(f *testing.F) {
	f.Add(frame('Q', []byte("SELECT 1\x00")))
	f.Add(append(frame('S', nil), frame('X', nil)...))
	f.Add([]byte{'Q', 0x7f, 0xff, 0xff, 0xff})
	f.Add([]byte{'d', 0, 0, 0x80, 5, 1, 2, 3})
	f.Fuzz(func(t *testing.T, in []byte) {
		var inspect [256]bool
		inspect['Q'], inspect['Z'] = true, true
		out, _, _ := copyAll(in, 1<<20, &inspect)
		if !bytes.HasPrefix(in, out) {
			t.Fatalf("output is not a prefix of the input")
		}
	})
}

// parseStartup accepts any well-formed parameter list and refuses the rest
// with a FATAL, without panicking.
func FuzzStartupPacket(f *testing.F) {
	f.Add(startupBytes(3<<16, "user", "u", "database", "d", "_pq_.x", ""))
	f.Add(startupBytes(3<<16|9999, "user", "u"))
	f.Add([]byte{0, 0, 0, 8, 0, 3, 0, 0})
	f.Add([]byte{0, 0, 0, 9, 0, 3, 0, 0, 'x'})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		if len(pkt) < 8 {
			return
		}
		client, peer := net.Pipe()
		defer client.Close()
		defer peer.Close()
		go io.Copy(io.Discard, peer)
		c := &clientConn{srv: &Server{cfg: Config{}.withDefaults()}, raw: client, client: client,
			cw: newFlushWriter(client)}
		if err := c.parseStartup(pkt); err == nil && c.sess.User == "" {
			t.Fatal("accepted a startup packet without a user")
		}
	})
}

func startupBytes(version uint32, kv ...string) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint32(b[4:], version)
	for _, s := range kv {
		b = append(append(b, s...), 0)
	}
	b = append(b, 0)
	binary.BigEndian.PutUint32(b, uint32(len(b)))
	return b
}

func TestConfigValidateNamesTheField(t *testing.T) {
	cases := map[string]Config{
		"upstream: required":       {},
		"listen:":                  {Upstream: "db:5432", Listen: "nope"},
		"upstream_tls.mode":        {Upstream: "db:5432", UpstreamTLSMode: "sometimes"},
		"client_tls.require":       {Upstream: "db:5432", RequireClientTLS: true},
		"max_message_size":         {Upstream: "db:5432", MaxMessageSize: 10},
		"connect_timeout: must be": {Upstream: "db:5432", ConnectTimeout: -1},
	}
	for want, cfg := range cases {
		err := cfg.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("Validate(%+v) = %v, want an error starting %q", cfg, err, want)
		}
	}
	if err := (Config{Upstream: "db:5432"}).Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
}
