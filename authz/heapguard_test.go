package authz_test

import (
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/authztest"
)

// liveHeap is the Go heap's live bytes as of the last collection.
func liveHeap() int64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}

// TestEvalHeapLimit: with Options.EvalHeapLimit, an evaluation that lets
// the request size what a built-in builds (20 million numbers, over a GB)
// is stopped once the live heap passes the limit, with either evaluator,
// long before its timeout: a policy refusal that says why, counted in
// Status. An evaluation that runs long without holding memory (waiting on
// http.send) is not stopped.
func TestEvalHeapLimit(t *testing.T) {
	sized := `package authz

default allow := false

allow if count(numbers.range(1, input.resource.n)) > 0
`
	for _, ev := range []authz.Evaluator{authz.EvaluatorCompiled, authz.EvaluatorTopdown} {
		t.Run(string(ev), func(t *testing.T) {
			runtime.GC()
			limit := liveHeap() + 64<<20
			e := newEngine(t, authz.Options{Evaluator: ev, EvalTimeout: time.Minute, EvalHeapLimit: limit, DecisionCacheSize: -1},
				authztest.Policy(t, "sized", sized))
			d, err := e.Decide(t.Context(), authz.Request{Action: authz.Action{Name: "x"}, Resource: map[string]any{"n": 20_000_000}})
			var r *authz.Refusal
			if d.Allow || !errors.As(err, &r) || !errors.Is(err, authz.ErrPolicy) || !errors.Is(err, authz.ErrHeapLimit) || r.Detail != authz.HeapLimitDetail ||
				len(d.Reasons) != 1 || !strings.Contains(d.Reasons[0], "limits.eval_heap_limit") {
				t.Fatalf("got %+v, %v; want a refusal for the heap", d, err)
			}
			if n := e.Status().HeapStops; n != 1 {
				t.Errorf("%d heap stops counted, want 1", n)
			}
			if n := e.Status().EvaluatorFallbacks; n != 0 {
				t.Errorf("%d fallbacks: the compiled evaluator's stop is final", n)
			}
			if d, err := e.Decide(t.Context(), authz.Request{Action: authz.Action{Name: "x"}, Resource: map[string]any{"n": 3}}); err != nil || !d.Allow {
				t.Errorf("a small range after: %+v, %v; want it allowed", d, err)
			}
		})
	}
	t.Run("after a stop", func(t *testing.T) {
		// The live heap reads as of the last collection: evaluations that
		// run long after the one stopped are not stopped for what it left.
		slow := slowServer(t)
		e := heapLimited(t, sized+send)
		if _, err := e.Decide(t.Context(), authz.Request{Action: authz.Action{Name: "x"}, Resource: map[string]any{"n": 20_000_000}}); !errors.Is(err, authz.ErrHeapLimit) {
			t.Fatalf("the sized evaluation: %v, want stopped", err)
		}
		for i := range 5 {
			d, err := e.Decide(t.Context(), authz.Request{Action: authz.Action{Name: "x"}, Resource: map[string]any{"url": slow.URL}})
			if err != nil || !d.Allow {
				t.Errorf("evaluation %d waiting 30 ms after the stop: %+v, %v; want it allowed", i, d, err)
			}
		}
		if n := e.Status().HeapStops; n != 1 {
			t.Errorf("%d heap stops, want the one", n)
		}
	})
	t.Run("after concurrent stops", func(t *testing.T) {
		// Eight at once: those stopped while another collects are
		// collected for too, and the reading is fresh once all are gone.
		slow := slowServer(t)
		e := heapLimited(t, sized+send)
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				if _, err := e.Decide(t.Context(), authz.Request{Action: authz.Action{Name: "x"}, Resource: map[string]any{"n": 20_000_000}}); !errors.Is(err, authz.ErrHeapLimit) {
					t.Errorf("a sized evaluation: %v, want stopped", err)
				}
			})
		}
		wg.Wait()
		for i := range 3 {
			d, err := e.Decide(t.Context(), authz.Request{Action: authz.Action{Name: "x"}, Resource: map[string]any{"url": slow.URL}})
			if err != nil || !d.Allow {
				t.Errorf("evaluation %d waiting 30 ms after the stops: %+v, %v; want it allowed", i, d, err)
			}
		}
	})
	t.Run("past the limit at rest", func(t *testing.T) {
		// A limit under what the process holds anyway stops every long
		// evaluation: said in the log, once a minute.
		slow := slowServer(t)
		var logs authztest.SyncBuffer
		e := newEngine(t, authz.Options{EvalTimeout: time.Minute, EvalHeapLimit: 1, DecisionCacheSize: -1,
			Logger: slog.New(slog.NewTextHandler(&logs, nil))},
			authztest.Policy(t, "send", "package authz\n"+send))
		for range 2 {
			if d, err := e.Decide(t.Context(), authz.Request{Action: authz.Action{Name: "x"}, Resource: map[string]any{"url": slow.URL}}); !errors.Is(err, authz.ErrHeapLimit) {
				t.Fatalf("a long evaluation with the heap past the limit: %v, want stopped (%v)", err, d)
			}
		}
		if n := strings.Count(logs.String(), `msg="live heap past limits.eval_heap_limit once collected" `); n != 1 { // the README's message, whole
			t.Errorf("%d warnings, want one for two stops within a minute:\n%s", n, logs.String())
		}
	})
	t.Run("waiting", func(t *testing.T) {
		slow := slowServer(t)
		e := heapLimited(t, "package authz\n"+send)
		d, err := e.Decide(t.Context(), authz.Request{Action: authz.Action{Name: "x"}, Resource: map[string]any{"url": slow.URL}})
		if err != nil || !d.Allow {
			t.Fatalf("an evaluation waiting 30 ms on http.send: %+v, %v; want it allowed", d, err)
		}
		if n := e.Status().HeapStops; n != 0 {
			t.Errorf("%d heap stops counted for an evaluation that held nothing, want 0", n)
		}
	})
}

// send is a rule that allows when input.resource.url answers 200.
const send = "\nallow if http.send({\"method\": \"GET\", \"url\": input.resource.url}).status_code == 200\n"

// slowServer answers every request after 30 ms: an evaluation that waits
// on it runs long and holds nothing.
func slowServer(t *testing.T) *httptest.Server {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(30 * time.Millisecond)
	}))
	t.Cleanup(slow.Close)
	return slow
}

// heapLimited is an engine serving policy whose heap limit is 64 MiB past
// what the process holds now.
func heapLimited(t *testing.T, policy string) *authz.Engine {
	runtime.GC()
	return newEngine(t, authz.Options{EvalTimeout: time.Minute, EvalHeapLimit: liveHeap() + 64<<20, DecisionCacheSize: -1},
		authztest.Policy(t, "heap", policy))
}
