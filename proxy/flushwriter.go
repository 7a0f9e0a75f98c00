package proxy

import (
	"errors"
	"io"
	"sync"
)

// flushWriter buffers what the relay writes to one socket, as bufio.Writer
// does, but holds a buffer only while it has bytes not yet flushed: the
// buffer comes from a process-wide pool at the first Write after a Flush and
// goes back when a Flush has written it out. The relay flushes whenever its
// reader has nothing more buffered, so an idle connection holds no write
// buffers (two of its four relay buffers; TestManyConnections reports the
// memory per connection).
//
// Like bufio.Writer: a Write that finds the buffer empty and is at least a
// buffer long goes straight to the socket; after a failed write every later
// Write and Flush returns that error; Reset drops unflushed bytes and the
// error. It is not safe for concurrent use (the pumps' wmu serializes it
// where two goroutines write).
//
// For the event loop (eventloop_linux.go), which must never wait: Buffer
// takes bytes without writing anything (beyond the pooled buffer they go to
// a spill slice), and a Flush over a non-blocking socket that finds no room
// returns errWouldBlock and keeps what is left; that is not an error for
// later calls.
type flushWriter struct {
	w     io.Writer
	arr   *[relayBufferSize]byte // the pooled buffer, nil while empty
	start int                    // arr[start:n] is not yet written
	n     int
	spill []byte // written after arr (Buffer only)
	err   error
}

var writeBuffers = sync.Pool{New: func() any { return new([relayBufferSize]byte) }}

func newFlushWriter(w io.Writer) *flushWriter { return &flushWriter{w: w} }

func (f *flushWriter) Write(p []byte) (int, error) {
	if len(f.spill) > 0 {
		if err := f.Flush(); err != nil {
			return 0, err
		}
	}
	written := 0
	for len(p) > 0 {
		if f.err != nil {
			return written, f.err
		}
		if f.arr == nil {
			if len(p) >= relayBufferSize {
				n, err := f.w.Write(p)
				if err != nil {
					f.err = err
				}
				return written + n, err
			}
			f.arr = writeBuffers.Get().(*[relayBufferSize]byte)
		}
		if f.n == len(f.arr) {
			f.Flush()
			continue
		}
		k := copy(f.arr[f.n:], p)
		f.n += k
		written += k
		p = p[k:]
	}
	return written, nil
}

// Buffer adds p to what is buffered without writing anything.
func (f *flushWriter) Buffer(p []byte) {
	if len(p) == 0 {
		return
	}
	if f.arr == nil {
		f.arr = writeBuffers.Get().(*[relayBufferSize]byte)
	}
	if len(f.spill) == 0 {
		k := copy(f.arr[f.n:], p)
		f.n += k
		p = p[k:]
	}
	if len(p) > 0 {
		f.spill = append(f.spill, p...)
	}
}

// Buffered is the number of bytes not yet written.
func (f *flushWriter) Buffered() int { return f.n - f.start + len(f.spill) }

// Flush writes the buffered bytes and gives the buffer back to the pool.
func (f *flushWriter) Flush() error {
	if f.err != nil {
		return f.err
	}
	if f.arr == nil {
		return nil
	}
	for f.start < f.n {
		k, err := f.w.Write(f.arr[f.start:f.n])
		f.start += k
		if err != nil {
			return f.failed(err)
		}
	}
	for len(f.spill) > 0 {
		k, err := f.w.Write(f.spill)
		f.spill = f.spill[k:]
		if err != nil {
			return f.failed(err)
		}
	}
	f.release()
	return nil
}

// failed records err for every later call, unless it only says the socket
// is full for now.
func (f *flushWriter) failed(err error) error {
	if err != errWouldBlock {
		f.err = err
	}
	return err
}

// errWouldBlock is what a non-blocking socket call returns when there is
// nothing to read or no room to write (rawio_linux.go).
var errWouldBlock = errors.New("operation would block")

// Reset drops what is buffered and any error, and writes to w from now on.
func (f *flushWriter) Reset(w io.Writer) {
	f.release()
	f.w, f.err = w, nil
}

func (f *flushWriter) release() {
	if f.arr != nil {
		writeBuffers.Put(f.arr)
		f.arr, f.start, f.n = nil, 0, 0
	}
	f.spill = nil
}
