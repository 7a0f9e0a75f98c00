package proxy

import (
	"slices"
	"time"

	"github.com/ddlguard/ddlguard/guard"
)

// Catalog facts for the guard. With zero configuration ddlguard asks them on
// the client's own upstream connection, just before a guarded statement,
// invisibly: it waits until the server owes the client nothing, sends one
// read-only catalog query, and the upstream pump diverts the answer to
// ddlguard instead of relaying it. It never asks inside an aborted
// transaction, nor in the middle of an extended-protocol batch (the guard
// then gets "unknown" and takes the safe answer).
//
// The query reads only system catalogs: it takes no lock on the user's
// tables (so it cannot queue behind an ACCESS EXCLUSIVE), resolves names
// without functions that can raise errors (an error inside the client's
// transaction would abort it), and uses no prepared statement (the client's
// unnamed statement stays theirs). Sizes are pg_class.relpages of the table,
// its indexes and TOAST table; a table never vacuumed or analyzed is
// measured with pg_relation_size where that cannot wait for a lock (see
// relationFactsJSON), and is otherwise of unknown size, which the guard
// treats as large.
//
// For an ALTER DOMAIN that checks every value of a domain (guard.FactsNeeded)
// a second query of the same kind lists the relations with a column of the
// domain, or of a domain over it, with their facts: the guard records its
// SHARE locks on them, and a rewrite's VALIDATE step gets the blocker check
// on them (stepFacts). A domain that cannot be looked up is unknown: its
// tables are taken as large and the statement still gets the lock timeout.
//
// A connection reuses what it asked for up to factsTTL. A statement that
// changes a relation ends its facts, except where the guard says they
// outlive it (guard.FactsOutlive: a small table whose columns, indexes or
// constraints changed keeps its size and kind) until anything that may
// write rows runs on the connection. The same answer also carries the lock
// modes around the relations and the session's timeouts (lockstate.go).

// factsTTL bounds how long a connection reuses facts it asked for.
const factsTTL = 10 * time.Second

// factsCache holds one connection's facts. Only the client pump uses it.
type factsCache struct {
	at map[string]time.Time
	m  map[string]*guard.RelationFacts // nil value: the relation does not exist
	// Domains (the relations with a column of each), the same way.
	domainAt map[string]time.Time
	domains  map[string]*guard.DomainFacts // nil value: no such domain
	// kept are relations whose facts outlived a statement that changed
	// them (guard.FactsOutlive): their size and kind only, good until
	// anything else runs that may write rows.
	kept map[string]bool
	// keepers are the prepared statements (by name) whose statement keeps
	// shapes (guard.Decision.KeepsShape): binding one leaves kept facts
	// alone; binding any other may write rows.
	keepers map[string]bool
}

// parsed records whether the statement just parsed under name keeps
// shapes.
func (fc *factsCache) parsed(name []byte, keeps bool) {
	switch {
	case keeps:
		if fc.keepers == nil {
			fc.keepers = map[string]bool{}
		}
		fc.keepers[string(name)] = true
	case fc.keepers != nil:
		delete(fc.keepers, string(name))
	}
}

// bound is told of a Bind (its body): unless the statement it binds keeps
// shapes, it may write rows.
func (fc *factsCache) bound(bind []byte) {
	if len(fc.kept) == 0 {
		return
	}
	if name, ok := boundStatement(bind); !ok || !fc.keepers[name] {
		fc.dropKept()
	}
}

// forget drops what is cached about a relation a statement changed, and
// every domain's relations (the statement may have added or dropped a
// column of a domain).
func (fc *factsCache) forget(name string) {
	delete(fc.at, name)
	delete(fc.m, name)
	delete(fc.kept, name)
	clear(fc.domainAt)
	clear(fc.domains)
}

// keepSize keeps of a relation's facts what outlives a statement that
// changed its columns or constraints (its size, kind and persistence,
// until they expire as asked), and forgets every domain's relations.
func (fc *factsCache) keepSize(name string) {
	f := *fc.m[name]
	f.Columns, f.NotNullChecks, f.UniqueIndex, f.Partitions, f.Indexes = nil, nil, false, nil, nil
	fc.m[name] = &f
	if fc.kept == nil {
		fc.kept = map[string]bool{}
	}
	fc.kept[name] = true
	clear(fc.domainAt)
	clear(fc.domains)
}

// dropKept forgets the kept facts: something ran that may have written
// rows (any statement the guard passed without a decision, or a string
// with a statement that does not keep shapes).
func (fc *factsCache) dropKept() {
	if len(fc.kept) == 0 {
		return
	}
	for name := range fc.kept {
		delete(fc.at, name)
		delete(fc.m, name)
	}
	clear(fc.kept)
}

// Relation implements guard.Facts.
func (fc *factsCache) Relation(name string) (guard.RelationFacts, bool) {
	if f := fc.m[name]; f != nil {
		return *f, true
	}
	return guard.RelationFacts{}, false
}

// Absent reports whether the catalog was asked about the relation and
// has none (guard's absentFacts).
func (fc *factsCache) Absent(name string) bool {
	f, asked := fc.m[name]
	return asked && f == nil
}

// Domain implements guard.Facts.
func (fc *factsCache) Domain(name string) (guard.DomainFacts, bool) {
	if f := fc.domains[name]; f != nil {
		return *f, true
	}
	return guard.DomainFacts{}, false
}

// factsFor returns facts for the relations sql locks strongly and the
// domains whose relations it locks, asking the server for those not cached
// when it may (canAsk).
func (c *clientConn) factsFor(g *guard.Guard, sql string, canAsk bool) guard.Facts {
	c.lockState.reset()
	names, domains := g.FactsNeeded(sql, &c.gsess)
	if len(names) == 0 && len(domains) == 0 {
		return &c.facts
	}
	now := time.Now()
	missing, missingDomains := stale(names, c.facts.at, now), stale(domains, c.facts.domainAt, now)

	if (len(missing) == 0 && len(missingDomains) == 0) || (!canAsk && c.srv.cfg.MonitorFacts == nil) {
		return &c.facts
	}
	// An index's facts name its table, whose size is what building the
	// index again costs: asked in a second round when not cached.
	for round := 0; round < 2 && len(missing) > 0; round++ {
		got := askFacts(c, "catalog facts", missing, canAsk, now, &c.facts.at, &c.facts.m, catalog.relationFacts)
		missing = nil
		for _, f := range got {
			if f != nil && f.Table != "" && !slices.Contains(missing, f.Table) {
				if stale([]string{f.Table}, c.facts.at, now) != nil {
					missing = append(missing, f.Table)
				}
			}
		}
	}
	if len(missingDomains) > 0 {
		askFacts(c, "domain facts", missingDomains, canAsk, now, &c.facts.domainAt, &c.facts.domains, catalog.domainFacts)
	}
	return &c.facts
}

// askFacts asks the catalogs (what: for the log) about names with ask and
// caches the answer in at and into; only names the answer has a row for
// are known (a row with no facts: no such relation or domain), others stay
// unknown. It returns the answer (nil when no catalog answered).
func askFacts[T any](c *clientConn, what string, names []string, canAsk bool, now time.Time,
	at *map[string]time.Time, into *map[string]*T, ask func(catalog, []string) (map[string]*T, error)) map[string]*T {
	got, err := askCatalogs(c, c.catalogs(canAsk), what, func(k catalog) (map[string]*T, error) {
		return ask(k, names)
	})
	if err != nil {
		c.srv.log.Debug(what+" unavailable", "conn_id", c.id, "err", err)
		return nil
	}
	if *at == nil {
		*at = make(map[string]time.Time)
		*into = make(map[string]*T)
	}
	for _, n := range names {
		f, ok := got[n]
		if !ok {
			continue
		}
		(*at)[n] = now
		(*into)[n] = f
	}
	return got
}

// stale lists the names not asked for within factsTTL.
func stale(names []string, at map[string]time.Time, now time.Time) []string {
	var out []string
	for _, n := range names {
		if t, ok := at[n]; !ok || now.Sub(t) > factsTTL {
			out = append(out, n)
		}
	}
	return out
}

// stepFacts are the facts a rewrite step is planned with: for an ALTER
// DOMAIN that scans (VALIDATE CONSTRAINT), the domain's relations, which
// it locks; other steps are planned from their own locks alone.
func (c *clientConn) stepFacts(g *guard.Guard, step string) guard.Facts {
	if _, domains := g.FactsNeeded(step, nil); len(domains) == 0 {
		return guard.NoFacts{}
	}
	return c.factsFor(g, step, true)
}
