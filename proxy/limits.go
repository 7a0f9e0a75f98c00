package proxy

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
)

// Size limits. Frames are a type byte followed by a big-endian int32 length
// that counts itself; startup packets have no type byte.
const (
	// maxFrameLength is the largest length word the protocol can carry.
	maxFrameLength = 1<<31 - 1
	// minMaxMessageSize keeps a configured limit above the size of any
	// message ddlguard must inspect.
	minMaxMessageSize = 64 << 10
	// maxStartupPacket is PostgreSQL's MAX_STARTUP_PACKET_LENGTH.
	maxStartupPacket = 10000
	// maxAuthMessage bounds frames exchanged during authentication, as the
	// server bounds authentication tokens (PG_MAX_AUTH_TOKEN_LENGTH is 65535;
	// GSS tokens may be a little larger).
	maxAuthMessage = 1 << 20
	// inspectLimit bounds messages ddlguard decodes in the relay (ReadyForQuery,
	// ParameterStatus); anything larger of those types is malformed.
	inspectLimit = 64 << 10
	// relayBufferSize is the per-direction read buffer, and the write
	// buffer a flushWriter takes from its pool while it has bytes to send;
	// frames that fit are relayed from the read buffer without copying.
	relayBufferSize = 32 << 10
)

// frameError is a protocol violation in the frames of one side.
type frameError struct {
	side string // "client" or "upstream"
	msg  string
}

func (e *frameError) Error() string { return e.side + " sent " + e.msg }

// readFrameHeader reads the type byte and body length of the next frame,
// rejecting lengths below 4 or above limit before anything is allocated.
func readFrameHeader(r *bufio.Reader, limit int, side string) (typ byte, bodyLen int, err error) {
	hdr, err := r.Peek(5)
	if err != nil {
		if len(hdr) > 0 && err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, 0, err
	}
	typ = hdr[0]
	n := int64(binary.BigEndian.Uint32(hdr[1:5]))
	if n < 4 || n > int64(limit) {
		return typ, 0, &frameError{side: side, msg: fmt.Sprintf("a message of type %q with invalid length %d (limit %d)", typ, n, limit)}
	}
	return typ, int(n - 4), nil
}

// readMessage reads one whole frame into buf (grown as needed) and returns
// its type and body. It is for the small messages ddlguard inspects.
func readMessage(r *bufio.Reader, limit int, side string, buf []byte) (typ byte, body []byte, newBuf []byte, err error) {
	typ, n, err := readFrameHeader(r, limit, side)
	if err != nil {
		return 0, nil, buf, err
	}
	frame, err := readWhole(r, buf, 5+n)
	if err != nil {
		return 0, nil, frame, err
	}
	return typ, frame[5:], frame, nil
}

// readWhole reads the next size bytes of r into buf, which it reuses when
// it is large enough and otherwise grows only as the bytes arrive: a
// declared length is not allocated before the peer has sent that much
// (five bytes announcing 1 GiB cost no gigabyte).
func readWhole(r *bufio.Reader, buf []byte, size int) ([]byte, error) {
	if cap(buf) >= size {
		buf = buf[:size]
		_, err := io.ReadFull(r, buf)
		return buf, unexpectedEOF(err)
	}
	buf = buf[:0]
	for len(buf) < size {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(size, max(2*cap(buf), relayBufferSize))-len(buf))
		}
		n, err := r.Read(buf[len(buf):min(cap(buf), size)])
		buf = buf[:len(buf)+n]
		if err != nil && len(buf) < size {
			return buf, unexpectedEOF(err)
		}
	}
	return buf, nil
}

// readStartupPacket reads one length-prefixed startup-phase packet (no type
// byte) into a fresh slice including the length word.
func readStartupPacket(r *bufio.Reader) ([]byte, error) {
	hdr, err := r.Peek(4)
	if err != nil {
		if len(hdr) > 0 && err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	n := int64(binary.BigEndian.Uint32(hdr))
	if n < 8 || n > maxStartupPacket {
		return nil, &frameError{side: "client", msg: fmt.Sprintf("a startup packet with invalid length %d", n)}
	}
	pkt := make([]byte, n)
	if _, err := io.ReadFull(r, pkt); err != nil {
		return nil, unexpectedEOF(err)
	}
	return pkt, nil
}

func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
