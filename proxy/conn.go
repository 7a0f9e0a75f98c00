package proxy

import (
	"bufio"
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ddlguard/ddlguard/guard"
)

// clientConn is one client connection and its upstream connection. Its
// state is grouped by owner: the legs (sockets, readers and writers) and
// the session observed on them here; what only the client pump touches
// (policyState); what the two pumps share (pumpShared); how the client's
// departure is noticed (departure, clientwatch.go); and how the relay
// ends (ending, connrelay.go and drain.go).
type clientConn struct {
	srv *Server
	id  uint64 // connection id, for logs

	raw    net.Conn // the accepted socket; closing it ends everything (guarded by mu once relaying: ownSockets replaces it)
	client net.Conn // raw, or the *tls.Conn over it after an SSLRequest
	cr     *bufio.Reader
	cw     *flushWriter
	cwMu   sync.Mutex // held by whoever writes frames to cw during the relay

	mu          sync.Mutex
	closed      bool
	upstreamRaw net.Conn // guarded by mu; closing it ends the upstream leg
	// upstreamEnded (see upstreamEndedCh) is closed when the upstream pump
	// stops: an answer ddlguard waits for will not come. Guarded by mu.
	upstreamEnded chan struct{}

	upstream     net.Conn // upstreamRaw, or the *tls.Conn over it
	upstreamAddr string
	ur           *bufio.Reader
	uw           *flushWriter
	// clientIO and upstreamIO are what the pumps read and write: the
	// sockets (raw I/O, maybe taken over by an event loop) or TLS over them.
	clientIO, upstreamIO net.Conn

	sess  Session
	keyID string
	// clientTLS is the TLS configuration this client's handshake used.
	clientTLS *tls.Config
	// rejectReason classifies a startup ddlguard refused (for metrics).
	rejectReason string
	idle         chan struct{} // signalled when the server owes the client nothing

	ending
	policyState
	pumpShared
	departure
}

// ending is how the relay stops.
type ending struct {
	end relayEnd
	// terminateGraceTimer closes the upstream leg terminateGrace after the
	// client's Terminate left; set by the client pump, stopped by relay.
	terminateGraceTimer *time.Timer
	// Graceful shutdown (drain.go): relaying is set once startup is done;
	// draining once the server drains; drainClosed once closed for it.
	relaying, draining, drainClosed atomic.Bool
}

// policyState is read and written only by whoever runs the client pump
// (its goroutine, or an event loop while the pump is parked).
type policyState struct {
	gsess     guard.Session // the guard's view of the session (decide.go)
	facts     factsCache    // catalog facts asked for (facts.go)
	lockState lockState     // what the last facts query read of locks and settings (lockstate.go)
	// Extended-protocol timeout state (heldbatch.go).
	stmtTimeouts  map[string]*timeoutPlan // prepared statement name -> its plan
	restoreOnSync *restorePlan            // set when a batch runs with an injected lock_timeout
	batch         *heldBatch              // a batch held until its Sync
	// cleanupUntil bounds the clean-up after a departed client.
	cleanupUntil time.Time
}

// pumpShared is what the client pump's work tells the upstream hook, and
// what a cancel request tells the work: each field is safe for concurrent
// use on its own.
type pumpShared struct {
	// divert collects the answer to ddlguard's own query (internalquery.go).
	divert atomic.Pointer[divertBuf]
	// notices wait for delivery ahead of the next upstream frame (hooks.go);
	// noticeMu is held while they are appended to or taken.
	noticeMu sync.Mutex
	notices  atomic.Pointer[[]byte]
	// tagRewrite: the next "DO" CommandComplete is reported with this tag
	// (rewrite.go).
	tagRewrite atomic.Pointer[string]
	// stripNextContext: the next ErrorResponse is a re-raised step error
	// whose PL/pgSQL context is ddlguard's.
	stripNextContext atomic.Bool
	userCancel       atomic.Bool // the client sent a CancelRequest for this session
	// waitingForClient: ddlguard waits on the client's behalf (no statement
	// of the client's is running on the server).
	waitingForClient atomic.Bool
}

// departure is how a client that hangs up while ddlguard works on its
// behalf is noticed (clientwatch.go). clientGone: the client hung up;
// stepRunning: the server runs the client's guarded statement or a
// rewrite step; cleaningUp: ddlguard takes back a rewrite's steps; goneMu
// orders them.
type departure struct {
	clientGone, stepRunning, cleaningUp atomic.Bool
	goneMu                              sync.Mutex
}
