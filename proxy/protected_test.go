package proxy

import (
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

func TestWithoutPrefix(t *testing.T) {
	prefix := "SET LOCAL lock_timeout = '500ms'; "
	errAt := func(pos int32) []byte {
		out, _ := (&pgproto3.ErrorResponse{Severity: "ERROR", Code: "42704", Message: "type does not exist", Position: pos}).Encode(nil)
		return out[5:]
	}
	for _, tc := range []struct {
		name    string
		in      []divertedFrame
		wantPos int32
		want    string // frame types
	}{
		{"success", []divertedFrame{{'C', []byte("SET\x00")}, {'C', []byte("ALTER TABLE\x00")}, {'Z', []byte("I")}}, 0, "CZ"},
		{"error in the client's text", []divertedFrame{{'C', []byte("SET\x00")}, {'E', errAt(int32(len(prefix)) + 27)}, {'Z', []byte("I")}}, 27, "EZ"},
		{"error without position", []divertedFrame{{'C', []byte("SET\x00")}, {'E', errAt(0)}, {'Z', []byte("I")}}, 0, "EZ"},
		{"error inside the prefix is left alone", []divertedFrame{{'E', errAt(3)}, {'Z', []byte("I")}}, 3, "EZ"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := withoutPrefix(tc.in, len(prefix))
			types := ""
			for _, f := range got {
				types += string(f.typ)
				if f.typ == 'E' {
					var e pgproto3.ErrorResponse
					if err := e.Decode(f.body); err != nil {
						t.Fatalf("decode: %v", err)
					}
					if e.Position != tc.wantPos || e.Code != "42704" || e.Message != "type does not exist" {
						t.Errorf("error: position %d code %s message %q, want position %d", e.Position, e.Code, e.Message, tc.wantPos)
					}
				}
			}
			if types != tc.want {
				t.Errorf("frames %q, want %q", types, tc.want)
			}
		})
	}
}
