// Package memguard tells policy evaluations to stop while the process is
// short of memory. Some of OPA's built-in functions build results as
// large as their arguments say (numbers.range(0, n), net.cidr_expand of a
// /8, replace with an empty pattern), and a policy that feeds them request
// values lets a request allocate gigabytes before its evaluation times
// out. Nothing in Go bounds one goroutine's allocations; what can be seen
// is the whole heap. A Guard watches the heap that the last collection
// found live, and when it nears the runtime's memory limit, Over reports
// true: evaluations watch it as they watch their timeout, stop, and are
// refused, and the guard collects what they held. Refusing some decisions
// is the price of not being killed for memory with all of them.
//
// Memory the evaluations do not hold (caches and queues full, a large
// policy) is not theirs to give back: when a collection after they
// stopped finds the heap still high, the guard turns off at once and
// does not turn on again until the heap has grown by half of what was
// left below the limit. Such a heap costs one short episode of refusals
// and one collection, not an outage.
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
	limit     uint64
	high, low uint64
	read      func() uint64
	collect   func() // runtime.GC: the live heap is measured anew only by a collection
	log       *slog.Logger
	now       func() time.Time
	over      atomic.Bool
	episodes  atomic.Uint64

	// Run's goroutine only:
	trigger   uint64    // the live heap that turns the guard on: high, or above a heap evaluations do not hold
	onAt      time.Time // when the guard last turned on
	collected time.Time // when check last collected
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
	high := uint64(float64(limit) * High)
	return &Guard{limit: uint64(limit), high: high, low: uint64(float64(limit) * Low), trigger: high,
		read: readLiveHeap, collect: runtime.GC, log: logger, now: time.Now}
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
// live heap the runtime reports would stay what it was. It is also how
// long evaluations have to notice the guard and stop (they look at it as
// often as at their timeout) before a collection that still finds the
// heap high says the memory is not theirs.
const collectEvery = 100 * time.Millisecond

// check turns the guard on or off for the heap now.
func (g *Guard) check(ctx context.Context) {
	now := g.now()
	collected := false
	if g.over.Load() && now.Sub(g.collected) >= collectEvery {
		g.collect()
		g.collected, collected = now, true
	}
	live := g.read()
	switch {
	case !g.over.Load():
		if live < g.low {
			g.trigger = g.high // a heap held elsewhere has gone
		}
		if live >= g.trigger {
			g.over.Store(true)
			g.episodes.Add(1)
			g.onAt, g.collected = now, now
			g.log.LogAttrs(ctx, slog.LevelError, "memory short: evaluations stopped",
				slog.Uint64("live_heap_bytes", live), slog.Uint64("limit_bytes", g.limit))
		}
	case live < g.low:
		g.over.Store(false)
		g.log.LogAttrs(ctx, slog.LevelInfo, "memory recovered: evaluations resume",
			slog.Uint64("live_heap_bytes", live))
	case collected && now.Sub(g.onAt) >= collectEvery:
		// Evaluations have stopped, and a collection since finds the heap
		// as high: it is not theirs. Evaluate again, and stop them next
		// only if the heap grows by half of what is left.
		g.over.Store(false)
		g.trigger = live + max((g.limit-min(live, g.limit))/2, g.limit/20)
		g.log.LogAttrs(ctx, slog.LevelWarn, "memory short, not held by evaluations: evaluations resume",
			slog.Uint64("live_heap_bytes", live), slog.Uint64("stop_again_at_bytes", g.trigger))
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
