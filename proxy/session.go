package proxy

import (
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Transaction status as reported by ReadyForQuery.
const (
	TxIdle    byte = 'I' // not in a transaction block
	TxInBlock byte = 'T' // in a transaction block
	TxFailed  byte = 'E' // in a failed transaction block
)

// Session is what ddlguard knows about one client connection and its
// upstream backend. Fields set during startup are read-only afterwards; the
// rest is updated by the relay and safe to read from any goroutine.
type Session struct {
	ClientAddr      string
	User            string
	Database        string
	ApplicationName string
	// ProtocolVersion is the version the client asked for in its startup
	// packet (the server may negotiate it down).
	ProtocolVersion uint32
	// TLS reports whether the client leg is encrypted.
	TLS bool
	// UpstreamTLS reports whether the upstream leg is encrypted.
	UpstreamTLS bool
	Started     time.Time

	backendPID uint32
	cancelKey  []byte

	txStatus      atomic.Uint32
	serverVersion atomic.Pointer[string]
	timeZone      atomic.Pointer[string]
	// pending counts messages sent upstream that each end in exactly one
	// ReadyForQuery (Query, Sync, FunctionCall) and have not yet got it.
	pending atomic.Int64
	// unsynced is set by an Execute and cleared by ReadyForQuery: a client
	// may Execute and Flush without Sync, and the backend then runs a
	// statement that owes no ReadyForQuery.
	unsynced        atomic.Bool
	bytesFromClient atomic.Int64
	bytesToClient   atomic.Int64
}

// TxStatus is the transaction status from the last ReadyForQuery (0 before
// the first one).
func (s *Session) TxStatus() byte { return byte(s.txStatus.Load()) }

// ServerVersion is the upstream's server_version parameter ("" if not yet known).
func (s *Session) ServerVersion() string {
	if v := s.serverVersion.Load(); v != nil {
		return *v
	}
	return ""
}

// BackendPID is the upstream backend's process id from BackendKeyData.
func (s *Session) BackendPID() uint32 { return s.backendPID }

// Busy reports whether the backend may be running something for the client:
// it owes a ReadyForQuery, or an Execute was sent since the last one.
func (s *Session) Busy() bool { return s.pending.Load() > 0 || s.unsynced.Load() }

// observeParameterStatus records the ParameterStatus values ddlguard tracks.
func (s *Session) observeParameterStatus(body []byte) {
	var ps pgproto3.ParameterStatus
	if ps.Decode(body) != nil {
		return
	}
	v := ps.Value
	switch ps.Name {
	case "server_version":
		s.serverVersion.Store(&v)
	case "TimeZone":
		s.timeZone.Store(&v)
	}
}

// TimeZone is the session's TimeZone as the server last reported it.
func (s *Session) TimeZone() string {
	if v := s.timeZone.Load(); v != nil {
		return *v
	}
	return ""
}
