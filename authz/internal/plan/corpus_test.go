package plan_test

// The corpus under testdata/corpus is a set of authorization policies
// written the way users write them (testdata/corpus/README.md): RBAC, ABAC,
// ReBAC, time windows, route tables, token claims, CIDR lists, Kubernetes
// admission and more, each with its data and inputs. TestCorpus checks that
// both evaluators agree with each other and with the expected decisions;
// BenchmarkCorpus compares their speed on each policy:
//
//	go test -run '^$' -bench BenchmarkCorpus -benchmem -count 5 ./authz/internal/plan > corpus.txt
//	benchstat -col /evaluator corpus.txt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/util"

	"github.com/verdict-pdp/verdict/authz/internal/plan"
)

const corpusDir = "testdata/corpus"

// corpusQuery is the query every corpus policy answers.
const corpusQuery = "decision = data.corpus.decision"

var corpusDecisionKey = ast.InternedTerm("decision")

// corpusTime is the evaluation clock: the policies read the time from
// their input, never from the clock, so that their decisions are fixed.
var corpusTime = time.Date(2026, 3, 2, 9, 30, 0, 0, time.UTC)

// corpusInput is one request of an inputs.json file and the decision the
// policy should make.
type corpusInput struct {
	Name  string `json:"name"`
	Input any    `json:"input"`
	Want  any    `json:"want"`

	input ast.Value
	want  ast.Value
}

// corpusPolicy is one directory of the corpus, compiled and prepared for
// both evaluators with the engine's options.
type corpusPolicy struct {
	name     string
	source   string
	inputs   []corpusInput
	topdown  rego.PreparedEvalQuery
	compiled *plan.Query
}

// loadCorpus reads and compiles every policy of the corpus. A policy the
// compiled evaluator refuses to prepare is a failure: the corpus is meant
// to be evaluated by it.
func loadCorpus(tb testing.TB) []*corpusPolicy {
	tb.Helper()
	entries, err := os.ReadDir(corpusDir)
	if err != nil {
		tb.Fatal(err)
	}
	var out []*corpusPolicy
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, loadCorpusPolicy(tb, e.Name()))
		}
	}
	if len(out) == 0 {
		tb.Fatal("empty corpus")
	}
	return out
}

func loadCorpusPolicy(tb testing.TB, name string) *corpusPolicy {
	tb.Helper()
	ctx := context.Background()
	dir := path.Join(corpusDir, name)
	read := func(file string) []byte {
		b, err := os.ReadFile(path.Join(dir, file))
		if err != nil {
			tb.Fatal(err)
		}
		return b
	}
	src := read("policy.rego")
	module, err := ast.ParseModuleWithOpts(name+"/policy.rego", string(src), ast.ParserOptions{RegoVersion: ast.RegoV1})
	if err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	c := ast.NewCompiler().WithEnablePrintStatements(true)
	if c.Compile(map[string]*ast.Module{name + "/policy.rego": module}); c.Failed() {
		tb.Fatalf("%s: %v", name, c.Errors)
	}

	var data map[string]any
	if err := util.UnmarshalJSON(read("data.json"), &data); err != nil {
		tb.Fatalf("%s: data.json: %v", name, err)
	}
	dataValue, err := ast.InterfaceToValue(data)
	if err != nil {
		tb.Fatal(err)
	}
	var inputs []corpusInput
	dec := json.NewDecoder(bytes.NewReader(read("inputs.json")))
	dec.UseNumber()
	if err := dec.Decode(&inputs); err != nil {
		tb.Fatalf("%s: inputs.json: %v", name, err)
	}
	if len(inputs) == 0 {
		tb.Fatalf("%s: no inputs", name)
	}
	for i := range inputs {
		in := &inputs[i]
		if in.input, err = ast.InterfaceToValue(in.Input); err != nil {
			tb.Fatalf("%s/%s: input: %v", name, in.Name, err)
		}
		if in.want, err = ast.InterfaceToValue(in.Want); err != nil {
			tb.Fatalf("%s/%s: want: %v", name, in.Name, err)
		}
	}

	body := ast.MustParseBody(corpusQuery)
	pq, err := prepareTopdown(ctx, c, body, data)
	if err != nil {
		tb.Fatalf("%s: topdown: %v", name, err)
	}
	pl, err := plan.Prepare(ctx, plan.Options{Compiler: c, Query: body, Data: dataValue})
	if err != nil {
		if errors.Is(err, plan.ErrUnsupported) {
			tb.Fatalf("%s: the compiled evaluator refuses the policy: %v", name, err)
		}
		tb.Fatalf("%s: compiled: %v", name, err)
	}
	return &corpusPolicy{name: name, source: string(src), inputs: inputs, topdown: pq, compiled: pl}
}

// evalTopdown evaluates the decision with topdown as the engine calls it.
// It returns nil when the decision is undefined.
func (p *corpusPolicy) evalTopdown(ctx context.Context, input ast.Value) (*ast.Term, error) {
	r, ok, err := onlyResult(evalTopdown(ctx, p.topdown, input, corpusTime))
	if !ok {
		return nil, err
	}
	t, _ := r.Bindings["decision"].(*ast.Term)
	return t, nil
}

// evalCompiled evaluates the decision with the compiled evaluator as the
// engine calls it. It returns nil when the decision is undefined.
func (p *corpusPolicy) evalCompiled(ctx context.Context, input ast.Value) (*ast.Term, error) {
	r, ok, err := onlyResult(evalCompiled(ctx, p.compiled, input, corpusTime))
	if !ok {
		return nil, err
	}
	return r.Get(corpusDecisionKey), nil
}

// asJSON is a decision as inputs.json writes it: sets become arrays (in
// OPA's order of their elements), undefined becomes null.
func asJSON(t *ast.Term) (ast.Value, error) {
	if t == nil {
		return ast.NullValue, nil
	}
	v, err := ast.JSON(t.Value)
	if err != nil {
		return nil, err
	}
	return ast.InterfaceToValue(v)
}

func showTerm(t *ast.Term, err error) string {
	switch {
	case err != nil:
		return "error: " + err.Error()
	case t == nil:
		return "undefined"
	}
	return t.String()
}

// TestCorpus evaluates every input of every corpus policy with both
// evaluators: they must give the same decision, the one inputs.json
// expects, and the compiled evaluator must not leave any of them to
// topdown.
func TestCorpus(t *testing.T) {
	ctx := context.Background()
	policies := loadCorpus(t)
	if len(policies) < 12 {
		t.Errorf("corpus has %d policies, want at least 12", len(policies))
	}
	for _, p := range policies {
		t.Run(p.name, func(t *testing.T) {
			allows, denies := 0, 0
			for _, in := range p.inputs {
				want, werr := p.evalTopdown(ctx, in.input)
				got, gerr := p.evalCompiled(ctx, in.input)
				report := func(format string, args ...any) {
					t.Helper()
					t.Errorf("policy %s, input %q: "+format+"\ninput:    %v\nexpected: %v\ntopdown:  %s\ncompiled: %s\npolicy:\n%s",
						append(append([]any{p.name, in.Name}, args...), in.input, in.want, showTerm(want, werr), showTerm(got, gerr), p.source)...)
				}
				switch {
				case werr != nil:
					report("topdown failed")
					continue
				case errors.Is(gerr, plan.ErrUnsupported):
					report("the compiled evaluator left the input to topdown")
					continue
				case gerr != nil:
					report("compiled evaluator failed")
					continue
				case (want == nil) != (got == nil) || want != nil && want.Value.Compare(got.Value) != 0:
					report("the evaluators disagree")
					continue
				}
				j, err := asJSON(got)
				if err != nil {
					t.Fatal(err)
				}
				if j.Compare(in.want) != 0 {
					report("not the expected decision")
				}
				if corpusAllows(in.want) {
					allows++
				} else {
					denies++
				}
			}
			if allows == 0 || denies == 0 {
				t.Errorf("policy %s: %d inputs allowed and %d denied, want both", p.name, allows, denies)
			}
		})
	}
}

// corpusAllows reports whether a decision allows: true, or an object whose
// "allow" is true.
func corpusAllows(v ast.Value) bool {
	if v.Compare(ast.Boolean(true)) == 0 {
		return true
	}
	if o, ok := v.(ast.Object); ok {
		if a := o.Get(ast.InternedTerm("allow")); a != nil {
			return a.Value.Compare(ast.Boolean(true)) == 0
		}
	}
	return false
}

// BenchmarkCorpus evaluates each corpus policy on its first allowed input
// with both evaluators, as BenchmarkEval does. The sub-benchmarks are named
// policy=<name>/evaluator=<topdown|compiled>, so that benchstat -col
// /evaluator sets the evaluators side by side with a geometric mean.
func BenchmarkCorpus(b *testing.B) {
	ctx := context.Background()
	for _, p := range loadCorpus(b) {
		in := p.inputs[0]
		for _, c := range p.inputs {
			if corpusAllows(c.want) {
				in = c
				break
			}
		}
		want, err := p.evalTopdown(ctx, in.input)
		if err != nil {
			b.Fatalf("%s/%s: topdown: %v", p.name, in.Name, err)
		}
		got, err := p.evalCompiled(ctx, in.input)
		if err != nil {
			b.Fatalf("%s/%s: compiled: %v", p.name, in.Name, err)
		}
		if want == nil || got == nil || want.Value.Compare(got.Value) != 0 {
			b.Fatalf("%s/%s: topdown %v, compiled %v", p.name, in.Name, want, got)
		}
		b.Run("policy="+p.name+"/evaluator=topdown", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.evalTopdown(ctx, in.input); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("policy="+p.name+"/evaluator=compiled", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.evalCompiled(ctx, in.input); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestCorpusMutations compares the evaluators on variants of the corpus
// inputs that the policies were not written for: each member of each
// object removed, and each scalar replaced by null, a number, a string or
// an empty array. The decisions have no expected value; the evaluators
// must agree, or the compiled one must leave the input to topdown (an
// evaluation error, which topdown must then meet too).
func TestCorpusMutations(t *testing.T) {
	ctx := context.Background()
	for _, p := range loadCorpus(t) {
		t.Run(p.name, func(t *testing.T) {
			n, refused := 0, 0
			for _, in := range p.inputs {
				for _, m := range mutations(in.input) {
					n++
					want, werr := p.evalTopdown(ctx, m)
					got, gerr := p.evalCompiled(ctx, m)
					switch {
					case errors.Is(gerr, plan.ErrUnsupported):
						refused++
						var te *topdown.Error
						if errors.As(gerr, &te) && (werr == nil || codeOf(werr) != te.Code) {
							t.Errorf("policy %s, input %q mutated to %v: compiled failed where topdown did not\ntopdown:  %s\ncompiled: %s",
								p.name, in.Name, m, showTerm(want, werr), showTerm(got, gerr))
						}
					case werr != nil || gerr != nil:
						if werr == nil || gerr == nil || codeOf(werr) != codeOf(gerr) {
							t.Errorf("policy %s, input %q mutated to %v:\ntopdown:  %s\ncompiled: %s",
								p.name, in.Name, m, showTerm(want, werr), showTerm(got, gerr))
						}
					case (want == nil) != (got == nil) || want != nil && want.Value.Compare(got.Value) != 0:
						t.Errorf("policy %s, input %q mutated to %v: the evaluators disagree\ntopdown:  %s\ncompiled: %s",
							p.name, in.Name, m, showTerm(want, werr), showTerm(got, gerr))
					}
				}
			}
			t.Logf("%d mutated inputs, %d left to topdown", n, refused)
		})
	}
}

// mutations returns variants of v, each with one change.
func mutations(v ast.Value) []ast.Value {
	var out []ast.Value
	switch v := v.(type) {
	case ast.Object:
		for _, k := range v.Keys() {
			without := ast.NewObject()
			v.Foreach(func(k2, v2 *ast.Term) {
				if !k2.Equal(k) {
					without.Insert(k2, v2)
				}
			})
			out = append(out, without)
			for _, m := range mutations(v.Get(k).Value) {
				with := v.Copy()
				with.Insert(k, ast.NewTerm(m))
				out = append(out, with)
			}
		}
	case *ast.Array:
		for i := range v.Len() {
			for _, m := range mutations(v.Elem(i).Value) {
				with := v.Copy()
				with.Set(i, ast.NewTerm(m))
				out = append(out, with)
			}
		}
	default:
		for _, r := range []ast.Value{ast.NullValue, ast.Number("7"), ast.String("x"), ast.NewArray()} {
			if r.Compare(v) != 0 {
				out = append(out, r)
			}
		}
	}
	return out
}
