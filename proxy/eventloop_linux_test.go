//go:build linux

package proxy

import (
	"syscall"
	"testing"
	"time"
)

// newTestLoop is an event loop that nothing serves: the test calls its
// methods itself.
func newTestLoop(t *testing.T) *eventLoop {
	t.Helper()
	l, err := newEventLoop(5 * time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Close(l.epfd)
		syscall.Close(l.kickfd)
	})
	return l
}

// spin polls for as long as the last pass asked, then gives up; it spins
// once per pass, and not at all when no server asked.
func TestEventLoopSpinPollsUntilItsTimeIsUp(t *testing.T) {
	l := newTestLoop(t)
	if n := l.spin(); n != 0 {
		t.Fatalf("spin with nothing asked returned %d, want 0", n)
	}

	const d = 3 * time.Millisecond
	l.spinFor = d
	start := time.Now()
	n := l.spin()
	took := time.Since(start)
	if n != 0 || took < d {
		t.Errorf("spin(%s) with no event returned %d after %s, want 0 after at least %s", d, n, took, d)
	}
	if l.spinFor != 0 {
		t.Errorf("spinFor is %s after a spin, want 0 (one spin per pass)", l.spinFor)
	}

	// An event ends the spin at once, and spin reports it.
	l.wake()
	l.spinFor = time.Hour
	start = time.Now()
	n = l.spin()
	if took := time.Since(start); n != 1 || took > time.Second {
		t.Errorf("spin with the eventfd readable returned %d after %s, want 1 at once", n, took)
	}
	if l.evs[0].Fd != kickToken {
		t.Errorf("the event spin found has token %d, want the eventfd's %d", l.evs[0].Fd, kickToken)
	}
}
