package memguard

import (
	"context"
	"math"
	"runtime"
	"testing"
	"time"
)

// testGuard is a Guard of a 1000-byte limit over a heap and a clock the
// test sets; a collection leaves the heap as it is unless collect says.
func testGuard() (g *Guard, live *uint64, clock *time.Time, collections *int) {
	g = New(1000, nil)
	live, clock, collections = new(uint64), new(time.Time), new(int)
	*clock = time.Unix(1, 0)
	g.read = func() uint64 { return *live }
	g.now = func() time.Time { return *clock }
	g.collect = func() { *collections++ }
	return g, live, clock, collections
}

// TestGuard: the guard turns on at High of the limit and stays on until
// the live heap falls under Low (no flapping around one threshold),
// collecting at most every collectEvery meanwhile, and counts each time
// it turned on.
func TestGuard(t *testing.T) {
	g, live, clock, collections := testGuard()
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
		{10, false},
	} {
		*live = step.live
		*clock = clock.Add(time.Millisecond)
		g.check(context.Background())
		if g.Over() != step.want {
			t.Fatalf("live heap %d: over %v, want %v", step.live, g.Over(), step.want)
		}
	}
	if g.Episodes() != 2 {
		t.Errorf("episodes %d, want 2", g.Episodes())
	}
	if *collections != 0 {
		t.Errorf("%d collections within collectEvery of turning on", *collections)
	}
}

// TestGuardTurnsOffOnceCollected: evaluations stopped allocate nothing,
// and nothing else may run a collection: the guard's own, collectEvery
// after it turned on, finds the heap freed and turns it off.
func TestGuardTurnsOffOnceCollected(t *testing.T) {
	g, live, clock, collections := testGuard()
	*live = 990
	g.check(context.Background())
	if !g.Over() {
		t.Fatal("not on at 99 % of the limit")
	}
	g.collect = func() { *collections++; *live = 100 } // what the stopped evaluations held is garbage
	*clock = clock.Add(collectEvery)
	g.check(context.Background())
	if g.Over() || *collections != 1 {
		t.Errorf("over %v after %d collections, want off after one", g.Over(), *collections)
	}
}

// TestGuardMemoryNotHeldByEvaluations: a heap high with memory that
// evaluations do not hold (caches and queues full) stays high after they
// stopped: the guard turns off after one collection instead of refusing
// every decision for good, and turns on again only once the heap grew by
// half of what was left below the limit, or fell under Low and rose again.
func TestGuardMemoryNotHeldByEvaluations(t *testing.T) {
	g, live, clock, collections := testGuard()
	step := func(l uint64, want bool) {
		t.Helper()
		*live = l
		*clock = clock.Add(collectEvery)
		g.check(context.Background())
		if g.Over() != want {
			t.Fatalf("live heap %d: over %v, want %v", l, g.Over(), want)
		}
	}
	step(900, true)
	step(900, false) // collected, still 900: not the evaluations'
	if *collections != 1 {
		t.Errorf("%d collections, want 1", *collections)
	}
	step(940, false) // under 900 + (1000-900)/2
	step(950, true)
	step(950, false)
	step(700, false) // under Low: the held memory is gone
	step(860, true)  // High again
	step(100, false) // collected: it was the evaluations'
	// A heap past the limit: stopped again only 5 % of the limit higher,
	// not at once and for good.
	step(1100, true)
	step(1100, false)
	step(1120, false)
	step(1150, true)
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

// TestGuardRealHeapNotHeldByEvaluations: with the real runtime, a heap
// held at 90 % of the limit by something that is not an evaluation (a
// full cache) turns the guard on once, and its collection turns it off for
// good: no outage, and no collection every collectEvery.
func TestGuardRealHeapNotHeldByEvaluations(t *testing.T) {
	runtime.GC()
	held := make([]byte, 64<<20)
	for i := range held {
		held[i] = byte(i) // touched: really held
	}
	runtime.GC()
	live := readLiveHeap()
	g := New(int64(float64(live)/0.9), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
	defer cancel()
	g.Run(ctx, 5*time.Millisecond)
	runtime.KeepAlive(held)
	if g.Episodes() != 1 || g.Over() {
		t.Errorf("episodes %d, over %v; want one episode, then off", g.Episodes(), g.Over())
	}
}
