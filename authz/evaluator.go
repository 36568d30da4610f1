package authz

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"

	"github.com/verdict-pdp/verdict/authz/internal/plan"
	"github.com/verdict-pdp/verdict/bundles"
)

// Evaluator chooses how policies are evaluated.
type Evaluator string

const (
	// EvaluatorAuto evaluates with the compiled evaluator every snapshot it
	// supports, and the rest with OPA's topdown. The default.
	EvaluatorAuto Evaluator = "auto"
	// EvaluatorCompiled insists on the compiled evaluator: a snapshot it
	// does not support fails to load.
	EvaluatorCompiled Evaluator = "compiled"
	// EvaluatorTopdown evaluates every snapshot with OPA's topdown.
	EvaluatorTopdown Evaluator = "topdown"
)

// ParseEvaluator reads an evaluator's name; "" means EvaluatorAuto.
func ParseEvaluator(name string) (Evaluator, error) {
	switch ev := Evaluator(name); ev {
	case "":
		return EvaluatorAuto, nil
	case EvaluatorAuto, EvaluatorCompiled, EvaluatorTopdown:
		return ev, nil
	}
	return "", fmt.Errorf("unknown evaluator %q (want auto, compiled or topdown)", name)
}

// decisionQuery binds the entry rule's decision for the compiled evaluator,
// which reads results by variable.
var (
	decisionQuery = ast.MustParseBody("decision = data." + entryPackage + ".decision")
	decisionVar   = ast.StringTerm("decision")
)

// preparePlan prepares the compiled evaluator's form of the decision query
// when ev allows it. With EvaluatorAuto, a snapshot the compiled evaluator
// does not support gets a nil plan and the reason in the note; with
// EvaluatorCompiled it is a CompileError. It must run before anything else
// uses c concurrently (plan.Prepare switches the compiler's mode while it
// plans).
func preparePlan(ctx context.Context, c *ast.Compiler, s *bundles.Snapshot, ev Evaluator) (*plan.Query, string, error) {
	if ev == EvaluatorTopdown {
		return nil, "topdown: configured", nil
	}
	start := time.Now()
	q, err := preparePlanRecovered(ctx, c, s)
	switch {
	case err == nil:
		return q, fmt.Sprintf("compiled (planned in %s)", time.Since(start).Round(10*time.Microsecond)), nil
	case ctx.Err() != nil:
		return nil, "", fmt.Errorf("%w: %w", ErrCompile, ctx.Err())
	case ev == EvaluatorCompiled:
		err = fmt.Errorf("policy evaluator is %q: %w", EvaluatorCompiled, err)
		return nil, "", &CompileError{Revision: s.Revision, Problems: problemsOf(err, ""), cause: err}
	}
	// Unsupported, or a planner error on a policy that compiled: topdown
	// serves it, and the note says why.
	return nil, "topdown: " + err.Error(), nil
}

// preparePlanRecovered prepares the plan, a panic anywhere in it being an
// error: a policy that loads must never take the process down through the
// compiled evaluator.
func preparePlanRecovered(ctx context.Context, c *ast.Compiler, s *bundles.Snapshot) (q *plan.Query, err error) {
	defer func() {
		if p := recover(); p != nil {
			q, err = nil, fmt.Errorf("compiled evaluation: preparing the plan panicked: %v", p)
		}
	}()
	data, err := ast.InterfaceToValue(s.Data)
	if err != nil {
		return nil, fmt.Errorf("compiled evaluation: data: %w", err)
	}
	return plan.Prepare(ctx, plan.Options{Compiler: c, Query: decisionQuery, Data: data})
}

// evaluatePlan evaluates input with the snapshot's compiled plan. It
// returns the decision object, or handled false when the compiled
// evaluator leaves this input to topdown: an error other than the caller's
// cancellation (see plan.Query.Eval), or its half of the evaluation time
// running out (it evaluates every body of a rule where topdown stops at
// the first value, so a policy that iterates much can take it far longer;
// topdown then gets the rest). The caller's cancellation is a refusal.
//
// The compiled evaluator's time is kept by a timer on its topdown.Cancel
// (which built-in functions watch too) rather than by a context of its
// own: one timer instead of two contexts per evaluation.
//
// A panic in the compiled evaluator is a fault of its own: it is logged and
// the input left to topdown, so that no input can take the process down
// through it.
func (e *Engine) evaluatePlan(ctx context.Context, q *plan.Query, input ast.Value, now time.Time) (result ast.Object, handled bool, err error) {
	stop := topdown.NewCancel()
	timer := time.AfterFunc(e.evalTimeout/2, stop.Cancel)
	defer timer.Stop()
	defer context.AfterFunc(ctx, stop.Cancel)()
	defer func() {
		if p := recover(); p != nil {
			e.fallbacks.Add(1)
			e.log.LogAttrs(ctx, slog.LevelError, "compiled evaluator panicked; evaluating with topdown",
				slog.String("panic", fmt.Sprint(p)), slog.String("stack", string(debug.Stack())))
			result, handled, err = nil, false, nil
		}
	}()
	heap := watchHeap(e.heapLimit, stop)
	defer heap.end()
	rs, err := q.Eval(ctx, input, plan.EvalOptions{
		Time:                now,
		StrictBuiltinErrors: true,
		PrintHook:           e.print,
		Cancel:              stop,
	})
	if heap.end() && ctx.Err() == nil { // else the caller's cancellation, below
		return nil, true, e.heapStopped()
	}
	if err != nil {
		if r := cutShort(ctx, err); r != nil {
			return nil, true, r
		}
		e.fallbacks.Add(1)
		return nil, false, nil
	}
	if stop.Cancelled() {
		// An answer after the time ran out: a built-in function that does
		// not watch cancellation (graph.reachable_paths, json.patch) ran
		// past it, and the plan looks at the flag only now and then. It is
		// not taken: the caller's cancellation is final, and otherwise
		// topdown has what is left of the time, as for any other overrun.
		if ctx.Err() != nil {
			return nil, true, &Refusal{Category: ErrPolicy, Detail: InterruptedDetail, Cause: ctx.Err()}
		}
		e.fallbacks.Add(1)
		return nil, false, nil
	}
	if len(rs) == 0 {
		return nil, true, nil
	}
	if t := rs[0].Get(decisionVar); t != nil {
		result, _ = t.Value.(ast.Object)
	}
	return result, true, nil
}
