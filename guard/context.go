package guard

import (
	"maps"
	"strings"
)

// Session is what the guard knows about the session at a statement. The
// proxy keeps one per connection; the linter simulates one per file. Ask and
// Decide never change it (within one query string they advance a copy from
// statement to statement); DecideScript advances the one it is given. It is
// advanced with Observe, which takes a statement's effects as if it
// succeeded, when it is sent or decided, not after it has run: the proxy
// observes each decided statement of a string that is not rejected as it
// sends the string, and corrects the transaction state from what the server
// reports (EndTransaction when the session is idle); the linter's
// DecideScript observes each statement of a file as it decides it, as if the
// whole file ran without error.
type Session struct {
	// ServerMajor is the server's major version (13..18); 0 means unknown,
	// which the rules treat as the oldest supported version (13) wherever a
	// newer server would allow a cheaper path.
	ServerMajor int
	// InTransaction: an explicit transaction block is open before the
	// statement.
	InTransaction bool
	// TimeZone is the session's TimeZone setting ("" when unknown);
	// LocalTimeZone a SET LOCAL value for the current transaction.
	TimeZone, LocalTimeZone string
	// Database and Role select per-database and per-role configuration.
	Database, Role string
	// Tx is what the open transaction has done so far.
	Tx TxState
	// Temp holds the session's temporary relations (names as written).
	Temp map[string]bool
	// LockTimeoutSet: the session set lock_timeout itself (the linter's
	// missing-lock-timeout rule); LockTimeoutLocal: only for the current
	// transaction (SET LOCAL).
	LockTimeoutSet, LockTimeoutLocal bool
}

// TxState is what the current transaction (explicit or implicit) has done.
type TxState struct {
	// Created are relations created in this transaction.
	Created map[string]bool
	// Held is the strongest lock this transaction holds on each existing
	// relation, from the statements it ran.
	Held map[string]LockMode
	// NotValid are constraints added NOT VALID in this transaction, as
	// "relation.constraint".
	NotValid map[string]bool
	// Statements counts the statements run in this transaction.
	Statements int
}

// heldOn is the lock the transaction holds on rel (written with or without
// its schema).
func (t *TxState) heldOn(rel string) LockMode {
	mode := t.Held[rel]
	for r, m := range t.Held {
		if unqualified(r) == unqualified(rel) {
			mode = max(mode, m)
		}
	}
	return mode
}

// addedNotValid: the transaction added rel's constraint con NOT VALID (the
// relation may be written with or without its schema).
func (t *TxState) addedNotValid(rel, con string) bool {
	if t.NotValid[rel+"."+con] {
		return true
	}
	for k := range t.NotValid {
		i := strings.LastIndexByte(k, '.')
		if i >= 0 && k[i+1:] == con && unqualified(k[:i]) == unqualified(rel) {
			return true
		}
	}
	return false
}

// clone returns a deep copy, so deciding a multi-statement string can thread
// state through its statements without touching the caller's session.
func (s *Session) clone() Session {
	c := *s
	c.Tx = TxState{
		Created:    maps.Clone(s.Tx.Created),
		Held:       maps.Clone(s.Tx.Held),
		NotValid:   maps.Clone(s.Tx.NotValid),
		Statements: s.Tx.Statements,
	}
	c.Temp = maps.Clone(s.Temp)
	return c
}

func addTo(m *map[string]bool, k string) {
	if *m == nil {
		*m = make(map[string]bool)
	}
	(*m)[k] = true
}

// major is ServerMajor with unknown read as the oldest supported version.
func (s *Session) major() int {
	if s.ServerMajor == 0 {
		return 13
	}
	return s.ServerMajor
}

// isNew reports whether relation was created by this session's current
// transaction or is a temporary relation: nobody else can wait for it.
func (s *Session) isNew(relation string) bool {
	return s.Tx.Created[relation] || s.Temp[relation] || s.Temp[unqualified(relation)]
}

// EndTransaction forgets the transaction's state (after COMMIT, ROLLBACK,
// or when the server reports the session idle).
func (s *Session) EndTransaction() {
	s.InTransaction = false
	s.endImplicit()
}

// endImplicit forgets what a transaction did when none is open: after each
// autocommit statement (or query string), transaction-local state ends.
func (s *Session) endImplicit() {
	if s.InTransaction {
		return
	}
	s.Tx = TxState{}
	s.LockTimeoutLocal = false
	s.LocalTimeZone = ""
}

// timeZone is the TimeZone in effect.
func (s *Session) timeZone() string {
	if s.LocalTimeZone != "" {
		return s.LocalTimeZone
	}
	return s.TimeZone
}

// HasLockTimeout reports whether the session has its own lock_timeout in
// effect.
func (s *Session) HasLockTimeout() bool { return s.LockTimeoutSet || s.LockTimeoutLocal }

// Observe applies the effects a decided statement has if it succeeds:
// transaction control, relations created, locks now held, settings. It does
// not know whether the statement ran: callers observe a statement when they
// send it (the proxy, before the server has run it) or decide it
// (DecideScript), and the proxy ends the transaction state with
// EndTransaction when the server reports the session idle.
func (s *Session) Observe(d *Decision) {
	e := d.Effects
	switch e.TxControl {
	case TxBegin:
		s.InTransaction = true
		s.Tx = TxState{}
		return
	case TxEnd:
		s.EndTransaction()
		return
	}
	s.Tx.Statements++
	for _, r := range e.Created {
		addTo(&s.Tx.Created, r)
	}
	for _, r := range e.CreatedTemp {
		addTo(&s.Temp, r)
	}
	for _, r := range e.Dropped {
		delete(s.Temp, r)
	}
	for _, l := range d.Locks {
		if l.Created || s.isNew(l.Relation) {
			continue
		}
		if s.Tx.Held == nil {
			s.Tx.Held = make(map[string]LockMode)
		}
		if l.Mode > s.Tx.Held[l.Relation] {
			s.Tx.Held[l.Relation] = l.Mode
		}
	}
	for _, c := range e.NotValid {
		addTo(&s.Tx.NotValid, c)
	}
	switch {
	case e.SetTimeZone != "" && e.Local:
		s.LocalTimeZone = e.SetTimeZone
	case e.SetTimeZone != "":
		s.TimeZone, s.LocalTimeZone = e.SetTimeZone, ""
	}
	switch e.LockTimeout {
	case LockTimeoutSet:
		s.LockTimeoutSet = true
	case LockTimeoutSetLocal:
		s.LockTimeoutLocal = true
	case LockTimeoutReset:
		s.LockTimeoutSet, s.LockTimeoutLocal = false, false
	}
}

// TxControl is a statement's effect on the transaction block.
type TxControl int8

const (
	TxNone  TxControl = iota
	TxBegin           // BEGIN, START TRANSACTION
	TxEnd             // COMMIT, ROLLBACK, END, ABORT, PREPARE TRANSACTION
	TxOther           // SAVEPOINT, RELEASE, ROLLBACK TO: inside the block
)

// Effects are what a statement changes in the session when it succeeds.
type Effects struct {
	TxControl TxControl
	// Created and CreatedTemp are relations the statement creates.
	Created, CreatedTemp []string
	// Dropped are relations the statement drops.
	Dropped []string
	// NotValid are constraints added NOT VALID, as "relation.constraint".
	NotValid []string
	// SetTimeZone is the TimeZone a SET statement sets; Local: SET LOCAL.
	SetTimeZone string
	Local       bool
	// LockTimeout is what the statement does to lock_timeout.
	LockTimeout LockTimeoutEffect
}

// LockTimeoutEffect is a statement's effect on the session's lock_timeout.
type LockTimeoutEffect int8

const (
	LockTimeoutUnchanged LockTimeoutEffect = iota
	LockTimeoutSet                         // SET lock_timeout = non-zero
	LockTimeoutSetLocal                    // SET LOCAL lock_timeout = non-zero
	LockTimeoutReset                       // RESET, SET ... TO DEFAULT, or zero
)

// RelationFacts are catalog facts about one relation, read by the proxy's
// catalog reader (never by the guard).
type RelationFacts struct {
	// SizeBytes is pg_total_relation_size; Rows the planner's estimate.
	SizeBytes, Rows int64
	// QueryBytes is, for a materialized view, the size of what its query
	// reads (the relations it depends on, through views): REFRESH reruns
	// it under its lock.
	QueryBytes int64
	// Kind is pg_class.relkind ('r' table, 'p' partitioned, 'm' matview, 'i' index, ...).
	Kind byte
	// Persistence is pg_class.relpersistence ('p', 'u', 't').
	Persistence byte
	// Columns by name: type as format_type() prints it, and NOT NULL.
	Columns map[string]Column
	// NotNullChecks are columns with a valid CHECK (col IS NOT NULL).
	NotNullChecks map[string]bool
	// UniqueIndex: a materialized view has a unique index usable by
	// REFRESH ... CONCURRENTLY; Populated: it has been refreshed.
	UniqueIndex, Populated bool
	// HasDefaultPartition: a partitioned table has a DEFAULT partition.
	HasDefaultPartition bool
	// PartitionKey are a partitioned table's key columns (expressions as
	// pg_get_partkeydef prints them).
	PartitionKey []string
	// Table is, for an index, the table it belongs to.
	Table string
	// Partitions is a partitioned table's partition tree (sub-partitions
	// too), each partition after its parent; Indexes names a partitioned
	// table's own indexes.
	Partitions []Partition
	Indexes    []string
}

// Partition is one partition in a partitioned table's tree.
type Partition struct {
	// Name as the guard names relations; Parent likewise, "" for a
	// partition of the table itself.
	Name, Parent string
	// Kind is pg_class.relkind: 'r' table, 'p' partitioned, 'f' foreign.
	Kind byte
	// Indexes names its indexes.
	Indexes []string
}

// Column is one column's catalog facts.
type Column struct {
	Type    string
	NotNull bool
}

// DomainFacts are catalog facts about one domain: the relations with a
// column of it, directly or through a domain over it. ALTER DOMAIN ... ADD
// CHECK (validated), VALIDATE CONSTRAINT, SET NOT NULL and ADD NOT NULL
// lock each of them SHARE (measured on PostgreSQL 15 and 18), and scan the
// tables and materialized views among them to check every stored value;
// other relations (partitioned tables, views, composite types) are locked
// only for a moment. Arrays of the domain and composite types containing it
// are not listed: PostgreSQL refuses those statements when such a column
// exists ("cannot alter type ... because column ... uses it").
type DomainFacts struct {
	Relations []DomainRelation
}

// DomainRelation is one relation with a column of a domain.
type DomainRelation struct {
	// Name is the relation's name as the guard writes names: "rel" when the
	// session's search_path finds it, else "schema.rel" (never quoted).
	Name string
	// Columns are its columns of the domain (or of a domain over it).
	Columns []string
	// Facts are the relation's own facts (Kind, SizeBytes, ...).
	Facts RelationFacts
}

// Facts answers catalog questions. A relation or domain the source does not
// know yields ok=false, and the rules take the safe answer (a large table;
// a domain used by unknown, large tables).
type Facts interface {
	Relation(name string) (f RelationFacts, ok bool)
	// Domain returns the facts of a domain, named as the statement writes
	// it ("d" or "schema.d").
	Domain(name string) (f DomainFacts, ok bool)
}

// absentFacts is implemented by Facts that know which relations do not
// exist (the catalog was asked and found none).
type absentFacts interface {
	// Absent reports whether the relation is known not to exist.
	Absent(name string) bool
}

// absent: facts say the relation does not exist, so the statement fails
// (or, with IF EXISTS, does nothing) without locking anything; the server
// says so itself.
func absent(f Facts, name string) bool {
	a, ok := f.(absentFacts)
	return ok && a.Absent(name)
}

// NoFacts knows nothing.
type NoFacts struct{}

// Relation implements Facts.
func (NoFacts) Relation(string) (RelationFacts, bool) { return RelationFacts{}, false }

// Domain implements Facts.
func (NoFacts) Domain(string) (DomainFacts, bool) { return DomainFacts{}, false }

// FactsMap is a Facts backed by a map of relations (tests, tools); it
// knows no domains.
type FactsMap map[string]RelationFacts

// Domain implements Facts: a FactsMap knows no domains.
func (FactsMap) Domain(string) (DomainFacts, bool) { return DomainFacts{}, false }

// Relation implements Facts, matching a qualified name by its last part too.
func (m FactsMap) Relation(name string) (RelationFacts, bool) {
	if f, ok := m[name]; ok {
		return f, true
	}
	f, ok := m[unqualified(name)]
	return f, ok
}
