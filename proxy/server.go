package proxy

import (
	"bufio"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ddlguard/ddlguard/guard"
)

// Server accepts client connections and relays each to its own upstream
// backend. It keeps no state shared between connections except the cancel
// key registry.
type Server struct {
	cfg Config
	log *slog.Logger
	obs Observer
	tls atomic.Pointer[tlsState] // swapped by SetTLS (SIGHUP)

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*clientConn]struct{}
	keys      map[string]*clientConn // BackendKeyData body -> owner
	closed    bool
	wg        sync.WaitGroup
	nextID    atomic.Uint64

	// guard decides statements; nil relays everything untouched.
	guard atomic.Pointer[guard.Guard]
	// loopErrOnce logs, once, that the event loops could not start.
	loopErrOnce sync.Once
	// waits is who the transactions ddlguard keeps waiting wait for.
	waits waitGraph
}

// New checks cfg and returns a Server ready to Serve.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	ut, err := newUpstreamTLS(cfg)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:       cfg,
		log:       cfg.Logger,
		obs:       cfg.Observer,
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*clientConn]struct{}),
		keys:      make(map[string]*clientConn),
	}
	s.tls.Store(&tlsState{client: cfg.ClientTLS, upstream: ut})
	if cfg.Guard != nil {
		s.guard.Store(cfg.Guard)
	}
	return s, nil
}

// tlsState is the TLS in force: toward clients (nil: SSLRequest is
// answered 'N') and toward the upstream.
type tlsState struct {
	client   *tls.Config
	upstream upstreamTLS
}

// SetTLS swaps the TLS settings for connections from now on (config
// reload, renewed certificates); open connections keep theirs. It refuses
// settings the server's other options cannot work with.
func (s *Server) SetTLS(client *tls.Config, mode UpstreamTLSMode, upstream *tls.Config) error {
	cfg := s.cfg
	cfg.ClientTLS, cfg.UpstreamTLSMode, cfg.UpstreamTLS = client, mode, modernTLS(upstream)
	if err := cfg.Validate(); err != nil {
		return err
	}
	ut, err := newUpstreamTLS(cfg)
	if err != nil {
		return err
	}
	s.tls.Store(&tlsState{client: modernTLS(client), upstream: ut})
	return nil
}

// SetGuard swaps the guard used for statements from now on (config
// reload); connections stay open. nil stops deciding.
func (s *Server) SetGuard(g *guard.Guard) { s.guard.Store(g) }

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("proxy: server closed")

// ListenAndServe listens on cfg.Listen and serves until Close.
func (s *Server) ListenAndServe() error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.Listen, err)
	}
	return s.Serve(ln)
}

// Serve accepts connections on ln until Close. It always closes ln.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	s.log.Info("listening", "addr", ln.Addr().String(), "upstream", s.cfg.Upstream)

	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return ErrServerClosed
			}
			var ne net.Error
			if (errors.As(err, &ne) && ne.Timeout()) || errors.Is(err, errTooManyFiles) {
				// Out of descriptors or a transient failure: wait and retry
				// instead of spinning or giving up.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", "err", err, "backoff", backoff)
				time.Sleep(backoff)
				continue
			}
			s.mu.Lock()
			delete(s.listeners, ln)
			s.mu.Unlock()
			ln.Close()
			return fmt.Errorf("accept: %w", err)
		}
		backoff = 0
		c := s.newClientConn(conn)
		if c == nil {
			conn.Close()
			continue
		}
		go c.serve()
	}
}

// Close stops every listener, closes every connection and waits for their
// goroutines to finish.
func (s *Server) Close() error {
	for _, c := range s.stopAccepting() {
		c.closeBoth()
	}
	s.wg.Wait()
	return nil
}

// stopAccepting closes every listener (new connections are refused) and
// returns the connections being served.
func (s *Server) stopAccepting() []*clientConn {
	s.mu.Lock()
	s.closed = true
	for ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()
	return s.connections()
}

// connections returns the connections being served now.
func (s *Server) connections() []*clientConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	conns := make([]*clientConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	return conns
}

// ConnCount is the number of client connections being served.
func (s *Server) ConnCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func (s *Server) newClientConn(conn net.Conn) *clientConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	relayed := withRawIO(conn)
	c := &clientConn{
		srv:      s,
		id:       s.nextID.Add(1),
		idle:     make(chan struct{}, 1),
		raw:      conn,
		client:   conn,
		clientIO: relayed,
		cr:       bufio.NewReaderSize(relayed, relayBufferSize),
		cw:       newFlushWriter(relayed),
	}
	c.sess.ClientAddr = conn.RemoteAddr().String()
	c.sess.Started = time.Now()
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.obs.ClientAccepted()
	return c
}

func (s *Server) forget(c *clientConn) {
	s.mu.Lock()
	delete(s.conns, c)
	if c.keyID != "" && s.keys[c.keyID] == c {
		delete(s.keys, c.keyID)
	}
	s.mu.Unlock()
	s.obs.ClientClosed()
	s.wg.Done()
}

// serve runs the connection from the first byte to the last.
func (c *clientConn) serve() {
	defer c.srv.forget(c)
	defer c.closeBoth()
	log := c.srv.log

	ctx, cancel := context.WithTimeout(context.Background(), c.srv.cfg.StartupTimeout)
	defer cancel()
	c.raw.SetDeadline(time.Now().Add(c.srv.cfg.StartupTimeout))

	startup, err := c.readStartup(ctx)
	if err != nil {
		c.logStartupFailure(err)
		var gone *clientGoneError
		if !errors.As(err, &gone) || errors.Is(err, os.ErrDeadlineExceeded) {
			c.srv.obs.ClientRejected(cmp.Or(c.rejectReason, RejectStartup))
		}
		return
	}
	if startup == nil { // a cancel request, already handled
		return
	}
	if err := c.connectUpstream(ctx, startup); err != nil {
		c.logStartupFailure(err)
		return
	}
	if err := c.relayAuth(); err != nil {
		c.logStartupFailure(err)
		return
	}
	c.raw.SetDeadline(time.Time{})
	c.upstreamRaw.SetDeadline(time.Time{})
	log.Info("connection opened", c.logAttrs()...)

	c.relaying.Store(true)
	c.closeIfIdle() // the server began draining during startup
	c.relay()

	attrs := append(c.logAttrs(),
		"duration", time.Since(c.sess.Started).Round(time.Millisecond),
		"bytes_from_client", c.sess.bytesFromClient.Load(),
		"bytes_to_client", c.sess.bytesToClient.Load(),
		"reason", c.end.reason())
	log.Info("connection closed", attrs...)
}

func (c *clientConn) logAttrs() []any {
	return []any{
		"conn_id", c.id,
		"client", c.sess.ClientAddr,
		"user", c.sess.User,
		"database", c.sess.Database,
		"application_name", c.sess.ApplicationName,
		"backend_pid", c.sess.backendPID,
		"tls", c.sess.TLS,
		"upstream_tls", c.sess.UpstreamTLS,
	}
}

func (c *clientConn) logStartupFailure(err error) {
	attrs := append(c.logAttrs(), "err", err.Error(),
		"duration", time.Since(c.sess.Started).Round(time.Millisecond))
	var cerr *clientGoneError
	if errors.As(err, &cerr) {
		// Normal for psql, which hangs up to ask for a password.
		c.srv.log.Debug("client left during startup", attrs...)
		return
	}
	c.srv.log.Warn("connection failed during startup", attrs...)
}

// sendFatal writes a FATAL error to the client; the caller closes.
func (c *clientConn) sendFatal(code, message string) {
	c.cw.Write(fatalFrame(code, message))
	c.cw.Flush()
}

// closeBoth closes both legs; safe to call many times and from any goroutine.
func (c *clientConn) closeBoth() {
	c.mu.Lock()
	c.closed = true
	raw, up := c.raw, c.upstreamRaw
	c.mu.Unlock()
	raw.Close()
	if up != nil {
		up.Close()
	}
}

// upstreamEndedCh is the channel closed when the upstream pump stops.
func (c *clientConn) upstreamEndedCh() chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.upstreamEnded == nil {
		c.upstreamEnded = make(chan struct{})
	}
	return c.upstreamEnded
}

// upstreamStopped reports whether the upstream pump has stopped (the
// upstream leg is lost or closing), without waiting.
func (c *clientConn) upstreamStopped() bool {
	select {
	case <-c.upstreamEndedCh():
		return true
	default:
		return false
	}
}

// closeUpstream closes only the upstream leg.
func (c *clientConn) closeUpstream() {
	c.mu.Lock()
	up := c.upstreamRaw
	c.mu.Unlock()
	if up != nil {
		up.Close()
	}
}

// setUpstream records the dialed upstream socket so that closeBoth reaches
// it; it reports false (and closes the socket) when the connection is
// already closing.
func (c *clientConn) setUpstream(raw net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		raw.Close()
		return false
	}
	c.upstreamRaw = raw
	return true
}

// clientGoneError marks a failure caused by the client hanging up.
type clientGoneError struct{ err error }

func (e *clientGoneError) Error() string { return "client closed the connection: " + e.err.Error() }
func (e *clientGoneError) Unwrap() error { return e.err }

// Sessions returns the sessions of the connections being served that have
// finished startup.
func (s *Server) Sessions() []*Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Session, 0, len(s.conns))
	for c := range s.conns {
		if c.keyID != "" {
			out = append(out, &c.sess)
		}
	}
	return out
}
