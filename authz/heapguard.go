package authz

import (
	"errors"
	"runtime"
	"runtime/metrics"
	"sync/atomic"
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
	limit   uint64
	cancel  topdown.Cancel
	timer   atomic.Pointer[time.Timer] // the next look's
	stopped atomic.Bool                // the heap was past the limit: cancel was called
	ended   atomic.Bool                // end was called: look no more
}

// watchHeap starts watching the heap for the evaluation c cancels, when
// limit is positive; it returns nil (which watches nothing) otherwise.
func watchHeap(limit int64, c topdown.Cancel) *heapWatch {
	if limit <= 0 {
		return nil
	}
	w := &heapWatch{limit: uint64(limit), cancel: c}
	w.timer.Store(time.AfterFunc(heapCheckEvery, w.look))
	return w
}

func (w *heapWatch) look() {
	if w.ended.Load() {
		return
	}
	if liveHeap() > w.limit {
		w.stopped.Store(true)
		w.cancel.Cancel()
		return
	}
	w.timer.Store(time.AfterFunc(heapCheckEvery, w.look)) // once more at most after end
}

// end stops watching, and reports whether the heap stopped the
// evaluation.
func (w *heapWatch) end() bool {
	if w == nil {
		return false
	}
	w.ended.Store(true)
	w.timer.Load().Stop()
	return w.stopped.Load()
}

// liveHeap is the Go heap's live bytes as of the last garbage collection:
// what the evaluations still hold, not the garbage they left. (The heap
// with its garbage is no measure: with GOGC=off under a memory limit it
// grows to the limit before every collection.)
func liveHeap() uint64 {
	s := [1]metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s[:])
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// heapStopped counts an evaluation the heap stopped and returns its
// refusal, once it has collected the garbage it left (unless a collection
// is under way already): the live heap reads as of the last collection,
// and until the next one it would stop every evaluation that runs 10 ms,
// though the one that allocated is gone. The request that allocated pays
// for the collection.
func (e *Engine) heapStopped() error {
	e.heapStops.Add(1)
	if e.collecting.CompareAndSwap(false, true) {
		runtime.GC()
		e.collecting.Store(false)
	}
	return &Refusal{Category: ErrPolicy, Detail: HeapLimitDetail, Cause: ErrHeapLimit}
}
