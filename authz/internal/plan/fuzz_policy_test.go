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
// with both evaluators on a few inputs. From the same bytes it also writes
// a policy whose functions may have an else or a default, with partial
// sets built by calling them and looked up (see policyGen's elseFuncs),
// and two packages (see policyGen's lib): rules of package a used from
// package p, directly or through an import, general ref heads with a variable in
// the middle, and withs on the rules and functions of a that the rule
// under the with reaches, around lookups, every, comprehensions and
// negations, and withs on the whole of a around such rules. Policies that
// do not compile are skipped. Where the compiled evaluator answers, it
// must give topdown's answer.
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
		checkPolicy(t, (&policyGen{inputGen: inputGen{b: b}}).module())
		checkPolicy(t, (&policyGen{inputGen: inputGen{b: b}, lib: true}).module())
		checkPolicy(t, (&policyGen{inputGen: inputGen{b: b}, elseFuncs: true}).module())
	})
}

// TestPolicySample runs FuzzPolicy's comparison on generated policies, so
// that plain `go test` covers it too.
func TestPolicySample(t *testing.T) {
	rnd := rand.New(rand.NewPCG(5, 6))
	compiled, libCompiled, libAnswered, elseCompiled := 0, 0, 0, 0
	for range 1500 {
		b := make([]byte, 64+rnd.IntN(192))
		for i := range b {
			b[i] = byte(rnd.Uint32())
		}
		if checkPolicy(t, (&policyGen{inputGen: inputGen{b: b}}).module()) {
			compiled++
		}
		if checkPolicy(t, (&policyGen{inputGen: inputGen{b: b}, elseFuncs: true}).module()) {
			elseCompiled++
		}
		src := (&policyGen{inputGen: inputGen{b: b}, lib: true}).module()
		if checkPolicy(t, src) {
			libCompiled++
			// Compiled and answered by the compiled evaluator, with a
			// with on a rule or a function of the other package.
			if strings.Contains(src, "with data.a.") && !refusedAtPrepare(src) {
				libAnswered++
			}
		}
	}
	t.Logf("%d of 1500 generated policies compiled and were compared", compiled)
	t.Logf("%d of 1500 generated pairs of packages compiled, %d with a with on package a answered", libCompiled, libAnswered)
	t.Logf("%d of 1500 generated policies with functions that may have an else or a default compiled", elseCompiled)
	// A with on a rule of package a sends the snapshot to topdown
	// (checkMixedIteration), so the pairs the compiled evaluator answers
	// with such a with are those replacing a function of a.
	if compiled < 250 || libCompiled < 250 || libAnswered < 10 || elseCompiled < 250 {
		t.Errorf("only %d generated policies, %d pairs of packages compiled, %d answered with a with on package a: the grammar needs a look",
			compiled, libCompiled, libAnswered)
	}
}

// refusedAtPrepare reports whether the compiled evaluator refuses src (which
// compiles) at prepare time.
func refusedAtPrepare(src string) bool {
	c, err := compileModules(src)
	if err != nil {
		return true
	}
	_, err = plan.Prepare(context.Background(), plan.Options{Compiler: c, Query: ast.MustParseBody("x = data.p"), Data: ast.MustInterfaceToValue(policyData)})
	return err != nil
}

// compileModules compiles src, one module or several, each beginning with
// its package declaration.
func compileModules(src string) (*ast.Compiler, error) {
	modules := map[string]string{}
	parts := strings.Split(src, "\npackage ")
	for i, m := range parts {
		if i > 0 {
			m = "package " + m
		}
		modules[fmt.Sprintf("m%d.rego", i)] = m
	}
	return ast.CompileModulesWithOpt(modules, ast.CompileOpts{
		ParserOptions:         ast.ParserOptions{RegoVersion: ast.RegoV1},
		EnablePrintStatements: true,
	})
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
	c, err := compileModules(src)
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
				keepTerms)
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
// to rules written before it, so that the module has no recursion. With lib
// set, it writes two: a package a, then a package p whose rules use a's
// (by data.a.r or through an import), replace them and its functions with
// `with`, the target steered towards what the rule under the with reaches.
// Without lib, it writes what it always wrote for the same bytes, so that
// the seeds kept under testdata/fuzz still mean what they meant.
type policyGen struct {
	inputGen
	lib bool
	// elseFuncs: its functions may have an else or a default, and its
	// partial sets may be built by calling them.
	elseFuncs bool

	pkg   string   // the package being written
	vars  []string // bound in the body being written
	nvar  int
	rules []string // references to the rules written so far
	funcs []string // the functions written so far

	// With lib: for each reference in rules, the rules and functions of
	// package a it reaches, directly or through others (the targets of a
	// with that changes its value); those the body being written reaches;
	// and which of them are functions.
	reach  map[string][]string
	using  []string
	isFunc map[string]bool
}

func (g *policyGen) module() string {
	var sb strings.Builder
	g.pkg = "p"
	if !g.lib {
		sb.WriteString("package p\n\n")
	} else {
		g.pkg = "a"
		g.reach, g.isFunc = map[string][]string{}, map[string]bool{}
		sb.WriteString("package a\n\n")
		for i := range 1 + g.pick(3) {
			sb.WriteString(g.rule(i))
			sb.WriteString("\n")
		}
		// Package p refers to a's rules by their path or through an import.
		imported := g.pick(2) == 0
		local, funcs := g.rules, g.funcs
		g.rules, g.funcs = nil, nil
		for _, r := range local {
			ext := r
			if !strings.HasPrefix(r, "data.") {
				ext = "data.a." + r
				if imported && g.pick(2) == 0 {
					ext = "lib." + r
				}
			}
			g.rules = append(g.rules, ext)
			g.reach[ext] = g.reach[r]
		}
		for _, f := range funcs {
			g.funcs = append(g.funcs, "data.a."+f)
		}
		g.pkg = "p"
		sb.WriteString("\n")
		sb.WriteString("package p\n\n")
		if imported {
			sb.WriteString("import data.a as lib\n\n")
		}
	}
	n := 6
	if g.lib {
		n = 4
	}
	for i := range 1 + g.pick(n) {
		sb.WriteString(g.rule(i))
		sb.WriteString("\n")
	}
	return sb.String()
}

// use notes that the body being written refers to rule reference r.
func (g *policyGen) use(r string) string {
	if g.lib {
		g.using = append(g.using, g.reach[r]...)
	}
	return r
}

// written notes the references to a rule just written, whose own paths (as
// with targets, in package a) are own.
func (g *policyGen) written(refs []string, own ...string) {
	g.rules = append(g.rules, refs...)
	if !g.lib {
		return
	}
	var reach []string
	if g.pkg == "a" {
		for _, o := range own {
			reach = append(reach, "data.a."+o)
		}
	}
	reach = append(reach, g.using...)
	for _, r := range refs {
		g.reach[r] = reach
	}
}

func (g *policyGen) rule(i int) string {
	g.vars, g.nvar, g.using = nil, 0, nil
	n := 7
	if g.lib {
		n = 8
	}
	pkg := g.pkg
	switch g.pick(n) {
	case 0: // complete rule with else
		body := g.body()
		head := g.term(1)
		g.vars, g.nvar = nil, 0
		elseBody := g.body()
		elseHead := g.term(1)
		name := fmt.Sprintf("r%d", i)
		g.written([]string{name, fmt.Sprintf("data.%s.r%d", pkg, i)}, name)
		return fmt.Sprintf("r%d := %s if {\n%s} else := %s if {\n%s}\n", i, head, body, elseHead, elseBody)
	case 1: // default and complete rule
		def := g.constant()
		body := g.body()
		name := fmt.Sprintf("r%d", i)
		g.written([]string{name}, name)
		return fmt.Sprintf("default r%d := %s\n\nr%d := %s if {\n%s}\n", i, def, i, g.term(1), body)
	case 2:
		body := g.body()
		name := fmt.Sprintf("s%d", i)
		if g.elseFuncs && len(g.funcs) > 0 && g.pick(2) == 0 {
			// Built by a function that may have an else or a default, and
			// looked up by a key (which binds the function's output).
			g.written([]string{name, fmt.Sprintf("s%d[\"a\"]", i), fmt.Sprintf("s%d[1]", i), fmt.Sprintf("s%d[input.a]", i)}, name)
			f := g.funcs[g.pick(len(g.funcs))]
			key := []string{"input.a", `"a"`, "1", "input.b[0]"}[g.pick(4)]
			return fmt.Sprintf("s%d contains %s(%s) if {\n%s}\n\nq%d if not s%d[%s]\n", i, f, g.term(1), body, i, i, key)
		}
		g.written([]string{name, fmt.Sprintf("s%d[\"a\"]", i), fmt.Sprintf("s%d[1]", i)}, name)
		return fmt.Sprintf("s%d contains %s if {\n%s}\n", i, g.term(1), body)
	case 3:
		body := g.body()
		name := fmt.Sprintf("o%d", i)
		g.written([]string{name, fmt.Sprintf("o%d[\"a\"]", i), fmt.Sprintf("o%d[input.a]", i),
			fmt.Sprintf("o%d[input.a].k", i), fmt.Sprintf("o%d[input.b[0]]", i)}, name)
		return fmt.Sprintf("o%d[%s] := %s if {\n%s}\n", i, g.scalar(), g.term(1), body)
	case 4:
		g.vars = []string{"a"}
		body := g.body()
		name := fmt.Sprintf("f%d", i)
		g.written([]string{fmt.Sprintf("f%d(1)", i), fmt.Sprintf("f%d(input.a)", i), fmt.Sprintf("f%d(\"a\")", i)}, name)
		g.funcs = append(g.funcs, name)
		if g.lib {
			g.isFunc["data."+pkg+"."+name] = true
		}
		if g.elseFuncs {
			switch g.pick(3) {
			case 0: // else := a: the argument when the body fails
				return fmt.Sprintf("f%d(a) := %s if {\n%s} else := a\n", i, g.term(1), body)
			case 1:
				return fmt.Sprintf("default f%d(_) := %s\n\nf%d(a) := %s if {\n%s}\n", i, g.constant(), i, g.term(1), body)
			}
		}
		return fmt.Sprintf("f%d(a) := %s if {\n%s}\n", i, g.term(1), body)
	case 5: // ref head
		body := g.body()
		k := []string{"k", "l"}[g.pick(2)]
		if g.pick(2) == 0 {
			// Under one shared head at different depths, so that a lookup
			// with a variable key enumerates the rules (and `not` over it
			// is planned as an enumeration).
			path := []string{"t.a", "t.b", "t.c.d", "t.b.e", "t.a.x.y"}[g.pick(5)]
			g.written([]string{"t", "t[input.a]", "t[input.a].d", "t[input.c.e]", fmt.Sprintf("data.%s.t[input.a]", pkg)}, path, "t")
			return fmt.Sprintf("%s := %s if {\n%s}\n", path, g.term(1), body)
		}
		name := fmt.Sprintf("h%d", i)
		g.written([]string{fmt.Sprintf("h%d.%s", i, k), name, fmt.Sprintf("h%d[input.a]", i), fmt.Sprintf("data.%s[\"h%d\"][input.a]", pkg, i)}, name+"."+k, name)
		return fmt.Sprintf("h%d.%s := %s if {\n%s}\n", i, k, g.term(1), body)
	case 7: // general ref head, a variable in the middle
		v := g.fresh()
		src := []string{"input.a", `"a"`, "input.b[0]", "1", "input.c.e"}[g.pick(5)]
		bind := fmt.Sprintf("\t%s := %s\n", v, src)
		if g.pick(3) == 0 {
			bind = fmt.Sprintf("\tsome %s in %s\n", v, []string{"input.b", "[\"a\", \"b\"]", "data.d.x", "input.c"}[g.pick(4)])
		}
		g.vars = append(g.vars, v)
		body := g.body()
		if src == "input.c.e" && g.pick(2) == 0 {
			// Beside the rules of case 5 under the shared head t, at
			// other depths: a lookup such as t[input.a].d then reaches
			// nodes with rules only below them, and two rules may build
			// one document at two depths (t[k] beside t.c.d).
			head := []string{"t[%s]", "t[%s].d", "t.c[%s]", "t[%s].x.y", "t.a[%s]"}[g.pick(5)]
			g.written([]string{"t", "t[input.a]", "t[input.a].d", "t[input.c.e]", fmt.Sprintf("data.%s.t[input.a].x", pkg)}, "t")
			bind = fmt.Sprintf("\tsome %s in [\"a\", \"c\", \"x\"]\n", v) // keys of the ground rules too
			return fmt.Sprintf("%s := %s if {\n%s%s}\n", fmt.Sprintf(head, v), g.term(1), bind, body)
		}
		name := fmt.Sprintf("g%d", i)
		head := []string{"g%d[%s].v", "g%d.x[%s]", "g%d.x[%s].w", "g%d[%s].v.w"}[g.pick(4)]
		head = fmt.Sprintf(head, i, v)
		g.written([]string{name, fmt.Sprintf("g%d[input.a]", i), fmt.Sprintf("g%d[input.a].v", i), fmt.Sprintf("g%d.x[input.a]", i),
			fmt.Sprintf("g%d.a.v", i), fmt.Sprintf("data.%s.g%d[input.a]", pkg, i)}, name)
		return fmt.Sprintf("%s := %s if {\n%s%s}\n", head, g.term(1), bind, body)
	}
	body := g.body()
	name := fmt.Sprintf("r%d", i)
	g.written([]string{name}, name)
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
	n := 15
	if g.lib {
		n = 18
	}
	switch g.pick(n) {
	case 15, 16:
		if w := g.withReached(); w != "" {
			return w
		}
	case 17:
		// Any expression under a with on package a, or on the whole of it
		// (around rules that replace its functions, or replace by them).
		if len(g.rules) > 0 && g.pkg == "p" {
			e := g.expr()
			all := g.allReach()
			if len(all) > 0 {
				all = append(all, "data.a") // last: the seeds kept still write what they wrote
			}
			if t := g.reachTarget(all); t == "data.a" {
				return e + " with data.a as " + g.packageValue()
			} else if t != "" {
				return e + " with " + t + " as " + g.withValue(t)
			}
			return e
		}
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
		read, target, value := reads[g.pick(len(reads))], targets[g.pick(len(targets))], values[g.pick(len(values))]
		if target == "data.d.q" && read == "data.d" {
			// Instead of a with on a key the base document lacks (taking
			// no more bytes, so that the seeds kept write what they
			// wrote): a with below a document that a with before it
			// replaced, mostly by something other than an object, which
			// topdown's overlay turns into an object and merges with the
			// base document.
			outer := []string{"2", "input.a", "[1]", "input.c", values[3], value}[g.pick(6)]
			target = "data.d.m as " + outer + " with data.d.m.a"
			value = "3"
		}
		return g.bind(v, fmt.Sprintf("%s := %s with %s as %s", v, read, target, value))
	case 11:
		if len(g.rules) > 0 {
			v := g.fresh()
			k := g.fresh()
			coll := g.use(g.rules[g.pick(len(g.rules))])
			g.vars = append(g.vars, v, k)
			return fmt.Sprintf("some %s, %s in %s\n\t%s != %s", k, v, coll, k, v)
		}
	}
	return g.simple()
}

// withReached is a rule reference, or an every, a comprehension or a
// negation over one, under a with whose target is a rule or a function of
// package a that the rule reaches.
func (g *policyGen) withReached() string {
	if g.pkg != "p" || len(g.rules) == 0 {
		return ""
	}
	r := g.rules[g.pick(len(g.rules))]
	t := g.reachTarget(g.reach[r])
	if t == "" {
		return ""
	}
	g.use(r)
	w := " with " + t + " as " + g.withValue(t)
	v, y := g.fresh(), g.fresh()
	switch g.pick(7) {
	case 0:
		return "not " + r + w
	case 1:
		return g.bind(v, fmt.Sprintf("%s := %s%s", v, r, w))
	case 2:
		return g.bind(v, fmt.Sprintf("%s := [%s | some %s in %s]%s", v, y, y, r, w))
	case 3:
		return fmt.Sprintf("every %s in %s { %s != %s }%s", y, r, y, g.term(0), w)
	case 4:
		return g.bind(v, fmt.Sprintf("%s := {%s: %s | some %s, %s in %s}%s", v, v+"k", y, v+"k", y, r, w))
	case 5:
		return g.bind(v, fmt.Sprintf("%s := count([1 | %s])%s", v, r, w))
	}
	return r + w
}

// reachTarget picks a with target among paths.
func (g *policyGen) reachTarget(paths []string) string {
	if len(paths) == 0 {
		return ""
	}
	return paths[g.pick(len(paths))]
}

// allReach is every rule and function of package a.
func (g *policyGen) allReach() []string {
	var all []string
	for _, r := range g.rules {
		all = append(all, g.reach[r]...)
	}
	return all
}

// packageValue is a value for a with on the whole of package a: an object
// giving one of its rules or functions a constant, or an empty one.
func (g *policyGen) packageValue() string {
	all := g.allReach()
	if g.pick(3) == 0 {
		return "{}"
	}
	t := all[g.pick(len(all))]
	return fmt.Sprintf("{%q: %s}", t[strings.LastIndex(t, ".")+1:], g.constant())
}

// withValue is a value for a with on t: for a function, a constant, a
// variable, a composite value holding one, another function or a built-in
// function; for a rule, a constant, a variable or a term.
func (g *policyGen) withValue(t string) string {
	if g.isFunc[t] {
		switch g.pick(6) {
		case 0:
			if len(g.vars) > 0 {
				return g.vars[g.pick(len(g.vars))]
			}
		case 1:
			if len(g.vars) > 0 {
				return "[" + g.vars[g.pick(len(g.vars))] + "]"
			}
		case 2:
			return g.funcs[g.pick(len(g.funcs))]
		case 3:
			return []string{"upper", "count", "json.marshal"}[g.pick(3)]
		}
		return g.constant()
	}
	switch g.pick(4) {
	case 0:
		if len(g.vars) > 0 {
			return g.vars[g.pick(len(g.vars))]
		}
	case 1:
		return g.term(1)
	}
	return g.constant()
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
	return g.use(g.rules[g.pick(len(g.rules))])
}

func (g *policyGen) collection() string {
	colls := []string{"input.b", "data.d.x", "data.d.m", "data.d.list", "[1, 2, \"a\"]", "{\"a\", \"b\"}", "input.c", "data.d", "input"}
	switch {
	case len(g.vars) > 0 && g.pick(4) == 0:
		return g.vars[g.pick(len(g.vars))]
	case len(g.rules) > 0 && g.pick(3) == 0:
		return g.use(g.rules[g.pick(len(g.rules))])
	}
	return colls[g.pick(len(colls))]
}

func (g *policyGen) constant() string {
	consts := []string{"1", "2", "0", "-1", "2.5", `"a"`, `"b"`, `""`, "true", "false", "null", "[]", "{}", `{"a": 1}`, `[1, "a"]`,
		// Three more (in place of 1.0, 3.0 and 1e0, numbers written
		// otherwise than their plain form, which Prepare refuses now, so
		// that the seeds kept draw as many constants as before).
		"10", "3", "0.5"}
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
