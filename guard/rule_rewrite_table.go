package guard

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// rewriteTableRule: ALTER TABLE ... SET TABLESPACE / SET LOGGED / SET
// UNLOGGED / SET ACCESS METHOD copy the whole relation under ACCESS
// EXCLUSIVE. Tablespace moves have online tools (pg_repack; REINDEX
// CONCURRENTLY for an index on PostgreSQL 14+); the others have none.
type rewriteTableRule struct{}

func init() { register(rewriteTableRule{}) }

func (rewriteTableRule) ID() string        { return "rewrite-table" }
func (rewriteTableRule) DefaultMode() Mode { return Enforce }
func (rewriteTableRule) Relaxable() bool   { return true }

func (rewriteTableRule) Check(s *Statement) *Finding {
	a, cmds, rel := s.alterOfExisting()
	if a == nil || s.lockOn(rel).Work != WorkRewrite {
		return nil
	}
	qrel := quoteName(rel)
	f, known := s.facts.Relation(rel)
	var whys, hint []string
	for _, cmd := range cmds {
		switch cmd.Subtype {
		case pg_query.AlterTableType_AT_SetTableSpace:
			if known && f.Kind == 'p' {
				continue // a partitioned table: only the default for new partitions
			}
			ts := quoteIdent(cmd.Name)
			switch {
			case a.Objtype == pg_query.ObjectType_OBJECT_INDEX:
				whys = append(whys, "copies the whole index into tablespace "+ts+" (queries that would plan with it wait too)")
				if s.sess.major() >= 14 {
					hint = append(hint, "-- REINDEX CONCURRENTLY builds the index anew in the tablespace while reads and writes go on (PostgreSQL 14+):",
						"REINDEX (TABLESPACE "+ts+") INDEX CONCURRENTLY "+qrel+";")
				} else {
					hint = append(hint, "-- online with pg_repack (needs the pg_repack extension in the database):",
						repackCommand(s, "--index="+shellWord(qrel), "--tablespace="+shellWord(cmd.Name)))
				}
			case a.Objtype == pg_query.ObjectType_OBJECT_MATVIEW:
				whys = append(whys, "copies the whole materialized view into tablespace "+ts)
				hint = append(hint, maintenanceWindow(a, cmd, "pg_repack does not move materialized views")...)
			default:
				whys = append(whys, "copies the whole table into tablespace "+ts)
				hint = append(hint, repackNeeds(qrel, "; like SET TABLESPACE it leaves the indexes where they are"),
					repackCommand(s, "--no-order", "--table="+shellWord(qrel), "--tablespace="+shellWord(cmd.Name)))
			}
		case pg_query.AlterTableType_AT_SetLogged:
			whys = append(whys, "copies the whole table and writes all of it to WAL to make it logged")
			hint = append(hint, maintenanceWindow(a, cmd, "SET LOGGED has no online equivalent: it always copies the table and writes all of it to WAL")...)
		case pg_query.AlterTableType_AT_SetUnLogged:
			whys = append(whys, "copies the whole table to make it unlogged")
			hint = append(hint, maintenanceWindow(a, cmd, "SET UNLOGGED has no online equivalent: it always copies the table")...)
		case pg_query.AlterTableType_AT_SetAccessMethod:
			whys = append(whys, "copies the whole table into access method "+quoteIdent(cmd.Name))
			hint = append(hint, maintenanceWindow(a, cmd, "SET ACCESS METHOD has no online equivalent: it always copies the table")...)
		default:
			hint = append(hint, alterTableSQL(a, cmd)+";")
		}
	}
	if len(whys) == 0 {
		return nil
	}
	return s.finding(rel, "while it "+strings.Join(whys, " and "), strings.Join(hint, "\n"))
}

// maintenanceWindow is the hint for a rewrite that has no online form: say
// why, and show the statement with the inline override that lets a role
// allowed to use it run it deliberately.
func maintenanceWindow(a *pg_query.AlterTableStmt, cmd *pg_query.AlterTableCmd, why string) []string {
	return []string{
		"-- " + why + "; run it in a maintenance window:",
		allowComment("rewrite-table", "maintenance window") + alterTableSQL(a, cmd) + ";",
	}
}
