package plan_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/topdown/builtins"
	"github.com/open-policy-agent/opa/v1/topdown/print"

	"github.com/verdict-pdp/verdict/authz/internal/plan"
)

type printLines []string

func (p *printLines) Print(pc print.Context, msg string) error {
	loc := ""
	if pc.Location != nil {
		loc = pc.Location.String()
	}
	*p = append(*p, loc+" "+msg)
	return nil
}

// TestPrint checks that print() reaches the hook as it does with topdown:
// the same messages, at the same locations, undefined operands shown as
// <undefined>.
func TestPrint(t *testing.T) {
	ps := inlineSet(t, `package authz

default allow := false

allow if {
	print("allow? action", input.action.name)
	input.action.name == "a"
}

reasons contains r if {
	some r in input.subject.claims.roles
	print("role", r, "missing", input.resource.nope)
}
`)
	ev := ps.prepare(t, decisionQuery)
	input := ast.MustParseTerm(`{"action": {"name": "a"}, "subject": {"claims": {"roles": ["x", "y"]}}}`).Value
	var want, got printLines
	if _, err := ev.topdown.Eval(t.Context(), rego.EvalParsedInput(input), rego.EvalPrintHook(&want)); err != nil {
		t.Fatal(err)
	}
	if _, err := ev.compiled.Eval(t.Context(), input, plan.EvalOptions{PrintHook: &got, StrictBuiltinErrors: true}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(want, got) || len(got) != 3 {
		t.Fatalf("printed:\ntopdown:  %q\ncompiled: %q", want, got)
	}
	// Without a hook, print does nothing.
	if _, err := ev.compiled.Eval(t.Context(), input, plan.EvalOptions{}); err != nil {
		t.Fatal(err)
	}
}

// slowSet is a policy whose evaluation takes seconds: a cross product of
// a large base document with itself.
func slowSet(t *testing.T) *plan.Query {
	t.Helper()
	ps := inlineSet(t, `package authz

allow if count([1 | some x in data.big; some y in data.big; x != y]) > 0
`)
	big := make([]any, 4000)
	for i := range big {
		big[i] = i
	}
	ps.data = ast.MustInterfaceToValue(map[string]any{"big": big})
	pl, err := plan.Prepare(t.Context(), plan.Options{Compiler: ps.compiler, Query: ast.MustParseBody(decisionQuery), Data: ps.data})
	if err != nil {
		t.Fatal(err)
	}
	return pl
}

// TestCancel checks that an evaluation stops soon after its context ends,
// or its topdown.Cancel is cancelled, with topdown's cancellation error,
// which is not a refusal: the caller must not start over with topdown.
func TestCancel(t *testing.T) {
	pl := slowSet(t)
	check := func(t *testing.T, err error, took time.Duration) {
		t.Helper()
		var te *topdown.Error
		if !errors.As(err, &te) || te.Code != topdown.CancelErr {
			t.Fatalf("want a %s error, got %v", topdown.CancelErr, err)
		}
		if errors.Is(err, plan.ErrUnsupported) {
			t.Fatal("a cancellation must not ask for topdown")
		}
		if took > 2*time.Second {
			t.Fatalf("took %v to stop", took)
		}
	}
	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := pl.Eval(ctx, ast.NewObject(), plan.EvalOptions{})
		check(t, err, time.Since(start))
	})
	t.Run("cancel", func(t *testing.T) {
		c := topdown.NewCancel()
		time.AfterFunc(20*time.Millisecond, c.Cancel)
		start := time.Now()
		_, err := pl.Eval(t.Context(), ast.NewObject(), plan.EvalOptions{Cancel: c})
		check(t, err, time.Since(start))
	})
	t.Run("already done", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_, err := pl.Eval(ctx, ast.NewObject(), plan.EvalOptions{})
		check(t, err, 0)
	})
}

// TestStrictBuiltinErrors checks both modes: an error makes the call
// undefined, or fails the evaluation (asking for topdown's verdict, with
// topdown's error inside).
func TestStrictBuiltinErrors(t *testing.T) {
	ps := inlineSet(t, `package authz

default allow := false

allow if upper(input.action.properties.x) == "A"
`)
	ev := ps.prepare(t, decisionQuery)
	input := ast.MustParseTerm(`{"action": {"properties": {"x": 1}}}`).Value
	rs, err := ev.compiled.Eval(t.Context(), input, plan.EvalOptions{})
	if err != nil || len(rs) != 1 || !rs[0].Get(ast.InternedTerm("decision")).Value.(ast.Object).Get(ast.InternedTerm("allow")).Equal(ast.InternedTerm(false)) {
		t.Fatalf("lenient: %v, %v", rs, err)
	}
	_, err = ev.compiled.Eval(t.Context(), input, plan.EvalOptions{StrictBuiltinErrors: true})
	var te *topdown.Error
	if !errors.Is(err, plan.ErrUnsupported) || !errors.As(err, &te) || te.Code != topdown.TypeErr {
		t.Fatalf("strict: want a type error that asks for topdown, got %v", err)
	}
}

// TestNondeterministicBuiltins checks that a non-deterministic built-in is
// called once per evaluation for the same arguments, as with topdown, and
// that the NDBuiltinCache records its values.
func TestNondeterministicBuiltins(t *testing.T) {
	ps := inlineSet(t, `package authz

a := rand.intn("k", 1000000)

b := rand.intn("k", 1000000)

allow := a == b

reasons := {sprintf("%d", [time.now_ns()])}
`)
	ev := ps.prepare(t, decisionQuery)
	nd := builtins.NDBCache{}
	now := time.Unix(1700000000, 5)
	rs, err := ev.compiled.Eval(t.Context(), nil, plan.EvalOptions{Time: now, NDBuiltinCache: nd})
	if err != nil || len(rs) != 1 {
		t.Fatalf("%v, %v", rs, err)
	}
	d := rs[0].Get(ast.InternedTerm("decision")).Value.(ast.Object)
	if !d.Get(ast.InternedTerm("allow")).Equal(ast.InternedTerm(true)) {
		t.Fatalf("rand.intn gave two values in one evaluation: %v", d)
	}
	if got := d.Get(ast.InternedTerm("reasons")).String(); got != `{"1700000000000000005"}` {
		t.Fatalf("time.now_ns: %s", got)
	}
	if _, ok := nd["rand.intn"]; !ok {
		t.Fatalf("NDBuiltinCache not filled: %v", nd)
	}
}

// TestResultsAreSolutions checks the result set of a query with several
// solutions and variables, against topdown's.
func TestResultsAreSolutions(t *testing.T) {
	ps := inlineSet(t, "package authz\n\nallow := true\n")
	ctx := t.Context()
	data := ast.MustInterfaceToValue(map[string]any{"xs": []any{1, 2, 2, 3}})
	query := ast.MustParseBody(`x = data.xs[i]; x > 1`)
	pl, err := plan.Prepare(ctx, plan.Options{Compiler: ps.compiler, Query: query, Data: data})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := pl.Eval(ctx, nil, plan.EvalOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := ast.NewSet()
	for _, r := range rs {
		// x > 1 is captured as ^term1 (always true); topdown's rego
		// reports it among the expressions, not the bindings.
		named, err := r.Filter(ast.MustParseTerm(`{"x": null, "i": null}`).Value.(ast.Object))
		if err != nil {
			t.Fatal(err)
		}
		got.Add(ast.NewTerm(named))
	}
	want := ast.NewSet()
	pq, err := rego.New(rego.ParsedQuery(query), rego.Compiler(ps.compiler), rego.Store(inmem.NewFromObject(map[string]any{"xs": []any{1, 2, 2, 3}}))).PrepareForEval(ctx)
	if err != nil {
		t.Fatal(err)
	}
	trs, err := pq.Eval(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range trs {
		want.Add(ast.NewTerm(ast.MustInterfaceToValue(r.Bindings)))
	}
	if got.Compare(want) != 0 || len(rs) != 3 {
		t.Fatalf("topdown %v, compiled %v", want, got)
	}
}
