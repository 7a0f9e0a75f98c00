package guard

import (
	"strings"
)

// clusterRule: CLUSTER rewrites the table in index order under ACCESS
// EXCLUSIVE. pg_repack, run on a table with a clustered index, does the
// same online: ALTER TABLE ... CLUSTER ON marks the index (SHARE UPDATE
// EXCLUSIVE, catalog only) exactly as CLUSTER ... USING does.
type clusterRule struct{}

func init() { register(clusterRule{}) }

func (clusterRule) ID() string        { return "cluster" }
func (clusterRule) DefaultMode() Mode { return Enforce }
func (clusterRule) Relaxable() bool   { return true }

func (clusterRule) Check(s *Statement) *Finding {
	c := s.node.GetClusterStmt()
	if c == nil || c.Relation == nil {
		return nil
	}
	rel := rangeVarName(c.Relation)
	if !s.existing(rel) {
		return nil
	}
	why := workWhy(WorkRewrite) + " in the order of its clustered index"
	hint := []string{repackNeeds(quoteName(rel), "; it orders the table by its clustered index")}
	if c.Indexname != "" {
		why = workWhy(WorkRewrite) + " in the order of index " + quoteIdent(c.Indexname)
		hint = append(hint, "ALTER TABLE "+quoteName(rel)+" CLUSTER ON "+quoteIdent(c.Indexname)+";")
	}
	hint = append(hint, repackCommand(s, "--table="+shellWord(quoteName(rel))))
	return s.finding(rel, why, strings.Join(hint, "\n"))
}
