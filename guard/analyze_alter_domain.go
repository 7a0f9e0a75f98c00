package guard

import (
	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// ALTER DOMAIN: the forms that check every stored value of the domain lock
// each relation with a column of it (directly, or of a domain over it)
// SHARE, and scan the tables and materialized views among them, holding
// SHARE on each until the end of the transaction (measured on PostgreSQL
// 15 and 18, pg_locks from another session while the statement waited).
// Which relations those are is a catalog fact (DomainFacts); without it the
// statement locks relations the guard cannot name (locksUnknown).

// domainScans: the ALTER DOMAIN form checks every stored value of the
// domain: ADD CHECK (validated), ADD NOT NULL (PostgreSQL 17+), SET NOT
// NULL, VALIDATE CONSTRAINT. ADD ... NOT VALID, DROP CONSTRAINT, SET
// DEFAULT, DROP NOT NULL and the rest lock no table.
func domainScans(d *pg_query.AlterDomainStmt) bool {
	switch d.Subtype {
	case "O", "V": // SET NOT NULL, VALIDATE CONSTRAINT
		return true
	case "C": // ADD CONSTRAINT
		con := d.Def.GetConstraint()
		return con != nil && (con.Contype == pg_query.ConstrType_CONSTR_NOTNULL ||
			(con.Contype == pg_query.ConstrType_CONSTR_CHECK && !con.SkipValidation))
	}
	return false
}

// analyzeAlterDomain records the locks of an ALTER DOMAIN: SHARE on every
// relation with a column of the domain, with a scan of the tables and
// materialized views, when the facts know the domain.
func (s *stmt) analyzeAlterDomain(d *pg_query.AlterDomainStmt) {
	s.kind = "ALTER DOMAIN"
	if !domainScans(d) {
		return
	}
	f, ok := s.facts.Domain(nameOf(d.TypeName))
	if !ok {
		s.locksUnknown = true
		return
	}
	var known map[string]RelationFacts
	for _, r := range f.Relations {
		work := WorkNone // locked for a moment, not scanned
		if r.Facts.Kind == 'r' || r.Facts.Kind == 'm' {
			work = WorkScan
		}
		s.lock(r.Name, Share, work)
		if known == nil {
			known = make(map[string]RelationFacts, len(f.Relations))
		}
		known[r.Name] = r.Facts
	}
	if known != nil {
		s.facts = withRelations{Facts: s.facts, known: known}
	}
}

// withRelations adds the relation facts that came with a domain's facts.
type withRelations struct {
	Facts
	known map[string]RelationFacts
}

// Relation implements Facts.
func (w withRelations) Relation(name string) (RelationFacts, bool) {
	if f, ok := w.known[name]; ok {
		return f, true
	}
	return w.Facts.Relation(name)
}
