package memguard

import (
	"context"
	"math"
	"runtime"
	"testing"
	"time"
)

// TestGuard: the guard turns on at High of the limit, stays on until the
// live heap falls under Low (no flapping around one threshold), and counts
// each time it turned on.
func TestGuard(t *testing.T) {
	g := New(1000, nil)
	var live uint64
	collections := 0
	g.read = func() uint64 { return live }
	g.collect = func() { collections++ }
	for _, step := range []struct {
		live uint64
		want bool
	}{
		{100, false},
		{849, false},
		{850, true},
		{800, true}, // under High, not yet under Low
		{750, true},
		{749, false},
		{800, false},
		{2000, true},
	} {
		live = step.live
		g.check(context.Background())
		if g.Over() != step.want {
			t.Fatalf("live heap %d: over %v, want %v", step.live, g.Over(), step.want)
		}
	}
	if g.Episodes() != 2 {
		t.Errorf("episodes %d, want 2", g.Episodes())
	}
	// While on, it collects (at most every collectEvery), so that the live
	// heap is measured again once evaluations stopped allocating.
	if collections == 0 {
		t.Error("no collection while the guard was on")
	}
}

// TestGuardTurnsOffOnceCollected: evaluations stopped allocate nothing,
// and nothing else may run a collection: the guard's own collection finds
// the heap freed and turns it off.
func TestGuardTurnsOffOnceCollected(t *testing.T) {
	g := New(1000, nil)
	live := uint64(990)
	g.read = func() uint64 { return live }
	g.collect = func() { live = 100 } // what the stopped evaluations held is garbage
	g.check(context.Background())
	if !g.Over() {
		t.Fatal("not on at 99 % of the limit")
	}
	g.collected = time.Time{} // the last collection long ago
	g.check(context.Background())
	if g.Over() {
		t.Error("still on after a collection found the heap freed")
	}
}

// TestNoLimit: without a memory limit there is no guard, and a nil guard
// is never over.
func TestNoLimit(t *testing.T) {
	for _, limit := range []int64{0, -1, math.MaxInt64} {
		if g := New(limit, nil); g != nil || g.Over() || g.Episodes() != 0 {
			t.Errorf("limit %d: %v", limit, g)
		}
	}
	var g *Guard
	g.Run(context.Background(), 0) // returns at once
}

// TestReadLiveHeap: the runtime reports the heap a collection found live.
func TestReadLiveHeap(t *testing.T) {
	runtime.GC()
	if readLiveHeap() == 0 {
		t.Fatal("no live heap reported")
	}
}
