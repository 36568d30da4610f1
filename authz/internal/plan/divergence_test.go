package plan_test

import (
	"context"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"github.com/verdict-pdp/verdict/authz/internal/plan"
)

// compareQuery compares both evaluators on src with query (whose one
// variable is x) over inputs, strict and not, with a plain store and with
// the engine's. It reports every divergence: a compiled answer (not a
// refusal) that differs from topdown's, also in how it is written. The
// tests below are divergences found by review; the compiled evaluator now
// refuses each, so topdown answers.
func compareQuery(t *testing.T, src, query string, inputs ...string) {
	t.Helper()
	c, err := ast.CompileModulesWithOpt(map[string]string{"p.rego": src}, ast.CompileOpts{
		ParserOptions:         ast.ParserOptions{RegoVersion: ast.RegoV1},
		EnablePrintStatements: true,
	})
	if err != nil {
		t.Fatalf("compile: %v\n%s", err, src)
	}
	ctx := context.Background()
	q := ast.MustParseBody(query)
	data := ast.MustInterfaceToValue(policyData)
	pl, err := plan.Prepare(ctx, plan.Options{Compiler: c, Query: q, Data: data})
	if err != nil {
		t.Logf("prepare refused: %v", err)
		return
	}
	if len(inputs) == 0 {
		inputs = policyInputs
	}
	for mode := range 4 {
		strict := mode%2 == 0
		store := inmem.NewFromObject(policyData)
		if mode >= 2 { // the engine's store
			store = inmem.NewFromObjectWithOpts(policyData, inmem.OptRoundTripOnWrite(false), inmem.OptReturnASTValuesOnRead(true))
		}
		pq, err := rego.New(
			rego.ParsedQuery(q),
			rego.Compiler(c),
			rego.Store(store),
			rego.StrictBuiltinErrors(strict),
		).PrepareForEval(ctx)
		if err != nil {
			t.Fatalf("topdown prepare: %v\n%s", err, src)
		}
		now := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
		for _, in := range inputs {
			var input ast.Value
			opts := []rego.EvalOption{rego.EvalTime(now), rego.EvalMetrics(metrics.NoOp()),
				rego.EvalGenerateJSON(func(t *ast.Term, _ *rego.EvalContext) (any, error) { return t, nil })}
			if in != "" {
				input = ast.MustParseTerm(in).Value
				opts = append(opts, rego.EvalParsedInput(input))
			}
			var want outcome
			rs, err := pq.Eval(ctx, opts...)
			switch {
			case err != nil:
				want.err = codeOf(err)
			case len(rs) == 1:
				want.value, _ = rs[0].Bindings["x"].(*ast.Term)
			case len(rs) > 1:
				t.Logf("topdown %d results", len(rs))
			}
			res, err := pl.Eval(ctx, input, plan.EvalOptions{Time: now, StrictBuiltinErrors: strict})
			if err != nil {
				if isRefusalErr(err) {
					if testing.Verbose() {
						t.Logf("mode=%d input %s: refused (%v); topdown %v", mode, in, err, want)
					}
					continue
				}
				t.Errorf("mode=%d input %s: compiled error %v (topdown: %v)\n%s", mode, in, err, want, src)
				continue
			}
			var got outcome
			if len(res) == 1 {
				got.value = res[0].Get(ast.InternedTerm("x"))
			}
			if testing.Verbose() {
				t.Logf("mode=%d input %s: %v", mode, in, got)
			}
			if !want.equal(got) || want.String() != got.String() {
				t.Errorf("mode=%d input %s query %s:\ntopdown:  %v\ncompiled: %v\n%s", mode, in, query, want, got, src)
			}
		}
	}
}

// TestDivergenceRefHeadNumberKey: a rule whose ref head has a number key
// (o[1] := ...) looked up with an equal number written differently (input
// {"a": 1.0}, as JSON can carry it). topdown finds the rule by the key's Go
// value in its rule tree (ast.TreeNode.Child, a map keyed by ast.Value),
// where Number("1.0") is not Number("1"): undefined. The compiled
// evaluator builds the object {1: true} (g0.data.p.o, ObjectInsertOnceStmt)
// and looks 1.0 up in it with a DotStmt (exec.go opDot, ast.Object.Get,
// which compares numbers by value): true. An allow where topdown denies.
// Also seen: o[1.0] := ... looked up with 1, deeper heads (h.a[1].b :=
// ..., data.p.o.a[input.a]), big numbers written two ways
// (100000000000000000001 and 1.00000000000000000001e20).
func TestDivergenceRefHeadNumberKey(t *testing.T) {
	src := `package p

o[1] := true

allow if o[input.a]
`
	compareQuery(t, src, "x = data.p.allow", `{"a": 1.0}`)
	compareQuery(t, src, "x = data.p.o[input.a]", `{"a": 1.0}`)
}

// TestDivergenceObjectComprehensionEqualValues: an object comprehension that
// gives one key two values equal as numbers but written differently (1 and
// 1.0, as JSON input can carry them). topdown (evalObjectComprehension)
// inserts every value, so the last one stays: {"a": 1.0}. The plan fills
// the object with ObjectInsertOnceStmt, and the compiled evaluator
// (exec.go, opObjectInsertOnce) keeps the first one when the values
// compare equal: {"a": 1}. Visible through anything that prints numbers:
// json.marshal, sprintf, concat of format_int... (partial object rules, on
// the other hand, keep the first value in topdown too, and agree).
func TestDivergenceObjectComprehensionEqualValues(t *testing.T) {
	src := `package p

allow if json.marshal({"a": v | some v in input.xs}) == "{\"a\":1}"
`
	compareQuery(t, src, "x = data.p.allow", `{"xs": [1, 1.0]}`)
}

// TestDivergenceIterationOrderBaseAndRules: iterating a document made of base
// data and rules. topdown (evalTree.enumerate) visits the base document's
// keys first, then the rules'; the plan (the planner's planRefData for a
// variable key) calls the rules first and then scans the base document
// for keys the rules did not give, and the compiled evaluator follows it.
// An array built in that order differs: here data.d holds base data
// (list, m, n, x) and package d a rule y.
func TestDivergenceIterationOrderBaseAndRules(t *testing.T) {
	src := `package d

y := 1
`
	compareQuery(t, src, "x = [k | some k, _ in data.d]", `{}`)
	// The same at the root, with base data d and a package p.
	compareQuery(t, "package p\n\ny := 1\n", "x = [k | some k, _ in data]", `{}`)
}
