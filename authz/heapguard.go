package authz

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"runtime/metrics"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/topdown"
)

// HeapLimitDetail is the detail of an ErrPolicy refusal whose evaluation
// was stopped because the process's live heap passed
// Options.EvalHeapLimit while it ran: like InterruptedDetail, not an
// answer of the policy's.
const HeapLimitDetail = "evaluation stopped: the process's heap passed its limit (limits.eval_heap_limit)"

// ErrHeapLimit is the cause of a refusal whose evaluation the heap stopped
// (see Options.EvalHeapLimit): such a refusal matches it with errors.Is.
// A shadow or a replay has no answer of the policy's to compare, and
// evaluating its input again would allocate as much again.
var ErrHeapLimit = errors.New("heap passed its limit")

// heapCheckEvery is how long an evaluation runs before it first looks at
// the heap, and how often it looks again: evaluations end in microseconds,
// and one that allocates without bound runs long.
const heapCheckEvery = 10 * time.Millisecond

// heapWatch stops one evaluation (cancels its topdown.Cancel) when, at a
// look, the Go heap's live bytes as of the last collection are past its
// limit. A policy that lets a request size what a built-in function
// builds (numbers.range(1, input.n)) would otherwise allocate until the
// evaluation times out, and several at once past any memory limit.
type heapWatch struct {
	limit  uint64
	cancel topdown.Cancel

	mu      sync.Mutex
	timer   *time.Timer // the next look's
	stopped bool        // the heap was past the limit: cancel was called
	ended   bool        // end was called: look no more, cancel nothing
}

// watchHeap starts watching the heap for the evaluation c cancels, when
// limit is positive; it returns nil (which watches nothing) otherwise.
func watchHeap(limit int64, c topdown.Cancel) *heapWatch {
	if limit <= 0 {
		return nil
	}
	w := &heapWatch{limit: uint64(limit), cancel: c}
	w.mu.Lock()
	w.timer = time.AfterFunc(heapCheckEvery, w.look)
	w.mu.Unlock()
	return w
}

func (w *heapWatch) look() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ended {
		return // an evaluation that has ended is not cancelled
	}
	if liveHeap() > w.limit {
		w.stopped = true
		w.cancel.Cancel()
		return
	}
	w.timer = time.AfterFunc(heapCheckEvery, w.look)
}

// end stops watching, and reports whether the heap stopped the
// evaluation.
func (w *heapWatch) end() bool {
	if w == nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ended = true
	w.timer.Stop()
	return w.stopped
}

// liveHeap is the Go heap's live bytes as of the last garbage collection:
// what the evaluations still hold, not the garbage they left. (The heap
// with its garbage is no measure: with GOGC=off under a memory limit it
// grows to the limit before every collection.) Before the first
// collection, which reads 0, it is the heap's objects.
func liveHeap() uint64 {
	s := [2]metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s[:])
	for _, v := range s {
		if v.Value.Kind() == metrics.KindUint64 && v.Value.Uint64() > 0 {
			return v.Value.Uint64()
		}
	}
	return 0
}

// heapStopped counts an evaluation the heap stopped and returns its
// refusal, once garbage has been collected for it (collectAfterStop): the
// request that allocated pays for the collection.
func (e *Engine) heapStopped() error {
	e.heapStops.Add(1)
	e.collectAfterStop()
	return &Refusal{Category: ErrPolicy, Detail: HeapLimitDetail, Cause: ErrHeapLimit}
}

// collectAfterStop collects the garbage stopped evaluations left, so that
// the live heap, which reads as of the last collection, does not go on
// stopping every evaluation that runs 10 ms after they are gone. One
// collector at a time; a stop during a collection (whose evaluation held
// its bytes through it) makes it collect again. When the live heap still
// reads past the limit after a collection it collects once more (what
// sync.Pool caches held through the first), and when that does not bring
// it under either, what is live is no evaluation's garbage: it says so,
// at most once a minute, rather than stopping long evaluations in silence.
func (e *Engine) collectAfterStop() {
	e.stopsToCollect.Add(1)
	for e.stopsToCollect.Load() > 0 && e.collecting.CompareAndSwap(false, true) {
		e.stopsToCollect.Store(0)
		runtime.GC()
		if liveHeap() > uint64(e.heapLimit) {
			runtime.GC()
			if live := liveHeap(); live > uint64(e.heapLimit) {
				e.warnHeapAtRest(live)
			}
		}
		e.collecting.Store(false)
	}
}

// warnHeapAtRest logs, at most once a minute, that the live heap is past
// the limit with the stopped evaluations' garbage collected.
func (e *Engine) warnHeapAtRest(live uint64) {
	now := time.Now()
	last := e.heapWarned.Load()
	if last != 0 && now.Sub(time.Unix(0, last)) < time.Minute || !e.heapWarned.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	// The message is constant, as every log message is, to be matched on;
	// what to do goes in an attribute.
	e.log.LogAttrs(context.Background(), slog.LevelWarn, "live heap past limits.eval_heap_limit once collected",
		slog.Uint64("live_bytes", live), slog.Int64("limit_bytes", e.heapLimit),
		slog.String("effect", "evaluations running 10 ms or more are stopped; raise the limit, or lower the caches"))
}
