package plan

import (
	"fmt"
	"slices"

	"github.com/open-policy-agent/opa/v1/ast"
)

// checkBoundFunctionOutputs refuses a call of a function of the policy that
// has an else or a default, where topdown may call it with its output
// already bound: the output is the key of a rule's head (the compiler
// writes s contains f(y) as s contains out if f(y, out), and a lookup
// s["1"] binds out first), it is written as a value (f(x, "1")), or it is a
// variable bound before the call (the function's arguments, an earlier
// expression). topdown (evalFunc) takes a body whose value does not match
// the bound output as one that did not succeed and goes on to the else or
// the default, so s["1"] holds although s enumerates to {"b"}; the plan
// computes the value and compares. A function whose value is such a call's
// output (g(x) := f(x)) passes its own bound output on, and counts as well,
// as does a function that a with replaces by one.
func checkBoundFunctionOutputs(c *ast.Compiler, query ast.Body) error {
	rules := policyRules(c, query)
	sensitive := elseOrDefaultFunctions(rules)
	if len(sensitive) == 0 {
		return nil
	}
	withs := policyWiths(c, query)
	for changed := true; changed; {
		changed = false
		for _, w := range withs {
			target, ok1 := w.Target.Value.(ast.Ref)
			value, ok2 := w.Value.Value.(ast.Ref)
			if n, ok := sensitive[value.String()]; ok1 && ok2 && ok && !hasKey(sensitive, target.String()) {
				sensitive[target.String()], changed = n, true
			}
		}
		for _, r := range rules {
			if len(r.Head.Args) == 0 || hasKey(sensitive, r.Ref().String()) {
				continue
			}
			// A call whose output is (in) the function's value.
			for rule := r; rule != nil; rule = rule.Else {
				ast.WalkExprs(rule.Body, func(e *ast.Expr) bool {
					if out := callOutput(e, sensitive); out != nil && rule.Head.Value != nil &&
						len(out.Vars().Intersect(rule.Head.Value.Vars())) > 0 {
						sensitive[r.Ref().String()], changed = len(r.Head.Args), true
					}
					return false
				})
			}
		}
	}
	for _, r := range rules {
		bound := ast.NewVarSet()
		for _, a := range r.Head.Args {
			bound.Update(a.Vars())
		}
		if r.Head.Key != nil {
			bound.Update(r.Head.Key.Vars())
		}
		// A lookup binds a reference head's variables first too
		// (o.q[k] := 1 looked up as o.q["1"]).
		for _, t := range r.Head.Ref()[1:] {
			bound.Update(t.Vars())
		}
		for rule := r; rule != nil; rule = rule.Else {
			if e := boundOutputCall(rule.Body, bound, sensitive); e != nil {
				return boundOutputError(e)
			}
		}
	}
	if e := boundOutputCall(query, ast.NewVarSet(), sensitive); e != nil {
		return boundOutputError(e)
	}
	return nil
}

func boundOutputError(e *ast.Expr) error {
	return &UnsupportedError{Feature: fmt.Sprintf(
		"a call of a function with an else or a default whose output may be bound before the call, at %v, where topdown goes on to the else", e.Location)}
}

func hasKey(m map[string]int, k string) bool {
	_, ok := m[k]
	return ok
}

// elseOrDefaultFunctions returns the paths of the functions among rules
// that have an else or a default, with their arities.
func elseOrDefaultFunctions(rules []*ast.Rule) map[string]int {
	found := map[string]int{}
	for _, r := range rules {
		if len(r.Head.Args) > 0 && (r.Else != nil || r.Default) {
			found[r.Ref().String()] = len(r.Head.Args)
		}
	}
	return found
}

// callOutput returns the output term of e when e calls a function of
// sensitive (path to arity) with its output given.
func callOutput(e *ast.Expr, sensitive map[string]int) *ast.Term {
	terms, ok := e.Terms.([]*ast.Term)
	if !ok || len(terms) < 2 {
		return nil
	}
	op, ok := terms[0].Value.(ast.Ref)
	if !ok {
		return nil
	}
	if arity, ok := sensitive[op.String()]; !ok || len(terms)-1 != arity+1 {
		return nil
	}
	return terms[len(terms)-1]
}

// boundOutputCall returns the first call in body (its closures included)
// of a function of sensitive whose output may be bound before it: a value,
// a variable of bound, or one an earlier expression holds.
func boundOutputCall(body ast.Body, bound ast.VarSet, sensitive map[string]int) *ast.Expr {
	bound = bound.Copy()
	for _, e := range body {
		var found *ast.Expr
		// Closures see the variables of the expression's other terms.
		outer := bound.Copy()
		outer.Update(e.Vars(ast.VarVisitorParams{SkipClosures: true}))
		ast.WalkClosures(e, func(x any) bool {
			if found == nil {
				switch x := x.(type) {
				case *ast.ArrayComprehension:
					found = boundOutputCall(x.Body, outer, sensitive)
				case *ast.SetComprehension:
					found = boundOutputCall(x.Body, outer, sensitive)
				case *ast.ObjectComprehension:
					found = boundOutputCall(x.Body, outer, sensitive)
				case *ast.Every:
					inner := outer.Copy()
					inner.Update(x.KeyValueVars())
					found = boundOutputCall(x.Body, inner, sensitive)
				}
			}
			return true
		})
		if found != nil {
			return found
		}
		if out := callOutput(e, sensitive); out != nil {
			if v, ok := out.Value.(ast.Var); !ok || bound.Contains(v) {
				return e
			}
		}
		bound.Update(e.Vars(ast.VarVisitorParams{SkipClosures: true}))
	}
	return nil
}

// checkReplacementReachesMock refuses a with that replaces a function or a
// built-in by a function of the policy (with data.p.f as data.p.h) when the
// replacement reaches, through its calls and the rules it reads, a function
// or a built-in that a with replaces (with lower as upper), and the query
// also reaches some of what the replacement reaches other than through a
// replacement (t := h("T")). topdown calls a replacement with no
// replacement in force, so h reached through f sees the real lower and h
// called directly sees upper; OPA's planner plans h once for both (it keeps
// one plan of a function per path within a generation, and a with opens
// one generation for all its statements). A replacement that reaches only
// what the query reaches through replacements, or a replaced function, is
// left to the compiled evaluator (OPA's compliance cases of replacements
// calling what they replace).
func checkReplacementReachesMock(c *ast.Compiler, query ast.Body) error {
	withs := policyWiths(c, query)
	var mocked []ast.Ref
	for _, w := range withs {
		if r, ok := w.Target.Value.(ast.Ref); ok && (!r.HasPrefix(ast.DefaultRootRef) && !r.HasPrefix(ast.InputRootRef) || isFunction(c, r)) {
			mocked = append(mocked, r)
		}
	}
	var direct map[*ast.Rule]bool // what the query reaches, not through a with's value
	for _, w := range withs {
		h, ok := w.Value.Value.(ast.Ref)
		if !ok || !h.HasPrefix(ast.DefaultRootRef) || !isFunction(c, h) {
			continue
		}
		replacement, m := reachRules(c, c.GetRulesExact(h), nil, mocked, false)
		if m == nil {
			continue
		}
		if direct == nil {
			direct, _ = reachRules(c, nil, query, nil, false)
		}
		for r := range replacement {
			// A replaced function reached directly runs as its
			// replacement where the with is in force, and as itself
			// (with nothing replaced) elsewhere: one plan serves both.
			if direct[r] && !slices.ContainsFunc(mocked, func(m ast.Ref) bool { return r.Ref().Equal(m) }) {
				return &UnsupportedError{Feature: fmt.Sprintf(
					"a with replacing a function by %v, which reaches %v that a with replaces, and is reached otherwise too, at %v", h, m, w.Location)}
			}
		}
	}
	return nil
}

// checkWithFunctionValue refuses a with that replaces a function or a
// built-in (the target) by something topdown and the planner read
// otherwise:
//
//   - a reference to a rule that is not a function (with f as data.p.r).
//     The compiler accepts any rule there; topdown keeps the reference
//     unevaluated and, for a call whose output is not captured, holds
//     whatever r is (evalCallValue compares the term with false), even
//     false or undefined; the planner evaluates r at the call. `not f(1)
//     with f as r`, r false, allowed where topdown denies.
//   - a variable. The planner opens every rule body planned under the
//     with with that variable in scope by its name, so a variable of the
//     same name in a rule the with reaches (g if { x = 5; f(x) }) is read
//     as the replacement instead of bound, and `not g with f as x`
//     allowed where topdown denies. The compiler renames the variables
//     := declares (__localN__), but keeps those bound by = or in a
//     comprehension, and a policy may name its own __local0__: every
//     variable is refused.
func checkWithFunctionValue(c *ast.Compiler, query ast.Body) error {
	replacesFunction := func(t *ast.Term) bool {
		switch x := t.Value.(type) {
		case ast.Var:
			return ast.BuiltinMap[string(x)] != nil
		case ast.Ref:
			return ast.BuiltinMap[x.String()] != nil || isFunction(c, x)
		}
		return false
	}
	found := findInPolicy(c, query, func(n ast.Node) bool {
		w, ok := n.(*ast.With)
		if !ok || !replacesFunction(w.Target) {
			return false
		}
		switch v := w.Value.Value.(type) {
		case ast.Var:
			// Every variable: a policy may name its own __local0__ too.
			return ast.BuiltinMap[string(v)] == nil
		case ast.Ref:
			return v.HasPrefix(ast.DefaultRootRef) && !isFunction(c, v)
		}
		return false
	})
	if found != nil {
		return &UnsupportedError{Feature: fmt.Sprintf(
			"a with replacing a function by a rule that is not one, or by a variable of the policy's (%v), which topdown and OPA's planner read otherwise, at %v",
			found.(*ast.With).Value, found.Loc())}
	}
	return nil
}
