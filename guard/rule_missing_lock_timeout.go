package guard

import (
	"fmt"
)

// missingLockTimeoutRule (lint only): a migration statement that takes SHARE
// or stronger on an existing relation, in a session that has not set
// lock_timeout. Without ddlguard in front of the database nothing bounds the
// wait: while the statement waits behind one long reader, every later query
// on the table queues behind it. The proxy applies its own timeout, so the
// rule matters for migration files only.
type missingLockTimeoutRule struct{}

func init() { register(missingLockTimeoutRule{}) }

func (missingLockTimeoutRule) ID() string        { return "missing-lock-timeout" }
func (missingLockTimeoutRule) DefaultMode() Mode { return Enforce }
func (missingLockTimeoutRule) Relaxable() bool   { return false }
func (missingLockTimeoutRule) LintOnly() bool    { return true }

func (missingLockTimeoutRule) Check(s *Statement) *Finding {
	if s.sess.HasLockTimeout() {
		return nil
	}
	for _, l := range s.locks {
		if l.Mode < Share || !s.existing(l.Relation) {
			continue
		}
		why := "with no lock_timeout set in this session: while it waits for the lock, for as long as " +
			"the longest open transaction on " + l.Relation + " runs, every later query on it queues behind it"
		hint := fmt.Sprintf("SET lock_timeout = '%dms';  -- once, at the top of the migration; retry the migration if it times out\n%s;",
			DefaultLockTimeout.Milliseconds(), s.writtenSQL())
		return s.finding(l.Relation, why, hint)
	}
	return nil
}
