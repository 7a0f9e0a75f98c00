package proxy

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Authentication request codes (the int32 body of an 'R' message).
const (
	authOK        = 0
	authSASL      = 10
	authSASLFinal = 12
)

const scramPlus = "SCRAM-SHA-256-PLUS"

// relayAuth relays the authentication exchange end to end, then the
// session's initial ParameterStatus, BackendKeyData and the first
// ReadyForQuery. ddlguard holds no credentials: every challenge goes to the
// client and every answer to the server, unchanged, except that
// SCRAM-SHA-256-PLUS is withdrawn from the offered mechanisms when TLS is
// terminated here (the client's channel binding would name ddlguard's
// certificate, which the server cannot match).
func (c *clientConn) relayAuth() error {
	var buf, cbuf []byte
	authenticated := false
	for {
		var typ byte
		var body []byte
		var err error
		typ, body, buf, err = readMessage(c.ur, maxAuthMessage, "upstream", buf)
		if err != nil {
			var fe *frameError
			if errors.As(err, &fe) {
				c.sendFatal(codeProtocolViolation, "ddlguard: "+fe.Error())
				return err
			}
			return c.upstreamLost(err)
		}
		frame := buf[:5+len(body)]
		expectAnswer := false
		switch {
		case typ == 'R' && !authenticated:
			if len(body) < 4 {
				c.sendFatal(codeProtocolViolation, "ddlguard: upstream sent a malformed authentication request")
				return errors.New("upstream sent a short authentication request")
			}
			switch binary.BigEndian.Uint32(body) {
			case authOK:
				authenticated = true
			case authSASL:
				frame, err = c.offeredMechanisms(frame, body)
				if err != nil {
					c.sendFatal(codeProtocolViolation, "ddlguard: upstream sent a malformed SASL request")
					return err
				}
				expectAnswer = true
			case authSASLFinal:
			default: // cleartext, MD5, GSS, SSPI, SASL continue: the client answers
				expectAnswer = true
			}
		case typ == 'E':
			c.cw.Write(frame)
			c.cw.Flush()
			return upstreamError(body)
		case typ == 'K' && authenticated:
			c.registerCancelKey(body)
		case typ == 'S' && authenticated:
			c.sess.observeParameterStatus(body)
		case typ == 'Z' && authenticated:
			if len(body) != 1 {
				c.sendFatal(codeProtocolViolation, "ddlguard: upstream sent a malformed ReadyForQuery")
				return errors.New("upstream sent a malformed ReadyForQuery")
			}
			c.sess.txStatus.Store(uint32(body[0]))
			c.sess.bytesToClient.Add(int64(len(frame)))
			c.srv.obs.Relayed(false, len(frame))
			c.cw.Write(frame)
			return c.flushClient()
		case typ == 'v', typ == 'N':
			// NegotiateProtocolVersion, NoticeResponse: relayed as they are.
		default:
			c.sendFatal(codeProtocolViolation, fmt.Sprintf("ddlguard: upstream sent unexpected message %q during startup", typ))
			return fmt.Errorf("upstream sent %q during startup", typ)
		}
		c.sess.bytesToClient.Add(int64(len(frame)))
		c.srv.obs.Relayed(false, len(frame))
		c.cw.Write(frame)
		if !expectAnswer {
			if c.ur.Buffered() == 0 {
				if err := c.flushClient(); err != nil {
					return err
				}
			}
			continue
		}
		if err := c.flushClient(); err != nil {
			return err
		}
		var ctyp byte
		var cbody []byte
		ctyp, cbody, cbuf, err = readMessage(c.cr, maxAuthMessage, "client", cbuf)
		if err != nil {
			var fe *frameError
			if errors.As(err, &fe) {
				c.sendFatal(codeProtocolViolation, "invalid message length")
				return err
			}
			return &clientGoneError{err}
		}
		if ctyp == 'X' {
			return &clientGoneError{errors.New("terminated during authentication")}
		}
		if ctyp == 'p' && c.bindingDowngradeRefused(cbody) {
			c.cw.Write(errorFrame("FATAL", codeInvalidAuthSpec,
				"ddlguard: SCRAM channel binding cannot pass through ddlguard's TLS termination",
				"The client supports channel binding and sees ddlguard's certificate; the server, reached over TLS, "+
					"would reject the authentication as a downgrade. Connect with channel_binding=disable, configure "+
					"ddlguard's client_tls with the server's own certificate (then channel binding works end to end), "+
					"or use upstream_tls.mode=disable."))
			c.cw.Flush()
			return errors.New("client offered SCRAM channel binding that cannot pass through TLS termination")
		}
		c.sess.bytesFromClient.Add(int64(5 + len(cbody)))
		c.srv.obs.Relayed(true, 5+len(cbody))
		c.uw.Write(cbuf[:5+len(cbody)])
		if err := c.uw.Flush(); err != nil {
			return c.upstreamLost(err)
		}
	}
}

func (c *clientConn) flushClient() error {
	if err := c.cw.Flush(); err != nil {
		return &clientGoneError{err}
	}
	return nil
}

// offeredMechanisms returns the AuthenticationSASL frame to send the client:
// unchanged, or without SCRAM-SHA-256-PLUS when channel binding cannot work
// through this connection.
func (c *clientConn) offeredMechanisms(frame, body []byte) ([]byte, error) {
	var req pgproto3.AuthenticationSASL
	if err := req.Decode(body); err != nil {
		return nil, err
	}
	if c.channelBindingPassesThrough() || !bytes.Contains(body, []byte(scramPlus)) {
		return frame, nil
	}
	kept := req.AuthMechanisms[:0]
	for _, m := range req.AuthMechanisms {
		if m != scramPlus {
			kept = append(kept, m)
		}
	}
	req.AuthMechanisms = kept
	return req.Encode(nil)
}

// channelBindingPassesThrough reports whether a client's tls-server-end-point
// binding would match what the server computes: both legs are TLS and
// ddlguard presents the very certificate the upstream presents.
func (c *clientConn) channelBindingPassesThrough() bool {
	tc, ok := c.upstream.(*tls.Conn)
	if !ok || !c.sess.TLS {
		return false
	}
	peer := tc.ConnectionState().PeerCertificates
	if c.clientTLS == nil {
		return false
	}
	own := c.clientTLS.Certificates
	if len(peer) == 0 || len(own) == 0 || len(own[0].Certificate) == 0 {
		return false
	}
	return bytes.Equal(peer[0].Raw, own[0].Certificate[0])
}

// bindingDowngradeRefused reports whether a SASLInitialResponse carries the
// GS2 flag "y" (client supports channel binding, thinks the server does not)
// while the upstream leg is TLS: PostgreSQL refuses that as a downgrade
// attack, and the flag is covered by the SCRAM proof, so it cannot be
// rewritten without the password.
func (c *clientConn) bindingDowngradeRefused(body []byte) bool {
	if _, upTLS := c.upstream.(*tls.Conn); !upTLS || c.channelBindingPassesThrough() {
		return false
	}
	var msg pgproto3.SASLInitialResponse
	if msg.Decode(body) != nil {
		return false
	}
	return bytes.HasPrefix(msg.Data, []byte("y,"))
}

// registerCancelKey records the backend's cancel key so that a CancelRequest
// carrying it is routed to this connection's upstream.
func (c *clientConn) registerCancelKey(body []byte) {
	if len(body) < 8 {
		return
	}
	c.sess.backendPID = binary.BigEndian.Uint32(body)
	c.sess.cancelKey = append([]byte(nil), body[4:]...)
	c.srv.mu.Lock()
	c.keyID = string(body)
	c.srv.keys[c.keyID] = c
	c.srv.mu.Unlock()
}

// upstreamError turns a relayed ErrorResponse into a Go error for logging.
func upstreamError(body []byte) error {
	var e pgproto3.ErrorResponse
	if err := e.Decode(body); err != nil {
		return errors.New("upstream sent a malformed error")
	}
	return fmt.Errorf("upstream: %s: %s (SQLSTATE %s)", e.Severity, e.Message, e.Code)
}
