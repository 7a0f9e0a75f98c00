package proxy

import (
	"slices"
	"sync"
)

// waitGraph is who waits for whom outside the lock queue: for each client
// transaction ddlguard keeps waiting for blockers, the backend pids of the
// sessions it waits for. PostgreSQL's deadlock detector sees only the lock
// queue, so two transactions that each hold a lock on a table and each wait
// in ddlguard for the other to let go would wait for each other until the
// retry budget ran out (then both fail, where PostgreSQL would have failed
// one at once). The graph finds such cycles among this process's sessions
// and picks one transaction of each to give up, as PostgreSQL would.
type waitGraph struct {
	mu sync.Mutex
	on map[int][]int
}

// wait records that the transaction on backend pid waits for blockers, and
// reports whether it is to give up: its wait closes a cycle (a blocker
// waits in ddlguard for pid, directly or through others) and pid is the
// highest in the cycle, so that exactly one of its members gives up.
func (g *waitGraph) wait(pid int, blockers []int) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.on == nil {
		g.on = map[int][]int{}
	}
	g.on[pid] = blockers
	cycle := g.cycleThrough(pid)
	return len(cycle) > 0 && slices.Max(cycle) == pid
}

// done forgets pid's wait.
func (g *waitGraph) done(pid int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.on, pid)
}

// cycleThrough returns the pids of a cycle of waits through start (start
// included), or nil.
func (g *waitGraph) cycleThrough(start int) []int {
	seen := map[int]bool{}
	var path []int
	var reaches func(p int) bool
	reaches = func(p int) bool {
		if p == start {
			return true
		}
		if seen[p] {
			return false
		}
		seen[p] = true
		path = append(path, p)
		for _, q := range g.on[p] {
			if reaches(q) {
				return true
			}
		}
		path = path[:len(path)-1]
		return false
	}
	for _, q := range g.on[start] {
		if reaches(q) {
			return append(path, start)
		}
	}
	return nil
}
