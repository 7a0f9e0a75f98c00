package proxy

// SQLSTATE codes ddlguard uses in what it sends on its own: errors that end
// a connection, and the errors and notices of its decisions (documented in
// the README).
const (
	codeProtocolViolation   = "08P01"
	codeConnectionFailure   = "08006"
	codeCannotConnectNow    = "57P03"
	codeFeatureNotSupported = "0A000"
	codeInvalidAuthSpec     = "28000"
	codeAdminShutdown       = "57P01"

	CodeRejected         = "ZG001" // statement rejected by a rule (class ZG: implementation-defined)
	codeNeedsOwnBatch    = "ZG002" // a guarded statement pipelined where no lock timeout can be applied
	codeLockNotAvailable = "55P03" // PostgreSQL's lock_not_available: the lock wait gave up
	codeDeadlock         = "40P01" // PostgreSQL's deadlock_detected: transactions waiting for each other
	codeWarn             = "01Z01" // warning: a rule in warn mode
	codeUnchecked        = "01Z02" // warning: statement could not be checked
	codeRewritten        = "01Z03" // notice: the safe sequence ran instead of the statement
	noticeSeverity       = "WARNING"
)
