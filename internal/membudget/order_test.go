package membudget

import (
	"testing"
	"time"
)

// TestWaitersServedInOrder: bytes given back go to the waiting callers
// first come first, one give waking only the one they fit (waking every
// waiter on each give let any of them win, and spent CPU on the rest).
func TestWaitersServedInOrder(t *testing.T) {
	const n = 20
	b := New(10)
	if !b.Take(10) {
		t.Fatal("10 of 10")
	}
	served := make(chan int, n)
	for i := range n {
		go func() {
			if b.TakeWithin(t.Context(), 10, time.Now().Add(time.Minute)) {
				served <- i
			}
		}()
		// Queued before the next comes.
		for deadline := time.Now().Add(10 * time.Second); b.waiting.Load() != int32(i+1); time.Sleep(100 * time.Microsecond) {
			if time.Now().After(deadline) {
				t.Fatalf("waiter %d not queued", i)
			}
		}
	}
	for want := range n {
		b.Give(10)
		select {
		case got := <-served:
			if got != want {
				t.Fatalf("served waiter %d, want %d (the first come)", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no waiter served after give %d", want)
		}
		select {
		case got := <-served:
			t.Fatalf("waiter %d served too, with no bytes for it", got)
		case <-time.After(time.Millisecond):
		}
	}
	if b.waiting.Load() != 0 || b.queue.Len() != 0 || b.Used() != 10 {
		t.Errorf("%d waiting, %d queued, %d used after every waiter was served; want 0, 0, 10", b.waiting.Load(), b.queue.Len(), b.Used())
	}
}
