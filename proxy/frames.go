package proxy

import (
	"bytes"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
)

// appendFrame appends a whole frame (type, length, body) to dst.
func appendFrame(dst []byte, typ byte, body []byte) []byte {
	n := uint32(len(body) + 4)
	dst = append(dst, typ, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	return append(dst, body...)
}

func queryFrame(sql string) []byte {
	out, _ := (&pgproto3.Query{String: sql}).Encode(nil)
	return out
}

// errorBody encodes an ErrorResponse body (without type and length).
func errorBody(code, msg, detail, hint string) []byte {
	e := pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: code, Message: msg, Detail: detail, Hint: hint}
	out, _ := e.Encode(nil)
	return out[5:]
}

// queryParse is an unnamed Parse of sql with the given parameter types.
func queryParse(sql string, params []byte) []byte {
	out := []byte{'P', 0, 0, 0, 0, 0}
	out = append(out, sql...)
	out = append(out, 0)
	out = append(out, params...)
	n := uint32(len(out) - 1)
	out[1], out[2], out[3], out[4] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	return out
}

// rewriteGuardError removes from ddlguard's own error what the DO block's
// PL/pgSQL machinery added (CONTEXT, source file and line), so the client
// sees a plain ddlguard error. Other errors pass untouched (nil).
func rewriteGuardError(body []byte) []byte {
	if !bytes.Contains(body, []byte("ddlguard")) || !bytes.Contains(body, []byte("inline_code_block")) {
		return nil
	}
	var e pgproto3.ErrorResponse
	if e.Decode(body) != nil || !strings.HasPrefix(e.Where, "PL/pgSQL function inline_code_block") ||
		!(strings.Contains(e.Message, "ddlguard") || strings.Contains(e.Detail, "ddlguard")) {
		return nil
	}
	return encodeWithoutContext(&e)
}

// stripContext removes CONTEXT, file, line and routine from an error.
func stripContext(body []byte) []byte {
	var e pgproto3.ErrorResponse
	if e.Decode(body) != nil {
		return nil
	}
	return encodeWithoutContext(&e)
}

func encodeWithoutContext(e *pgproto3.ErrorResponse) []byte {
	e.Where, e.File, e.Line, e.Routine = "", "", 0, ""
	out, err := e.Encode(nil)
	if err != nil {
		return nil
	}
	return out
}

// noticeFrame encodes a NoticeResponse ddlguard sends on its own.
func noticeFrame(code, msg, detail, hint string) []byte {
	n := pgproto3.NoticeResponse{Severity: noticeSeverity, SeverityUnlocalized: noticeSeverity,
		Code: code, Message: msg, Detail: detail, Hint: hint}
	out, _ := n.Encode(nil)
	return out
}

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
