// Package memguard tells policy evaluations to stop while the process is
// short of memory. Some of OPA's built-in functions build results as
// large as their arguments say (numbers.range(0, n), net.cidr_expand of a
// /8, replace with an empty pattern), and a policy that feeds them request
// values lets a request allocate gigabytes before its evaluation times
// out. Nothing in Go bounds one goroutine's allocations; what can be seen
// is the whole heap. A Guard watches the heap that the last collection
// found live, and while it is near the runtime's memory limit, Over
// reports true: evaluations watch it as they watch their timeout, stop,
// and are refused, and the collector frees what they held. Refusing some
// decisions is the price of not being killed for memory with all of them.
package memguard

import (
	"context"
	"log/slog"
	"math"
	"runtime"
	"runtime/metrics"
	"sync/atomic"
	"time"
)

// Shares of the memory limit: the guard turns on when the live heap
// reaches High of it, and off once it is under Low again.
const (
	High = 0.85
	Low  = 0.75
)

// DefaultInterval is how often Run looks at the heap.
const DefaultInterval = 10 * time.Millisecond

// liveHeap is the runtime metric Run reads: heap bytes marked live by the
// last collection (which runs ever more often as the heap nears the
// limit), not the bytes allocated since, most of them garbage.
const liveHeap = "/gc/heap/live:bytes"

// Guard reports whether the process is short of memory. A nil *Guard
// never is. Safe for concurrent use; Run must be called at most once.
type Guard struct {
	high, low uint64
	read      func() uint64
	collect   func() // runtime.GC: the live heap is measured anew only by a collection
	log       *slog.Logger
	over      atomic.Bool
	episodes  atomic.Uint64
	collected time.Time // when check last collected (Run's goroutine only)
}

// New returns a Guard for a memory limit of limit bytes (the runtime's
// soft limit, debug.SetMemoryLimit(-1)), or nil when there is none (0,
// negative, or math.MaxInt64, the runtime's "no limit"). logger may be nil.
func New(limit int64, logger *slog.Logger) *Guard {
	if limit <= 0 || limit == math.MaxInt64 {
		return nil
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Guard{high: uint64(float64(limit) * High), low: uint64(float64(limit) * Low), read: readLiveHeap, collect: runtime.GC, log: logger}
}

// Over reports whether evaluations should stop: the live heap reached
// High of the limit and has not yet fallen under Low.
func (g *Guard) Over() bool { return g != nil && g.over.Load() }

// Episodes is how many times the guard has turned on.
func (g *Guard) Episodes() uint64 {
	if g == nil {
		return 0
	}
	return g.episodes.Load()
}

// Run looks at the heap every interval (DefaultInterval when 0) until ctx
// is done, logging each time the guard turns on and off.
func (g *Guard) Run(ctx context.Context, interval time.Duration) {
	if g == nil {
		return
	}
	if interval <= 0 {
		interval = DefaultInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		g.check(ctx)
	}
}

// collectEvery is how often check collects while the guard is on: with
// evaluations stopped little is allocated, and without a collection the
// live heap the runtime reports would stay what it was, the guard on for
// good.
const collectEvery = 100 * time.Millisecond

// check turns the guard on or off for the heap now.
func (g *Guard) check(ctx context.Context) {
	if g.over.Load() && time.Since(g.collected) >= collectEvery {
		g.collect()
		g.collected = time.Now()
	}
	live := g.read()
	switch over := g.over.Load(); {
	case !over && live >= g.high:
		g.over.Store(true)
		g.episodes.Add(1)
		g.log.LogAttrs(ctx, slog.LevelError, "memory short: evaluations stopped",
			slog.Uint64("live_heap_bytes", live), slog.Uint64("stop_at_bytes", g.high))
	case over && live < g.low:
		g.over.Store(false)
		g.log.LogAttrs(ctx, slog.LevelInfo, "memory recovered: evaluations resume",
			slog.Uint64("live_heap_bytes", live))
	}
}

func readLiveHeap() uint64 {
	s := []metrics.Sample{{Name: liveHeap}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}
