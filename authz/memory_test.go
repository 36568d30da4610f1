package authz_test

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/authztest"
)

// TestShortOfMemoryStopsEvaluations: once Options.ShortOfMemory reports
// true, an evaluation running stops, on either evaluator, and is refused
// with MemoryDetail, as are evaluations started while it stays true: a
// policy that lets a request size numbers.range allocates no further. When
// it reports false again, the engine decides as before.
func TestShortOfMemoryStopsEvaluations(t *testing.T) {
	const policy = "package authz\n\nallow if count(numbers.range(1, input.resource.n)) == input.resource.n\n"
	for _, ev := range []authz.Evaluator{authz.EvaluatorTopdown, authz.EvaluatorCompiled} {
		t.Run(string(ev), func(t *testing.T) {
			// Armed, it says short after a thousand checks: well inside
			// the range of three million numbers, which takes seconds and
			// hundreds of megabytes to build when nothing stops it.
			var armed atomic.Bool
			var checks atomic.Int64
			short := func() bool { return armed.Load() && checks.Add(1) > 1000 }
			e := newEngine(t, authz.Options{Evaluator: ev, EvalTimeout: time.Minute, DecisionCacheBytes: -1, ShortOfMemory: short},
				authztest.Policy(t, "range", policy))
			decide := func(n int) (authz.Decision, error) {
				return e.Decide(t.Context(), authz.Request{Action: authz.Action{Name: "read"}, Resource: map[string]any{"n": n}})
			}
			stoppedForMemory := func(what string, err error) {
				t.Helper()
				var r *authz.Refusal
				if !errors.As(err, &r) || r.Detail != authz.MemoryDetail || !errors.Is(err, authz.ErrPolicy) {
					t.Fatalf("%s: %v, want a policy refusal saying %q", what, err, authz.MemoryDetail)
				}
			}
			if d, err := decide(1000); err != nil || !d.Allow {
				t.Fatalf("before: %v %v", d, err)
			}
			armed.Store(true)
			start := time.Now()
			_, err := decide(3_000_000)
			stoppedForMemory("a range of three million", err)
			if took := time.Since(start); took > 20*time.Second {
				t.Errorf("stopped after %v", took)
			}
			_, err = decide(1000)
			stoppedForMemory("an evaluation started while short", err)
			armed.Store(false)
			if d, err := decide(1001); err != nil || !d.Allow {
				t.Fatalf("after: %v %v", d, err)
			}
		})
	}
}
