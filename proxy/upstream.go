package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// upstreamTLS is the resolved TLS policy toward the upstream.
type upstreamTLS struct {
	mode UpstreamTLSMode
	cfg  *tls.Config // nil for disable
}

func newUpstreamTLS(cfg Config) (upstreamTLS, error) {
	ut := upstreamTLS{mode: cfg.UpstreamTLSMode}
	if ut.mode == UpstreamTLSDisable {
		return ut, nil
	}
	base := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.UpstreamTLS != nil {
		base = cfg.UpstreamTLS.Clone()
	}
	if base.ServerName == "" {
		host, _, _ := net.SplitHostPort(cfg.Upstream)
		base.ServerName = host
	}
	switch ut.mode {
	case UpstreamTLSVerifyFull:
		// The standard verification: chain and host name.
	case UpstreamTLSVerifyCA:
		base.InsecureSkipVerify = true
		base.VerifyConnection = verifyChainOnly(base.RootCAs)
	default: // prefer, require: verify the chain only when a CA is given, like libpq
		base.InsecureSkipVerify = true
		if base.RootCAs != nil {
			base.VerifyConnection = verifyChainOnly(base.RootCAs)
		}
	}
	ut.cfg = base
	return ut, nil
}

// verifyChainOnly checks the peer's chain against roots (nil: system roots)
// without checking the host name.
func verifyChainOnly(roots *x509.CertPool) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("upstream presented no certificate")
		}
		opts := x509.VerifyOptions{Roots: roots, Intermediates: x509.NewCertPool()}
		for _, ic := range cs.PeerCertificates[1:] {
			opts.Intermediates.AddCert(ic)
		}
		_, err := cs.PeerCertificates[0].Verify(opts)
		return err
	}
}

// dialUpstream opens a connection to addr and negotiates TLS according to the
// configured mode. onDial, when not nil, receives the raw socket as soon as it
// exists so that the caller can close it from elsewhere.
func (s *Server) dialUpstream(ctx context.Context, addr string, onDial func(net.Conn) bool) (conn, raw net.Conn, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout)
	defer cancel()
	d := net.Dialer{KeepAlive: 30 * time.Second}
	raw, err = d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	if onDial != nil && !onDial(raw) {
		return nil, nil, errors.New("connection closed while dialing upstream")
	}
	deadline, _ := ctx.Deadline()
	raw.SetDeadline(deadline)
	defer raw.SetDeadline(time.Time{})
	ut := s.tls.Load().upstream
	if ut.mode == UpstreamTLSDisable {
		return raw, raw, nil
	}
	var req [8]byte
	binary.BigEndian.PutUint32(req[0:4], 8)
	binary.BigEndian.PutUint32(req[4:8], sslRequestCode)
	if _, err := raw.Write(req[:]); err != nil {
		raw.Close()
		return nil, nil, err
	}
	var answer [1]byte
	if _, err := io.ReadFull(raw, answer[:]); err != nil {
		raw.Close()
		return nil, nil, fmt.Errorf("reading the answer to SSLRequest: %w", err)
	}
	switch answer[0] {
	case 'S':
		tc := tls.Client(withRawIO(raw), ut.cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, nil, fmt.Errorf("TLS handshake (upstream_tls.mode=%s): %w", ut.mode, err)
		}
		return tc, raw, nil
	case 'N':
		if ut.mode == UpstreamTLSPrefer {
			return raw, raw, nil
		}
		raw.Close()
		return nil, nil, fmt.Errorf("upstream does not accept TLS, but upstream_tls.mode is %s", ut.mode)
	default:
		raw.Close()
		return nil, nil, fmt.Errorf("upstream answered SSLRequest with %q", answer[0])
	}
}

// connectUpstream dials the upstream for this client and forwards its
// startup packet. On failure the client gets a FATAL error it can read.
func (c *clientConn) connectUpstream(ctx context.Context, startup []byte) error {
	addr := c.srv.cfg.Upstream
	conn, raw, err := c.srv.dialUpstream(ctx, addr, c.setUpstream)
	if err != nil {
		c.srv.obs.UpstreamConnectFailed()
		c.sendFatal(codeConnectionFailure, fmt.Sprintf("ddlguard could not connect to the upstream server %s: %v", addr, err))
		return fmt.Errorf("connect upstream %s: %w", addr, err)
	}
	raw.SetDeadline(time.Now().Add(c.srv.cfg.StartupTimeout))
	c.upstream = conn
	c.upstreamAddr = addr
	_, c.sess.UpstreamTLS = conn.(*tls.Conn)
	relayed := withRawIO(conn) // a *tls.Conn is already over withRawIO(raw)
	c.upstreamIO = relayed
	c.ur = bufio.NewReaderSize(relayed, relayBufferSize)
	c.uw = newFlushWriter(relayed)
	if _, err := c.uw.Write(startup); err != nil {
		return c.upstreamLost(err)
	}
	if err := c.uw.Flush(); err != nil {
		return c.upstreamLost(err)
	}
	return nil
}

// upstreamLost reports a broken upstream leg to the client.
func (c *clientConn) upstreamLost(err error) error {
	c.sendFatal(codeConnectionFailure, "ddlguard lost the connection to the upstream server: "+err.Error())
	return fmt.Errorf("upstream: %w", err)
}
