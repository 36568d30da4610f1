package plan_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/authz/internal/plan"
)

// compareQuery compares both evaluators on src (one module or several, each
// beginning with its package declaration) with query (whose one
// variable is x) over inputs, strict and not, with a plain store and with
// the engine's. It reports every divergence: a compiled answer (not a
// refusal) that differs from topdown's, also in how it is written. The
// tests below are divergences found by review; the compiled evaluator now
// refuses each, so topdown answers.
func compareQuery(t *testing.T, src, query string, inputs ...string) {
	t.Helper()
	c, err := compileModules(src)
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
				keepTerms}
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
	// In a rule: a comprehension in the query is refused for another
	// reason (checkCompiler).
	for _, src := range []string{
		"package d\n\ny := 1\n\npackage p\n\nkeys := [k | some k, _ in data.d]\n",
		// An array in the base data beside rules (data.d.x is
		// ["a", "b", 3]): topdown gives its indices first, [0, 1, 2, "r"];
		// the plan gave ["r", 0, 1, 2].
		"package d.x\n\nr := 1\n\npackage p\n\nkeys := [k | some k, _ in data.d.x]\n",
	} {
		compareRefused(t, src, "x = data.p.keys", `{}`)
	}
	// The same at the root, with base data d and a package p (in a rule,
	// that would be recursive).
	compareQuery(t, "package p\n\ny := 1\n", "x = [k | some k, _ in data]", `{}`)
}

// TestDivergenceNegatedLookupIntoUnevenRuleTree: a negated lookup with a
// variable key into a tree of rules whose leaves sit at different depths
// (blocked.alice := true beside blocked.teams.red := true), the deny-list
// pattern `allow if not blocked[input.user]`.
//
// topdown: for user "alice", blocked["alice"] is true, so `not` fails and
// allow is undefined (denied). compiled: allow is true for every user,
// the blocked ones included (all four modes; at the engine level too:
// Decide allows alice with the compiled evaluator and no fallback).
//
// Likely cause: the planner's optimizeLookup declines the CallDynamicStmt
// form here (the children of blocked are not all at one depth), and
// planRefData instead emits, inside the NotStmt of the legacy negation
// (planNot plans the negated expression with an empty continuation), a
// BlockStmt with one alternative block per child rule (key == "alice",
// call, != false), followed in the same block by the scan of the base
// document data.p.blocked, whose DotStmt is undefined. An alternative that
// succeeds therefore does not make the NotStmt's block succeed: the block
// always ends undefined at the base-document lookup, and `not` always
// holds. The plan package's NotStmt (exec.go, opNot) follows the Wasm
// semantics, and isDynamicLookup (analysis.go) recognizes only the
// CallDynamicStmt shape of this problem, not this enumerate-then-scan shape
// from planRefData. Also seen with not r[input.a][input.b] (r.a.x := 1,
// r.b.y.z := 2), not r[input.a] == input.n, a comprehension
// [k | some k in [...]; not r[k]], and `not r[input.a] with input.z as 1`.
// A uniform tree (perms.admin.read, perms.viewer.read) and `every` agree.
func TestDivergenceNegatedLookupIntoUnevenRuleTree(t *testing.T) {
	src := `package p

blocked.alice := true

blocked.teams.red := true

allow if not blocked[input.user]
`
	compareQuery(t, src, "x = data.p.allow", `{"user": "alice"}`, `{"user": "bob"}`)
	// The same as a deny rule: topdown leaves deny undefined for both roles
	// (perms.viewer is the object {"read": true}); compiled, deny is true
	// for both.
	compareQuery(t, "package p\n\nperms.admin := true\n\nperms.viewer.read := true\n\ndeny if not perms[input.role]\n",
		"x = data.p.deny", `{"role": "admin"}`, `{"role": "viewer"}`)
}

// TestDivergenceLiteralEnumeratedAsWritten: a set literal with elements
// that are not constants, or an object literal with such keys, reaching an
// enumeration directly or through a rule, a variable or a function's
// argument. topdown enumerates the literal as written (evalTerm.enumerate
// over the terms before they are read: the compiler's variables sort after
// the constants, and two elements that turn out equal are both visited);
// the plan builds the value and scans it (value order, each element once):
//
//	[r | some r in {input.b, "guest"}][0], b = "admin"   topdown "guest"   compiled "admin"
//	count([v | some v in {input.a, input.b}]), a = b = 1  topdown 2         compiled 1
//	[k | some k, _ in {input.a: 1, input.b: 2}], a = 2, b = 1  topdown [2, 1]  compiled [1, 2]
//
// The compiled evaluator now refuses such literals at Prepare, unless each
// is only an argument of a built-in function (checkLiteralsWrittenWithVariables),
// which agrees: x in {input.a, "*"}, count, ==, json.marshal.
func TestDivergenceLiteralEnumeratedAsWritten(t *testing.T) {
	inputs := []string{`{"a": 1, "b": 1}`, `{"a": 1, "b": 1.0}`, `{"a": 2, "b": 1}`, `{"a": "z", "b": "admin"}`}
	for _, rule := range []string{
		`first := [r | some r in {input.b, "guest"}][0]`,
		`n := count([v | some v in {input.a, input.b}])`,
		`keys := [k | some k, _ in {input.a: 1, input.b: 2}]`,
		"s := {input.a, input.b}\n\nviaRule := [v | some v in s]",
		`viaVar := [v | t := {input.a, input.b}; some v in t]`,
		"f(x) := [v | some v in x]\n\nviaArg := f({input.a, input.b})",
		`scan := [v | v := {input.a, input.b}[_]]`,
	} {
		src := "package p\n\n" + rule + "\n"
		compareRefused(t, src, "x = data.p", inputs...)
	}
	for _, rule := range []string{
		`member := input.a in {input.b, "*"}`,
		`n := count({input.a, input.b})`,
		`same := {input.a, input.b} == {1}`,
		`text := json.marshal({input.a: 1, input.b: 2})`,
	} {
		src := "package p\n\n" + rule + "\n"
		compareQuery(t, src, "x = data.p", inputs...)
		if err := prepareErr(t, src, "x = data.p"); err != nil {
			t.Errorf("Prepare: %v, want the literal compiled\n%s", err, src)
		}
	}
}

// TestDivergenceNumberWrittenOtherwise: equal numbers written differently
// (1 and 1.0) stand in for each other in topdown where the plan keeps each
// as written: topdown binds a variable unified with a constant to the
// constant (some l; levels[l] = 1 gives 1 where the set holds 1.0), and it
// answers a function call, or a lookup into a partial set, from the result
// of an earlier one with an equal argument (f(1) after f(1.0) is 1.0). A
// rule keyed by a number, which topdown finds by how the key is written,
// then tells the evaluators apart:
//
//	o[1.0] := true; allow if { some l; levels[l] = 1; o[l] }, levels [1.0]   topdown undefined   compiled true
//	o[1] := true; allow if { f(input.a); o[f(input.b)] }, a 1.0, b 1          topdown undefined   compiled true
//	o[1] := true; allow if { s[input.a]; o[s[input.b]] }, a 1.0, b 1          topdown undefined   compiled true
//
// Plain numbers (1, 1.5) cannot be written two ways, so the compiled
// evaluator now leaves an input holding another (1.0, 1e0, 1.50) to
// topdown, and Prepare refuses such numbers in the base document and the
// policy. The check first took an integer beyond int64 written as Go
// writes a float64 (1e+21, which OPA makes of a float64 in the request)
// for plain: the same wrong allow with a 1e+21 and a 10^21.
func TestDivergenceNumberWrittenOtherwise(t *testing.T) {
	for _, tc := range []struct{ src, input string }{
		{"package p\n\no[1.0] := true\n\nlevels := {l | some l in input.levels}\n\nallow if {\n\tsome l\n\tlevels[l] = 1\n\to[l]\n}\n", `{"levels": [1.0]}`},
		{"package p\n\no[1] := true\n\nf(x) := x\n\nallow if {\n\tf(input.a)\n\to[f(input.b)]\n}\n", `{"a": 1.0, "b": 1}`},
		{"package p\n\no[1] := true\n\ns contains x if some x in input.arr\n\nallow if {\n\ts[input.a]\n\to[s[input.b]]\n}\n", `{"a": 1.0, "b": 1, "arr": [1]}`},
		{"package p\n\no[1] := true\n\nf(x) := x\n\nallow if {\n\tf(1.0)\n\to[f(input.b)]\n}\n", `{"b": 1}`},
		// Numbers a built-in function makes from the request's text.
		{"package p\n\no[1] := true\n\nf(x) := x\n\nallow if {\n\tf(to_number(input.s))\n\to[f(1)]\n}\n", `{"s": "1.0"}`},
		{"package p\n\no[1] := true\n\nf(x) := x\n\nallow if {\n\tf(to_number(input.s))\n\to[f(1)]\n}\n", `{"s": "01"}`},
		{"package p\n\ns contains 1\n\no[1] := true\n\nallow if {\n\ts[to_number(input.s)]\n\ty := s[1]\n\to[y]\n}\n", `{"s": "+1"}`},
		{"package p\n\nallow if {\n\tt := to_number(input.s)\n\tjson.marshal([t | some u in input.users; u == t]) == \"[1.0]\"\n}\n", `{"s": "1.0", "users": [1, 2]}`},
		{"package p\n\nm[k] := k[0] if some k in input.xs\n\no[1] := true\n\nallow if o[m[[to_number(input.s)]]]\n", `{"s": "1.0", "xs": [[1]]}`},
		{"package p\n\nm[k] := k.a if some k in input.os\n\no[1] := true\n\nallow if o[m[json.unmarshal(input.s)]]\n", `{"s": "{\"a\": 1.0}", "os": [{"a": 1}]}`},
		{"package p\n\nr[1] := true\n\nr[to_number(input.s)] := true\n\no[1] := true\n\nallow if {\n\tsome k, _ in r\n\to[k]\n}\n", `{"s": "1.0"}`},
		{"package p\n\nr[to_number(input.s)] := true\n\nr[1] := true\n\nallow if json.marshal(r) == \"{\\\"1\\\":true}\"\n", `{"s": "01"}`},
		{"package p\n\no[1.5] := true\n\nlevels := {to_number(l) | some l in input.levels}\n\nallow if {\n\tsome l\n\tlevels[l] = 1.5\n\to[l]\n}\n", `{"levels": ["1.50"]}`},
		// An integer beyond int64 as Go writes a float64 (and OPA a
		// float64 in the request): 1e+21 is 10^21 written otherwise.
		{"package p\n\no[1000000000000000000000] := true\n\nf(x) := x\n\nallow if {\n\tf(input.a)\n\to[f(input.b)]\n}\n", `{"a": 1e+21, "b": 1000000000000000000000}`},
		{"package p\n\no[1e+21] := true\n\nlevels := {l | some l in input.levels}\n\nallow if {\n\tsome l\n\tlevels[l] = 1000000000000000000000\n\to[l]\n}\n", `{"levels": [1e+21]}`},
		{"package p\n\no[1000000000000000000000] := true\n\nf(x) := x\n\nallow if {\n\tf(1e+21)\n\to[f(input.b)]\n}\n", `{"b": 1000000000000000000000}`},
		{"package p\n\nf(v) := v\n\nr := json.marshal([f(input.a), f(input.b)])\n\nallow if r == \"[1e+21,1000000000000000000000]\"\n", `{"a": 1e+21, "b": 1000000000000000000000}`},
	} {
		compareQuery(t, tc.src, "x = data.p.allow", tc.input, `{"a": 1, "b": 1, "arr": [1], "levels": [1]}`)
	}
	for n, plain := range map[string]bool{"1": true, "-1": true, "0": true, "1.5": true, "0.1": true, "123456789012345678901234567890": true,
		"1.0": false, "1e0": false, "1.50": false, "-0": false, "01": false, "1E2": false, "2.0e-1": false,
		"1e+21": false, "1.5e+300": false, "-1e+21": false, "9.223372036854776e+18": false, "1e+400": false,
		"1e-07": true} {
		if got := plainNumbersOf(n); got != plain {
			t.Errorf("%s: plain = %v, want %v", n, got, plain)
		}
	}
}

// plainNumbersOf reports whether Eval takes an input holding the number n
// (written as n) rather than leaving it to topdown.
func plainNumbersOf(n string) bool {
	c := ast.MustCompileModules(map[string]string{"p.rego": "package p\n\nx := input.n\n"})
	q, err := plan.Prepare(context.Background(), plan.Options{Compiler: c, Query: ast.MustParseBody("x = data.p.x")})
	if err != nil {
		panic(err)
	}
	_, err = q.Eval(context.Background(), ast.NewObject(ast.Item(ast.StringTerm("n"), ast.NumberTerm(json.Number(n)))), plan.EvalOptions{})
	return err == nil
}

// TestDivergenceIndexedComprehensionConflict: a comprehension topdown
// indexes (its body compares an element with t, bound outside) evaluates
// ahead for every value of the key, so an error in another key's part of
// it fails topdown's evaluation and not the plan's, which evaluates the
// current key's part only. checkCompiler refused such comprehensions whose
// bodies call a built-in that can fail or reach rules; it missed an object
// comprehension nested in the body, which fails when it gives one key two
// values (for "b": {"k": 1} and {"k": 2}):
//
//	[o | some e in input.p; e[0] = t; o := {"k": w | some w in e[1]}], t = "a"
//	  topdown eval_conflict_error   compiled [{"k": 1}]
//
// and comprehensions in the query, which the query's own compiler indexes.
// Both are refused at Prepare now.
func TestDivergenceIndexedComprehensionConflict(t *testing.T) {
	src := `package p

allow if {
	t := input.a
	y := [o | some e in input.p; e[0] = t; o := {"k": w | some w in e[1]}]
	count(y) > 0
}

f(t) := y if {
	y := [o | some e in input.p; e[0] = t; o := {"k": w | some w in e[1]}]
}

viaFunction if count(f(input.a)) > 0
`
	in := `{"a": "a", "p": [["a", [1]], ["b", [1, 2]]]}`
	for _, q := range []string{"x = data.p.allow", "x = data.p.viaFunction"} {
		compareRefused(t, src, q, in)
	}
	for _, q := range []string{
		`t := input.a; x = [n | some v in input.b; v = t; n := upper(v)]`,
		`t := input.a; x = [n | some v in input.b; v = t; n := data.p.g(v)]`,
	} {
		src := "package p\n\ng(v) := 1 if v == 1\n\ng(v) := 2 if v == 1\n\ng(v) := 3 if v == \"a\"\n"
		compareRefused(t, src, q, `{"a": "a", "b": ["a", 1, "b"]}`)
	}
}

// TestDivergenceIndexedComprehensionKeyReadUnbound: a comprehension topdown
// indexes on a variable of the enclosing body (t) whose body reads t before
// the unification that binds it (t != "q" ahead of t == input.a[_]). topdown
// evaluates an indexed comprehension ahead, its keys unbound, so the read
// meets an unbound variable: an internal error (eval_internal_error,
// "called with operand 1 that requires evaluation") on every evaluation
// that reaches it, a deny. The built-in functions read are infallible ones
// (neq, internal.member_2), so the check for bodies that may fail let the
// policy through, and the compiled evaluator, which evaluates the body with
// t bound, answered: count(...) == 0 allowed what topdown denies. Also
// through a comprehension nested in the body and in a function. Refused at
// Prepare (keyReadUnbound); a key read after it is bound stays compiled.
func TestDivergenceIndexedComprehensionKeyReadUnbound(t *testing.T) {
	for _, src := range []string{
		"package p\n\nallow if {\n\tsome t in input.b\n\ty := [1 | t != \"q\"; t == input.a]\n\tcount(y) == 0\n}\n",
		"package p\n\nallow if {\n\tsome t in input.b\n\ty := [1 | t in [\"a\", \"b\"]; t == input.a]\n\tcount(y) == 0\n}\n",
		"package p\n\nallow if {\n\tsome t in input.b\n\ty := [z | some z in input.c; z != t; z = t]\n\tcount(y) == 0\n}\n",
		"package p\n\nallow if {\n\tt := input.a\n\tcount([1 | count([1 | t != \"q\"; t == \"a\"]) > 1]) == 0\n}\n",
		"package p\n\nf(t) if count([1 | count([1 | t != \"q\"; t == \"a\"]) > 1]) == 0\n\nallow if f(input.a)\n",
	} {
		compareRefused(t, src, "x = data.p.allow")
	}
	wantCompiled(t, "x = data.p.allow",
		"package p\n\nallow if {\n\tsome t in input.b\n\ty := [1 | t == input.a; t != \"q\"]\n\tcount(y) == 0\n}\n",
		"package p\n\nallow if {\n\tsome t in input.b\n\ty := [z | some z in input.c; z = t]\n\tcount(y) == 0\n}\n",
	)
}

// wantCompiled fails t unless Prepare accepts each of srcs with query: the
// shapes a refusal must leave to the compiled evaluator.
func wantCompiled(t *testing.T, query string, srcs ...string) {
	t.Helper()
	for _, src := range srcs {
		if err := prepareErr(t, src, query); err != nil {
			t.Errorf("Prepare: %v, want the compiled evaluator\n%s", err, src)
		}
	}
}

// compareRefused is compareQuery, and fails t unless Prepare refuses src:
// a divergence found by review, now refused.
func compareRefused(t *testing.T, src, query string, inputs ...string) {
	t.Helper()
	compareQuery(t, src, query, inputs...)
	if err := prepareErr(t, src, query); !errors.Is(err, plan.ErrUnsupported) {
		t.Errorf("Prepare: %v, want a refusal\n%s", err, src)
	}
}

// prepareErr is Prepare's error for query on src with the harness's base
// document.
func prepareErr(t *testing.T, src, query string) error {
	t.Helper()
	c, err := compileModules(src)
	if err != nil {
		t.Fatalf("compile: %v\n%s", err, src)
	}
	_, err = plan.Prepare(t.Context(), plan.Options{Compiler: c, Query: ast.MustParseBody(query), Data: ast.MustInterfaceToValue(policyData)})
	return err
}

// TestDivergenceLookupDropsRulesBelow: a lookup by path, such as
// blocked[input.a].c, into a rule tree where a node at the looked-up depth
// has no rules of its own but rules below it (blocked.users.c) beside a
// rule with a variable in its head (blocked.groups[g]). OPA's planner
// (optimizeLookup) stops descending at the last term but one when a rule
// there has a variable in its head, and plans only the nodes holding rules:
// blocked.users is dropped, the lookup is undefined for "users", and the
// negation held.
//
//	not blocked[input.a].c, a = "users"   topdown undefined   compiled true
//	blocked[input.a].c, a = "users"       topdown true        compiled undefined
//
// The compiled evaluator now refuses such a plan at Prepare
// (checkDroppedLookupRules).
func TestDivergenceLookupDropsRulesBelow(t *testing.T) {
	src := `package p

blocked.users.c := true

blocked.groups[g] := true if {
	some g in ["admins"]
}

allow if not blocked[input.a].c

value := blocked[input.a].c

deeper := t[input.a].c

t.b.c.d := true

t.q[k].c := 1 if some k in ["z"]
`
	for _, q := range []string{"x = data.p.allow", "x = data.p.value", "x = data.p.deeper"} {
		compareQuery(t, src, q, `{"a": "users"}`, `{"a": "groups"}`, `{"a": "b"}`, `{"a": "q"}`)
	}
	if err := prepareErr(t, src, "x = data.p.allow"); !errors.Is(err, plan.ErrUnsupported) {
		t.Errorf("Prepare: %v, want a refusal", err)
	}
}

// TestDivergenceNestedRuleRefsConflict: two rules building one document at
// two depths, t[k] := {"b": 1} and t.a.b := 1. topdown refuses the
// document with an object key conflict when it meets the longer path under
// the shorter one, even though the values agree; the plan built
// {"a": {"b": 1}} and t.a.b == 1 held. The compiled evaluator now refuses
// such rules at Prepare (checkNestedRuleRefs), wherever the longer rule
// stands in the rule tree; with values that differ it already met a
// conflict and refused.
func TestDivergenceNestedRuleRefsConflict(t *testing.T) {
	for _, src := range []string{
		"package p\n\nt.a.b := 1\n\nt[k] := {\"b\": 1} if some k in [\"a\"]\n\nallow if t.a.b == 1\n",
		"package p\n\nt.a.b.c := 1\n\nt[k] := {\"b\": {\"c\": 1}} if some k in [\"a\"]\n\nallow if t[input.a].b.c == 1\n",
		// Another document beside the longer one (t.z is looked at after
		// t.a.b).
		"package p\n\nt.a.b := 1\n\nt.z := 2\n\nt[k] := {\"b\": 1} if some k in [\"a\"]\n\nallow if t.a.b == 1\n",
		// The longer reference has a variable before the shorter one's:
		// it stands above it in the rule tree.
		"package p\n\nt[x].b.c := 1 if some x in [\"a\"]\n\nt.a[k] := {\"c\": 1} if some k in [\"b\"]\n\nallow if t.a.b.c == 1\n",
	} {
		compareQuery(t, src, "x = data.p.allow", `{"a": "a"}`)
		compareQuery(t, src, "x = data.p.t", `{"a": "a"}`)
		if err := prepareErr(t, src, "x = data.p.allow"); !errors.Is(err, plan.ErrUnsupported) {
			t.Errorf("Prepare: %v, want a refusal\n%s", err, src)
		}
	}
}

// TestDivergenceWithBaseDataBesideRulesIterated: a `with data...` modifier
// that writes base data into a document made of rules, which is then
// iterated. checkMixedIteration (check.go) refuses an iteration over a
// document holding both base data and rules, but it looks only at the base
// document given to Prepare; a `with` makes such a document at evaluation
// time, and the refusal did not fire; it now counts a with target on data
// as base data.
//
// Plan shape: planWith emits a WithStmt that upserts the value into the
// data register at p.blocked.bob (no rule there, so nothing is shadowed),
// or, for a target that is a rule (p.blocked.alice), shadows that rule and
// re-plans the rules under a new generation without it, so the value lives
// only in the base document. The iteration inside (planRefData with a
// variable key) is then one alternative block per remaining child rule,
// followed by a scan of the base document data.p.blocked that skips the
// rules' keys: rules first, base data second. topdown (evalTree.enumerate)
// visits the base document's keys first. An array, a string built from it,
// a first element all differ: with blocked.alice := true and
// blocked.teams.red := true,
//
//	[k | some k, _ in blocked] with data.p.blocked.bob as 1
//	  topdown ["bob", "alice", "teams"], compiled ["alice", "teams", "bob"]
//	[k | some k, _ in blocked] with data.p.blocked.alice as false
//	  topdown ["alice", "teams"], compiled ["teams", "alice"]
//
// (all four modes). Lookups through the same document (blocked[input.user]
// with data.p.blocked.bob as true), extents (blocked with ...: objects are
// ordered) and count agree.
func TestDivergenceWithBaseDataBesideRulesIterated(t *testing.T) {
	src := `package p

blocked.alice := true

blocked.teams.red := true

names := [k | some k, _ in blocked]

first := names[0]

allow if first == "alice" with data.p.blocked.bob as true
`
	// A key the rules do not have.
	compareQuery(t, src, "x = data.p.names with data.p.blocked.bob as 1", `{}`)
	// The same as an allow (first == "alice"): topdown denies (its first
	// key is "bob"), compiled allows.
	compareQuery(t, src, "x = data.p.allow", `{}`)
	// A rule replaced by a value: the planner drops it from the rule tree,
	// and the value is base data.
	compareQuery(t, src, "x = data.p.names with data.p.blocked.alice as false", `{}`)
}

// TestPrepareWithVariableDataTarget: not a divergence but a crash. A `with`
// whose data target holds a variable (with data.p.blocked[input.user] as
// true) compiles; topdown evaluates it to an eval_conflict_error ("bad
// document path"). OPA's planner panics on it (planWith ->
// isFunctionOrBuiltin -> ruletrie.Lookup hashes the ast.Ref key: "hash of
// unhashable type ast.Ref"), and nothing between plan.Prepare and the
// planner recovers: authz.Engine.Load of such a snapshot with the compiled
// or auto evaluator panics instead of falling back to topdown. Prepare
// should return an error (a refusal).
func TestPrepareWithVariableDataTarget(t *testing.T) {
	src := `package p

blocked.alice := true

allow if blocked.bob with data.p.blocked[input.user] as true
`
	defer func() {
		if p := recover(); p != nil {
			t.Errorf("Prepare panicked: %v", p)
		}
	}()
	compareQuery(t, src, "x = data.p.allow", `{"user": "bob"}`)
}

// TestDivergenceNegatedWalkPattern: not walk(x, [path, value]). walk is a
// relation: the planner calls it and scans its results for the pattern,
// and inside a negation (planned with nothing after it) a scan that
// matches nothing still ends the negation's block, so `not` never held:
// allow := false if not walk(input.c, [["approved"], true]) left the
// default true. Refused at Prepare as the negated enumerations are
// (checkNegatedEnumerations); walk without a pattern, and walk not
// negated, stay compiled.
func TestDivergenceNegatedWalkPattern(t *testing.T) {
	for _, src := range []string{
		"package p\n\ndefault allow := true\n\nallow := false if not walk(input.c, [[\"approved\"], true])\n",
		"package p\n\nallow if not walk(input.c, input.pair)\n",
		"package p\n\nallow if { k := \"d\"; not walk(input.c, [[k], 3]) }\n",
		"package p\n\nallow if count([k | some k in [\"d\", \"e\"]; not walk(input.c, [[k], 3])]) == 2\n",
	} {
		compareRefused(t, src, "x = data.p.allow", `{"c": {}, "pair": [["d"], 3]}`, `{"c": {"d": 3, "approved": true}, "pair": [["d"], 3]}`)
	}
	wantCompiled(t, "x = data.p.allow",
		"package p\n\nallow if walk(input.c, [[\"d\"], 3])\n",
		"package p\n\nallow if count([p | walk(input.c, [p, 3])]) > 0\n",
	)
}

// TestDivergenceNegatedLookupThenEnumeration: a negated expression that
// looks one rule tree up by path (u, its leaves at one depth) and then
// enumerates an uneven one (r). The planner nests the rest of the
// expression, the enumeration included, inside the lookup's block, which
// the compiled evaluator treats as transparent; the enumeration's scan of
// the base document (none here) ended it undefined, and `not` held where
// topdown's is false. The same with `not { ... }` (future.keywords.not)
// and under a with. checkNegatedEnumerations now looks inside lookups by
// path and withs; a negated lookup by path alone stays compiled.
func TestDivergenceNegatedLookupThenEnumeration(t *testing.T) {
	rules := "package p\n\nu.a := true\n\nu.b := true\n\nr.a := true\n\nr.b.c := true\n\n"
	for _, allow := range []string{
		"allow if not u[input.a] == r[input.j]\n",
		"allow if not u[input.a] == r[input.j].c\n",
		"allow if not u[input.a] == r[input.j] with input.zz as 1\n",
		"import future.keywords.not\n\nallow if not { u[input.a]; r[input.j] }\n",
		"import future.keywords.not\n\nallow if not { u[input.a] == r[input.j] with input.zz as 1 }\n",
	} {
		src := rules + allow
		if strings.HasPrefix(allow, "import") {
			src = "package p\n\n" + allow + "\n" + strings.TrimPrefix(rules, "package p\n\n")
		}
		compareRefused(t, src, "x = data.p.allow", `{"a": "a", "j": "a"}`, `{"a": "a", "j": "b"}`, `{"a": "z", "j": "a"}`)
	}
	wantCompiled(t, "x = data.p.allow",
		rules+"allow if not u[input.a]\n",
		rules+"allow if not u[input.a] == input.x\n",
		rules+"allow if not input.a == \"b\"\n",
	)
}

// TestPrepareRefusesNetworkBuiltins: topdown stops a rule at its first
// value, the plan evaluates every body, so a policy calling http.send would
// send requests topdown never sends. Such policies are left to topdown.
func TestPrepareRefusesNetworkBuiltins(t *testing.T) {
	for _, src := range []string{
		"package p\n\nallow if http.send({\"method\": \"get\", \"url\": \"http://127.0.0.1:1/a\"}).status_code == 200\n\nallow if input.a == 1\n",
		"package p\n\nallow if count(net.lookup_ip_addr(\"localhost\")) > 0\n",
	} {
		c, err := ast.CompileModulesWithOpt(map[string]string{"p.rego": src}, ast.CompileOpts{ParserOptions: ast.ParserOptions{RegoVersion: ast.RegoV1}})
		if err != nil {
			t.Fatal(err)
		}
		_, err = plan.Prepare(t.Context(), plan.Options{Compiler: c, Query: ast.MustParseBody("x = data.p.allow")})
		if !errors.Is(err, plan.ErrUnsupported) {
			t.Errorf("Prepare = %v, want a refusal\n%s", err, src)
		}
	}
}

// TestDivergenceRandomSignature: io.jwt.encode_sign with ES256 gives a
// new signature on every call. topdown keeps a function's result for the
// whole query, so sig(1) != sig(1) is false there; the plan called the
// built-in again and held it true, a wrong allow. Such policies are left
// to topdown (resolveBuiltin), encode_sign_raw too.
func TestDivergenceRandomSignature(t *testing.T) {
	jwk := authztest.PrivateJWK(t)
	for _, src := range []string{
		"package p\n\nk := " + jwk + "\n\nsig(x) := io.jwt.encode_sign({\"alg\": \"ES256\"}, {\"x\": x}, k)\n\nallow if sig(1) != sig(1)\n",
		"package p\n\nk := " + jwk + "\n\nsig(x) := io.jwt.encode_sign_raw(`{\"alg\": \"ES256\"}`, json.marshal({\"x\": x}), json.marshal(k))\n\nallow if sig(1) != sig(1)\n",
	} {
		compareRefused(t, src, "x = data.p.allow", `{}`)
	}
}

// TestDivergenceWithDataMergedIntoBase: a `with` on base data whose value is
// an object, read from a document above its target. topdown reads the
// target (and below) from the with's value alone, but a document above it
// as the value merged with what the store holds there (eval.go
// resolveReadFromStorage: merge(overlay, stored)); the plan upserts the
// value into the data register and reads it alone at every depth. With
// data.d.m = {"3": [true], "a": 1, "b": "two"}:
//
//	data.d.m with data.d.m as {"q": 1}    both {"q": 1}
//	data.d with data.d.m as {"q": 1}      topdown m = {"3": [true], "a": 1, "b": "two", "q": 1}
//	                                      compiled m = {"q": 1}
//
// Also through a rule reading the document, an iteration over data.d (the
// values), and nested withs. The compiled evaluator now refuses a with on
// data whose value lacks a key of the base document's object there (at
// any depth) when the plan reads the base document whole somewhere above
// the with's target (wholeDataReads): only then does topdown's merge
// differ from the value.
func TestDivergenceWithDataMergedIntoBase(t *testing.T) {
	src := `package p

doc := data.d

merged := x if {
	x := data.d with data.d.m as {"q": 1}
}

via_rule := x if {
	x := doc with data.d.m as {"q": 1}
}

values := x if {
	x := [v | some v in data.d] with data.d.m as {"q": 1}
}

nested := x if {
	x := data.d with data.d.m as {"a": {"z": 1}} with data.d.m.a as {"y": 2}
}

allow if {
	roles := data.d with data.d.m as {"b": "two"}
	roles.m.a == 1
}
`
	for _, q := range []string{"merged", "via_rule", "values", "nested", "allow"} {
		compareQuery(t, src, "x = data.p."+q, `{}`)
	}
	// The compiled evaluator answers a value with every key of the base
	// document's object (it merges to itself), and a plan that reads the
	// base document only at or below the target (topdown reads the value
	// alone there).
	src = `package p

same := x if {
	x := data.d with data.d.m as {"3": 0, "a": 2, "b": {"c": 1}, "q": 1}
}

below := x if {
	x := [data.d.m, data.d.m.q] with data.d.m as {"q": 1}
}
`
	compareQuery(t, src, "x = data.p.same", `{}`)
	compareQuery(t, src, "x = data.p.below", `{}`)
}

// TestDivergenceWithBelowReplacedDocument: a with on data below a document
// that an enclosing with (in the query, or earlier in the same expression)
// replaced by something other than an object, read from a document above
// both. topdown gathers the values of the withs in force in one overlay
// (mergeTermWithValues): the inner with finds 2 at data.d.m and puts
// {"a": 3} there instead, and a read of data.d merges the overlay with the
// base document, so m gets the base's other keys back. The plan upserts
// each value into the data register, and its m was {"a": 3} alone:
//
//	data.d with data.d.m.a as 3, under with data.d.m as 2
//	  topdown  m = {"3": [true], "a": 3, "b": "two"}
//	  compiled m = {"a": 3}
//
// A read at or below the outer target (data.d.m) reads the overlay alone
// in topdown too, and agrees. The compiled evaluator now refuses the inner
// with when the data register holds anything but an object at a prefix of
// its target where the base document holds an object and the plan reads a
// document above it (nonObjectAt).
func TestDivergenceWithBelowReplacedDocument(t *testing.T) {
	src := `package p

whole := v if {
	v := data.d with data.d.m.a as 3
}

keys := v if {
	v := {k | data.d[k].a} with data.d.m.a as 3
}

below := v if {
	v := data.d.m with data.d.m.a as 3
}
`
	for _, q := range []string{
		"x = data.p.whole with data.d.m as 2",
		"x = data.p.whole with data.d.m as input.a",
		"x = data.p.keys with data.d.m as 2",
		"x = data.p.below with data.d.m as 2",
		"x = data.d with data.d.m as 2 with data.d.m.a as 3",
		"x = data.d with data.d.m as [1] with data.d.m.a.b as 3",
		"x = data.d with data.d as {\"m\": 2, \"n\": 7, \"x\": 0, \"list\": 0} with data.d.m.a as 3",
	} {
		compareQuery(t, src, q)
	}
}

// TestDivergenceWithBelowArray: a with on data whose target lies below an
// array of the base document (data.d.x = ["a", "b", 3]). The plan upserts
// the value, which replaces the array by {"z": 1}; topdown reads every key
// the with's overlay lacks from the store, so data.d.x[1] is still "b":
//
//	allow if not data.d.x[1], with data.d.x.z as 1   topdown undefined   compiled true
//
// Also through a rule, a lookup by input, and a with written in a rule. The
// compiled evaluator now refuses, at Prepare, a with on data below any
// value of the base document that is not an object
// (errWithBelowNonObject); a with that replaces the array itself, or sits
// beside it, stays compiled.
func TestDivergenceWithBelowArray(t *testing.T) {
	src := `package p

allow if not data.d.x[1]

second := data.d.x[1]

at := data.d.x[input.k]

inner := v if {
	v := allow with data.d.x.z as 1
}

whole := data.d.x
`
	for _, q := range []string{
		"x = data.p.allow with data.d.x.z as 1",
		"x = data.p.second with data.d.x.z as 1",
		"x = data.p.at with data.d.x.z as 1",
		"x = data.p.inner",
		"x = data.p.whole with data.d.x.z as 1",
		"x = data.p.allow with data.d.n.z as 1",
	} {
		compareRefused(t, src, q, `{"k": 1}`)
	}
	for _, q := range []string{
		"x = data.p.allow with data.d.x as {\"z\": 1}",
		"x = data.p.second with data.d.m.q as 1",
	} {
		wantCompiled(t, q, src)
		compareQuery(t, src, q, `{"k": 1}`)
	}
}

// TestDivergenceGlobIndexed: topdown's rule indexer reads a glob.match of a
// constant pattern and constant delimiters by splitting both on the
// delimiters, keeping a backslash escape in the stored part and splitting
// on a delimiter that is a glob metacharacter; the rule is skipped when
// the request's value, split alike, differs. The built-in matches, so the
// compiled evaluator allowed:
//
//	allow if glob.match("a\\.b", ["."], input.a), a "a.b"          topdown undefined   compiled true
//	allow if glob.match("files/\\*", ["/"], input.a), a "files/*"  topdown undefined   compiled true
//	allow if glob.match("*", ["*"], input.a), a "/"                  topdown undefined   compiled true
//	allow if glob.match("a?b", ["?"], input.a), a "axb"              topdown undefined   compiled true
//
// Also through a function's argument and beside a default. Such calls are
// now refused at Prepare (checkGlobIndexed); patterns without a backslash
// and plain one-character delimiters stay compiled.
func TestDivergenceGlobIndexed(t *testing.T) {
	for _, tc := range []struct{ rules, input string }{
		{`allow if glob.match("a\\.b", ["."], input.a)`, `{"a": "a.b"}`},
		{`allow if glob.match("files/\\*", ["/"], input.a)`, `{"a": "files/*"}`},
		{`allow if glob.match("*", ["*"], input.a)`, `{"a": "/"}`},
		{`allow if glob.match("a?b", ["?"], input.a)`, `{"a": "axb"}`},
		{"default allow := false\n\nallow if glob.match(\"a\\\\b\", [\".\"], input.a)", `{"a": "ab"}`},
		{"f(y) if glob.match(\"a\\\\.b\", [\".\"], y)\n\nallow if f(input.a)", `{"a": "a.b"}`},
		{`deny if glob.match("files/\\*", ["/"], input.a)`, `{"a": "files/*"}`},
	} {
		src := "package p\n\n" + tc.rules + "\n"
		q := "x = data.p.allow"
		if strings.HasPrefix(tc.rules, "deny") {
			q = "x = data.p.deny"
		}
		compareRefused(t, src, q, tc.input)
	}
	// The index splits on bytes: a delimiter outside ASCII splits otherwise.
	for _, tc := range []struct{ rules, input string }{
		{`allow if glob.match("*", ["\u00c3"], input.a)`, `{"a": "\u00e9"}`},
		{`allow if glob.match("*.b", ["\u00b7", "."], input.a)`, `{"a": "\u00f7.b"}`},
	} {
		compareRefused(t, "package p\n\n"+tc.rules+"\n", "x = data.p.allow", tc.input)
	}
	for _, rules := range []string{
		`allow if glob.match("api.*.example.com", ["."], input.a)`,
		`allow if glob.match("files/*", ["/"], input.a)`,
		`allow if glob.match("a.b", [], input.a)`,
		`allow if glob.match("{a,b}?", [], input.a)`,
	} {
		src := "package p\n\n" + rules + "\n"
		wantCompiled(t, "x = data.p.allow", src)
		compareQuery(t, src, "x = data.p.allow", `{"a": "api.v1.example.com"}`, `{"a": "files/x"}`, `{"a": "a.b"}`, `{"a": "ax"}`)
	}
}

// TestDivergenceMemberVariableIndexed: a variable tested with `in` against
// a document, then used again. topdown's rule index records the test as
// "input.roles is y" and the later y == "admin" as "input.roles is
// 'admin'", and skips the body for every real collection:
//
//	allow if { y := lower(input.name); y in input.roles; y == "admin" }, name "ADMIN", roles ["admin"]
//	  topdown undefined   compiled true
//
// Also with a set, a default, an else, a function and data. Such bodies
// are now refused at Prepare (checkMemberVariableIndexed); the usual
// forms (some r in input.roles; r == "admin", input.role in data.allowed)
// stay compiled.
func TestDivergenceMemberVariableIndexed(t *testing.T) {
	for _, body := range []string{
		"allow if {\n\ty := lower(input.name)\n\ty in input.roles\n\ty == \"admin\"\n}\n",
		"default allow := false\n\nallow := true if {\n\ty := lower(input.name)\n\ty in input.roles\n\t\"admin\" == y\n}\n",
		"f(n) if {\n\ty := lower(n)\n\ty in input.roles\n\ty == \"admin\"\n}\n\nallow if f(input.name)\n",
		"allow if {\n\tinput.x == 1\n} else if {\n\ty := lower(input.name)\n\ty in input.roles\n\ty in [\"admin\", \"root\"]\n}\n",
		// Inside an operand of and or or, which the index reads as a body.
		"import future.keywords.and\n\nallow if {\n\t{y := lower(input.name); y in input.roles; y == \"admin\"} and {true}\n}\n",
		"import future.keywords.or\n\nallow if {\n\ty := lower(input.name)\n\t{input.zz == 1} or {y in input.roles; y == \"admin\"}\n}\n",
		// A variable inside a composite argument is no argument to the index.
		"f([y]) if {\n\ty in input.roles\n\ty == \"admin\"\n}\n\nallow if f([lower(input.name)])\n",
		// The index's own name for "any value".
		"allow if {\n\tinput.roles\n\t__any__ = \"admin\"\n}\n",
	} {
		src := "package p\n\n" + body
		compareRefused(t, src, "x = data.p.allow", `{"name": "ADMIN", "roles": ["admin"]}`, `{"name": "ADMIN", "roles": {"k": "admin"}}`)
	}
	for _, body := range []string{
		"allow if {\n\tsome r in input.roles\n\tr == \"admin\"\n}\n",
		"allow if input.name in input.roles\n",
		"allow if {\n\ty := lower(input.name)\n\ty in input.roles\n}\n",
	} {
		src := "package p\n\n" + body
		wantCompiled(t, "x = data.p.allow", src)
		compareQuery(t, src, "x = data.p.allow", `{"name": "admin", "roles": ["admin"]}`)
	}
}

// TestDivergenceGlobEscapedValue: topdown's rule index splits the value
// glob.match matches with the pattern's escaping rules, so a backslash in
// the request's value merges parts ("a\\.b" is one part for "*.*", where
// the built-in matches it): topdown denied what the compiled evaluator
// allowed. The compiled evaluator now refuses, at evaluation, a glob.match
// of a value holding a backslash (errGlobEscapedValue); other values stay
// compiled.
func TestDivergenceGlobEscapedValue(t *testing.T) {
	for _, rules := range []string{
		`allow if glob.match("*.*", ["."], input.a)`,
		`allow if glob.match("*.b", [], input.a)`,
		"f(s) if glob.match(\"*/x\", [\"/\"], s)\n\nallow if f(input.a)",
	} {
		src := "package p\n\n" + rules + "\n"
		compareQuery(t, src, "x = data.p.allow", `{"a": "a\\.b"}`, `{"a": "a\\/x"}`, `{"a": "a.b"}`, `{"a": "a/x"}`)
		c, err := compileModules(src)
		if err != nil {
			t.Fatal(err)
		}
		pl, err := plan.Prepare(t.Context(), plan.Options{Compiler: c, Query: ast.MustParseBody("x = data.p.allow"), Data: ast.NewObject()})
		if err != nil {
			t.Fatalf("Prepare: %v, want the policy compiled\n%s", err, src)
		}
		for in, wantRefused := range map[string]bool{`{"a": "a\\.b"}`: true, `{"a": "a\\/x"}`: true, `{"a": "a.b"}`: false} {
			_, err := pl.Eval(t.Context(), ast.MustParseTerm(in).Value, plan.EvalOptions{})
			if refused := errors.Is(err, plan.ErrUnsupported); refused != wantRefused {
				t.Errorf("%s with input %s: %v, want refused %v", rules, in, err, wantRefused)
			}
		}
	}
}

// TestDivergenceIndexedBuiltinReplaced: a with that replaces a built-in
// function topdown's rule index reads (startswith, endswith,
// strings.any_prefix_match, strings.any_suffix_match, glob.match), over a
// rule that calls it. The index, built from what the real function means,
// skips the rule for the request's value, whatever the replacement says;
// the plan runs the rule with the replacement:
//
//	q if startswith(input.path, "/admin"); allow if q with startswith as true, path "/api"
//	  topdown undefined   compiled true
//
// Such withs are now refused at Prepare (checkIndexedBuiltinReplaced).
func TestDivergenceIndexedBuiltinReplaced(t *testing.T) {
	for _, tc := range []struct{ call, with string }{
		{`startswith(input.path, "/admin")`, `startswith as true`},
		{`endswith(input.path, "/admin")`, `endswith as true`},
		{`strings.any_prefix_match(input.path, ["/admin"])`, `strings.any_prefix_match as true`},
		{`strings.any_suffix_match(input.path, ["/admin"])`, `strings.any_suffix_match as true`},
		{`glob.match("/admin/*", ["/"], input.path)`, `glob.match as yes`},
	} {
		src := "package p\n\nyes(_, _, _) := true\n\nq if " + tc.call + "\n\nallow if q with " + tc.with + "\n\nopen if not q with " + tc.with + "\n"
		compareRefused(t, src, "x = data.p.allow", `{"path": "/api"}`)
		compareRefused(t, src, "x = data.p.open", `{"path": "/api"}`)
	}
}

// TestDivergenceVariableSetInHead: a partial set whose head is a set with
// a variable in it, looked up by a constant key. topdown unifies the key
// with the head before it evaluates the body (evalOneRulePreUnify), and
// its unification cannot bind a variable inside a set, so the lookup is
// undefined; the plan builds the set and finds the key:
//
//	s contains {r} if some r in input.roles; allow if s[{"admin"}], roles ["admin"]
//	  topdown undefined   compiled true
//
// Also with the set nested in the head ([{r}], {"k": {r}}), a key bound at
// evaluation, and under a ref head. Such rules are now refused at Prepare
// (checkVariableSetsInHeads); a ground set in a head stays compiled.
func TestDivergenceVariableSetInHead(t *testing.T) {
	for _, tc := range []struct{ head, key string }{
		{`s contains {r} if some r in input.roles`, `{"admin"}`},
		{`s contains [{r}] if some r in input.roles`, `[{"admin"}]`},
		{`s contains {"k": {r}} if some r in input.roles`, `{"k": {"admin"}}`},
		{`s.a contains {r} if some r in input.roles`, `{"admin"}`},
		{`s contains {r: true} if some r in input.roles`, `{"admin": true}`},
	} {
		lookup := "s[" + tc.key + "]"
		if strings.HasPrefix(tc.head, "s.a") {
			lookup = "s.a[" + tc.key + "]"
		}
		src := "package p\n\n" + tc.head + "\n\nallow if " + lookup + "\n\nopen if not " + lookup + "\n"
		compareRefused(t, src, "x = data.p.allow", `{"roles": ["admin"]}`, `{"roles": ["u", "admin"]}`)
		compareRefused(t, src, "x = data.p.open", `{"roles": ["admin"]}`)
	}
	src := "package p\n\ns contains {\"admin\"} if \"admin\" in input.roles\n\nallow if s[{\"admin\"}]\n"
	wantCompiled(t, "x = data.p.allow", src)
	compareQuery(t, src, "x = data.p.allow", `{"roles": ["admin"]}`)
}

// TestDivergenceWithFunctionByValueWithVariables: a with that replaces a
// function (or a built-in function) by a composite value holding variables,
// reached through a rule: `g with f as [x]`, where g calls f. OPA's compiler
// leaves the value as written (it rewrites a reference or a call into a
// variable, not an array of variables), and the planner plans the value
// inside the rules it re-plans under the with (g1.data.p.g), where x is out
// of scope: a fresh register that nothing sets. topdown's g is [1], [2],
// [3]; the compiled evaluator's is undefined each time. A plain variable
// (with f as x) is passed to those rules as an argument and agrees, as does
// a composite value used by a call in the with's own expression
// (f(1) with f as [x]), planned where x is in scope.
//
//	arr    topdown [[1], [2], [3]]   compiled []
//	allow  (action "blocked") topdown undefined (blocked holds)  compiled true
//
// Also seen with {"k": x}, {x} and [[x], 1], with time.now_ns and count as
// the replaced built-in function. The compiled evaluator now refuses a plan
// that reads a register it never sets (checkUnboundLocals).
func TestDivergenceWithFunctionByValueWithVariables(t *testing.T) {
	src := `package p

f(_) := []

g := f(1)

blocked if "blocked" in f(input.user)

arr := [v | some x in [1, 2, 3]; v := g with f as [x]]

now := time.now_ns()

times := [v | some x in [1, 2, 3]; v := now with time.now_ns as [x]]

allow if {
	x := input.action
	not blocked with f as [x]
}
`
	compareQuery(t, src, "x = data.p.arr", `{}`)
	compareQuery(t, src, "x = data.p.times", `{}`)
	compareQuery(t, src, "x = data.p.allow", `{"action": "blocked", "user": "u"}`, `{"action": "read", "user": "u"}`)
	// Answered, and the same: a plain variable, and a composite value used
	// in the with's own expression.
	src = `package p

f(_) := []

g := f(1)

plain := [v | some x in [1, 2, 3]; v := g with f as x]

direct := [v | some x in [1, 2, 3]; v := f(1) with f as [x]]
`
	// (plain, a function replaced by a variable, is refused since by
	// checkWithFunctionValue: see TestDivergenceWithFunctionByRuleOrVariable.)
	for _, q := range []string{"plain", "direct"} {
		c, err := ast.CompileModulesWithOpt(map[string]string{"p.rego": src}, ast.CompileOpts{ParserOptions: ast.ParserOptions{RegoVersion: ast.RegoV1}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := plan.Prepare(t.Context(), plan.Options{Compiler: c, Query: ast.MustParseBody("x = data.p." + q)}); err != nil && q == "direct" {
			t.Errorf("%s: Prepare = %v, want a plan", q, err)
		}
		compareQuery(t, src, "x = data.p."+q, `{}`)
	}
}

// TestPanicDynamicLookupUnderFunctionReplacedByVariable: not a divergence
// but a crash, found by FuzzPolicy. A with that replaces a function (or a
// built-in function) by a variable (with count as n) makes the planner
// re-plan the rules below it with n as an extra parameter; a lookup by
// path among those rules (o[input.a], a CallDynamicStmt) passes only input
// and data. The compiled evaluator indexed past the arguments and panicked
// (the engine recovers, logs and asks topdown); it now refuses such a
// call at evaluation (errDynamicCallArguments). topdown: 5 for "a", 2 for
// "b".
func TestPanicDynamicLookupUnderFunctionReplacedByVariable(t *testing.T) {
	src := `package p

o["a"] := count([1])

o["b"] := 2

r := v if {
	n := 5
	v := o[input.a] with count as n
}
`
	defer func() {
		if p := recover(); p != nil {
			t.Errorf("Eval panicked: %v", p)
		}
	}()
	compareQuery(t, src, "x = data.p.r", `{"a": "a"}`, `{"a": "b"}`, `{}`)
}

// TestDivergenceWithFunctionBeforeDocument: found by FuzzPolicy once it
// wrote two packages. An expression whose with statements replace a
// function or a built-in function before a with on data or input. OPA's
// planner (planWith, planWithRec) applies the data and input targets from a
// list without the function replacements, but takes the document each
// target is written into from the expression's with statement at the same
// index: in `q with upper as 7 with data.a.q as 2` the value 2 goes into
// the document of `upper`, the input register, at a.q, and data.a.q keeps
// its value. topdown: 5, compiled: undefined (data.a.q is the default 0...
// then false below). A function of a package before a with on input
// writes the input's value into data instead. A with on data first, or
// function replacements only, agree; a function of a package before a
// with on data (both in data) too. This was hidden until now by the
// refusal of any with on a rule (checkMixedIteration took a package's own
// declaration for a whole read of it, which it narrowed at the same time).
func TestDivergenceWithFunctionBeforeDocument(t *testing.T) {
	src := `package a

default q := false

q if input.z

g(x) := x

package p

builtin_first := 5 if {
	data.a.q with upper as 7 with data.a.q as true
}

count_first := 5 if {
	data.a.q with count as 7 with data.a.q as true
}

function_then_input := x if {
	x := input.a with data.a.g as 1 with input.a as 2
}

same_package := 5 if {
	q with time.now_ns as 1 with data.p.q as true
}

default q := false

allow if {
	not data.a.q with upper as 1 with data.a.q as true
}
`
	for _, q := range []string{"builtin_first", "count_first", "function_then_input", "same_package", "allow"} {
		compareQuery(t, src, "x = data.p."+q, `{"a": 1}`)
	}
	// The with on data first, and a function of a package before a with on
	// data: these orders are planned right, but a with on a rule of another
	// package keeps the snapshot from the compiled evaluator anyway
	// (checkMixedIteration); both evaluators' answers are compared.
	src = `package a

default q := false

g(x) := x

package p

data_first := 5 if {
	data.a.q with data.a.q as true with upper as 7
}

both_data := 5 if {
	data.a.q with data.a.g as 1 with data.a.q as true
}
`
	for _, q := range []string{"data_first", "both_data"} {
		compareQuery(t, src, "x = data.p."+q, `{}`)
	}
}

// TestWithOnRuleOfAnotherPackage: a with on a rule of another package (with
// data.a.r as v) keeps the snapshot from the compiled evaluator: a
// package's declaration counts as a whole read of it (checkMixedIteration),
// beside the base data the with writes. OPA's planner re-plans what such a
// with reaches with parts of the rule tree hidden, and answering these
// shapes compiled brought wrong answers (TestDivergenceWithFunctionUnderWithOnPackage);
// a with on rules is rare outside a policy's tests. Every shape is refused
// at prepare, and the engine's answers (topdown's) are compared all the same.
func TestWithOnRuleOfAnotherPackage(t *testing.T) {
	src := `package a

default r := 1

r := 2 if input.a == "b"

s contains r

s contains "x"

o["a"] := r

o["b"] := [r, 1]

t.a := r

t.b.c := 2

g[k].v := r if some k in ["a", "b"]

f(x) := x + r

package p

import data.a as lib

v1 := x if {
	x := lib.r with data.a.r as 10
}

v2 := x if {
	x := data.a.o[input.a] with data.a.r as 10
}

v3 := x if {
	x := [x | some x in data.a.s] with data.a.r as 10
}

v4 if {
	every x in data.a.o { x != 3 } with data.a.r as 3
}

v5 := x if {
	x := data.a.f(1) with data.a.r as 10
}

v6 := x if {
	x := data.a.g[input.a].v with data.a.r as 10
}

v7 := x if {
	x := data.a.t.a with data.a.r as {"k": 1}
}

v8 := x if {
	x := {k: x | some k, x in data.a.o} with data.a.r as input.c
}

v9 := x if {
	x := data.a.o with data.a.o as {"q": 1}
}

v10 if {
	not data.a.s["x"] with data.a.s as {"y"}
}
`
	c, err := compileModules(src)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 10; i++ {
		q := fmt.Sprintf("x = data.p.v%d", i)
		if _, err := plan.Prepare(t.Context(), plan.Options{Compiler: c, Query: ast.MustParseBody(q), Data: ast.MustInterfaceToValue(policyData)}); !errors.Is(err, plan.ErrUnsupported) {
			t.Errorf("%s: Prepare = %v, want a refusal", q, err)
		}
		compareQuery(t, src, q, policyInputs...)
	}
	// Refused too: a lookup by a variable under a document a with writes
	// below, and the package read whole.
	lib := src[:strings.Index(src, "package p")]
	for _, rule := range []string{
		"v := x if {\n\tx := data.a.t[input.a] with data.a.t.a as 7\n}\n",
		"v := x if {\n\tx := data.a with data.a.r as 10\n}\n",
	} {
		src := lib + "package p\n\n" + rule
		c, err := compileModules(src)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := plan.Prepare(t.Context(), plan.Options{Compiler: c, Query: ast.MustParseBody("x = data.p.v"), Data: ast.MustInterfaceToValue(policyData)}); err == nil {
			t.Errorf("Prepare of %s: a plan, want a refusal", rule)
		}
		compareQuery(t, src, "x = data.p.v", policyInputs...)
	}
}

// TestDivergenceWithFunctionUnderWithOnPackage: a with replacing a function
// of a package (with data.a.f as 7), or replacing a function by one (with g
// as data.a.f), planned under a with on a document above it (with data.a
// as {"r": 5}, around the expression or around a rule that reaches it).
// OPA's planner re-plans what the outer with reaches with the package's
// rules hidden and finds no function at data.a.f. It plans a replacement of
// it as a with on data: data.a reads {"f": 7, "r": 5} where topdown's is
// {"r": 5}; and the replacement counts among the targets the planner pairs
// with the expression's with statements, so that in `data.a.r == 2 with
// data.a.f as 7 with upper as 1 with data.a.r as 2` the value 2 goes to the
// document of `upper` and data.a.r keeps the outer 5: h is false where
// topdown's is true, and `not h` allows what topdown denies (checkWithOrder,
// which pairs them by the compiler's view, f a function, let it through).
// And it plans a replacement by it as a replacement by the value of
// data.a.f in the outer with's value: g(1) is 100 where topdown calls f
// and gets 2. The allow was refused before only because the package's
// declaration counted as a whole read of it (checkMixedIteration).
func TestDivergenceWithFunctionUnderWithOnPackage(t *testing.T) {
	lib := "package a\n\nr := 1\n\nf(x) := x + 1\n\npackage p\n\n"
	for _, tc := range []struct{ rule, rules string }{
		{"whole", `whole := y if {
	y := [q | q := data.a with data.a.f as 7] with data.a as {"r": 5}
}
`},
		{"by", `g(x) := x

h := y if {
	y := g(1) with g as data.a.f
}

by := y if {
	y := [q | q := h] with data.a as {"f": 100}
}
`},
		{"allow", `h if {
	data.a.r == 2 with data.a.f as 7 with upper as 1 with data.a.r as 2
}

allow if {
	not h with data.a as {"r": 5}
}
`},
	} {
		src := lib + tc.rules
		c, err := compileModules(src)
		if err != nil {
			t.Fatal(err)
		}
		query := "x = data.p." + tc.rule
		_, err = plan.Prepare(t.Context(), plan.Options{Compiler: c, Query: ast.MustParseBody(query), Data: ast.MustInterfaceToValue(policyData)})
		if !errors.Is(err, plan.ErrUnsupported) {
			t.Errorf("%s: Prepare = %v, want a refusal", query, err)
		}
		compareQuery(t, src, query, policyInputs...)
	}
	// Withs on or by a function and on a rule beside it, with nothing
	// replacing the package: the same answers (topdown's, where the with on
	// a rule keeps the snapshot from the compiled evaluator).
	src := `package a

r := 1

f(x) := x + r

package p

both := y if {
	y := data.a.f(1) with data.a.r as 2 with data.a.f as 7
}

h if {
	data.a.r == 2 with data.a.f as 7 with upper as 1 with data.a.r as 2
}

g(x) := x

by := y if {
	y := g(1) with g as data.a.f with data.a.r as 5
}
`
	for _, q := range []string{"both", "h", "by"} {
		compareQuery(t, src, "x = data.p."+q, policyInputs...)
	}
}

// TestDivergenceFunctionOutputBound: a function with else or a default,
// called with its output already bound. The compiler writes s contains
// f(y) as s contains out if f(y, out), so that a lookup s["1"] calls f with
// its output bound to "1". topdown (evalFunc) then takes a value that does
// not match the bound output as a body that did not succeed, and goes on
// to the else or the default: s["1"] is true although s enumerates to
// {"b"}. The plan computes f's value and compares: s["1"] was undefined, and
// not s[input.k] allowed. The same with the output written (f(x, "1"),
// f(x, input.v)), and through a function whose value is f's. The compiled
// evaluator refuses such calls at Prepare (checkBoundFunctionOutputs).
func TestDivergenceFunctionOutputBound(t *testing.T) {
	for _, tc := range []struct{ src, query string }{
		{"package p\n\nf(x) := \"b\" if { x == \"1\" } else := x\n\ns contains f(y) if { some y in input.ys }\n\nallow if { not s[input.k] }\n", "x = data.p.allow"},
		{"package p\n\nf(x) := \"b\" if { x == \"1\" } else := x\n\ns contains f(y) if { some y in input.ys }\n", "x = data.p.s[input.k]"},
		{"package p\n\ndefault f(_) := \"1\"\n\nf(x) := \"b\" if x == \"1\"\n\ns contains f(y) if { some y in input.ys }\n\nallow if { not s[input.k] }\n", "x = data.p.allow"},
		{"package p\n\nf(x) := \"b\" if { x == \"1\" } else := x\n\nr if f(input.k, input.v)\n", "x = data.p.r"},
		{"package p\n\nf(x) := \"b\" if { x == \"1\" } else := x\n\nr if f(input.k, \"1\")\n", "x = data.p.r"},
		{"package p\n\nf(x) := \"b\" if { x == \"1\" } else := x\n\ng(x) := f(x)\n\ns contains g(y) if { some y in input.ys }\n\nallow if { not s[input.k] }\n", "x = data.p.allow"},
		{"package p\n\nf(x) := \"b\" if { x == \"1\" } else := x\n\nr if { v := input.v; f(input.k, v) }\n", "x = data.p.r"},
		// A variable of a reference head, bound by the lookup.
		{"package p\n\nf(x) := \"b\" if { x == \"1\" } else := x\n\no.q[k] := 1 if f(\"1\", k)\n\nallow if { not o.q[input.k] }\n", "x = data.p.allow"},
		{"package p\n\ndefault f(_) := \"1\"\n\nf(x) := \"b\" if x == \"1\"\n\no[k].q := 1 if f(\"1\", k)\n\nallow if { not o[input.k].q }\n", "x = data.p.allow"},
	} {
		compareRefused(t, tc.src, tc.query, `{"k": "1", "v": "1", "ys": ["1"]}`, `{"k": "b", "v": "b", "ys": ["1", "2"]}`)
	}
	// The usual calls stay compiled: the output is a fresh variable.
	wantCompiled(t, "x = data.p.r",
		"package p\n\nf(x) := \"b\" if { x == \"1\" } else := x\n\nr := f(input.k)\n",
		"package p\n\ndefault f(_) := \"1\"\n\nf(x) := \"b\" if x == \"1\"\n\nr if { y := f(input.k); y == \"1\" }\n",
		"package p\n\nf(x) := \"b\" if { x == \"1\" } else := x\n\nr if f(input.k) == input.v\n",
		"package p\n\nf(x) := \"b\" if { x == \"1\" } else := x\n\no[k] := f(k) if { some k in input.ys }\n",
	)
}

// TestDivergenceReplacementFunctionReachesMock: a with that replaces a
// function by another (with data.p.f as data.p.h) beside a with on a
// function h reaches (with lower as upper). topdown calls the replacement
// with no replacement in force, so h reached through f sees the real lower
// while h called directly sees upper; OPA's planner plans h once for both
// (planRules caches functions by path within a generation, and one with
// opens one generation), and not s["b"] held where topdown's s holds "b".
// The compiled evaluator refuses a replacement by a function that reaches a
// function or built-in some with replaces
// (checkReplacementReachesMock).
func TestDivergenceReplacementFunctionReachesMock(t *testing.T) {
	src := "package p\n\nh(x) := lower(x)\n\nf(x) := x\n\ns contains f(k) if { some k in input.ys }\n\nallow if { not s[\"b\"] }\n\nt := h(\"T\")\n\nr if { t; allow }\n"
	query := "x = data.p.r with lower as upper with data.p.f as data.p.h"
	compareRefused(t, src, query, `{"ys": ["a", "B"]}`)
	// A replacement that reaches nothing replaced stays compiled.
	if err := prepareErr(t, src, "x = data.p.r with data.p.f as data.p.h"); err != nil {
		t.Errorf("Prepare: %v, want the compiled evaluator", err)
	}
}

// TestDivergenceElseUnderVariableRef: a rule with else branches below a
// node holding a rule whose reference has a variable (q[x] above q.a).
// The compiler indexes that node's whole subtree as one, and topdown
// evaluates it as a partial document, which never reads else branches:
// q.a is undefined when its body fails, and when the index skips the body
// the first else branch it reached stands alone. The plan evaluated the
// chain: q.a == 3 (or 4) allowed where topdown denies.
//
//	q.a := 2 if lower(input.y) == "no" else := 3     topdown undefined   compiled 3
//
// Found by a hunt of the rule index; now refused at Prepare
// (checkElseUnderVariableRef).
func TestDivergenceElseUnderVariableRef(t *testing.T) {
	for _, src := range []string{
		"package p\n\nq[x] := 1 if x := input.x\n\nq.a := 2 if lower(input.y) == \"no\" else := 3\n\nallow if q.a == 3\n",
		"package p\n\nq[x] := 1 if x := input.x\n\nq.a := 2 if input.y == \"no\" else := 3 if lower(input.y) == \"m\" else := 4\n\nallow if q.a == 4\n",
		"package p\n\nq[k] contains 1 if k := input.x\n\nq.a := 2 if lower(input.y) == \"no\" else := 3\n\nallow if q.a == 3\n",
		"package p\n\nq[k].e := 1 if k := input.x\n\nq.a.f := 2 if lower(input.y) == \"no\" else := 3\n\nallow if q.a.f == 3\n",
		// Across packages: the rule tree is one.
		"package p\n\nq[x] := 1 if x := input.x\n\nallow if data.p.q.a == 3\n\npackage p.q\n\na := 2 if lower(input.y) == \"no\" else := 3\n",
	} {
		compareRefused(t, src, "x := data.p.allow", `{"y": "yes"}`, `{"y": "no"}`, `{"y": "m"}`, `{"x": "a", "y": "yes"}`)
	}
	// A sibling holding the variable (q.b[k] beside q.a) leaves q.a its
	// own index, and an else chain with no variable above it is
	// evaluated by topdown as the plan does.
	wantCompiled(t, "x := data.p.allow",
		"package p\n\nq.b[k] := 1 if k := input.x\n\nq.a := 2 if lower(input.y) == \"no\" else := 3\n\nallow if q.a == 3\n",
		"package p\n\nq.a := 2 if lower(input.y) == \"no\" else := 3\n\nallow if q.a == 3\n")
}

// TestDivergenceNonStringRuleKey: a rule whose reference has a constant
// key that is not a string (q[1] := 1). The compiler's rule tree puts it
// at q.1 and topdown reads q's other rules on their own; OPA's planner
// groups all of q by its string prefix into one object-building function,
// so beside q[1] a default under q never applied, an object with no rule
// of its own (q.a, {} with q.a.b undefined) was missing, and base data
// under the prefix was hidden: each let `not ...` allow where topdown
// denies. Found by a hunt; now refused at Prepare (checkNonStringRuleKeys).
func TestDivergenceNonStringRuleKey(t *testing.T) {
	for _, src := range []string{
		"package p\n\nq[1] := 1\n\ndefault q.a := true\n\nq.a := false if input.y == \"no\"\n\nallow if not q.a\n",
		"package p\n\nq[false] := 1\n\ndefault q.a := true\n\nallow if not q.a\n",
		"package p\n\nq[1][x] := 1 if x := input.x\n\ndefault q.a := true\n\nallow if not q.a\n",
		"package p\n\nq[1] := 1\n\nq.a.b := true if input.bad\n\ndeny if q.a\n\nallow if not deny\n",
		"package d\n\nm[1] := 2\n\npackage p\n\ndeny if data.d.m.a == 1\n\nallow if not deny\n",
	} {
		compareRefused(t, src, "x := data.p.allow", `{}`, `{"y": "m"}`, `{"y": "no"}`, `{"x": "k"}`)
	}
	// A key after a variable is grouped alike by both.
	wantCompiled(t, "x := data.p.allow",
		"package p\n\nq[x][1] := true if x := input.x\n\nallow if q.k[1]\n")
}

// TestDivergenceEmptyPackage: a lookup by a variable key that lands on a
// package with no rules (package blocked.eve beside blocked.mallory).
// topdown reads the document there as {}, which is defined; OPA's planner
// has no function for it and reads the base document only: undefined, so
// `not data.blocked[input.user]` allowed where topdown denies. When every
// node the key can select is such a package the plan has no lookup at all.
// Found by a hunt; now refused at Prepare (checkEmptyPackages).
func TestDivergenceEmptyPackage(t *testing.T) {
	for _, src := range []string{
		"package blocked\n\nmallory := true\n\npackage blocked.eve\n\npackage p\n\nallow if not data.blocked[input.user]\n",
		"package q.e\n\npackage q.f\n\npackage p\n\nallow if not data.q[input.user]\n",
		"package q.a\n\nx := 1\n\npackage q.b.e\n\npackage p\n\nallow if not data.q[input.k][input.j]\n",
	} {
		compareRefused(t, src, "x := data.p.allow", `{"user": "eve", "k": "b", "j": "e"}`, `{"user": "mallory"}`, `{"user": "e"}`)
	}
}

// TestDivergenceWithFunctionByRuleOrVariable: a with replacing a function
// or a built-in by a rule that is not a function, or by a variable the
// compiler kept its name. topdown holds a call replaced by a rule
// reference whatever the rule is (evalCallValue compares the unevaluated
// term with false), where the planner evaluates the rule; and the planner
// opens every rule body under the with with the variable in scope by its
// name, so a body's own variable of that name is read, not bound. Both
// allowed where topdown denies. Found by a hunt; now refused at Prepare
// (checkWithFunctionValue).
func TestDivergenceWithFunctionByRuleOrVariable(t *testing.T) {
	for _, src := range []string{
		"package p\n\nf(x) := x\n\nr := false\n\nallow if not f(1) with f as r\n",
		"package p\n\nr := false\n\nallow if not upper(\"a\") with upper as r\n",
		"package p\n\nf(x) := x\n\nr := 5 if input.n > 2\n\nallow if not f(1) with f as r\n",
		"package p\n\nf(a) := a\n\ng if {\n\tx = 5\n\tf(x)\n}\n\nallow if {\n\tx = true\n\tnot g with f as x\n}\n",
		// A policy's own variable named as the compiler names its locals.
		"package p\n\nf(a) := a\n\ng if {\n\t__localx = 5\n\tf(__localx)\n}\n\nallow if {\n\t__localx = true\n\tnot g with f as __localx\n}\n",
	} {
		compareRefused(t, src, "x := data.p.allow", `{}`, `{"n": 1}`, `{"n": 3}`)
	}
	// A function replaced by a function, or by a value, stays.
	wantCompiled(t, "x := data.p.allow",
		"package p\n\nf(x) := x\n\nh(x) := true\n\nallow if f(1) with f as h\n",
		"package p\n\nf(x) := x\n\nallow if f(1) with f as true\n")
}

// TestDivergenceBlockNegationStaleCondition: a negated body (not { ... },
// import future.keywords.not). OPA's planner tests it with a condition
// register the body sets to true when it succeeds, and takes a fresh
// register for it without resetting it, unlike and, or and every; registers
// are numbered anew for each rule body (and a negation in a loop runs more
// than once), so the register may still hold what another body or an
// earlier iteration put there. With `allow if input.a == 7` before it, the
// register of the inner negation below held input.a's value: the inner body
// seemed to succeed, its negation failed, and the outer negation held.
// Allowed where topdown denies; a negation in a loop that succeeded once
// failed for every later element (denied where topdown allows). Found by a
// hunt; the compiled evaluator now resets the register before the body.
func TestDivergenceBlockNegationStaleCondition(t *testing.T) {
	const hdr = "package p\n\nimport future.keywords.not\n\n"
	for _, src := range []string{
		hdr + "allow if input.a == 7\n\nallow if {\n\tnot {\n\t\tnot {input.a[_] == true}\n\t\tinput.d == \"a\"\n\t}\n}\n",
		hdr + "allow if {\n\tsome x in input.xs\n\tnot {input.ys[_] == x}\n}\n",
		hdr + "allow if {\n\tsome x in input.xs\n\tnot {not {input.ys[_] == x}; x > 0}\n}\n",
		hdr + "deny contains x if {\n\tsome x in input.xs\n\tnot {input.ys[_] == x; input.d == \"a\"}\n}\n\nallow if count(deny) == 1\n",
	} {
		compareQuery(t, src, "x := data.p.allow",
			`{"a": "abc", "d": "a", "xs": [1, 2], "ys": [1]}`, `{"a": 7, "d": "b", "xs": [2, 1], "ys": [2]}`,
			`{"a": [true], "d": "a", "xs": [2], "ys": []}`, `{"a": "abc", "d": "a", "xs": [1, 2, 3], "ys": [2]}`)
		wantCompiled(t, "x := data.p.allow", src)
	}
}

// TestDivergenceBlockNegationNeverSatisfiable: a negated body that can never
// succeed because it unifies two literals of different shapes, as in
// not {[input.a] = [1, 2]} (OPA's type checker does not look inside a
// negated body, and rejects the same unification elsewhere). OPA's planner
// stops planning such a body at the unification, so the statement that sets
// the body's condition register to true is never planned; the compiled
// evaluator's reset of that register (TestDivergenceBlockNegationStaleCondition)
// looked for that statement and, missing it, left the register as another
// rule body had left it. With `allow if input.a == 7` before it, the inner
// negation below read input.a's value there: its body seemed to succeed,
// the inner negation failed, and the outer one held. Allowed where topdown
// denies (and, with a single negation, denied where topdown allows). The
// compiled evaluator now resets the register of any negated body that only
// sets it to true and tests it at its end.
func TestDivergenceBlockNegationNeverSatisfiable(t *testing.T) {
	const hdr = "package p\n\nimport future.keywords.not\n\n"
	for _, src := range []string{
		hdr + "allow if input.a == 7\n\nallow if {\n\tnot {\n\t\tnot {[input.a] = [1, 2]}\n\t}\n}\n",
		hdr + "allow if input.a == 7\n\nallow if {\n\tnot {\n\t\tnot {[input.a] = [1, 2]}\n\t\tinput.b == 2\n\t}\n}\n",
		hdr + "allow if input.a == 1\n\nallow if not [input.a] = [1, 2]\n",
		hdr + "allow if input.a == 1\n\nallow if {\n\tnot {{\"role\": input.role} = {\"role\": \"admin\", \"level\": 2}}\n}\n",
	} {
		compareQuery(t, src, "x := data.p.allow",
			`{"a": 1, "b": 2, "role": "admin"}`, `{"a": 2, "b": 2, "role": "dev"}`, `{"a": 7}`, `{}`)
		wantCompiled(t, "x := data.p.allow", src)
	}
}

// TestDivergenceWithFunctionByValueWithVariablesBesideBody: the lost
// variable of TestDivergenceWithFunctionByValueWithVariables (g with f as
// [x], g calling f, x planned inside g's re-planned rules as a register
// nothing sets) in a rule with another body. The planner numbers registers
// anew for each rule body, and the other body here sets the lost register's
// number (to input.x, its third lookup); checkUnboundLocals looked for a
// write anywhere in the function, found that one, and let the plan through.
// blocked then saw f as [input.x] where topdown sees [input.action]:
//
//	action "blocked", x "other"   topdown undefined (blocked holds)   compiled true
//	action "read", x "blocked"    topdown true                        compiled undefined
//
// Also through else branches (blocked if {...} else if "blocked" in
// f(input.user), and a function's). The compiled evaluator now refuses a
// rule body or else branch that reads a register that neither it nor the
// function's parameters, value or result register set.
func TestDivergenceWithFunctionByValueWithVariablesBesideBody(t *testing.T) {
	src := `package p

f(_) := []

blocked if {
	a := input.user
	b := input.action
	c := input.x
	a == b
	c == 1
}

blocked if "blocked" in f(input.user)

allow if {
	x := input.action
	not blocked with f as [x]
}
`
	inputs := []string{`{"action": "blocked", "user": "u", "x": "other"}`, `{"action": "read", "user": "u", "x": "blocked"}`, `{"action": "blocked", "user": "u"}`}
	compareRefused(t, src, "x = data.p.allow", inputs...)
	// The same through else branches, which the planner numbers anew too
	// (all three inputs diverged: the last one, where the first branch
	// stops at input.x before setting the register, as in the case with
	// one body, an undefined f).
	for _, src := range []string{
		"package p\n\nf(_) := []\n\nblocked if {\n\ta := input.user\n\tb := input.x\n\tc := input.action\n\ta == c\n} else if \"blocked\" in f(input.user)\n\n" +
			"allow if {\n\tx := input.action\n\tnot blocked with f as [x]\n}\n",
		"package p\n\nf(_) := []\n\ng(y) := 1 if {\n\ta := input.user\n\tb := input.x\n\tc := input.action\n\ta == c\n} else := 2 if \"blocked\" in f(y)\n\n" +
			"allow if {\n\tx := input.action\n\tnot g(1) with f as [x]\n}\n",
	} {
		compareRefused(t, src, "x = data.p.allow", inputs...)
	}
}

// TestDivergenceNegatedUnificationNeverHolds: a negated unification of two
// literals of different shapes ([x] = [1, input.b], {"a": x} = {"a": 1,
// "b": 2}), which can never hold, so its negation always does. OPA's type
// checker rejects it in a rule body, but not in the body of an every. OPA's
// planner plans nothing past such a unification, and inside a negation
// (without import future.keywords.not, whose negated bodies the compiled
// evaluator answers right: TestDivergenceBlockNegationNeverSatisfiable)
// nothing is left to fail: the negated block ran to its end, so the
// negation failed. every held where topdown's does not hold:
//
//	ok if every x in input.xs { not [x] = [1, input.b] }, xs [1, 2]
//	ok     topdown true        compiled undefined
//	allow if not ok: topdown undefined, compiled true
//
// Such a negation is now refused at Prepare, and topdown answers.
func TestDivergenceNegatedUnificationNeverHolds(t *testing.T) {
	for _, src := range []string{
		"package p\n\nok if {\n\tevery x in input.xs {\n\t\tnot [x] = [1, input.b]\n\t}\n}\n\nallow if not ok\n",
		"package p\n\nok if {\n\tevery x in input.xs {\n\t\tnot {\"a\": x} = {\"a\": 1, \"b\": input.b}\n\t}\n}\n\nallow if not ok\n",
		"package p\n\nok if {\n\tevery x in input.xs {\n\t\tnot [[x], 2] = [[1, input.b], 2]\n\t}\n}\n\nallow if not ok\n",
	} {
		compareRefused(t, src, "x = data.p.allow", `{"xs": [1, 2], "b": 2}`, `{"xs": [], "b": 1}`, `{}`)
	}
	// Answered, and the same: shapes that may unify, which the plan tests
	// as it runs.
	src := "package p\n\nok if {\n\tevery x in input.xs {\n\t\tnot [x, 2] = [1, input.b]\n\t}\n}\n\nallow if not ok\n"
	wantCompiled(t, "x = data.p.allow", src)
	compareQuery(t, src, "x = data.p.allow", `{"xs": [1, 2], "b": 2}`, `{"xs": [1, 2], "b": 3}`, `{}`)
}
