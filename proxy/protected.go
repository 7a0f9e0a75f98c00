package proxy

import (
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Running a guarded statement under its lock timeout, in one round trip.
//
// The lock timeout must hold for the statement and for nothing else of
// the client's. ddlguard writes its own statements and the client's in one
// write and sorts the answers out when they come back:
//
//   - a simple Query in autocommit whose statements are block-neutral
//     (guard.Decision.BlockNeutral), or that is a BEGIN ... COMMIT block,
//     gets `SET LOCAL lock_timeout` as the first statement of the same
//     string: one transaction (a BEGIN makes the implicit block its own), so
//     the setting ends with the statement whatever happens, and a cancel
//     meant for the statement cannot leave it running without the
//     timeout. The SET's CommandComplete is removed from the answer and an
//     error position is moved back to the client's text.
//   - an extended batch in autocommit, of one block-neutral statement,
//     gets `SELECT set_config('lock_timeout', ..., true)` as Parse, Bind
//     and Execute in front of its own messages: the same implicit
//     transaction, which ends at the batch's Sync (timeoutLead); their
//     answers are removed (withoutLead).
//   - anything else (inside the client's transaction, an extended batch,
//     statements PostgreSQL treats differently in a block) is sent as it
//     came, between a hidden SET [LOCAL] before it and the restore (and,
//     in a transaction that now holds ACCESS EXCLUSIVE, the bound on
//     idle_in_transaction_session_timeout) after it, pipelined as Queries
//     of their own.

// runProtected runs the client's frames (ending in one ReadyForQuery)
// under plan p with the settings read by pf, and returns the client's
// answer.
func (c *clientConn) runProtected(frames []byte, p *timeoutPlan, pf *preflight, inTx bool) ([]divertedFrame, error) {
	if !inTx && p.blockNeutral {
		if set, _ := timeoutStatements(pf.lockTimeout, p.lockTimeout, true); set != "" {
			switch {
			case frames[0] == 'Q':
				prefix := set + "; "
				answers, err := c.internalPipeline([]segment{{frames: queryFrame(prefix + queryText(frames))}}, 24*time.Hour)
				if err != nil {
					return nil, err
				}
				return withoutPrefix(answers[0], len(prefix)), nil
			case leadFits(frames):
				answers, err := c.internalPipeline([]segment{{frames: append(timeoutLead(p.lockTimeout), frames...)}}, 24*time.Hour)
				if err != nil {
					return nil, err
				}
				return withoutLead(answers[0]), nil
			}
		}
	}
	set, restore := timeoutStatements(pf.lockTimeout, p.lockTimeout, inTx)
	var segs []segment
	if set != "" {
		segs = append(segs, segment{frames: queryFrame(set), quiet: true})
	}
	client := len(segs)
	segs = append(segs, segment{frames: frames})
	if restore != "" {
		segs = append(segs, segment{frames: queryFrame(restore), quiet: true})
	}
	if inTx && p.accessExclusive {
		if bound := c.idleBound(pf.idleTimeout); bound != "" {
			segs = append(segs, segment{frames: queryFrame(bound), quiet: true})
		}
	}
	answers, err := c.internalPipeline(segs, 24*time.Hour)
	if err != nil {
		return nil, err
	}
	answer := answers[client]
	if restore != "" && answerError(answers[client+1]) != nil && lastStatus(answers[client+1], 'I') != TxFailed {
		// Not the aborted transaction that ROLLBACK restores: a cancel
		// meant for the statement reached the restore. Once more.
		if err := c.hidden(restore); err != nil {
			c.srv.log.Warn("could not restore lock_timeout", "conn_id", c.id, "err", err)
		}
	}
	return answer, nil
}

// queryText is the statement string of a Query frame.
func queryText(frame []byte) string {
	return string(frame[5 : len(frame)-1])
}

// withoutPrefix is the answer to a Query that ddlguard prefixed with a
// statement of its own (prefixLen bytes of ASCII) as the client's string
// alone would have been answered: the prefix's CommandComplete removed and
// error positions moved back.
func withoutPrefix(frames []divertedFrame, prefixLen int) []divertedFrame {
	if len(frames) > 0 && frames[0].typ == 'C' {
		frames = frames[1:]
	}
	for i, f := range frames {
		if f.typ == 'E' {
			frames[i].body = shiftPosition(f.body, prefixLen)
		}
	}
	return frames
}

// shiftPosition moves the error cursor position (in characters from 1) of
// an ErrorResponse body back by n; a position inside the first n (ddlguard's
// own text) or an undecodable body is left alone.
func shiftPosition(body []byte, n int) []byte {
	var e pgproto3.ErrorResponse
	if e.Decode(body) != nil || int(e.Position) <= n {
		return body
	}
	e.Position -= int32(n)
	out, err := e.Encode(nil)
	if err != nil {
		return body
	}
	return out[5:]
}

// timeoutLead is what goes in front of an extended batch in autocommit to
// give its implicit transaction the lock timeout: an unnamed Parse, Bind
// and Execute of set_config(..., is_local), answered by ParseComplete,
// BindComplete, DataRow and CommandComplete. (SET LOCAL there would warn
// that it is not in a transaction block.)
func timeoutLead(d time.Duration) []byte {
	out := queryParse(fmt.Sprintf("SELECT pg_catalog.set_config('lock_timeout', '%dms', true)", d.Milliseconds()), []byte{0, 0})
	out, _ = (&pgproto3.Bind{}).Encode(out)
	out, _ = (&pgproto3.Execute{}).Encode(out)
	return out
}

// leadFits reports whether timeoutLead may go in front of a batch: the
// batch starts with a Parse, or with a Bind of a named statement (the
// lead replaces the unnamed statement, which the batch must not use
// before it parses its own).
func leadFits(frames []byte) bool {
	switch frames[0] {
	case 'P':
		return true
	case 'B':
		name, ok := boundStatement(frames[5:])
		return ok && name != ""
	}
	return false
}

// withoutLead is the answer to a batch that ddlguard led with timeoutLead
// as the client's batch alone would have been answered. Should the lead
// itself fail, its error is the answer (the server skipped the batch).
func withoutLead(frames []divertedFrame) []divertedFrame {
	for i, typ := range []byte("12DC") {
		if i >= len(frames) || frames[i].typ != typ {
			return frames[i:]
		}
	}
	return frames[4:]
}
