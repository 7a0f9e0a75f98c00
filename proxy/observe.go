package proxy

import (
	"time"
)

// Observer receives what the proxy does, for metrics and the admin pages.
// The proxy calls it from connection goroutines, on the relay's hot path
// for Relayed and StatementPassed: implementations must be safe for
// concurrent use, must not block, and must not keep the slices they are
// given. Config.Observer nil means nobody listens.
//
// Calls happen at these points, in this order for one guarded statement:
// Decided (once per statement the guard decided, before anything is sent),
// then for a timeout or rewrite: WaitingChanged(+1), BlockerWait after each
// blocker check, LockTimeout for each attempt the server ended with
// lock_not_available, LockRetry before each new attempt,
// RetryBudgetExhausted when ddlguard gives up, WaitingChanged(-1); then
// Rewritten (rewrites only) and GuardedDone with the statement's totals.
type Observer interface {
	// ClientAccepted: a client connection was accepted.
	ClientAccepted()
	// ClientClosed: a connection counted by ClientAccepted ended.
	ClientClosed()
	// ClientRejected: ddlguard refused a connection during startup
	// (reason: RejectStartup, RejectTLSRequired, RejectReplication, ...).
	ClientRejected(reason string)
	// UpstreamConnectFailed: dialing or securing the upstream failed.
	UpstreamConnectFailed()
	// Relayed: n bytes went from client to upstream (toUpstream) or back.
	Relayed(toUpstream bool, n int)
	// StatementPassed: a Query or Parse went through without a decision
	// (no statement in it can take a strong lock).
	StatementPassed()
	// Decided: the guard decided one statement.
	Decided(ev DecisionEvent)
	// WaitingChanged: guarded statements ddlguard holds while it waits for
	// blockers or retries went up or down by delta.
	WaitingChanged(delta int)
	// BlockerWait: ddlguard waited d for blockers before an attempt.
	BlockerWait(d time.Duration)
	// LockTimeout: an attempt ended with lock_not_available.
	LockTimeout()
	// LockRetry: ddlguard tries a statement again after a lock timeout.
	LockRetry()
	// RetryBudgetExhausted: ddlguard gave up on a statement.
	RetryBudgetExhausted()
	// Rewritten: a rewrite sequence ran to its end (ok) or failed.
	Rewritten(rule string, ok bool)
	// GuardedDone: a guarded statement (timeout or rewrite) is answered:
	// total is from the decision to the answer, lockWait the part spent in
	// the server's lock queue as far as ddlguard can tell (attempts that
	// ended in a lock timeout, and the last attempt of a statement that
	// does no work under its lock).
	GuardedDone(kind string, total, lockWait time.Duration)
	// LoopHandBack: an event loop gave a pump back to its goroutine
	// (reason: HandBackDecision, HandBackSocketFull, ...).
	LoopHandBack(reason string)
}

// Reasons for LoopHandBack (eventloop_linux.go).
const (
	HandBackDecision   = "decision"      // a frame needs the guard or a held batch
	HandBackSocketFull = "socket_full"   // the peer does not take what is written
	HandBackWriterBusy = "writer_busy"   // another goroutine writes to the client
	HandBackLargeFrame = "large_frame"   // a frame larger than the read buffer
	HandBackBadFrame   = "invalid_frame" // a frame with an invalid length
	HandBackPeerGone   = "peer_gone"     // the peer closed or reset, or a read or write failed
	HandBackClosed     = "closed"        // ddlguard closed the socket
)

// HandBackReasons lists every LoopHandBack reason.
var HandBackReasons = []string{HandBackDecision, HandBackSocketFull, HandBackWriterBusy,
	HandBackLargeFrame, HandBackBadFrame, HandBackPeerGone, HandBackClosed}

// Reasons for ClientRejected.
const (
	RejectStartup     = "startup"      // malformed, unsupported or timed-out startup
	RejectTLSRequired = "tls_required" // plaintext where client_tls.require is set
	RejectReplication = "replication"  // replication connection, not allowed
	RejectDraining    = "draining"     // the server is shutting down
)

// DecisionEvent is one decision, for the admin page's recent list. The
// statement is normalized (literals replaced by placeholders).
type DecisionEvent struct {
	Time        time.Time
	ConnID      uint64
	BackendPID  uint32
	User        string
	Database    string
	Application string
	Client      string
	// Action is allow, timeout, rewrite, reject or warn ("reject" also for
	// a rewrite that could not run where it was sent).
	Action string
	// Rule is the deciding rule ("" for allow and timeout); Warnings the
	// rules in warn mode that matched.
	Rule     string
	Warnings []string
	Kind     string
	// Statement is the normalized statement text.
	Statement string
	// Relations are the relations it locks, with the mode ("t ACCESS EXCLUSIVE").
	Relations []string
}

// nopObserver is the Observer when none is configured.
type nopObserver struct{}

func (nopObserver) ClientAccepted()                                  {}
func (nopObserver) ClientClosed()                                    {}
func (nopObserver) ClientRejected(string)                            {}
func (nopObserver) UpstreamConnectFailed()                           {}
func (nopObserver) Relayed(bool, int)                                {}
func (nopObserver) StatementPassed()                                 {}
func (nopObserver) Decided(DecisionEvent)                            {}
func (nopObserver) WaitingChanged(int)                               {}
func (nopObserver) BlockerWait(time.Duration)                        {}
func (nopObserver) LockTimeout()                                     {}
func (nopObserver) LockRetry()                                       {}
func (nopObserver) LoopHandBack(string)                              {}
func (nopObserver) RetryBudgetExhausted()                            {}
func (nopObserver) Rewritten(string, bool)                           {}
func (nopObserver) GuardedDone(string, time.Duration, time.Duration) {}
