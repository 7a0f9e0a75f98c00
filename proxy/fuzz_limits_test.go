package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// A declared length is a claim, not a payment: whatever length a peer
// announces, ddlguard allocates in proportion to the bytes that actually
// arrive. Five bytes announcing 2 GiB (over any limit) or 1 GiB (within
// the default max_message_size) must not cost a gigabyte of heap.

// allocatedDuring returns the bytes allocated by the whole process while
// fn runs (runtime.MemStats.TotalAlloc).
func allocatedDuring(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// allocBound is far below any declared length tested here and far above
// what reading a header and a few buffers costs.
const allocBound = 16 << 20

func TestDeclaredLengthHeaderAllocatesNothing(t *testing.T) {
	huge := []byte{'Q', 0x7f, 0xff, 0xff, 0xff} // 2 GiB - 1: the largest length word
	br := bytes.NewReader(huge)
	r := bufio.NewReaderSize(br, relayBufferSize)
	var typ byte
	var n int
	var err error
	allocs := testing.AllocsPerRun(100, func() {
		br.Reset(huge)
		r.Reset(br)
		typ, n, err = readFrameHeader(r, maxFrameLength, "client")
	})
	if err != nil || typ != 'Q' || n != maxFrameLength-4 {
		t.Fatalf("readFrameHeader = %q, %d, %v", typ, n, err)
	}
	if allocs != 0 {
		t.Errorf("readFrameHeader of a 2 GiB header: %v allocations, want 0", allocs)
	}

	for name, in := range map[string][]byte{
		"frame 2 GiB":          {'Q', 0x80, 0, 0, 0},
		"frame 4 GiB - 1":      {'d', 0xff, 0xff, 0xff, 0xff},
		"startup 2 GiB":        {0x80, 0, 0, 0, 0, 3, 0, 0},
		"startup 2 GiB - 1":    {0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0},
		"startup over the max": {0, 0, 0x27, 0x11, 0, 3, 0, 0}, // 10001
	} {
		got := allocatedDuring(func() {
			for range 100 {
				r := bufio.NewReaderSize(bytes.NewReader(in), 16)
				var err error
				if in[0] == 'Q' || in[0] == 'd' {
					_, _, err = readFrameHeader(r, DefaultMaxMessageSize, "client")
				} else {
					_, err = readStartupPacket(r)
				}
				var fe *frameError
				if !errors.As(err, &fe) {
					t.Fatalf("%s: err %v, want a frame error", name, err)
				}
			}
		})
		if got > allocBound {
			t.Errorf("%s: 100 refusals allocated %d MiB", name, got>>20)
		}
	}
}

// A pump that has read a header announcing a huge frame and is waiting for
// its body holds no more memory than the bytes received so far.
func TestDeclaredLengthPumpAllocatesAsBytesArrive(t *testing.T) {
	cases := []struct {
		name  string
		typ   byte
		limit int
		side  string
		insp  *[256]bool
	}{
		{"client Query 2 GiB - 1 at the largest limit", 'Q', maxFrameLength, "client", &clientInspect},
		{"client Query 1 GiB at the default limit", 'Q', DefaultMaxMessageSize, "client", &clientInspect},
		{"client Parse 1 GiB", 'P', DefaultMaxMessageSize, "client", &clientInspect},
		{"client CopyData 1 GiB (streamed)", 'd', DefaultMaxMessageSize, "client", &clientInspect},
		{"upstream ErrorResponse 1 GiB", 'E', DefaultMaxMessageSize, "upstream", &upstreamInspect},
		{"upstream DataRow 1 GiB (streamed)", 'D', DefaultMaxMessageSize, "upstream", &upstreamInspect},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pr, pw := io.Pipe()
			var n atomic.Int64
			var hooked atomic.Bool
			p := pump{r: bufio.NewReaderSize(pr, relayBufferSize), w: newFlushWriter(io.Discard),
				limit: tc.limit, side: tc.side, inspect: tc.insp, counter: &n,
				hooks: hookFunc(func(byte, []byte) (frameAction, []byte) { hooked.Store(true); return forwardFrame, nil })}
			done := make(chan error, 1)
			declared := uint32(tc.limit)
			hdr := []byte{tc.typ, byte(declared >> 24), byte(declared >> 16), byte(declared >> 8), byte(declared)}
			chunk := bytes.Repeat([]byte{'x'}, 256<<10)
			got := allocatedDuring(func() {
				go func() { _, _, err := p.run(); done <- err }()
				pw.Write(hdr)
				for range 4 { // 1 MiB of the body, then silence
					pw.Write(chunk)
				}
				time.Sleep(50 * time.Millisecond) // the pump is blocked waiting for the rest
			})
			pw.Close()
			if err := <-done; !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("pump ended with %v, want unexpected EOF", err)
			}
			if hooked.Load() {
				t.Error("hook saw a frame that never arrived whole")
			}
			if got > allocBound {
				t.Errorf("a declared %d-byte frame with 1 MiB of body allocated %d MiB", declared, got>>20)
			}
		})
	}
}

// Authentication messages are read whole (readMessage, limit 1 MiB); a
// client that announces the maximum and sends nothing costs nothing either.
func TestDeclaredLengthAuthMessage(t *testing.T) {
	hdr := []byte{'p', 0, 0x10, 0, 0} // 1 MiB
	var buf []byte
	got := allocatedDuring(func() {
		for range 100 {
			var err error
			_, _, buf, err = readMessage(bufio.NewReaderSize(bytes.NewReader(hdr), 4096), maxAuthMessage, "client", nil)
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("err %v, want unexpected EOF", err)
			}
		}
	})
	if got > allocBound {
		t.Errorf("100 announced 1 MiB authentication messages allocated %d MiB", got>>20)
	}
	_ = buf
}

// Frames that do arrive are read whole and exactly, however they are cut
// into reads.
func TestReadWholeFrameAcrossReads(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 300_000) // 4.8 MB
	in := frame('Q', append(body, 0))
	for _, piece := range []int{1 << 10, 7919, relayBufferSize, 1 << 20} {
		r := bufio.NewReaderSize(&choppy{data: in, piece: piece}, relayBufferSize)
		typ, got, _, err := readMessage(r, DefaultMaxMessageSize, "client", nil)
		if err != nil || typ != 'Q' || !bytes.Equal(got, append(body, 0)) {
			t.Fatalf("piece %d: typ %q, %d bytes, err %v", piece, typ, len(got), err)
		}
	}
}

// choppy returns data in reads of at most piece bytes.
type choppy struct {
	data  []byte
	piece int
}

func (c *choppy) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), c.piece)], c.data)
	c.data = c.data[n:]
	return n, nil
}
