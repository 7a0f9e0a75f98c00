package proxy

import (
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
type flushWriter struct {
	w   io.Writer
	arr *[relayBufferSize]byte // the pooled buffer, nil while empty
	n   int                    // bytes of arr in use
	err error
}

var writeBuffers = sync.Pool{New: func() any { return new([relayBufferSize]byte) }}

func newFlushWriter(w io.Writer) *flushWriter { return &flushWriter{w: w} }

func (f *flushWriter) Write(p []byte) (int, error) {
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

// Flush writes the buffered bytes and gives the buffer back to the pool.
func (f *flushWriter) Flush() error {
	if f.err != nil {
		return f.err
	}
	if f.arr == nil {
		return nil
	}
	if f.n > 0 {
		if _, err := f.w.Write(f.arr[:f.n]); err != nil {
			f.err = err
			return err
		}
	}
	f.release()
	return nil
}

// Reset drops what is buffered and any error, and writes to w from now on.
func (f *flushWriter) Reset(w io.Writer) {
	f.release()
	f.w, f.err = w, nil
}

func (f *flushWriter) release() {
	if f.arr != nil {
		writeBuffers.Put(f.arr)
		f.arr, f.n = nil, 0
	}
}
