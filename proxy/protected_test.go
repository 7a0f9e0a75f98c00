package proxy

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/ddlguard/ddlguard/guard"
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

func TestTimeoutLead(t *testing.T) {
	lead := timeoutLead(500 * time.Millisecond)
	var types string
	for rest := lead; len(rest) > 0; {
		n := int(binary.BigEndian.Uint32(rest[1:5]))
		types += string(rest[0])
		if rest[0] == 'P' {
			var p pgproto3.Parse
			if err := p.Decode(rest[5 : 1+n]); err != nil {
				t.Fatalf("decode Parse: %v", err)
			}
			if p.Name != "" || p.Query != "SELECT pg_catalog.set_config('lock_timeout', '500ms', true)" {
				t.Errorf("Parse %+v", p)
			}
		}
		rest = rest[1+n:]
	}
	if types != "PBE" {
		t.Errorf("lead frames %q, want PBE", types)
	}

	bind := func(stmt string) []byte {
		out, _ := (&pgproto3.Bind{PreparedStatement: stmt}).Encode(nil)
		return out
	}
	parse, _ := (&pgproto3.Parse{Query: "ALTER TABLE t ADD COLUMN c int"}).Encode(nil)
	describe, _ := (&pgproto3.Describe{ObjectType: 'S'}).Encode(nil)
	for _, tc := range []struct {
		name   string
		frames []byte
		want   bool
	}{
		{"starts with a Parse", parse, true},
		{"binds a named statement", bind("s1"), true},
		{"binds the unnamed statement parsed before", bind(""), false},
		{"describes the unnamed statement", describe, false},
	} {
		if got := leadFits(tc.frames); got != tc.want {
			t.Errorf("%s: leadFits = %v, want %v", tc.name, got, tc.want)
		}
	}

	for _, tc := range []struct {
		name, in, want string
	}{
		{"the lead's answers removed", "12DC12TCZ", "12TCZ"},
		{"the lead failed: its error is the answer", "EZ", "EZ"},
		{"the lead failed after its Parse", "1EZ", "EZ"},
	} {
		var in []divertedFrame
		for _, typ := range []byte(tc.in) {
			in = append(in, divertedFrame{typ: typ})
		}
		var got string
		for _, f := range withoutLead(in) {
			got += string(f.typ)
		}
		if got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestOneTransaction(t *testing.T) {
	g, err := guard.New(guard.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	for sql, want := range map[string]bool{
		"ALTER TABLE a ADD COLUMN x int":                                         true,
		"ALTER TABLE a ADD COLUMN x int; ALTER TABLE b ADD COLUMN y int":         true,
		"BEGIN; ALTER TABLE a ADD COLUMN x int; COMMIT":                          true,
		"START TRANSACTION; ALTER TABLE a ADD COLUMN x int; ROLLBACK":            true,
		"BEGIN; ALTER TABLE a ADD COLUMN x int":                                  false, // the block goes on after the string
		"ALTER TABLE a ADD COLUMN x int; COMMIT; ALTER TABLE b ADD COLUMN y int": false, // the first part is committed
		"BEGIN; ALTER TABLE a ADD COLUMN x int; SAVEPOINT s; COMMIT":             false,
		"BEGIN; ALTER TABLE a ADD COLUMN x int; PREPARE TRANSACTION 'p'":         false,
		"BEGIN": false,
	} {
		if got := oneTransaction(g.Decide(sql, &guard.Session{}, guard.NoFacts{})); got != want {
			t.Errorf("oneTransaction(%q) = %v, want %v", sql, got, want)
		}
	}
}
