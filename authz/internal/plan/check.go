package plan

import (
	"fmt"
	"maps"
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
// cannot fail are indexed harmlessly.
func checkCompiler(c *ast.Compiler) error {
	names := slices.Sorted(maps.Keys(c.Modules))
	for _, name := range names {
		var found *ast.Term
		ast.WalkTerms(c.Modules[name], func(t *ast.Term) bool {
			if found != nil {
				return true
			}
			if ast.IsComprehension(t.Value) && c.ComprehensionIndex(t) != nil && mayFail(c, comprehensionBody(t)) {
				found = t
				return true
			}
			return false
		})
		if found != nil {
			return &UnsupportedError{Feature: fmt.Sprintf(
				"comprehension that topdown indexes (evaluates ahead) and whose body may fail, at %v", found.Location)}
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
// anything but an infallible built-in, or a reference that reaches rules
// (whose evaluation may conflict or call such a function).
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
	ast.WalkRefs(body, func(r ast.Ref) bool {
		if r.HasPrefix(ast.DefaultRootRef) && len(c.GetRulesDynamicWithOpts(r, ast.RulesOptions{})) > 0 {
			fails = true
		}
		return fails
	})
	return fails
}

// checkMixedIteration refuses a query whose modules or query enumerate a
// document that holds both base data and rules (some k, v in data.d, with
// data.d in the base document and a package d), or read one whole: topdown
// enumerates the base document's keys first, the plan the rules' first, so
// an array built by the iteration would differ. A with on data adds base
// data where it points (with data.p.rules.x as 1 under rules of package
// p), so its target counts as base data. Lookups by constant keys through
// such a document, the usual case of a bundle with data beside its policy,
// are not affected.
func checkMixedIteration(c *ast.Compiler, query ast.Body, data ast.Object) error {
	names := slices.Sorted(maps.Keys(c.Modules))
	// The paths with statements write base data to.
	var mocked []ast.Ref
	mock := func(x any) bool {
		if w, ok := x.(*ast.With); ok {
			if r, ok := w.Target.Value.(ast.Ref); ok && r.HasPrefix(ast.DefaultRootRef) && !isFunction(c, r) {
				mocked = append(mocked, r.ConstantPrefix())
			}
		}
		return false
	}
	for _, name := range names {
		ast.WalkNodes(c.Modules[name], func(n ast.Node) bool { return mock(n) })
	}
	ast.WalkNodes(query, func(n ast.Node) bool { return mock(n) })
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
			hasBase := isObj && obj.Len() > 0 || mockedBelow(r[:i+1])
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
	for _, name := range names {
		refs.Walk(c.Modules[name])
	}
	refs.Walk(query)
	if found != nil {
		return &UnsupportedError{Feature: fmt.Sprintf("iteration over %v, which holds both base data and rules", found)}
	}
	return nil
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
