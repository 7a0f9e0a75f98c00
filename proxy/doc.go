// Package proxy owns ddlguard's client-facing side of the PostgreSQL wire
// protocol: listeners, TLS termination, the startup and authentication relay,
// cancel-request routing, the per-connection relay loop, the session state
// the relay observes (transaction status, server version, startup
// parameters), and carrying out the guard's decisions on the wire.
//
// The relay forwards every frame byte for byte. It decodes, with
// github.com/jackc/pgx/v5/pgproto3, only the messages whose content it needs
// (startup packets, authentication requests, BackendKeyData,
// ParameterStatus, ReadyForQuery, the statements it asks the guard about)
// and encodes only the messages ddlguard itself writes. Everything else is
// copied through without being decoded or re-encoded, so what the client
// receives is exactly what the server sent.
//
// The package knows no SQL policy: it never names a rule, and it does not
// read the SQL the guard writes (how to report a rewrite step's failure,
// for one, comes in the decision). It asks package guard about each
// statement that may need a decision and carries out the answer.
//
// Where things are, following one statement from the client to the
// server and back:
//
//   - relay.go: the frame loop. A pump per direction; relayFrame is the one
//     frame step, used by the pump goroutine (pump.run) and by the event
//     loops (loopstep_linux.go); the hook contract is at the top.
//   - hooks.go: the two directions' hooks (clientHooks, upstreamHooks),
//     called by relayFrame at the documented points.
//   - decide.go: asking the guard (interceptQuery, interceptParse): the
//     guard.Request, catalog facts, recording the decision (logs, metrics,
//     notices, session context).
//   - dispatch.go: carryOut, the one switch over the guard's actions, and
//     the two forms a statement arrives in (simple Query, Parse).
//   - lockwait.go: running under a lock timeout (blocker check, retries,
//     the 55P03 answer); blockers.go: the blocker check's SQL and judgement.
//   - heldbatch.go: extended-protocol batches held until Sync.
//   - rewrite.go: executed rewrites (steps, clean-up, the answer).
//   - internalquery.go: ddlguard's own queries on the client's connection
//     (the answer diverted from the upstream pump, waiting for a sync point).
//   - catalog.go: the catalog interface (facts, domain facts, blockers), its
//     two sources (the client's connection, the monitor pool in
//     facts_monitor.go) and the fallback between them; catalog_sql.go: its
//     queries; facts.go: the per-connection facts cache.
//   - frames.go: every frame ddlguard builds; raise.go: the SQL that makes
//     the server raise ddlguard's errors; errors.go: SQLSTATEs.
//
// The rest, one concern a file: server.go (listener and connection
// registry), conn.go (a connection's state, grouped by owner), connrelay.go
// (a connection's two pumps and how the relay ends), startup.go (startup
// packets, SSL/GSSENC negotiation), upstream.go (dialing and TLS to the
// upstream), auth.go (authentication relay), cancel.go (CancelRequest
// routing), limits.go (frame reading and size limits), session.go
// (observed session state), clientwatch.go (noticing a client that hangs
// up while ddlguard works on its behalf), rawio_linux.go (relayed socket
// reads and writes as raw non-blocking system calls, docs/perf/README.md
// says why), eventloop_linux.go (the event loops that relay idle plain
// connections) and ownedsocket_linux.go (the sockets they take over from
// Go's poller), flushwriter.go (write buffers pooled while empty),
// observe.go (the Observer events), drain.go (graceful shutdown),
// accept_unix.go (running out of file descriptors on accept), config.go.
package proxy
