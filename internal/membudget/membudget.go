// Package membudget bounds the estimated memory of what waits in a queue,
// beside the queue's bound in items: a queue of request inputs is bounded
// by what they hold, not only by how many there are.
package membudget

import "sync/atomic"

// Budget is a number of bytes that callers take before queueing and give
// back once done. The zero value takes nothing; build one with New. Safe
// for concurrent use.
type Budget struct {
	max  int64
	used atomic.Int64
}

// New returns a Budget of max bytes.
func New(max int64) *Budget { return &Budget{max: max} }

// Take reserves n bytes and reports whether they fit; when they do not,
// nothing is reserved.
func (b *Budget) Take(n int64) bool {
	if b.used.Add(n) > b.max {
		b.used.Add(-n)
		return false
	}
	return true
}

// Give returns n bytes taken before.
func (b *Budget) Give(n int64) { b.used.Add(-n) }

// Used returns the bytes taken and not given back.
func (b *Budget) Used() int64 { return b.used.Load() }
