// Package proxy owns ddlguard's client-facing side of the PostgreSQL wire
// protocol: listeners, TLS termination, the startup and authentication relay,
// cancel-request routing, the per-connection relay loop and the session state
// the relay observes (transaction status, server version, startup
// parameters).
//
// The relay forwards every frame byte for byte. It decodes, with
// github.com/jackc/pgx/v5/pgproto3, only the messages whose content it needs
// (startup packets, authentication requests, BackendKeyData,
// ParameterStatus, ReadyForQuery) and encodes with pgproto3 only the messages
// ddlguard itself writes (error responses). Everything else is copied through
// without being decoded or re-encoded, so what the client receives is exactly
// what the server sent.
//
// The package knows nothing about SQL policy. Policy hooks are called from the
// relay at documented points (see relay.go); this package never parses SQL.
//
// Files, one concern each: server.go (listener and connection registry),
// startup.go (startup packets, SSL/GSSENC negotiation), upstream.go (dialing
// and TLS to the upstream), auth.go (authentication relay), cancel.go
// (CancelRequest routing), relay.go (steady-state relay loop), limits.go
// (frame reading and size limits), session.go (observed session state),
// clientwatch.go (noticing a client that hangs up while ddlguard waits or
// works on its behalf), rawio_linux.go (relayed socket reads and writes as
// raw non-blocking system calls, docs/perf/README.md says why),
// eventloop_linux.go (the event loops that relay idle plain connections)
// and ownedsocket_linux.go (the sockets they take over from Go's poller),
// flushwriter.go (write buffers pooled while empty), intercept.go (asking the guard), execute.go and rewrite.go (carrying out
// a decision), facts.go and facts_monitor.go (catalog facts), observe.go
// (the Observer events), drain.go (graceful shutdown), errors.go
// (synthesized PostgreSQL errors), accept_unix.go (running out of file
// descriptors on accept), config.go.
package proxy
