package plan_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"github.com/verdict-pdp/verdict/authz/internal/plan"
)

// FuzzPolicy builds a small policy from the fuzzer's bytes with a tiny
// grammar (complete, else, default, partial set and object rules, a
// function; comparisons, membership, iteration, negation, every,
// comprehensions and a few built-in functions over input, data and other
// rules; object literals whose keys may collide at evaluation, numbers
// written two ways, with on input, on data (read at, below and above its
// target) and on data beside rules, with replacing a function or a
// built-in function by a value; print), and evaluates the whole package
// with both evaluators on a few inputs. Policies that do not compile are
// skipped. Where the compiled evaluator answers, it must give topdown's
// answer.
//
//	go test -run '^$' -fuzz FuzzPolicy ./authz/internal/plan
func FuzzPolicy(f *testing.F) {
	rnd := rand.New(rand.NewPCG(3, 4))
	for range 64 {
		b := make([]byte, 64+rnd.IntN(192))
		for i := range b {
			b[i] = byte(rnd.Uint32())
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		src := (&policyGen{inputGen: inputGen{b: b}}).module()
		checkPolicy(t, src)
	})
}

// TestPolicySample runs FuzzPolicy's comparison on generated policies, so
// that plain `go test` covers it too.
func TestPolicySample(t *testing.T) {
	rnd := rand.New(rand.NewPCG(5, 6))
	compiled := 0
	for range 1500 {
		b := make([]byte, 64+rnd.IntN(192))
		for i := range b {
			b[i] = byte(rnd.Uint32())
		}
		src := (&policyGen{inputGen: inputGen{b: b}}).module()
		if checkPolicy(t, src) {
			compiled++
		}
	}
	t.Logf("%d of 1500 generated policies compiled and were compared", compiled)
	if compiled < 250 {
		t.Errorf("only %d generated policies compiled: the grammar needs a look", compiled)
	}
}

var policyData = map[string]any{
	"d": map[string]any{
		"x":    []any{"a", "b", 3},
		"m":    map[string]any{"a": 1, "b": "two", "3": []any{true}},
		"n":    7,
		"list": []any{map[string]any{"k": "a", "v": 1}, map[string]any{"k": "b", "v": "x"}},
	},
}

var policyInputs = []string{
	`{"a": "a", "b": [1, "b", null], "c": {"d": 3, "e": "x"}}`,
	`{"a": 3, "b": "b", "c": {"d": "3"}}`,
	`{"a": "b", "b": [], "c": {}}`,
	`{}`,
	`{"a": 1.0, "b": [1.0, "b"], "c": {"d": 3.0, "e": "x"}}`,
}

// checkPolicy compares the evaluators on src and reports whether src
// compiled.
func checkPolicy(t *testing.T, src string) bool {
	t.Helper()
	c, err := ast.CompileModulesWithOpt(map[string]string{"p.rego": src}, ast.CompileOpts{
		ParserOptions:         ast.ParserOptions{RegoVersion: ast.RegoV1},
		EnablePrintStatements: true,
	})
	if err != nil {
		return false
	}
	ctx := context.Background()
	query := ast.MustParseBody("x = data.p")
	data := ast.MustInterfaceToValue(policyData)
	pl, err := plan.Prepare(ctx, plan.Options{Compiler: c, Query: query, Data: data})
	if err != nil {
		if isRefusalErr(err) {
			return true
		}
		t.Fatalf("prepare: %v\n%s", err, src)
	}
	for _, strict := range []bool{true, false} {
		pq, err := rego.New(
			rego.ParsedQuery(query),
			rego.Compiler(c),
			rego.Store(inmem.NewFromObject(policyData)),
			rego.StrictBuiltinErrors(strict),
		).PrepareForEval(ctx)
		if err != nil {
			t.Fatalf("topdown prepare: %v\n%s", err, src)
		}
		now := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
		for _, in := range policyInputs {
			input := ast.MustParseTerm(in).Value
			var want outcome
			rs, err := pq.Eval(ctx, rego.EvalParsedInput(input), rego.EvalTime(now), rego.EvalMetrics(metrics.NoOp()),
				rego.EvalGenerateJSON(func(t *ast.Term, _ *rego.EvalContext) (any, error) { return t, nil }))
			switch {
			case err != nil:
				want.err = codeOf(err)
			case len(rs) == 1:
				want.value, _ = rs[0].Bindings["x"].(*ast.Term)
			}
			res, err := pl.Eval(ctx, input, plan.EvalOptions{Time: now, StrictBuiltinErrors: strict})
			if err != nil {
				if isRefusalErr(err) {
					continue // the engine asks topdown
				}
				t.Fatalf("strict=%v input %s: compiled error %v (topdown: %v)\n%s", strict, in, err, want, src)
			}
			var got outcome
			if len(res) == 1 {
				got.value = res[0].Get(ast.InternedTerm("x"))
			}
			if !want.equal(got) {
				t.Fatalf("strict=%v input %s:\ntopdown:  %v\ncompiled: %v\n%s", strict, in, want, got, src)
			}
		}
	}
	return true
}

// isRefusalErr is an error after which the engine evaluates with topdown.
func isRefusalErr(err error) bool { return errors.Is(err, plan.ErrUnsupported) }

// policyGen writes a module from bytes (see inputGen). A rule refers only
// to rules written before it, so that the module has no recursion.
type policyGen struct {
	inputGen
	vars  []string // bound in the body being written
	nvar  int
	rules []string // references to the rules written so far
	funcs []string // the functions written so far
}

func (g *policyGen) module() string {
	var sb strings.Builder
	sb.WriteString("package p\n\n")
	for i := range 1 + g.pick(6) {
		sb.WriteString(g.rule(i))
		sb.WriteString("\n")
	}
	return sb.String()
}

func (g *policyGen) rule(i int) string {
	g.vars, g.nvar = nil, 0
	switch g.pick(7) {
	case 0: // complete rule with else
		body := g.body()
		head := g.term(1)
		g.vars, g.nvar = nil, 0
		elseBody := g.body()
		elseHead := g.term(1)
		g.rules = append(g.rules, fmt.Sprintf("r%d", i), fmt.Sprintf("data.p.r%d", i))
		return fmt.Sprintf("r%d := %s if {\n%s} else := %s if {\n%s}\n", i, head, body, elseHead, elseBody)
	case 1: // default and complete rule
		def := g.constant()
		body := g.body()
		g.rules = append(g.rules, fmt.Sprintf("r%d", i))
		return fmt.Sprintf("default r%d := %s\n\nr%d := %s if {\n%s}\n", i, def, i, g.term(1), body)
	case 2:
		body := g.body()
		g.rules = append(g.rules, fmt.Sprintf("s%d", i), fmt.Sprintf("s%d[\"a\"]", i), fmt.Sprintf("s%d[1]", i))
		return fmt.Sprintf("s%d contains %s if {\n%s}\n", i, g.term(1), body)
	case 3:
		body := g.body()
		g.rules = append(g.rules, fmt.Sprintf("o%d", i), fmt.Sprintf("o%d[\"a\"]", i), fmt.Sprintf("o%d[input.a]", i),
			fmt.Sprintf("o%d[input.a].k", i), fmt.Sprintf("o%d[input.b[0]]", i))
		return fmt.Sprintf("o%d[%s] := %s if {\n%s}\n", i, g.scalar(), g.term(1), body)
	case 4:
		g.vars = []string{"a"}
		body := g.body()
		g.rules = append(g.rules, fmt.Sprintf("f%d(1)", i), fmt.Sprintf("f%d(input.a)", i), fmt.Sprintf("f%d(\"a\")", i))
		g.funcs = append(g.funcs, fmt.Sprintf("f%d", i))
		return fmt.Sprintf("f%d(a) := %s if {\n%s}\n", i, g.term(1), body)
	case 5: // ref head
		body := g.body()
		k := []string{"k", "l"}[g.pick(2)]
		if g.pick(2) == 0 {
			// Under one shared head at different depths, so that a lookup
			// with a variable key enumerates the rules (and `not` over it
			// is planned as an enumeration).
			path := []string{"t.a", "t.b", "t.c.d", "t.b.e", "t.a.x.y"}[g.pick(5)]
			g.rules = append(g.rules, "t", "t[input.a]", "t[input.a].d", "t[input.c.e]", "data.p.t[input.a]")
			return fmt.Sprintf("%s := %s if {\n%s}\n", path, g.term(1), body)
		}
		g.rules = append(g.rules, fmt.Sprintf("h%d.%s", i, k), fmt.Sprintf("h%d", i), fmt.Sprintf("h%d[input.a]", i), fmt.Sprintf("data.p[\"h%d\"][input.a]", i))
		return fmt.Sprintf("h%d.%s := %s if {\n%s}\n", i, k, g.term(1), body)
	}
	body := g.body()
	g.rules = append(g.rules, fmt.Sprintf("r%d", i))
	return fmt.Sprintf("r%d if {\n%s}\n", i, body)
}

func (g *policyGen) body() string {
	var sb strings.Builder
	for range 1 + g.pick(3) {
		sb.WriteString("\t")
		sb.WriteString(g.expr())
		sb.WriteString("\n")
	}
	return sb.String()
}

func (g *policyGen) fresh() string {
	g.nvar++
	return fmt.Sprintf("v%d", g.nvar)
}

func (g *policyGen) bind(v, e string) string {
	g.vars = append(g.vars, v)
	return e
}

func (g *policyGen) expr() string {
	switch g.pick(15) {
	case 0:
		v := g.fresh()
		return g.bind(v, fmt.Sprintf("%s := %s", v, g.term(2)))
	case 1:
		return fmt.Sprintf("%s == %s", g.term(1), g.term(1))
	case 2:
		return fmt.Sprintf("%s != %s", g.term(1), g.term(1))
	case 3:
		return fmt.Sprintf("%s < %s", g.term(0), g.term(0))
	case 4:
		v := g.fresh()
		coll := g.collection()
		return g.bind(v, fmt.Sprintf("some %s in %s\n\t%s != \"zz\"", v, coll, v))
	case 5:
		if r := g.ruleRef(); r != "" && g.pick(2) == 0 {
			return "not " + r
		}
		return fmt.Sprintf("not %s", g.simple())
	case 6:
		return fmt.Sprintf("%s in %s", g.term(0), g.collection())
	case 7:
		v := g.fresh()
		coll := g.collection()
		saved := g.vars
		g.vars = append(append([]string(nil), g.vars...), v)
		inner := fmt.Sprintf("%s != %s", v, g.term(0))
		g.vars = saved
		return fmt.Sprintf("every %s in %s { %s }", v, coll, inner)
	case 8:
		v := g.fresh()
		calls := []string{
			"count(%s)", "upper(%s)", "sprintf(\"%%v\", [%s])", "concat(\",\", %s)",
			"object.get(%s, \"a\", 0)", "to_number(%s)", "json.marshal(%s)", "sort(%s)",
			"array.concat(%s, [1])", "abs(%s)", "split(%s, \",\")", "startswith(%s, \"a\")",
		}
		call := fmt.Sprintf(calls[g.pick(len(calls))], g.term(1))
		return g.bind(v, fmt.Sprintf("%s := %s", v, call))
	case 9:
		v := g.fresh()
		sum := fmt.Sprintf("%s + %s", g.term(0), g.term(0))
		return g.bind(v, fmt.Sprintf("%s := %s", v, sum))
	case 10:
		if r := g.ruleRef(); r != "" {
			return r
		}
	case 12:
		if r := g.ruleRef(); r != "" && g.pick(3) == 0 {
			// A function or a built-in function replaced by a constant, a
			// variable, or a composite value holding one (which the
			// planner plans inside the rules it reaches, out of the
			// variable's scope).
			fn := []string{"count", "upper", "time.now_ns"}[g.pick(3)]
			if len(g.funcs) > 0 && g.pick(3) > 0 {
				fn = g.funcs[g.pick(len(g.funcs))]
			}
			v := g.fresh()
			bind := fmt.Sprintf("%s := %s\n\t", v, g.term(0))
			g.vars = append(g.vars, v)
			vals := []string{g.constant(), v, "[" + v + "]", fmt.Sprintf(`{"k": %s}`, v)}
			return fmt.Sprintf("%s%s with %s as %s", bind, r, fn, vals[g.pick(len(vals))])
		}
		if r := g.ruleRef(); r != "" {
			targets := []string{"input.a", "input.c", "input", "data.d.n", "data.d.m", "data.d.m.a", "data.d",
				// Base data beside rules (under the shared ref head t).
				"data.p.t.z", "data.p.t.a", "data.p.t.c.q"}
			return fmt.Sprintf("%s with %s as %s", r, targets[g.pick(len(targets))], g.constant())
		}
	case 13:
		return fmt.Sprintf("print(%s, %s)", g.term(0), g.term(0))
	case 14:
		// A with on base data read at, below or above its target (topdown
		// merges the value with the base document above it).
		v := g.fresh()
		reads := []string{"data.d", "data.d.m", "data.d.m.a", "data.d.m[\"3\"]", "[x | some x in data.d]"}
		targets := []string{"data.d.m", "data.d.m.a", "data.d.list", "data.d.q"}
		values := []string{`{"a": 1}`, `{"q": 1}`, "{}", g.term(1)}
		return g.bind(v, fmt.Sprintf("%s := %s with %s as %s", v, reads[g.pick(len(reads))], targets[g.pick(len(targets))], values[g.pick(len(values))]))
	case 11:
		if len(g.rules) > 0 {
			v := g.fresh()
			k := g.fresh()
			coll := g.rules[g.pick(len(g.rules))]
			g.vars = append(g.vars, v, k)
			return fmt.Sprintf("some %s, %s in %s\n\t%s != %s", k, v, coll, k, v)
		}
	}
	return g.simple()
}

// simple is an expression that binds nothing.
func (g *policyGen) simple() string {
	switch g.pick(5) {
	case 0:
		return fmt.Sprintf("%s == %s", g.term(0), g.term(0))
	case 1:
		return fmt.Sprintf("startswith(%s, \"a\")", g.term(0))
	case 2:
		if r := g.ruleRef(); r != "" {
			return r
		}
	case 3:
		return fmt.Sprintf("count(%s) > 1", g.collection())
	}
	return g.term(0)
}

func (g *policyGen) ruleRef() string {
	if len(g.rules) == 0 {
		return ""
	}
	return g.rules[g.pick(len(g.rules))]
}

func (g *policyGen) collection() string {
	colls := []string{"input.b", "data.d.x", "data.d.m", "data.d.list", "[1, 2, \"a\"]", "{\"a\", \"b\"}", "input.c", "data.d", "input"}
	switch {
	case len(g.vars) > 0 && g.pick(4) == 0:
		return g.vars[g.pick(len(g.vars))]
	case len(g.rules) > 0 && g.pick(3) == 0:
		return g.rules[g.pick(len(g.rules))]
	}
	return colls[g.pick(len(colls))]
}

func (g *policyGen) constant() string {
	consts := []string{"1", "2", "0", "-1", "2.5", `"a"`, `"b"`, `""`, "true", "false", "null", "[]", "{}", `{"a": 1}`, `[1, "a"]`,
		// Numbers equal to others but written otherwise.
		"1.0", "3.0", "1e0"}
	return consts[g.pick(len(consts))]
}

func (g *policyGen) scalar() string {
	if len(g.vars) > 0 && g.pick(2) == 0 {
		return g.vars[g.pick(len(g.vars))]
	}
	return []string{"1", `"a"`, `"b"`, "input.a", "true"}[g.pick(5)]
}

func (g *policyGen) term(depth int) string {
	n := 8
	if depth > 0 {
		n = 12
	}
	switch g.pick(n) {
	case 0, 1:
		return g.constant()
	case 2:
		return []string{"input.a", "input.b", "input.c.d", "input.b[0]", "input.c", "input"}[g.pick(6)]
	case 3:
		return []string{"data.d.n", "data.d.m.a", "data.d.x[1]", "data.d.m[input.a]", "data.d.list[0].v", "data.d.m[3]", "data.d.x[input.c.d]", "data.d.m[input.c.d]"}[g.pick(8)]
	case 4, 5:
		if len(g.vars) > 0 {
			return g.vars[g.pick(len(g.vars))]
		}
		return g.constant()
	case 6:
		if r := g.ruleRef(); r != "" {
			return r
		}
		return "input.a"
	case 7:
		return "input.a"
	case 8:
		return fmt.Sprintf("[%s, %s]", g.term(depth-1), g.term(depth-1))
	case 9:
		if g.pick(2) == 0 {
			// Keys that may turn out equal at evaluation, the object read
			// whole or looked up.
			o := fmt.Sprintf("{%s: %s, %s: %s}", g.scalar(), g.term(depth-1), g.scalar(), g.term(depth-1))
			if g.pick(2) == 0 {
				o += "[" + g.scalar() + "]"
			}
			return o
		}
		return fmt.Sprintf("{\"k\": %s}", g.term(depth-1))
	case 10:
		return fmt.Sprintf("{%s}", g.term(depth-1))
	}
	v := g.fresh()
	coll := g.collection()
	return fmt.Sprintf("[%s | some %s in %s]", v, v, coll)
}
