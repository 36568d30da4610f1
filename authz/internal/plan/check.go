package plan

import (
	"fmt"
	"slices"

	"github.com/open-policy-agent/opa/v1/ast"
)

// checkCompiler refuses policies whose topdown evaluation does work the
// plan does not, where that work can fail: an error topdown would meet
// and the plan would not is an answer where topdown has none.
//
// That is the case of a comprehension topdown indexes. For
// `names := [n | some u in data.users; u.team == t; n := upper(u.name)]`
// topdown evaluates the comprehension once for every team, ahead, and
// looks the current one up; the plan evaluates it for the current team
// only. An error in another team's part of it (upper of a number) fails
// topdown's evaluation and not the plan's. Comprehensions whose bodies
// cannot fail are indexed harmlessly; an object comprehension nested in the
// body can fail (one key, two values). The query's comprehensions are
// checked too: the query's own compiler indexes them, out of sight here,
// so any whose body may fail is refused.
//
// An indexed comprehension can also fail where no built-in function can:
// topdown evaluates its body ahead with the keys unbound, so an expression
// that reads a key before the body binds it (t != "q" ahead of t == "a",
// both infallible) meets an unbound variable, an internal error, on every
// evaluation that reaches it. The plan evaluates the body with the key bound
// and answers (keyReadUnbound).
func checkCompiler(c *ast.Compiler, query ast.Body) error {
	queryVars := ast.NewVarSet()
	ast.WalkTerms(query, func(t *ast.Term) bool {
		if ast.IsComprehension(t.Value) {
			return true // the comprehension's own variables are not the query's
		}
		if v, ok := t.Value.(ast.Var); ok {
			queryVars.Add(v)
		}
		return false
	})
	var inQuery *ast.Term
	ast.WalkTerms(query, func(t *ast.Term) bool {
		if inQuery == nil && ast.IsComprehension(t.Value) &&
			(mayFail(c, comprehensionBody(t)) || keyReadUnbound(comprehensionBody(t), queryVars.Diff(declared(comprehensionBody(t))))) {
			inQuery = t
		}
		return inQuery != nil
	})
	if inQuery != nil {
		return &UnsupportedError{Feature: fmt.Sprintf(
			"comprehension in the query whose body may fail (topdown may index it, evaluating it ahead), at %v", inQuery.Location)}
	}
	for _, r := range policyRules(c, query) {
		var found *ast.Term
		ast.WalkTerms(r, func(t *ast.Term) bool {
			if found != nil {
				return true
			}
			if !ast.IsComprehension(t.Value) {
				return false
			}
			if idx := c.ComprehensionIndex(t); idx != nil {
				keys := ast.NewVarSet()
				for _, k := range idx.Keys {
					if v, ok := k.Value.(ast.Var); ok {
						keys.Add(v)
					}
				}
				if mayFail(c, comprehensionBody(t)) || keyReadUnbound(comprehensionBody(t), keys) {
					found = t
					return true
				}
			}
			return false
		})
		if found != nil {
			return &UnsupportedError{Feature: fmt.Sprintf(
				"comprehension that topdown indexes (evaluates ahead, its keys unbound) and whose body may fail, at %v", found.Location)}
		}
	}
	return nil
}

func comprehensionBody(t *ast.Term) ast.Body {
	switch c := t.Value.(type) {
	case *ast.ArrayComprehension:
		return c.Body
	case *ast.SetComprehension:
		return c.Body
	case *ast.ObjectComprehension:
		return c.Body
	}
	return nil
}

// keyReadUnbound reports whether body, evaluated as topdown evaluates an
// indexed comprehension (ahead, the variables in keys unbound), reads one of
// keys before an expression binds it. Only a unification (t = "a", which the
// compiler also makes of t == "a") binds, and only with the key outside any
// comprehension or every in it; any other expression holding an unbound key
// (a call, even of an infallible built-in function, a negation, an every, a
// comprehension) reads it: topdown's evaluation fails there with an
// internal error, whatever the request.
func keyReadUnbound(body ast.Body, keys ast.VarSet) bool {
	unbound := keys.Copy()
	for _, e := range body {
		if len(unbound) == 0 {
			return false
		}
		all := e.Vars(ast.VarVisitorParams{}).Intersect(unbound)
		if len(all) == 0 {
			continue
		}
		if !e.IsEquality() || e.Negated || len(e.With) > 0 {
			return true
		}
		outside := e.Vars(ast.VarVisitorParams{SkipClosures: true}).Intersect(unbound)
		if len(outside) != len(all) {
			return true // read inside a comprehension before it is bound
		}
		unbound = unbound.Diff(outside)
	}
	return false
}

// declared are the variables body declares (x := ..., some x), which in a
// query not yet compiled may share a name with one of the query's.
func declared(body ast.Body) ast.VarSet {
	vs := ast.NewVarSet()
	ast.WalkExprs(body, func(e *ast.Expr) bool {
		switch {
		case e.IsAssignment():
			vs.Update(e.Operand(0).Vars())
		default:
			if s, ok := e.Terms.(*ast.SomeDecl); ok {
				for _, t := range s.Symbols {
					if call, ok := t.Value.(ast.Call); ok && len(call) > 2 {
						for _, a := range call[1 : len(call)-1] { // some k, v in xs: not xs
							vs.Update(a.Vars())
						}
						continue
					}
					vs.Update(t.Vars())
				}
			}
		}
		return false
	})
	return vs
}

// infallible are the built-in functions that raise no error whatever their
// operands.
var infallible = map[string]bool{
	ast.Equality.Name:        true,
	ast.Assign.Name:          true,
	ast.Equal.Name:           true,
	ast.NotEqual.Name:        true,
	ast.LessThan.Name:        true,
	ast.LessThanEq.Name:      true,
	ast.GreaterThan.Name:     true,
	ast.GreaterThanEq.Name:   true,
	ast.Member.Name:          true,
	ast.MemberWithKey.Name:   true,
	ast.IsString.Name:        true,
	ast.IsNumber.Name:        true,
	ast.IsBoolean.Name:       true,
	ast.IsArray.Name:         true,
	ast.IsSet.Name:           true,
	ast.IsObject.Name:        true,
	ast.IsNull.Name:          true,
	ast.TypeNameBuiltin.Name: true,
}

// mayFail reports whether evaluating body could raise an error: a call of
// anything but an infallible built-in, a reference that reaches rules
// (whose evaluation may conflict or call such a function), or an object
// comprehension (which fails when it gives one key two values).
func mayFail(c *ast.Compiler, body ast.Body) bool {
	fails := false
	ast.WalkExprs(body, func(e *ast.Expr) bool {
		if e.IsCall() && !infallible[e.Operator().String()] {
			fails = true
		}
		return fails
	})
	if fails {
		return true
	}
	ast.WalkTerms(body, func(t *ast.Term) bool {
		switch v := t.Value.(type) {
		case *ast.ObjectComprehension:
			fails = true
		case ast.Call: // in a query, which is not compiled: upper(v) inside n := upper(v)
			fails = !infallible[v[0].String()]
		}
		return fails
	})
	if fails {
		return true
	}
	ast.WalkRefs(body, func(r ast.Ref) bool {
		if r.HasPrefix(ast.DefaultRootRef) && len(c.GetRulesDynamicWithOpts(r, ast.RulesOptions{IncludeHiddenModules: true})) > 0 {
			fails = true
		}
		return fails
	})
	return fails
}

// checkMixedIteration refuses a query whose modules or query enumerate a
// document that holds both base data and rules (some k, v in data.d, with
// data.d in the base document and a package d), or read one whole: topdown
// enumerates the base document's keys first (an array's indices too), the
// plan the rules' first, so an array built by the iteration would differ. A with on data adds base
// data where it points (with data.p.rules.x as 1 under rules of package
// p), so its target counts as base data. Lookups by constant keys through
// such a document, the usual case of a bundle with data beside its policy,
// are not affected.
func checkMixedIteration(c *ast.Compiler, query ast.Body, data ast.Object) error {
	// The paths with statements write base data to.
	var mocked []ast.Ref
	for _, r := range dataWithTargets(c, policyWiths(c, query)) {
		mocked = append(mocked, r.ConstantPrefix())
	}
	mockedBelow := func(prefix ast.Ref) bool {
		for _, m := range mocked {
			if len(m) > len(prefix) && m.HasPrefix(prefix) {
				return true
			}
		}
		return false
	}

	var found ast.Ref
	visit := func(r ast.Ref) bool {
		if found != nil {
			return true
		}
		if !r[0].Equal(ast.DefaultRootDocument) {
			return false
		}
		node := c.RuleTree.Child(ast.DefaultRootDocument.Value)
		var base ast.Value = data
		for i := 0; node != nil; i++ {
			obj, isObj := base.(ast.Object)
			hasBase := mockedBelow(r[:i+1])
			switch b := base.(type) {
			case nil:
			case ast.Object:
				hasBase = hasBase || b.Len() > 0
			default: // an array's indices, or a value that is no collection
				hasBase = true
			}
			mixed := (len(node.Values) > 0 || len(node.Children) > 0) && hasBase
			if mixed && (i+1 == len(r) || !r[i+1].IsGround()) {
				found = r
				return true
			}
			if i+1 == len(r) || !r[i+1].IsGround() {
				return false
			}
			k := r[i+1]
			node, base = node.Child(k.Value), nil
			if isObj {
				if v := obj.Get(k); v != nil {
					base = v.Value
				}
			}
		}
		return false
	}
	// Every reference but a with's target, which writes and reads nothing.
	// A package's path counts as a read of the whole package: that keeps a
	// with on a rule of another package (with data.a.r as v) away from the
	// compiled evaluator. OPA's planner re-plans what such a with reaches
	// with parts of the rule tree hidden, and the shapes that produced
	// (checkWithOrder, checkShadowedFunctionWith) were wrong answers, one a
	// wrong allow; a with on rules is rare outside tests, where topdown
	// serves it.
	var refs *ast.GenericVisitor
	refs = ast.NewGenericVisitor(func(x any) bool {
		switch x := x.(type) {
		case *ast.With:
			refs.Walk(x.Value)
			return true
		case ast.Ref:
			visit(x)
		}
		return found != nil
	})
	walkPolicy(c, query, func(n ast.Node) bool {
		refs.Walk(n)
		return true
	})
	if found != nil {
		return &UnsupportedError{Feature: fmt.Sprintf("iteration over %v, which holds both base data and rules", found)}
	}
	return nil
}

// dataWithTargets returns the targets of the withs that replace a document
// of data rather than a function: those write base data.
func dataWithTargets(c *ast.Compiler, withs []*ast.With) []ast.Ref {
	var targets []ast.Ref
	for _, w := range withs {
		if r, ok := w.Target.Value.(ast.Ref); ok && r.HasPrefix(ast.DefaultRootRef) && !isFunction(c, r) {
			targets = append(targets, r)
		}
	}
	return targets
}

// isFunction reports whether ref names functions (a with on it replaces a
// function, and writes no base data).
func isFunction(c *ast.Compiler, ref ast.Ref) bool {
	for _, r := range c.GetRulesExact(ref) {
		if len(r.Head.Args) > 0 {
			return true
		}
	}
	return false
}

// checkWithOrder refuses an expression whose with statements replace a
// function or a built-in function before a with on input or data (x with
// count as 1 with data.a.q as 2) when the planner would then apply a value
// to the wrong document. OPA's planner leaves the replacements of
// functions out of the list of targets it applies, but takes the document
// of the i-th target it applies (input or data) from the expression's i-th
// with statement, function replacements included: data.a.q as 2 above is
// written into input at a.q (the "document" of count), and data.a.q is
// left as it was. The i-th target's document is right only when both
// begin with the same root, which is all this lets through.
func checkWithOrder(c *ast.Compiler, query ast.Body) error {
	var found *ast.Expr
	visit := func(x any) bool {
		e, ok := x.(*ast.Expr)
		if !ok || found != nil || len(e.With) < 2 {
			return found != nil
		}
		var applied []ast.Ref // the targets the planner applies, in order
		for _, w := range e.With {
			r, ok := w.Target.Value.(ast.Ref)
			if !ok {
				continue
			}
			if (r[0].Equal(ast.DefaultRootDocument) || r[0].Equal(ast.InputRootDocument)) && !isFunction(c, r) {
				applied = append(applied, r)
			}
		}
		if len(applied) == len(e.With) {
			return false
		}
		for i, r := range applied {
			w, ok := e.With[i].Target.Value.(ast.Ref)
			if !ok || !w[0].Equal(r[0]) {
				found = e
				return true
			}
		}
		return false
	}
	walkPolicy(c, query, func(n ast.Node) bool { return visit(n) })
	if found != nil {
		return &UnsupportedError{Feature: fmt.Sprintf("with replacing a function before a with on input or data, at %v", found.Location)}
	}
	return nil
}

// checkShadowedFunctionWith refuses a with replacing a function of a
// package (with data.a.f as 7), or replacing a function by one (with g as
// data.a.f), when a with elsewhere replaces a document above that function
// (with data.a as {"r": 5}). Under the outer with, OPA's planner re-plans
// what the expression reaches with the replaced document's rules hidden
// and finds no function at data.a.f. It then plans a replacement of it as
// a with on data: the value is written into data (data.a reads {"f": 7,
// "r": 5} where topdown's is {"r": 5}), and it counts among the targets
// checkWithOrder pairs with the expression's with statements, so that a
// with after it (with upper as 1 with data.a.r as 2) writes its value into
// the wrong document. And it plans a replacement by it as a replacement by
// the value data.a.f, read from the outer with's value (100 for
// {"f": 100}), where topdown calls the function. Which with encloses which
// is the planner's business (rules re-planned under a with, comprehensions
// inside one), so a with above the function anywhere refuses.
func checkShadowedFunctionWith(c *ast.Compiler, query ast.Body) error {
	withs := policyWiths(c, query)
	above := dataWithTargets(c, withs)
	for _, w := range withs {
		for _, t := range []*ast.Term{w.Target, w.Value} {
			r, ok := t.Value.(ast.Ref)
			if !ok || !r.HasPrefix(ast.DefaultRootRef) || !isFunction(c, r) {
				continue
			}
			for _, a := range above {
				if len(a) < len(r) && r.HasPrefix(a) {
					return &UnsupportedError{Feature: fmt.Sprintf("with on or by the function %v under a with on %v, at %v", r, a, w.Location)}
				}
			}
		}
	}
	return nil
}

// checkLiteralsWrittenWithVariables refuses a set literal of two elements
// or more, one of them not a constant ({input.role, "guest"}), and an
// object literal of two keys or more, one of them not a constant
// ({input.a: 1, input.b: 2}), unless each is only an argument of a
// built-in function (route.method in {input.method, "*"}, count(...)),
// which gets the value. topdown enumerates such a literal as it is
// written, reading each element when it reaches it: in the order of the
// terms as written (the compiler's variables for the elements that are not
// constants sort after the constants) and every element, also two that
// turn out equal; it does so also where the literal reaches the
// enumeration through a rule, a variable or a function's argument. The
// plan builds the set or object first and scans the value: in the value's
// order, each element once. So [r | some r in {input.role, "guest"}][0]
// was "admin" compiled where topdown's is "guest", and
// count([v | some v in {input.a, input.b}]) was 1 where topdown's is 2.
func checkLiteralsWrittenWithVariables(c *ast.Compiler, query ast.Body) error {
	// The direct arguments of built-in functions, unless a with replaces a
	// built-in function (by a function of the policy, which may enumerate).
	args := map[*ast.Term]bool{}
	mocked := false
	for _, w := range policyWiths(c, query) {
		if r, ok := w.Target.Value.(ast.Ref); ok && !r.HasPrefix(ast.DefaultRootRef) && !r.HasPrefix(ast.InputRootRef) {
			mocked = true
		}
	}
	if !mocked {
		walkPolicy(c, query, func(n ast.Node) bool {
			if e, ok := n.(*ast.Expr); ok && e.IsCall() {
				op := e.Operator()
				if !op.HasPrefix(ast.DefaultRootRef) && !op.Equal(ast.Equality.Ref()) && !op.Equal(ast.Assign.Ref()) {
					for _, t := range e.Operands() {
						args[t] = true
					}
				}
			}
			return false
		})
	}
	found := findInPolicy(c, query, func(n ast.Node) bool {
		t, ok := n.(*ast.Term)
		if !ok || args[t] {
			return false
		}
		switch v := t.Value.(type) {
		case ast.Set:
			return v.Len() > 1 && !v.IsGround()
		case ast.Object:
			return v.Len() > 1 && slices.ContainsFunc(v.Keys(), func(k *ast.Term) bool { return !k.IsGround() })
		}
		return false
	})
	if found != nil {
		return &UnsupportedError{Feature: fmt.Sprintf(
			"a set or an object literal with elements or keys that are not constants, at %v, which topdown enumerates as written", found.Loc())}
	}
	return nil
}

// checkNegatedUnificationNeverHolds refuses a negated unification of two
// literals of different shapes: arrays of different lengths, or objects of
// different sizes, at the top or nested at the same place in both (not [x]
// = [1, input.b]). It never holds, so its negation always does; OPA's type
// checker rejects it in a rule body, but not in an every's. OPA's planner
// plans nothing past such a unification (planUnify), and inside a negation
// (without import future.keywords.not) that leaves a block with nothing to
// fail: it runs to its end, and the negation fails where topdown's holds.
// (A negated body, not { ... }, records its success in a register the
// compiled evaluator resets, and is answered right: negatedBodyCondition.)
func checkNegatedUnificationNeverHolds(c *ast.Compiler, query ast.Body) error {
	found := findInPolicy(c, query, func(n ast.Node) bool {
		e, ok := n.(*ast.Expr)
		if !ok || !e.Negated || !e.IsEquality() {
			return false
		}
		return neverUnifies(e.Operand(0), e.Operand(1))
	})
	if found != nil {
		return &UnsupportedError{Feature: fmt.Sprintf(
			"a negated unification of literals of different shapes, at %v, which the planner leaves out of the negation", found.Loc())}
	}
	return nil
}

// neverUnifies reports whether OPA's planner finds that a and b cannot
// unify, and plans nothing past them: arrays of different lengths, objects
// of different sizes, or such a pair at the same place inside both.
func neverUnifies(a, b *ast.Term) bool {
	switch va := a.Value.(type) {
	case *ast.Array:
		vb, ok := b.Value.(*ast.Array)
		if !ok {
			return false
		}
		if va.Len() != vb.Len() {
			return true
		}
		for i := range va.Len() {
			if neverUnifies(va.Elem(i), vb.Elem(i)) {
				return true
			}
		}
	case ast.Object:
		vb, ok := b.Value.(ast.Object)
		if !ok {
			return false
		}
		if va.Len() != vb.Len() {
			return true
		}
		for _, k := range va.Keys() {
			if v := vb.Get(k); v != nil && neverUnifies(va.Get(k), v) {
				return true
			}
		}
	}
	return false
}
