package proxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// Cancel keys: protocol 3.0 keys are 4 bytes; 3.2 (PostgreSQL 18) allows up
// to 256.
const (
	minCancelPacket = 16
	maxCancelPacket = 12 + 256
)

// forwardCancel relays a client's CancelRequest, unchanged, to the upstream
// that issued the key. The backend keys are the server's own (ddlguard
// relays BackendKeyData untouched), so a key this process has not seen is
// forwarded to the configured upstream too: it may belong to a session of
// another ddlguard replica in front of the same server, and the server
// ignores keys it did not issue. Like the server, ddlguard answers nothing and
// closes the connection once the request has been passed on.
func (s *Server) forwardCancel(ctx context.Context, pkt []byte, from string) error {
	if len(pkt) < minCancelPacket || len(pkt) > maxCancelPacket {
		return fmt.Errorf("cancel request of invalid length %d from %s", len(pkt), from)
	}
	addr := s.cfg.Upstream
	s.mu.Lock()
	owner, known := s.keys[string(pkt[8:])]
	if known {
		addr = owner.upstreamAddr
		owner.userCancel.Store(true)
	}
	s.mu.Unlock()
	if known && owner.waitingForClient.Load() {
		// ddlguard is waiting on the client's behalf (blocker check, retry
		// backoff): the backend runs nothing of the client's, so the
		// cancel is ddlguard's to honour. Forwarded, it could hit the
		// client's next statement instead.
		s.log.Debug("cancel request honoured by ddlguard", "client", from, "conn_id", owner.id)
		return nil
	}
	err := s.sendCancel(ctx, addr, pkt)
	s.log.Debug("cancel request", "client", from, "backend_pid", binary.BigEndian.Uint32(pkt[8:12]),
		"known_key", known, "err", err)
	return err
}

// sendCancel delivers a CancelRequest packet to addr and waits (briefly) for
// the server to close the connection, which it does once it has acted.
func (s *Server) sendCancel(ctx context.Context, addr string, pkt []byte) error {
	conn, raw, err := s.dialUpstream(ctx, addr, nil)
	if err != nil {
		return fmt.Errorf("forwarding cancel request to %s: %w", addr, err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(s.cfg.ConnectTimeout))
	if _, err := conn.Write(pkt); err != nil {
		return fmt.Errorf("forwarding cancel request to %s: %w", addr, err)
	}
	var b [1]byte
	if _, err := conn.Read(b[:]); err != nil && !errors.Is(err, io.EOF) {
		return nil // reset or timeout after delivery: nothing more to learn
	}
	return nil
}

// cancelBackend asks the upstream to cancel whatever this connection's
// backend is running. Used when the client vanishes mid-statement: a backend
// busy in a query (or waiting for a lock) does not notice a closed socket
// until it next talks to it.
func (c *clientConn) cancelBackend() {
	if c.keyID == "" {
		return
	}
	pkt := make([]byte, 8+len(c.keyID))
	binary.BigEndian.PutUint32(pkt[0:4], uint32(len(pkt)))
	binary.BigEndian.PutUint32(pkt[4:8], cancelRequestCode)
	copy(pkt[8:], c.keyID)
	ctx, cancel := context.WithTimeout(context.Background(), c.srv.cfg.ConnectTimeout)
	defer cancel()
	if err := c.srv.sendCancel(ctx, c.upstreamAddr, pkt); err != nil {
		c.srv.log.Warn("could not cancel the backend of a departed client", append(c.logAttrs(), "err", err)...)
	}
}
