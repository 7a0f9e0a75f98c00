package guard

import "strings"

// LockMode is a PostgreSQL table-level lock mode, ordered from weakest to
// strongest.
type LockMode int8

// Table-level lock modes (PostgreSQL "Explicit Locking", table 13.2).
const (
	NoLock LockMode = iota
	AccessShare
	RowShare
	RowExclusive
	ShareUpdateExclusive
	Share
	ShareRowExclusive
	Exclusive
	AccessExclusive
)

var lockNames = [...]string{"", "ACCESS SHARE", "ROW SHARE", "ROW EXCLUSIVE", "SHARE UPDATE EXCLUSIVE",
	"SHARE", "SHARE ROW EXCLUSIVE", "EXCLUSIVE", "ACCESS EXCLUSIVE"}

// String is the mode as SQL writes it ("ACCESS EXCLUSIVE").
func (m LockMode) String() string {
	if m < 0 || int(m) >= len(lockNames) {
		return "?"
	}
	return lockNames[m]
}

// PgLocksName is the mode as pg_locks.mode shows it ("AccessExclusiveLock").
func (m LockMode) PgLocksName() string {
	if m <= NoLock || int(m) >= len(lockNames) {
		return ""
	}
	var b strings.Builder
	for _, w := range strings.Fields(strings.ToLower(lockNames[m])) {
		b.WriteString(strings.ToUpper(w[:1]) + w[1:])
	}
	return b.String() + "Lock"
}

// ParseLockMode reads a mode written as SQL ("SHARE ROW EXCLUSIVE") or as
// pg_locks shows it ("ShareRowExclusiveLock").
func ParseLockMode(s string) (LockMode, bool) {
	for m := AccessShare; m <= AccessExclusive; m++ {
		if strings.EqualFold(s, m.String()) || s == m.PgLocksName() {
			return m, true
		}
	}
	return NoLock, false
}

// conflictTable[m] is the set of modes m conflicts with, as a bit mask.
var conflictTable = [...]uint16{
	NoLock:               0,
	AccessShare:          1 << AccessExclusive,
	RowShare:             1<<Exclusive | 1<<AccessExclusive,
	RowExclusive:         1<<Share | 1<<ShareRowExclusive | 1<<Exclusive | 1<<AccessExclusive,
	ShareUpdateExclusive: 1<<ShareUpdateExclusive | 1<<Share | 1<<ShareRowExclusive | 1<<Exclusive | 1<<AccessExclusive,
	Share:                1<<RowExclusive | 1<<ShareUpdateExclusive | 1<<ShareRowExclusive | 1<<Exclusive | 1<<AccessExclusive,
	ShareRowExclusive:    1<<RowExclusive | 1<<ShareUpdateExclusive | 1<<Share | 1<<ShareRowExclusive | 1<<Exclusive | 1<<AccessExclusive,
	Exclusive:            1<<RowShare | 1<<RowExclusive | 1<<ShareUpdateExclusive | 1<<Share | 1<<ShareRowExclusive | 1<<Exclusive | 1<<AccessExclusive,
	AccessExclusive:      0x1fe,
}

// Conflicts reports whether holding m blocks a request for o (and vice versa).
func (m LockMode) Conflicts(o LockMode) bool {
	if m <= NoLock || o <= NoLock || int(m) >= len(conflictTable) || int(o) >= len(conflictTable) {
		return false
	}
	return conflictTable[m]&(1<<o) != 0
}

// Blocks says in words what a lock in mode m stops other sessions from doing.
func (m LockMode) Blocks() string {
	switch {
	case m >= AccessExclusive:
		return "blocks all reads and writes"
	case m >= Exclusive:
		return "blocks writes and SELECT ... FOR UPDATE/SHARE"
	case m >= Share:
		return "blocks writes"
	case m >= ShareUpdateExclusive:
		return "blocks other DDL and VACUUM"
	}
	return "blocks only DDL"
}

// Work is what a statement does to a relation while it holds the lock: the
// reason a lock is held for long.
type Work int8

const (
	// WorkNone: catalog change only; the lock is held for milliseconds once
	// granted (but still queues).
	WorkNone Work = iota
	// WorkScan: reads every row (validation) under the lock.
	WorkScan
	// WorkIndexBuild: builds an index (scans and sorts) under the lock.
	WorkIndexBuild
	// WorkRewrite: writes a new copy of the relation (new relfilenode).
	WorkRewrite
	// WorkTruncate: swaps in new, empty storage (new relfilenode, no copy).
	WorkTruncate
)

var workNames = [...]string{"none", "scan", "index build", "rewrite", "truncate"}

func (w Work) String() string {
	if w < 0 || int(w) >= len(workNames) {
		return "?"
	}
	return workNames[w]
}

// Slow reports whether the work grows with the relation's size.
func (w Work) Slow() bool { return w == WorkScan || w == WorkIndexBuild || w == WorkRewrite }

// Lock is one relation lock a statement takes.
type Lock struct {
	// Relation is the name as the statement writes it ("t", "app.t"),
	// lower-cased unless quoted.
	Relation string
	Mode     LockMode
	Work     Work
	// Created: the statement creates this relation, so nobody can be
	// waiting for it.
	Created bool
	// Held: before this statement the transaction already created the
	// relation or held this mode or a stronger one on it, so no other
	// session can hold a conflicting lock (taking it again cannot wait).
	Held bool
}
