package guard

import "time"

// Action is what the proxy does with a statement. The set is closed.
type Action int8

const (
	// Allow relays the statement untouched.
	Allow Action = iota
	// Timeout relays it with a short lock_timeout for that statement only.
	Timeout
	// Rewrite runs Decision.Rewrite instead of it.
	Rewrite
	// Reject does not run it; the client gets an error.
	Reject
)

var actionNames = [...]string{"allow", "timeout", "rewrite", "reject"}

func (a Action) String() string {
	if a < 0 || int(a) >= len(actionNames) {
		return "?"
	}
	return actionNames[a]
}

// Mode is how a rule's findings are enforced.
type Mode int8

const (
	// Enforce: the finding rewrites (where the rule has a rewrite and
	// rewrites are allowed) or rejects.
	Enforce Mode = iota
	// Warn: the statement runs; the client gets a NOTICE.
	Warn
	// Off: the rule is not evaluated.
	Off
)

var modeNames = [...]string{"enforce", "warn", "off"}

func (m Mode) String() string {
	if m < 0 || int(m) >= len(modeNames) {
		return "?"
	}
	return modeNames[m]
}

// Finding is one rule's verdict on one statement.
type Finding struct {
	Rule string
	// Mode is the configured mode for this rule in this session.
	Mode Mode
	// Message names the rule, the relation and the lock that would be held
	// and why.
	Message string
	// Detail lists the locks.
	Detail string
	// Hint is the concrete safe SQL for this statement.
	Hint string
	// Rewrite is the safe sequence with the same end state, when the rule
	// has one; each element is one statement.
	Rewrite []string
	// RewriteOutsideTxOnly: the rewrite cannot run inside a transaction
	// block (it uses CONCURRENTLY or several transactions).
	RewriteOutsideTxOnly bool
	// QueueOnly: the statement's only danger is waiting in the lock queue
	// (its work under the lock is brief). Where its rewrite cannot run it
	// is not refused: it runs with the lock timeout and the blocker check,
	// and the finding is a warning.
	QueueOnly bool
	// Override is the reason given in an inline ddlguard:allow comment that
	// turned this finding into a warning ("" when none).
	Override string
	// StepErrors say how a failing rewrite step's error is reported: as the
	// error the original statement would have raised.
	StepErrors []StepError
	// StepLocks are, for the steps of Rewrite the planner writes in syntax
	// the guard's parser cannot read (a newer server's), the locks each
	// takes, so that running the step never depends on reading it again.
	StepLocks map[string][]Lock
	// StepUndo is, for those steps, the statement that takes the step
	// back (UndoStatement for the others).
	StepUndo map[string]string
}

// StepError maps an error of a rewrite step to the original statement's:
// a step that fails with SQLSTATE Code is reported with SQLSTATE As, on
// Column, with Message, a format whose two %q verbs are the column and the
// table the server's error names. The server's schema and table fields
// are kept.
type StepError struct {
	Code, As        string
	Column, Message string
}

// Decision is the guard's answer for one statement.
type Decision struct {
	// Action is what the asker carries out.
	Action Action
	// Planned is the action the rules chose before the request's limits:
	// a Rewrite the asker cannot run here (Request.Rewritable) is carried
	// out as Reject, with the sequence as its hint; Planned stays Rewrite.
	Planned Action
	// Statement is the statement's text; Location and Length locate it in
	// the string the guard was given (bytes).
	Statement        string
	Location, Length int
	// Locks are the relation locks the statement takes.
	Locks []Lock
	// LocksUnknown: the statement also locks SHARE or stronger, and scans,
	// relations the facts could not name (the tables with a column of a
	// domain, for an ALTER DOMAIN that checks every value, such as
	// VALIDATE CONSTRAINT, without the domain's facts). It runs with the
	// lock timeout all the same (action Timeout when no rule decides),
	// with no relation for the blocker check.
	LocksUnknown bool
	// Deciding is the finding that made the action rewrite or reject (nil
	// for allow and timeout).
	Deciding *Finding
	// Warnings are findings in warn mode (or enforce-mode findings that did
	// not decide): the proxy sends each as a NOTICE.
	Warnings []Finding
	// Unchecked: the statement looked like DDL but the parser could not
	// read it (e.g. PostgreSQL 18 syntax); it runs with the lock timeout.
	// Its Locks are the relation an ALTER TABLE (INDEX, ...) names, at
	// ACCESS EXCLUSIVE, read by the lexer; otherwise LocksUnknown.
	Unchecked bool
	// ParseError is the parser's message when the statement did not parse.
	ParseError string
	// Kind names the statement ("ALTER TABLE", "CREATE INDEX", ...).
	Kind string
	// Effects are what the statement changes in the session if it runs.
	Effects Effects
	// LockTimeout is the lock_timeout to run it with (Timeout and Rewrite).
	LockTimeout time.Duration
	// BlockNeutral: PostgreSQL runs the statement the same way as one
	// statement of an implicit transaction block (a multi-statement Query)
	// as alone, so the asker may run a SET LOCAL of its own in the same
	// transaction, just before it.
	BlockNeutral bool
	// KeepsShape: the statement changes no existing relation's kind, name,
	// partitions or persistence and writes no rows (see FactsOutlive).
	KeepsShape bool
	// InBlock: the statement runs inside an explicit transaction block
	// (opened before it, in the session or earlier in the same string).
	InBlock bool
}

// Request is a question to the guard: the statements of one query string,
// and what the asker knows of where they run.
type Request struct {
	SQL string
	// Session is the session before SQL runs; it is not modified.
	Session *Session
	// Facts may be nil (nothing known).
	Facts Facts
	// Rewritable: the asker can run a rewrite's sequence in place of the
	// statement here (one statement, at a point where the asker can run
	// statements of its own first). Otherwise a Rewrite is carried out as
	// Reject.
	Rewritable bool
}

// Result is the guard's answer for a whole query string.
type Result struct {
	// Action is the strongest action of any statement: if one statement is
	// rejected, nothing of the string runs.
	Action     Action
	Statements []Decision
	// Parsed reports whether the string was parsed at all (false when the
	// lexical pre-check found nothing that could be DDL).
	Parsed bool
}

// Rejecting returns the index of the statement that rejects the string
// (nothing of it runs), or -1.
func (r *Result) Rejecting() int {
	for i := range r.Statements {
		if r.Statements[i].Action == Reject {
			return i
		}
	}
	return -1
}
