package proxy

import "github.com/jackc/pgx/v5/pgproto3"

// SQLSTATE codes ddlguard uses for errors it raises itself.
const (
	codeProtocolViolation   = "08P01"
	codeConnectionFailure   = "08006"
	codeCannotConnectNow    = "57P03"
	codeFeatureNotSupported = "0A000"
	codeInvalidAuthSpec     = "28000"
	codeAdminShutdown       = "57P01"
)

// errorFrame encodes an ErrorResponse that ddlguard sends on its own behalf.
func errorFrame(severity, code, message, detail string) []byte {
	msg := pgproto3.ErrorResponse{
		Severity:            severity,
		SeverityUnlocalized: severity,
		Code:                code,
		Message:             message,
		Detail:              detail,
	}
	buf, err := msg.Encode(nil)
	if err != nil {
		// Encode fails only for frames over 1 GiB; ours are tiny.
		panic("proxy: encoding ErrorResponse: " + err.Error())
	}
	return buf
}

// fatalFrame is a FATAL ErrorResponse, after which the connection closes.
func fatalFrame(code, message string) []byte {
	return errorFrame("FATAL", code, message, "")
}
