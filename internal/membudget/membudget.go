// Package membudget bounds the memory held by work in progress, in bytes,
// beside any bound in items: a queue of request inputs is bounded by what
// they hold, and request bodies being read by their bytes, not only by how
// many there are.
package membudget

import (
	"container/list"
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Budget is a number of bytes that callers take before holding memory and
// give back once done. The zero value takes nothing (TakeWithin waits
// until it gives up); build one with New.
// Safe for concurrent use.
type Budget struct {
	max  int64
	used atomic.Int64

	waiting atomic.Int32 // queue.Len(), read by Give without the lock
	mu      sync.Mutex
	queue   list.List // of *waiter: TakeWithin's callers waiting, first come first
}

// waiter is a TakeWithin caller waiting for n bytes; wake tells it to
// look again.
type waiter struct {
	n    int64
	wake chan struct{} // buffered: a wake is never lost, nor blocks
}

// New returns a Budget of max bytes.
func New(max int64) *Budget { return &Budget{max: max} }

// Take reserves n bytes and reports whether they fit; when they do not,
// nothing is reserved.
func (b *Budget) Take(n int64) bool {
	for {
		// Compare and swap, never add and undo: an undone add could make
		// another Take fail for bytes that were never taken.
		used := b.used.Load()
		if used+n > b.max {
			return false
		}
		if b.used.CompareAndSwap(used, used+n) {
			return true
		}
	}
}

// TakeWithin is Take that waits for bytes given back when n does not fit,
// until giveUp or until ctx is done, and reports whether it took them.
// Bytes given back wake only as many waiting callers as they fit, the
// first come first (a caller not waiting may still take them first: the
// woken one then waits on). A caller holding bytes of b should not wait
// for more: callers that each hold some and wait for the rest could wait
// on each other until they give up.
func (b *Budget) TakeWithin(ctx context.Context, n int64, giveUp time.Time) bool {
	if b.Take(n) {
		return true
	}
	wait := time.Until(giveUp)
	if wait <= 0 {
		return false
	}
	w := &waiter{n: n, wake: make(chan struct{}, 1)}
	b.mu.Lock()
	e := b.queue.PushBack(w)
	b.waiting.Add(1)
	b.mu.Unlock()
	defer b.leave(e)
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		// Queued before looking again, so that bytes given back after the
		// look wake it.
		if b.Take(n) {
			return true
		}
		select {
		case <-w.wake:
		case <-timer.C:
			return b.Take(n)
		case <-ctx.Done():
			return false
		}
	}
}

// leave takes e's waiter out of the queue (in constant time: thousands
// may give up at once), and wakes whoever the bytes free now fit: it may
// have been woken for them.
func (b *Budget) leave(e *list.Element) {
	b.mu.Lock()
	b.queue.Remove(e)
	b.waiting.Add(-1)
	b.mu.Unlock()
	b.wakeWaiters()
}

// wakeWaiters wakes the waiting callers, in their order, that the bytes
// free now fit.
func (b *Budget) wakeWaiters() {
	if b.waiting.Load() == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	free := b.max - b.used.Load()
	for e := b.queue.Front(); e != nil; e = e.Next() {
		w := e.Value.(*waiter)
		if w.n > free {
			return
		}
		free -= w.n
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// Give returns n bytes taken before, waking the waiting callers they fit.
func (b *Budget) Give(n int64) {
	b.used.Add(-n)
	b.wakeWaiters()
}

// Waiting returns how many callers TakeWithin holds waiting.
func (b *Budget) Waiting() int { return int(b.waiting.Load()) }

// Used returns the bytes taken and not given back.
func (b *Budget) Used() int64 { return b.used.Load() }
