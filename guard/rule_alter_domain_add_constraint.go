package guard

import (
	"fmt"
	"math"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
)

// alterDomainCheckRule: ALTER DOMAIN ... ADD CHECK checks every value of
// the domain in every table that has a column of it, holding SHARE (writes
// wait) on each of those tables while it scans them; SET NOT NULL and ADD
// NOT NULL do the same to look for NULLs. Which tables those are comes from
// the domain's catalog facts (see analyzeAlterDomain); without them they
// are taken as large, and with them the rule is relaxed like the table
// rules: no table, or only small ones, and the statement just runs with the
// lock timeout.
//
// The rewrite of ADD CHECK is ADD ... NOT VALID (a catalog change that
// locks no table; new values are checked from then on), then VALIDATE
// CONSTRAINT in its own transaction. It is no lock win by itself: VALIDATE
// takes the same SHARE locks for the same scans (measured on PostgreSQL 15
// and 18). What it buys is that the scanning step runs the way every step
// with a strong lock runs under ddlguard: the blocker check on those tables,
// the short lock timeout and retries, instead of queueing in front of every
// writer. The messages say so. A domain NOT NULL has no NOT VALID form, so
// it is rejected with a CHECK (VALUE IS NOT NULL) sequence as the hint.
type alterDomainCheckRule struct{}

func init() { register(alterDomainCheckRule{}) }

func (alterDomainCheckRule) ID() string        { return "alter-domain-add-constraint" }
func (alterDomainCheckRule) DefaultMode() Mode { return Enforce }
func (alterDomainCheckRule) Relaxable() bool   { return true }

func (alterDomainCheckRule) Check(s *Statement) *Finding {
	d := s.node.GetAlterDomainStmt()
	if d == nil || d.Subtype == "V" || !domainScans(d) {
		return nil
	}
	domain := nameOf(d.TypeName)
	render := func(st *pg_query.AlterDomainStmt) string {
		return deparse(&pg_query.Node{Node: &pg_query.Node_AlterDomainStmt{AlterDomainStmt: st}})
	}
	validate := func(name string) string {
		return render(&pg_query.AlterDomainStmt{Subtype: "V", TypeName: d.TypeName, Name: name, Behavior: d.Behavior})
	}
	tables, detail := "on every table with a column of domain "+domain+" (which tables, and how large, is unknown here)",
		"locks: SHARE (scan) on every table with a column of domain "+domain
	them := "every table with a column of domain " + domain
	if !s.locksUnknown {
		tables = "on " + s.domainTables() + ", the tables with a column of domain " + domain + ","
		detail = locksDetail(s.locks)
		them = s.scannedNames()
	}
	validateNote := "it still holds SHARE on " + them + " while it scans them, and writes wait"
	con := d.Def.GetConstraint()
	if d.Subtype == "O" || con.Contype == pg_query.ConstrType_CONSTR_NOTNULL {
		msg := s.kind + " on " + domain + " would hold SHARE lock (" + Share.Blocks() + ") " + tables +
			" while it scans all their rows for NULL values; a domain NOT NULL cannot be added NOT VALID"
		name := makeObjectName(unqualified(domain), "", "not_null_check")
		add := &pg_query.AlterDomainStmt{Subtype: "C", TypeName: d.TypeName, Behavior: d.Behavior,
			Def: nodeOf(notNullCheck(name, "value"))}
		hint := "-- a CHECK (VALUE IS NOT NULL) can be added NOT VALID: it checks new values at once, without a scan:\n" +
			render(add) + ";\n" +
			"-- in a separate transaction, with a short lock_timeout, retried; " + validateNote + ":\n" +
			validate(name) + ";"
		return &Finding{Message: msg, Detail: detail, Hint: hint}
	}
	name := con.Conname
	if name == "" {
		name = makeObjectName(unqualified(domain), "", "check")
	}
	add := proto.Clone(d).(*pg_query.AlterDomainStmt)
	c := add.Def.GetConstraint()
	c.Conname, c.SkipValidation, c.InitiallyValid = name, true, false
	msg := s.kind + " on " + domain + " would hold SHARE lock (" + Share.Blocks() + ") " + tables +
		" while it scans all their rows to check the new constraint. Added NOT VALID it checks new values at once, " +
		"without a scan; the VALIDATE CONSTRAINT that follows still holds SHARE on those tables while it scans them " +
		"(writes wait), but gets its locks under the lock timeout instead of queueing for them"
	hint := render(add) + ";\n" +
		"-- in a separate transaction, with a short lock_timeout, retried; " + validateNote + ":\n" +
		validate(name) + ";"
	return &Finding{Message: msg, Detail: detail, Hint: hint, Rewrite: []string{render(add), validate(name)},
		RewriteOutsideTxOnly: true}
}

// maxNamedTables is how many of the tables with a column of the domain a
// message names.
const maxNamedTables = 10

// scannedNames lists the relations the statement scans, or (none scanned)
// every relation it locks.
func (s *stmt) scannedNames() string {
	var scanned, all []string
	for _, l := range s.locks {
		all = append(all, l.Relation)
		if l.Work == WorkScan {
			scanned = append(scanned, l.Relation)
		}
	}
	if len(scanned) == 0 {
		scanned = all
	}
	if len(scanned) > maxNamedTables {
		return strings.Join(scanned[:maxNamedTables], ", ") + " and the others"
	}
	return strings.Join(scanned, ", ")
}

// domainTables describes the relations an ALTER DOMAIN scans, with their
// size when known: "orders (20 MB), refunds (size unknown)". At most
// maxNamedTables are named.
func (s *stmt) domainTables() string {
	out, n := "", 0
	for _, l := range s.locks {
		if l.Work != WorkScan {
			continue
		}
		n++
		if n > maxNamedTables {
			continue
		}
		if out != "" {
			out += ", "
		}
		size := "size unknown"
		if f, ok := s.facts.Relation(l.Relation); ok {
			size = sizeText(f.SizeBytes)
		}
		out += l.Relation + " (" + size + ")"
	}
	if n > maxNamedTables {
		out += fmt.Sprintf(" and %d more", n-maxNamedTables)
	}
	return out
}

// sizeText renders a size as pg_size_pretty does ("512 kB", "20 MB");
// math.MaxInt64 is the facts' "unknown".
func sizeText(b int64) string {
	if b < 0 || b == math.MaxInt64 {
		return "size unknown"
	}
	units := []string{"bytes", "kB", "MB", "GB", "TB", "PB"}
	i := 0
	for i < len(units)-1 && b >= 10*1024 {
		b = (b + 512) / 1024
		i++
	}
	return fmt.Sprintf("%d %s", b, units[i])
}
