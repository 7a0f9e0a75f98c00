package proxy

import (
	"testing"
	"time"

	"github.com/ddlguard/ddlguard/guard"
)

func TestLockStateTake(t *testing.T) {
	read := func() *lockState {
		s := &lockState{}
		if err := s.addSettings([]byte(`["2s", "0"]`)); err != nil {
			t.Fatal(err)
		}
		for name, js := range map[string]string{"readers": `["AccessShareLock", "AccessShareLock"]`, "quiet": "", "writers": `["RowExclusiveLock"]`} {
			var b []byte
			if js != "" {
				b = []byte(js)
			}
			if err := s.addModes(name, b); err != nil {
				t.Fatal(err)
			}
		}
		return s
	}
	lock := func(rel string, m guard.LockMode) guard.Lock { return guard.Lock{Relation: rel, Mode: m} }
	for _, tc := range []struct {
		name    string
		targets []guard.Lock
		answers bool
	}{
		{"no targets: the settings alone", nil, true},
		{"nobody on the relation", []guard.Lock{lock("quiet", guard.AccessExclusive)}, true},
		{"readers do not conflict with SHARE", []guard.Lock{lock("readers", guard.Share)}, true},
		{"readers conflict with ACCESS EXCLUSIVE", []guard.Lock{lock("readers", guard.AccessExclusive)}, false},
		{"writers conflict with SHARE", []guard.Lock{lock("quiet", guard.Share), lock("writers", guard.Share)}, false},
		{"a relation not asked about", []guard.Lock{lock("other", guard.ShareUpdateExclusive)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := read()
			pf := s.take(tc.targets)
			if (pf != nil) != tc.answers {
				t.Fatalf("take answered %v, want %v", pf != nil, tc.answers)
			}
			if pf != nil && (pf.lockTimeout != "2s" || pf.idleTimeout != "0" || len(pf.blockers) != 0) {
				t.Errorf("preflight %+v", pf)
			}
			if s.take(nil) != nil {
				t.Error("a second take answered: the state is for one blocker check")
			}
		})
	}
	t.Run("too old", func(t *testing.T) {
		s := read()
		s.at = time.Now().Add(-2 * lockStateLife)
		if s.take(nil) != nil {
			t.Error("an old state answered")
		}
	})
	t.Run("nothing read", func(t *testing.T) {
		if (&lockState{}).take(nil) != nil {
			t.Error("an empty state answered")
		}
	})
}
