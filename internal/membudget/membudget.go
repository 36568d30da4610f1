// Package membudget bounds the memory held by work in progress, in bytes,
// beside any bound in items: a queue of request inputs is bounded by what
// they hold, and request bodies being read by their bytes, not only by how
// many there are.
package membudget

import (
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

	waiting atomic.Int32 // callers in TakeWithin's wait
	mu      sync.Mutex
	freed   chan struct{} // closed, and replaced, when bytes are given back while someone waits
}

// New returns a Budget of max bytes.
func New(max int64) *Budget { return &Budget{max: max, freed: make(chan struct{})} }

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
// until giveUp or until ctx is done, and reports whether it took them. A
// caller holding bytes of b should not wait for more: callers that each
// hold some and wait for the rest could wait on each other until they
// give up.
func (b *Budget) TakeWithin(ctx context.Context, n int64, giveUp time.Time) bool {
	if b.Take(n) {
		return true
	}
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		// Counted as waiting before looking again, so that a Give after
		// the look sees the waiter and wakes it.
		b.mu.Lock()
		freed := b.freed
		b.mu.Unlock()
		b.waiting.Add(1)
		if b.Take(n) {
			b.waiting.Add(-1)
			return true
		}
		wait := time.Until(giveUp)
		if wait <= 0 {
			b.waiting.Add(-1)
			return false
		}
		if timer == nil {
			timer = time.NewTimer(wait)
		}
		select {
		case <-freed:
			b.waiting.Add(-1)
		case <-timer.C:
			b.waiting.Add(-1)
			return b.Take(n)
		case <-ctx.Done():
			b.waiting.Add(-1)
			return false
		}
	}
}

// Give returns n bytes taken before, waking callers waiting for them.
func (b *Budget) Give(n int64) {
	b.used.Add(-n)
	if b.waiting.Load() > 0 {
		b.mu.Lock()
		if b.freed != nil { // nil in the zero value
			close(b.freed)
			b.freed = make(chan struct{})
		}
		b.mu.Unlock()
	}
}

// Used returns the bytes taken and not given back.
func (b *Budget) Used() int64 { return b.used.Load() }
