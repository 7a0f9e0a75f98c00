package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// Startup-phase request codes (the int32 after the length word).
const (
	cancelRequestCode = 80877102 // 1234.5678
	sslRequestCode    = 80877103 // 1234.5679
	gssEncRequestCode = 80877104 // 1234.5680
)

// readStartup negotiates encryption and returns the client's StartupMessage
// packet, unchanged, for forwarding. It returns (nil, nil) after handling a
// CancelRequest. Protocol errors have already been reported to the client.
func (c *clientConn) readStartup(ctx context.Context) ([]byte, error) {
	tlsDone, gssDone := false, false
	for {
		pkt, err := readStartupPacket(c.cr)
		if err != nil {
			var fe *frameError
			if errors.As(err, &fe) {
				c.sendFatal(codeProtocolViolation, "invalid length of startup packet")
				return nil, err
			}
			return nil, &clientGoneError{err}
		}
		code := binary.BigEndian.Uint32(pkt[4:8])
		switch code {
		case sslRequestCode:
			if len(pkt) != 8 || tlsDone {
				c.sendFatal(codeProtocolViolation, "unexpected SSLRequest")
				return nil, errors.New("client sent a malformed or repeated SSLRequest")
			}
			clientTLS := c.srv.tls.Load().client
			if clientTLS == nil {
				if _, err := c.client.Write([]byte{'N'}); err != nil {
					return nil, &clientGoneError{err}
				}
				continue
			}
			// Bytes that arrived with the SSLRequest were sent before the
			// client could know the answer: a plaintext injection attempt
			// (CVE-2021-23214 class). Never process them.
			if c.cr.Buffered() > 0 {
				c.sendFatal(codeProtocolViolation, "received unencrypted data after SSL request")
				return nil, errors.New("client sent unencrypted data after SSLRequest")
			}
			if _, err := c.client.Write([]byte{'S'}); err != nil {
				return nil, &clientGoneError{err}
			}
			tc := tls.Server(withRawIO(c.raw), clientTLS)
			c.clientTLS = clientTLS
			if err := tc.HandshakeContext(ctx); err != nil {
				return nil, fmt.Errorf("client TLS handshake: %w", err)
			}
			c.client, c.clientIO = tc, tc
			c.cr.Reset(tc)
			c.cw.Reset(tc)
			c.sess.TLS = true
			tlsDone = true
		case gssEncRequestCode:
			if len(pkt) != 8 || gssDone || tlsDone {
				c.sendFatal(codeProtocolViolation, "unexpected GSSENCRequest")
				return nil, errors.New("client sent a malformed or repeated GSSENCRequest")
			}
			gssDone = true
			if _, err := c.client.Write([]byte{'N'}); err != nil {
				return nil, &clientGoneError{err}
			}
		case cancelRequestCode:
			return nil, c.srv.forwardCancel(ctx, pkt, c.sess.ClientAddr)
		default:
			if code>>16 != 3 {
				c.sendFatal(codeFeatureNotSupported, fmt.Sprintf(
					"unsupported frontend protocol %d.%d: ddlguard supports 3.x", code>>16, code&0xffff))
				return nil, fmt.Errorf("client asked for protocol %d.%d", code>>16, code&0xffff)
			}
			if err := c.parseStartup(pkt); err != nil {
				return nil, err
			}
			if c.srv.cfg.RequireClientTLS && !tlsDone {
				c.rejectReason = RejectTLSRequired
				c.sendFatal(codeInvalidAuthSpec, "ddlguard requires TLS on this listener (connect with sslmode=require or stronger)")
				return nil, errors.New("plaintext client refused: client_tls.require is set")
			}
			return pkt, nil
		}
	}
}

// parseStartup reads the parameters of a StartupMessage packet. Any 3.x
// version and any parameter (including _pq_.* protocol options) is accepted:
// the upstream negotiates, and NegotiateProtocolVersion is relayed back.
func (c *clientConn) parseStartup(pkt []byte) error {
	c.sess.ProtocolVersion = binary.BigEndian.Uint32(pkt[4:8])
	params := pkt[8:]
	if len(params) == 0 || params[len(params)-1] != 0 {
		c.sendFatal(codeProtocolViolation, "invalid startup packet layout: expected terminator as last byte")
		return errors.New("startup packet without terminator")
	}
	var replication string
	rest := params[:len(params)-1]
	for len(rest) > 0 {
		k, v, ok := nextPair(rest)
		if !ok {
			c.sendFatal(codeProtocolViolation, "invalid startup packet layout: expected terminator as last byte")
			return errors.New("startup packet with an odd number of strings")
		}
		switch k {
		case "user":
			c.sess.User = v
		case "database":
			c.sess.Database = v
		case "application_name":
			c.sess.ApplicationName = v
		case "replication":
			replication = v
		}
		rest = rest[len(k)+len(v)+2:]
	}
	if c.sess.User == "" {
		c.sendFatal(codeInvalidAuthSpec, "no PostgreSQL user name specified in startup packet")
		return errors.New("startup packet without user")
	}
	if c.sess.Database == "" {
		c.sess.Database = c.sess.User
	}
	if isReplication(replication) && !c.srv.cfg.AllowReplication {
		c.rejectReason = RejectReplication
		c.sendFatal(codeFeatureNotSupported,
			"ddlguard does not relay replication connections (replication="+replication+"); connect to the server directly or set allow_replication: true")
		return fmt.Errorf("replication connection refused (replication=%s)", replication)
	}
	return nil
}

// nextPair splits "key\0value\0..." into its first key and value.
func nextPair(b []byte) (k, v string, ok bool) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return "", "", false
	}
	j := bytes.IndexByte(b[i+1:], 0)
	if j < 0 {
		return "", "", false
	}
	return string(b[:i]), string(b[i+1 : i+1+j]), true
}

// isReplication interprets the replication startup parameter as the server
// does: "database" or a true boolean ask for a walsender.
func isReplication(v string) bool {
	switch strings.ToLower(v) {
	case "", "false", "off", "no", "0", "f", "n":
		return false
	}
	return true
}
