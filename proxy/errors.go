package proxy

// SQLSTATE codes ddlguard uses for errors it raises itself.
const (
	codeProtocolViolation   = "08P01"
	codeConnectionFailure   = "08006"
	codeCannotConnectNow    = "57P03"
	codeFeatureNotSupported = "0A000"
	codeInvalidAuthSpec     = "28000"
	codeAdminShutdown       = "57P01"
)

// SQLSTATEs ddlguard raises or notices with (documented in the README).
const (
	CodeRejected = "ZG001" // statement rejected by a rule (class ZG: implementation-defined)
	// ZG002 (codeNeedsOwnBatch): a guarded statement pipelined where no lock timeout can be applied.
	codeWarn       = "01Z01" // warning: a rule in warn mode
	codeUnchecked  = "01Z02" // warning: statement could not be checked
	noticeSeverity = "WARNING"
)

// codeLockNotAvailable is PostgreSQL's lock_not_available.
const codeLockNotAvailable = "55P03"

// codeNeedsOwnBatch: a guarded statement in the middle of a pipeline.
const codeNeedsOwnBatch = "ZG002"

const codeRewritten = "01Z03"
