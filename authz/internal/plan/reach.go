package plan

import (
	"maps"
	"slices"

	"github.com/open-policy-agent/opa/v1/ast"
)

// The checks of Prepare look only at what the query can reach: a rule no
// evaluation of the query runs cannot make the evaluators differ, and a
// library of rules that the decision does not use (a shared lib/ beside
// the policy) must not keep the compiled evaluator away from it.

// reachRules returns the rules that rules and body reach through their
// references: calls, lookups (a reference with a variable, or one that
// reads a document whole, reaches every rule it may name, those under
// data.system included: OPA's rule tree hides them, and neither evaluator
// does, apart from topdown's reading all of data) and, with
// withValues, the values of with statements, which are evaluated; a with's
// target is not. It also returns the first of mocked that they refer to,
// if any.
func reachRules(c *ast.Compiler, rules []*ast.Rule, body ast.Body, mocked []ast.Ref, withValues bool) (map[*ast.Rule]bool, ast.Ref) {
	seen := map[*ast.Rule]bool{}
	queue := slices.Clone(rules)
	var found ast.Ref
	var visitor *ast.GenericVisitor
	visitor = ast.NewGenericVisitor(func(x any) bool {
		switch x := x.(type) {
		case *ast.With:
			if withValues {
				visitor.Walk(x.Value)
			}
			return true
		case ast.Ref:
			if i := slices.IndexFunc(mocked, func(m ast.Ref) bool { return x.Equal(m) }); i >= 0 && found == nil {
				found = mocked[i]
			}
			if x.HasPrefix(ast.DefaultRootRef) {
				queue = append(queue, c.GetRulesDynamicWithOpts(x, ast.RulesOptions{IncludeHiddenModules: true})...)
			}
		}
		return false
	})
	if body != nil {
		visitor.Walk(body)
	}
	for len(queue) > 0 {
		r := queue[0]
		queue = queue[1:]
		if !seen[r] {
			seen[r] = true
			visitor.Walk(r)
		}
	}
	return seen, found
}

// policyRules returns the rules the query reaches, in module name order
// and, within a module, as written.
func policyRules(c *ast.Compiler, query ast.Body) []*ast.Rule {
	reached, _ := reachRules(c, nil, query, nil, true)
	var rules []*ast.Rule
	for _, name := range slices.Sorted(maps.Keys(c.Modules)) {
		for _, r := range c.Modules[name].Rules {
			if reached[r] {
				rules = append(rules, r)
			}
		}
	}
	return rules
}

// walkPolicy walks what the query reaches: each module holding a rule it
// reaches (its package declaration, its imports and those rules), in
// module name order (so that a refusal names the same place every time),
// then the query; f returns true to skip a node's children.
func walkPolicy(c *ast.Compiler, query ast.Body, f func(ast.Node) bool) {
	reached, _ := reachRules(c, nil, query, nil, true)
	for _, name := range slices.Sorted(maps.Keys(c.Modules)) {
		m := c.Modules[name]
		if !slices.ContainsFunc(m.Rules, func(r *ast.Rule) bool { return reached[r] }) {
			continue
		}
		ast.WalkNodes(m.Package, f)
		for _, imp := range m.Imports {
			ast.WalkNodes(imp, f)
		}
		for _, r := range m.Rules {
			if reached[r] {
				ast.WalkNodes(r, f)
			}
		}
	}
	ast.WalkNodes(query, f)
}

// findInPolicy returns the first node of what the query reaches, in
// walkPolicy's order, that match holds for; nil when none does.
func findInPolicy(c *ast.Compiler, query ast.Body, match func(ast.Node) bool) ast.Node {
	var found ast.Node
	walkPolicy(c, query, func(n ast.Node) bool {
		if found == nil && match(n) {
			found = n
		}
		return found != nil
	})
	return found
}

// policyWiths returns every with statement of the modules and the query,
// in walkPolicy's order. A built-in function named by a variable (with
// lower as upper in a query the compiler has not rewritten) is given as a
// reference, as in the compiled modules.
func policyWiths(c *ast.Compiler, query ast.Body) []*ast.With {
	var withs []*ast.With
	walkPolicy(c, query, func(n ast.Node) bool {
		if w, ok := n.(*ast.With); ok {
			_, v1 := w.Target.Value.(ast.Var)
			_, v2 := w.Value.Value.(ast.Var)
			if v1 || v2 {
				cp := *w
				cp.Target, cp.Value = varAsRef(w.Target), varAsRef(w.Value)
				w = &cp
			}
			withs = append(withs, w)
		}
		return false
	})
	return withs
}

// varAsRef returns t as a reference when it is a variable.
func varAsRef(t *ast.Term) *ast.Term {
	if _, ok := t.Value.(ast.Var); ok {
		return ast.NewTerm(ast.Ref{t}).SetLocation(t.Location)
	}
	return t
}
