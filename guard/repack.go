package guard

import (
	"regexp"
	"strings"
)

// pg_repack: the online tool that rewrites a table (VACUUM FULL, CLUSTER,
// SET TABLESPACE) without holding ACCESS EXCLUSIVE for the copy.

// repackNeeds is the hint line that introduces a pg_repack command for
// tables (as SQL), saying what pg_repack needs of them; more is added to
// the line before its colon.
func repackNeeds(tables, more string) string {
	return "-- online with pg_repack (needs the pg_repack extension in the database and a primary key or a unique index on NOT NULL columns on " +
		tables + ")" + more + ":"
}

// repackCommand is a pg_repack command line for the session's database.
func repackCommand(s *Statement, args ...string) string {
	db := "<database>"
	if s.sess.Database != "" {
		db = shellWord(s.sess.Database)
	}
	return "pg_repack " + strings.Join(args, " ") + " --dbname=" + db
}

var shellSafe = regexp.MustCompile(`^[A-Za-z0-9_.,:/=+-]+$`)

// shellWord quotes w for a POSIX shell when it needs it.
func shellWord(w string) string {
	if shellSafe.MatchString(w) {
		return w
	}
	return "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
}
