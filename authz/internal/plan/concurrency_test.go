package plan_test

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/verdict-pdp/verdict/authz/internal/plan"
)

// TestConcurrentEval evaluates one plan from many goroutines at once, on
// different inputs, and checks every answer against the one the same
// input got alone: evaluations share the plan, its constants and the base
// document, and must not see each other. Run it with -race.
func TestConcurrentEval(t *testing.T) {
	now := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	for _, ps := range policySets(t) {
		t.Run(ps.name, func(t *testing.T) {
			ev := ps.prepare(t, decisionQuery)
			rnd := rand.New(rand.NewPCG(7, 8))
			inputs := make([]ast.Value, 64)
			want := make([]string, len(inputs))
			for i := range inputs {
				b := make([]byte, 20+rnd.IntN(150))
				for j := range b {
					b[j] = byte(rnd.Uint32())
				}
				inputs[i] = fuzzInput(b)
				want[i] = evalString(ev.compiled, inputs[i], now)
			}
			var wg sync.WaitGroup
			for g := range 8 {
				wg.Go(func() {
					for k := range 200 {
						i := (g*31 + k*7) % len(inputs)
						if got := evalString(ev.compiled, inputs[i], now); got != want[i] {
							t.Errorf("input %d: alone %s, concurrently %s", i, want[i], got)
							return
						}
					}
				})
			}
			wg.Wait()
		})
	}
}

func evalString(p *plan.Query, input ast.Value, now time.Time) string {
	rs, err := p.Eval(context.Background(), input, plan.EvalOptions{Time: now, StrictBuiltinErrors: true})
	if err != nil {
		return "error: " + err.Error()
	}
	out := ""
	for _, r := range rs {
		out += r.String()
	}
	return out
}
