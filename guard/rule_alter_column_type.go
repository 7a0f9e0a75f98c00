package guard

import (
	"fmt"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// alterColumnTypeRule: ALTER COLUMN ... TYPE rewrites the table and
// rebuilds its indexes under ACCESS EXCLUSIVE, except for the
// binary-coercible changes the analysis can prove from the catalog facts.
// The online path is expand/contract: a new column kept in sync by a
// trigger, a batched backfill, and a rename in one short transaction.
type alterColumnTypeRule struct{}

func init() { register(alterColumnTypeRule{}) }

func (alterColumnTypeRule) ID() string        { return "alter-column-type" }
func (alterColumnTypeRule) DefaultMode() Mode { return Enforce }
func (alterColumnTypeRule) Relaxable() bool   { return true }

func (alterColumnTypeRule) Check(s *Statement) *Finding {
	a, cmds, rel := s.alterOfExisting()
	if a == nil || s.lockOn(rel).Work != WorkRewrite {
		return nil
	}
	var whys, notes []string
	for _, cmd := range cmds {
		cd := cmd.Def.GetColumnDef()
		if cmd.Subtype != pg_query.AlterTableType_AT_AlterColumnType || s.alterTypeWork(rel, cmd.Name, cd) != WorkRewrite {
			continue
		}
		to := sqlTypeName(cd.GetTypeName())
		if from, ok := s.factsColumnType(rel, cmd.Name); ok {
			whys = append(whys, fmt.Sprintf("change column %s from %s to %s", quoteIdent(cmd.Name), from, to))
		} else {
			whys = append(whys, fmt.Sprintf("change column %s to %s", quoteIdent(cmd.Name), to))
		}
		notes = append(notes, typeChangeNote(s, a, cmd)...)
	}
	if len(whys) == 0 {
		return nil
	}
	hint := notes
	if len(notes) > 0 {
		hint = append(hint, "-- otherwise, without a long lock:")
	}
	hint = append(hint, planColumns(s, a, cmds, false)...)
	return s.finding(rel, "while it rewrites the whole table and rebuilds its indexes to "+strings.Join(whys, " and "),
		strings.Join(hint, "\n"))
}

// typeChangeNote points out a change PostgreSQL would make without a
// rewrite: timestamp -> timestamptz run with TimeZone UTC, and the
// widenings the analysis could not prove because the current type is
// unknown.
func typeChangeNote(s *Statement, a *pg_query.AlterTableStmt, cmd *pg_query.AlterTableCmd) []string {
	cd := cmd.Def.GetColumnDef()
	if cd == nil || cd.TypeName == nil || cd.RawDefault != nil {
		return nil // USING always rewrites
	}
	col := quoteIdent(cmd.Name)
	to := typeNameString(cd.TypeName)
	m := typeWithMods.FindStringSubmatch(to)
	if m == nil {
		return nil
	}
	base, mod, scale := m[1], m[2], m[3]
	inUTC := []string{"BEGIN;", "SET LOCAL TimeZone = 'UTC';", alterTableSQL(a, cmd) + ";", "COMMIT;"}
	from, known := s.factsColumnType(rangeVarName(a.Relation), cmd.Name)
	if known {
		if strings.HasPrefix(from, "timestamp without time zone") && base == "timestamp with time zone" {
			return append([]string{"-- if " + col + " holds UTC times, this change needs no rewrite when the session TimeZone is UTC:"}, inUTC...)
		}
		return nil
	}
	var was string
	switch {
	case base == "character varying" && mod != "":
		was = fmt.Sprintf("character varying(n) with n <= %s", mod)
	case base == "character varying":
		was = "character varying(n)"
	case base == "text":
		was = "character varying"
	case base == "bit varying" && mod != "":
		was = fmt.Sprintf("bit varying(n) with n <= %s", mod)
	case base == "bit varying":
		was = "bit varying(n)"
	case base == "numeric" && mod != "":
		sc := scale
		if sc == "" {
			sc = "0"
		}
		was = fmt.Sprintf("numeric(p,%s) with p <= %s", sc, mod)
	case base == "numeric":
		was = "numeric(p,s)"
	case base == "inet":
		was = "cidr"
	case base == "timestamp with time zone":
		if binaryCoercible("timestamp without time zone", to, s.sess) {
			was = "timestamp without time zone"
			break
		}
		return append([]string{"-- ddlguard could not read the current type of " + col +
			": if it is timestamp without time zone holding UTC times, this change needs no rewrite when the session TimeZone is UTC:"}, inUTC...)
	default:
		return nil
	}
	return []string{"-- ddlguard could not read the current type of " + col + ": if it is " + was +
		", PostgreSQL changes it without a rewrite (metadata only) and the steps below are not needed"}
}
