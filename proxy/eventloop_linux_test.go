//go:build linux

package proxy

import (
	"runtime"
	"syscall"
	"testing"
	"time"
	"unsafe"
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

	// An event ends the spin at once, and spin reports it. (On a busy
	// machine the spin above may have found its CPU contended.)
	l.spinOffUntil = time.Time{}
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

// pinToCPU0 locks the calling goroutine to its thread and that thread to
// CPU 0.
func pinToCPU0() error {
	runtime.LockOSThread()
	var set [16]uint64 // a cpu_set_t
	set[0] = 1
	if _, _, e := syscall.RawSyscall(syscall.SYS_SCHED_SETAFFINITY, 0, unsafe.Sizeof(set), uintptr(unsafe.Pointer(&set))); e != 0 {
		return e
	}
	return nil
}

// A spin whose thread shares its CPU with a busy thread stops spinning for
// a while; one that has its CPU to itself goes on.
func TestEventLoopSpinBacksOffWhenItsCPUIsContended(t *testing.T) {
	spinOnCPU0 := func(busy bool, d time.Duration) *eventLoop {
		l := newTestLoop(t)
		done := make(chan struct{})
		go func() {
			defer close(done)
			// Both goroutines end locked to their threads: the runtime
			// ends those threads, and their CPU 0 affinity with them.
			if err := pinToCPU0(); err != nil {
				t.Errorf("sched_setaffinity: %v", err)
				return
			}
			stop := make(chan struct{})
			defer close(stop)
			if busy {
				started := make(chan struct{})
				go func() {
					err := pinToCPU0()
					close(started)
					if err != nil {
						t.Errorf("sched_setaffinity: %v", err)
						return
					}
					for {
						select {
						case <-stop:
							return
						default:
						}
					}
				}()
				<-started
			}
			l.spinFor = d
			if n := l.spin(); n != 0 {
				t.Errorf("spin returned %d events, want none", n)
			}
		}()
		<-done
		return l
	}

	// Alone: other processes may have run on CPU 0 during one spin (go
	// test runs packages side by side), not during every one.
	alone := false
	for range 100 {
		if l := spinOnCPU0(false, 5*time.Millisecond); l.spinOffUntil.IsZero() {
			alone = true
			break
		}
	}
	if !alone {
		t.Errorf("100 spins of 5 ms on CPU 0 with no busy thread of this test all backed off")
	}
	l := spinOnCPU0(true, 20*time.Millisecond)
	if !l.spinOffUntil.After(time.Now()) {
		t.Fatalf("a spin that shared its CPU with a busy thread did not back off (spinOffUntil %s)", l.spinOffUntil)
	}
	// While backing off, a spin returns at once.
	l.spinFor = time.Hour
	start := time.Now()
	if n := l.spin(); n != 0 || time.Since(start) > 10*time.Millisecond {
		t.Errorf("a spin while backing off returned %d after %s, want 0 at once", n, time.Since(start))
	}
}
