package proxy

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/ddlguard/ddlguard/guard"
)

// lockState is what a facts query on the client's own connection read,
// besides the facts, for the statement it was asked for: the lock modes
// other sessions hold or await on each relation asked about, and the
// session's timeouts. When the statement then needs the blocker check on
// those relations only, and none of those modes conflicts with its
// locks, the preflight is already answered: no query of its own. It is
// good for that one statement: every facts lookup starts it afresh, and
// the first blocker check takes it.
type lockState struct {
	at                       time.Time
	lockTimeout, idleTimeout string
	settings                 bool
	others                   map[string][]string // relation -> pg_locks modes of other sessions
}

// lockStateLife bounds how old a lockState may be when a blocker check
// takes it (the statement is decided and run right after its facts).
const lockStateLife = time.Second

// reset forgets what was read.
func (s *lockState) reset() { *s = lockState{} }

// addSettings records the settings row of a facts answer (a JSON array:
// lock_timeout, idle_in_transaction_session_timeout).
func (s *lockState) addSettings(js []byte) error {
	var v []string
	if err := json.Unmarshal(js, &v); err != nil || len(v) != 2 {
		return fmt.Errorf("settings in the facts answer: %q", js)
	}
	s.lockTimeout, s.idleTimeout, s.settings = v[0], v[1], true
	s.at = time.Now()
	return nil
}

// addModes records the modes other sessions hold or await on a relation
// (a JSON array, or NULL for none).
func (s *lockState) addModes(name string, js []byte) error {
	var modes []string
	if js != nil {
		if err := json.Unmarshal(js, &modes); err != nil {
			return fmt.Errorf("locks in the facts answer for %s: %w", name, err)
		}
	}
	if s.others == nil {
		s.others = map[string][]string{}
	}
	s.others[name] = modes
	return nil
}

// take returns the preflight the state answers for targets, or nil when
// it cannot (nothing read, too old, a target not asked about, or a
// conflicting mode: then the sessions in the way are to be described).
// The state is forgotten either way.
func (s *lockState) take(targets []guard.Lock) *preflight {
	st := *s
	s.reset()
	if !st.settings || time.Since(st.at) > lockStateLife {
		return nil
	}
	for _, l := range targets {
		modes, asked := st.others[l.Relation]
		if !asked {
			return nil
		}
		for _, m := range conflicting(l.Mode) {
			if slices.Contains(modes, m) {
				return nil
			}
		}
	}
	return &preflight{lockTimeout: st.lockTimeout, idleTimeout: st.idleTimeout}
}
