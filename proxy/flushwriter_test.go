package proxy

import (
	"bytes"
	"errors"
	"testing"
)

// countingWriter records each Write it gets and can be told to fail.
type countingWriter struct {
	bytes.Buffer
	writes []int
	fail   error
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.fail != nil {
		return 0, c.fail
	}
	c.writes = append(c.writes, len(p))
	return c.Buffer.Write(p)
}

func TestFlushWriterBuffersUntilFlushAndHoldsNoBufferWhenEmpty(t *testing.T) {
	var dst countingWriter
	f := newFlushWriter(&dst)
	if f.arr != nil {
		t.Fatal("a new flushWriter holds a buffer")
	}
	f.Write([]byte("abc"))
	f.Write([]byte("def"))
	if dst.Len() != 0 || f.arr == nil {
		t.Fatalf("before Flush: %d bytes written through, buffer held %v; want 0, true", dst.Len(), f.arr != nil)
	}
	if err := f.Flush(); err != nil {
		t.Fatal(err)
	}
	if dst.String() != "abcdef" || len(dst.writes) != 1 {
		t.Errorf("after Flush: %q in %d writes; want abcdef in one", dst.String(), len(dst.writes))
	}
	if f.arr != nil {
		t.Error("the buffer is still held after a Flush emptied it")
	}
	if err := f.Flush(); err != nil || len(dst.writes) != 1 {
		t.Errorf("an empty Flush: %v, %d writes; want nil, no write", err, len(dst.writes))
	}
}

// Bytes leave in order whatever the sizes: small writes are gathered into
// full buffers, a large write on an empty buffer goes straight through.
func TestFlushWriterKeepsOrderAcrossSizes(t *testing.T) {
	var dst countingWriter
	f := newFlushWriter(&dst)
	var want []byte
	put := func(n int, c byte) {
		p := bytes.Repeat([]byte{c}, n)
		want = append(want, p...)
		if n, err := f.Write(p); err != nil || n != len(p) {
			t.Fatalf("Write(%d bytes) = %d, %v", len(p), n, err)
		}
	}
	put(100, 'a')
	put(relayBufferSize, 'b') // fills the buffer, flushes it, buffers the rest
	put(10, 'c')
	f.Flush()
	put(3*relayBufferSize, 'd') // empty buffer: straight through
	put(1, 'e')
	f.Flush()
	if !bytes.Equal(dst.Bytes(), want) {
		t.Fatalf("got %d bytes, not the %d written in order", dst.Len(), len(want))
	}
	wantWrites := []int{relayBufferSize, 110, 3 * relayBufferSize, 1}
	if len(dst.writes) != len(wantWrites) {
		t.Fatalf("writes %v, want %v", dst.writes, wantWrites)
	}
	for i := range wantWrites {
		if dst.writes[i] != wantWrites[i] {
			t.Fatalf("writes %v, want %v", dst.writes, wantWrites)
		}
	}
}

func TestFlushWriterErrorsStickUntilReset(t *testing.T) {
	boom := errors.New("boom")
	dst := &countingWriter{fail: boom}
	f := newFlushWriter(dst)
	f.Write([]byte("x"))
	if err := f.Flush(); !errors.Is(err, boom) {
		t.Fatalf("Flush = %v, want boom", err)
	}
	dst.fail = nil
	if _, err := f.Write([]byte("y")); !errors.Is(err, boom) {
		t.Errorf("Write after a failed Flush = %v, want boom (sticky)", err)
	}
	if err := f.Flush(); !errors.Is(err, boom) {
		t.Errorf("Flush after a failed Flush = %v, want boom (sticky)", err)
	}
	var other countingWriter
	f.Reset(&other)
	if f.arr != nil {
		t.Error("Reset kept the buffer")
	}
	f.Write([]byte("z"))
	if err := f.Flush(); err != nil || other.String() != "z" || dst.Len() != 0 {
		t.Errorf("after Reset: %v, new writer got %q, old %q; want nil, z, nothing", err, other.String(), dst.String())
	}
}

// The relay's write path allocates nothing per flush.
func TestFlushWriterNoAllocationPerFlush(t *testing.T) {
	var dst countingWriter
	f := newFlushWriter(&dst)
	msg := bytes.Repeat([]byte{'q'}, 64)
	f.Write(msg)
	f.Flush()
	dst.writes = make([]int, 0, 1000)
	dst.Grow(1000 * len(msg))
	allocs := testing.AllocsPerRun(500, func() {
		f.Write(msg)
		f.Flush()
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per write and flush, want 0", allocs)
	}
}

// roomyWriter takes at most room bytes, then says it would block.
type roomyWriter struct {
	bytes.Buffer
	room int
}

func (r *roomyWriter) Write(p []byte) (int, error) {
	n := min(len(p), r.room)
	r.room -= n
	r.Buffer.Write(p[:n])
	if n < len(p) {
		return n, errWouldBlock
	}
	return n, nil
}

// The event loop's use: Buffer never writes (beyond the pooled buffer it
// spills), a Flush that finds no room keeps the rest and is not an error
// for later calls, and the bytes leave once, in order.
func TestFlushWriterBufferAndPartialFlush(t *testing.T) {
	dst := &roomyWriter{room: 1000}
	f := newFlushWriter(dst)
	want := append(bytes.Repeat([]byte("a"), relayBufferSize-10), bytes.Repeat([]byte("b"), 5000)...)
	f.Buffer(want[:relayBufferSize-10])
	f.Buffer(want[relayBufferSize-10:]) // past the pooled buffer: spills
	f.Buffer(nil)
	if dst.Len() != 0 || f.Buffered() != len(want) {
		t.Fatalf("after Buffer: %d written, %d buffered; want 0, %d", dst.Len(), f.Buffered(), len(want))
	}
	if err := f.Flush(); err != errWouldBlock {
		t.Fatalf("Flush with room for 1000 bytes: %v, want errWouldBlock", err)
	}
	if dst.Len() != 1000 || f.Buffered() != len(want)-1000 {
		t.Fatalf("after a partial Flush: %d written, %d buffered; want 1000, %d", dst.Len(), f.Buffered(), len(want)-1000)
	}
	dst.room = relayBufferSize // the rest of the pooled part, and some of the spill
	if err := f.Flush(); err != errWouldBlock {
		t.Fatalf("second partial Flush: %v, want errWouldBlock", err)
	}
	dst.room = 1 << 20
	if err := f.Flush(); err != nil {
		t.Fatalf("Flush with room: %v (a full socket must not stick)", err)
	}
	if !bytes.Equal(dst.Bytes(), want) {
		t.Errorf("wrote %d bytes, want the %d buffered, in order", dst.Len(), len(want))
	}
	if f.arr != nil || f.spill != nil || f.Buffered() != 0 {
		t.Error("after the last Flush the writer still holds a buffer")
	}
	// A Write after a partial Flush goes after what was left.
	dst.Reset()
	dst.room = 3
	f.Buffer([]byte("12345"))
	f.Flush()
	dst.room = 100
	f.Write([]byte("678"))
	if err := f.Flush(); err != nil || dst.String() != "12345678" {
		t.Errorf("after a partial Flush and a Write: %q, %v; want 12345678, nil", dst.String(), err)
	}
}
