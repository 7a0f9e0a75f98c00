package guard

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// attachPartitionRule: ATTACH PARTITION scans the partition under ACCESS
// EXCLUSIVE to check that every row fits the bound, unless a valid CHECK
// constraint on the partition already proves it. Adding that constraint NOT
// VALID and validating it (SHARE UPDATE EXCLUSIVE: reads and writes go on)
// first makes the attach itself metadata-only.
type attachPartitionRule struct{}

func init() { register(attachPartitionRule{}) }

func (attachPartitionRule) ID() string        { return "attach-partition" }
func (attachPartitionRule) DefaultMode() Mode { return Enforce }
func (attachPartitionRule) Relaxable() bool   { return true }

// attachKeyPlaceholder stands for the parent's partition key column, which
// the statement does not name and the catalog facts do not carry.
const attachKeyPlaceholder = "<partition key>"

func (attachPartitionRule) Check(s *Statement) *Finding {
	a, cmd := s.alterTableCmd()
	if cmd == nil || cmd.Subtype != pg_query.AlterTableType_AT_AttachPartition {
		return nil
	}
	pc := cmd.Def.GetPartitionCmd()
	if pc == nil || pc.Name == nil {
		return nil
	}
	part := rangeVarName(pc.Name)
	if !s.existing(part) {
		return nil
	}
	q, parent := quoteName(part), rangeVarName(a.Relation)
	attach := s.deparsedSQL()
	var hint []string
	if check := attachBoundCheck(pc.Bound); check != "" {
		con := quoteIdent(makeObjectName(pc.Name.Relname, "", "partition_check"))
		hint = []string{
			"-- " + attachKeyPlaceholder + ": the partition key column of " + parent,
			"ALTER TABLE " + q + " ADD CONSTRAINT " + con + " CHECK (" + check + ") NOT VALID;",
			"ALTER TABLE " + q + " VALIDATE CONSTRAINT " + con + ";",
			attach + ";",
			"ALTER TABLE " + q + " DROP CONSTRAINT " + con + ";",
		}
	} else {
		hint = []string{
			"-- a CHECK constraint can prove only a RANGE or LIST bound on one key column; attach " + part +
				" while it is empty, or copy its rows in afterwards in batches:",
			attach + ";",
		}
	}
	if f, ok := s.facts.Relation(parent); ok && f.HasDefaultPartition {
		hint = append(hint, "-- "+parent+" has a DEFAULT partition: the attach also scans it under ACCESS EXCLUSIVE, "+
			"unless a valid CHECK constraint on it excludes this bound")
	}
	why := "while it scans every row to check that it fits the partition bound"
	return s.finding(part, why, strings.Join(hint, "\n"))
}

// attachBoundCheck renders a CHECK expression equivalent to a RANGE or LIST
// bound on one key column, the way PostgreSQL writes partition constraints
// (key IS NOT NULL AND key >= low AND key < high; key IS NOT NULL AND key =
// ANY (ARRAY[...])), so that the attach can use it instead of scanning. It
// returns "" for HASH and DEFAULT bounds and multi-column keys.
func attachBoundCheck(b *pg_query.PartitionBoundSpec) string {
	if b == nil || b.IsDefault {
		return ""
	}
	key := attachKeyPlaceholder
	switch b.Strategy {
	case "r":
		if len(b.Lowerdatums) != 1 || len(b.Upperdatums) != 1 {
			return ""
		}
		parts := []string{key + " IS NOT NULL"}
		if lo := attachRangeDatum(b.Lowerdatums[0]); lo != "" {
			parts = append(parts, key+" >= "+lo)
		}
		if hi := attachRangeDatum(b.Upperdatums[0]); hi != "" {
			parts = append(parts, key+" < "+hi)
		}
		return strings.Join(parts, " AND ")
	case "l":
		var vals []string
		withNull := false
		for _, d := range b.Listdatums {
			if c := d.GetAConst(); c != nil && c.Isnull {
				withNull = true
				continue
			}
			v := sqlExpr(d)
			if v == "" {
				return ""
			}
			vals = append(vals, v)
		}
		var in string
		if len(vals) > 0 {
			in = key + " = ANY (ARRAY[" + strings.Join(vals, ", ") + "])"
		}
		switch {
		case withNull && in == "":
			return key + " IS NULL"
		case withNull:
			return key + " IS NULL OR " + in
		case in != "":
			return key + " IS NOT NULL AND " + in
		}
	}
	return ""
}

// attachRangeDatum renders one range bound value; "" for MINVALUE/MAXVALUE
// (no bound on that side).
func attachRangeDatum(n *pg_query.Node) string {
	if c := n.GetColumnRef(); c != nil {
		if f := stringList(c.Fields); len(f) == 1 && (f[0] == "minvalue" || f[0] == "maxvalue") {
			return ""
		}
	}
	return sqlExpr(n)
}
