package proxy

import "testing"

func TestWaitGraph(t *testing.T) {
	var g waitGraph
	if g.wait(10, []int{20}) {
		t.Fatal("10 waits for 20, which waits for nobody: no cycle")
	}
	if g.wait(30, []int{40, 10}) {
		t.Fatal("30 waits for 40 and 10, which wait for nobody in ddlguard: no cycle")
	}
	// 20 now waits for 30: 10 -> 20 -> 30 -> 10. Only the highest, 30,
	// gives up, whichever member looks.
	if g.wait(20, []int{30}) {
		t.Error("20 closes the cycle 10-20-30 but is not its highest: it keeps waiting")
	}
	if g.wait(10, []int{20}) {
		t.Error("10 is in the cycle but not its highest")
	}
	if !g.wait(30, []int{40, 10}) {
		t.Error("30 is the highest of the cycle 10-20-30: it gives up")
	}
	g.done(30)
	if g.wait(10, []int{20}) || g.wait(20, []int{30}) {
		t.Error("after 30 gave up there is no cycle")
	}
	// Two sessions waiting for each other.
	var two waitGraph
	if two.wait(7, []int{5}) {
		t.Error("5 is not waiting yet")
	}
	if two.wait(5, []int{7}) {
		t.Error("5 is the lower of the two: it keeps waiting")
	}
	if !two.wait(7, []int{5}) {
		t.Error("7 is the higher of the two: it gives up")
	}
}
