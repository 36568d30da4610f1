package plan_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"testing"
	"testing/fstest"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/internal/plan"
	"github.com/verdict-pdp/verdict/bundles"
	"github.com/verdict-pdp/verdict/policies"
)

// policySet is a policy snapshot compiled as the engine compiles it (with
// its entry module and the input schema), test modules included, with the
// base document ready for both evaluators.
type policySet struct {
	name     string
	snapshot *bundles.Snapshot
	compiler *ast.Compiler
	data     ast.Value
}

// decisionQuery is the engine's query; the compiled evaluator binds it to a
// variable to read it by name.
const decisionQuery = "decision = data.verdict_entrypoint.decision"

func loadPolicySet(t testing.TB, name string, fsys fs.FS, entrypoint string) *policySet {
	t.Helper()
	s, err := bundles.ReadFS(fsys, bundles.ReadOptions{Origin: name})
	if err != nil {
		t.Fatal(err)
	}
	c, err := authz.Compile(s, authz.CompileOptions{Entrypoint: entrypoint, IncludeTests: true})
	if err != nil {
		t.Fatal(err)
	}
	data, err := ast.InterfaceToValue(s.Data)
	if err != nil {
		t.Fatal(err)
	}
	return &policySet{name: name, snapshot: s, compiler: c, data: data}
}

// policySets are the policies the evaluators are compared on: the default
// set, the example that ships with it, and the policies under
// testdata/policies.
func policySets(t testing.TB) []*policySet {
	t.Helper()
	sets := []*policySet{
		loadPolicySet(t, "default", policies.FS(), "authz"),
		loadPolicySet(t, "authzen-todo", os.DirFS("../../../policies/examples/authzen-todo"), "todo"),
	}
	entries, err := os.ReadDir("testdata/policies")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			sets = append(sets, loadPolicySet(t, e.Name(), os.DirFS("testdata/policies/"+e.Name()), "authz"))
		}
	}
	return sets
}

// inlineSet compiles one module as package authz.
func inlineSet(t testing.TB, module string) *policySet {
	t.Helper()
	return loadPolicySet(t, "inline", fstest.MapFS{"authz/policy.rego": {Data: []byte(module)}}, "authz")
}

// evaluators holds one query prepared for both evaluators, with the
// engine's options: strict built-in errors, print statements kept.
type evaluators struct {
	topdown  rego.PreparedEvalQuery
	compiled *plan.Query
}

// prepareTopdown prepares query on c for topdown as the engine prepares
// it (authz's prepare): data in a store that hands out OPA values, strict
// built-in errors, print statements kept.
func prepareTopdown(ctx context.Context, c *ast.Compiler, query ast.Body, data map[string]any) (rego.PreparedEvalQuery, error) {
	return rego.New(
		rego.ParsedQuery(query),
		rego.Compiler(c),
		rego.Store(inmem.NewFromObjectWithOpts(data, inmem.OptRoundTripOnWrite(false), inmem.OptReturnASTValuesOnRead(true))),
		rego.StrictBuiltinErrors(true),
		rego.EnablePrintStatements(true),
	).PrepareForEval(ctx)
}

// keepTerms has topdown return its results as OPA terms, as the engine
// reads them, instead of converting them to Go values.
var keepTerms = rego.EvalGenerateJSON(func(t *ast.Term, _ *rego.EvalContext) (any, error) { return t, nil })

// evalTopdown evaluates pq as the engine's evaluate calls topdown: a
// timeout (benchTimeout) tied to a topdown.Cancel, the clock at now, no
// metrics, the results read as terms.
func evalTopdown(ctx context.Context, pq rego.PreparedEvalQuery, input ast.Value, now time.Time) (rego.ResultSet, error) {
	ctx, cancel := context.WithTimeout(ctx, benchTimeout)
	defer cancel()
	c := topdown.NewCancel()
	defer context.AfterFunc(ctx, c.Cancel)()
	return pq.Eval(ctx, rego.EvalParsedInput(input), rego.EvalTime(now),
		rego.EvalExternalCancel(c), rego.EvalMetrics(metrics.NoOp()), keepTerms)
}

// evalCompiled evaluates pl as the engine calls the compiled evaluator,
// which watches the context itself: a timeout (benchTimeout), the clock at
// now, strict built-in errors.
func evalCompiled(ctx context.Context, pl *plan.Query, input ast.Value, now time.Time) (plan.ResultSet, error) {
	ctx, cancel := context.WithTimeout(ctx, benchTimeout)
	defer cancel()
	return pl.Eval(ctx, input, plan.EvalOptions{Time: now, StrictBuiltinErrors: true})
}

// onlyResult is the one result of an evaluation: ok is false when there
// is none (the query is undefined), and more than one is an error.
func onlyResult[R any](rs []R, err error) (r R, ok bool, _ error) {
	switch {
	case err != nil:
		return r, false, err
	case len(rs) == 0:
		return r, false, nil
	case len(rs) > 1:
		return r, false, fmt.Errorf("%d results, want one", len(rs))
	}
	return rs[0], true, nil
}

func (ps *policySet) prepare(t testing.TB, query string) *evaluators {
	t.Helper()
	ctx := context.Background()
	body := ast.MustParseBody(query)
	pq, err := prepareTopdown(ctx, ps.compiler, body, ps.snapshot.Data)
	if err != nil {
		t.Fatalf("%s: topdown: %v", ps.name, err)
	}
	pl, err := plan.Prepare(ctx, plan.Options{Compiler: ps.compiler, Query: body, Data: ps.data})
	if err != nil {
		t.Fatalf("%s: compiled: %v", ps.name, err)
	}
	return &evaluators{topdown: pq, compiled: pl}
}

// outcome is what an evaluation came to: the value of the query's one
// variable (nil when undefined), or the code of its error.
type outcome struct {
	value   *ast.Term
	err     string
	refused string // the compiled evaluator's reason to leave it to topdown
	differs bool   // it erred where topdown did not (or otherwise)
}

func (o outcome) String() string {
	if o.err != "" {
		return "error " + o.err
	}
	if o.value == nil {
		return "undefined"
	}
	return o.value.String()
}

func (o outcome) equal(other outcome) bool {
	if o.err != "" || other.err != "" {
		return o.err == other.err
	}
	if o.value == nil || other.value == nil {
		return o.value == nil && other.value == nil
	}
	return o.value.Value.Compare(other.value.Value) == 0
}

// evalBoth evaluates the prepared query, whose only variable is name, with
// both evaluators the way the engine does.
func (ev *evaluators) evalBoth(t testing.TB, name string, input ast.Value, now time.Time) (want, got outcome) {
	t.Helper()
	ctx := context.Background()
	opts := []rego.EvalOption{
		rego.EvalTime(now),
		rego.EvalMetrics(metrics.NoOp()),
		keepTerms,
	}
	if input != nil {
		opts = append(opts, rego.EvalParsedInput(input))
	}
	rs, err := ev.topdown.Eval(ctx, opts...)
	switch {
	case err != nil:
		want.err = codeOf(err)
	case len(rs) > 1:
		t.Fatalf("topdown: %d results", len(rs))
	case len(rs) == 1:
		want.value, _ = rs[0].Bindings[name].(*ast.Term)
	}
	res, err := ev.compiled.Eval(ctx, input, plan.EvalOptions{Time: now, StrictBuiltinErrors: true})
	switch {
	case errors.Is(err, plan.ErrUnsupported):
		// The engine evaluates this one with topdown. An evaluation error
		// is still checked against topdown's, so that the fallback stays
		// the exception.
		var te *topdown.Error
		if errors.As(err, &te) {
			got.err = te.Code
			if want.err != got.err {
				got.differs = true
			}
		}
		got.value, got.err, got.refused = want.value, want.err, err.Error()
	case err != nil:
		got.err = codeOf(err)
	case len(res) > 1:
		t.Fatalf("compiled: %d results", len(res))
	case len(res) == 1:
		got.value = res[0].Get(ast.InternedTerm(name))
	}
	return want, got
}

func codeOf(err error) string {
	var te *topdown.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return "other: " + err.Error()
}
