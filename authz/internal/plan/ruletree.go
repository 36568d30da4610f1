package plan

import (
	"fmt"
	"maps"
	"slices"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/ir"
)

// checkDroppedLookupRules refuses a lookup by path (CallDynamicStmt) that
// reaches a node of the rule tree with no rules of its own but rules below
// it. OPA's planner looks rules up by path down to the last term but one of
// a reference such as data.p.blocked[input.a].c, and stops there early
// when a rule at that depth has a variable in its head
// (blocked.groups[g]); it then plans only the nodes that hold rules and
// drops the others. With
//
//	blocked.users.c := true
//	blocked.groups[g] := true if some g in ["admins"]
//
// the plan has no rule at blocked.users, so blocked[input.a].c is undefined
// for "users" where topdown finds true, and `not blocked[input.a].c`
// allowed what topdown denies. rules is the compiler's rule tree.
func checkDroppedLookupRules(policy *ir.Policy, rules *ast.TreeNode) error {
	if rules == nil {
		return &UnsupportedError{Feature: "planning without the compiler's rule tree"}
	}
	data := rules.Child(ast.DefaultRootDocument.Value)
	if data == nil {
		return nil
	}
	var strs []string
	if policy.Static != nil {
		for _, s := range policy.Static.Strings {
			strs = append(strs, s.Value)
		}
	}
	var found *ir.CallDynamicStmt
	visit := func(s ir.Stmt) {
		if c, ok := s.(*ir.CallDynamicStmt); ok && found == nil && len(c.Path) > 1 && dropsRules(data, c.Path[1:], strs) {
			found = c
		}
	}
	eachPolicyStmt(policy, visit)
	if found != nil {
		return &UnsupportedError{Feature: fmt.Sprintf(
			"lookup by path of rules the planner leaves out (rules below a node with none of its own, beside a rule with a variable in its head), at %s",
			found.Location.Text)}
	}
	return nil
}

// dropsRules reports whether path (the lookup's terms after data: a
// string constant, or a register that may hold any key) reaches a node
// below n that has no rules but rules below it.
func dropsRules(n *ast.TreeNode, path []ir.Operand, strs []string) bool {
	if len(path) == 0 {
		return len(n.Values) == 0 && hasRules(n)
	}
	switch v := path[0].Value.(type) {
	case ir.StringIndex:
		if int(v) < 0 || int(v) >= len(strs) {
			return true // not a plan this package understands: refuse
		}
		child := n.Child(ast.String(strs[v]))
		return child != nil && dropsRules(child, path[1:], strs)
	case ir.Local:
		for _, child := range n.Children {
			if dropsRules(child, path[1:], strs) {
				return true
			}
		}
		return false
	}
	return true
}

// hasRules reports whether n or a node below it holds a rule.
func hasRules(n *ast.TreeNode) bool {
	if len(n.Values) > 0 {
		return true
	}
	for _, child := range n.Children {
		if hasRules(child) {
			return true
		}
	}
	return false
}

// checkNestedRuleRefs refuses rules that can build one document at two
// depths: a rule whose reference has a variable (t[k] := {"b": 1}) and
// another whose reference can extend a path the first one produces
// (t.a.b := 1). topdown refuses the document with an object key conflict
// when it meets the longer path under the shorter one (hasCollisions),
// even where the two agree on the value; the plan builds the nested object
// and complains only when the values differ, so t.a.b == 1 held where
// topdown fails. Functions build no document and are left out.
//
// A rule tree node holds the rules whose references have its path as their
// ground prefix, so the rules a reference with a variable can be a prefix of
// stand at its node, below it, or (those with a variable earlier) above it:
// only those are compared.
func checkNestedRuleRefs(c *ast.Compiler) error {
	var above []*ast.Rule // the rules on the path from the root to n
	var check func(n *ast.TreeNode) error
	check = func(n *ast.TreeNode) error {
		for _, a := range n.Values {
			if len(a.Head.Args) > 0 || a.Ref().IsGround() {
				continue
			}
			if b := longerRef(a.Ref(), above); b != nil {
				return nestedRuleRefsError(a.Ref(), b)
			}
			var found ast.Ref
			n.DepthFirst(func(m *ast.TreeNode) bool {
				if found == nil {
					found = longerRef(a.Ref(), m.Values)
				}
				return found != nil // true skips only m's children
			})
			if found != nil {
				return nestedRuleRefsError(a.Ref(), found)
			}
		}
		mark := len(above)
		above = append(above, n.Values...)
		for _, k := range n.Sorted {
			if err := check(n.Children[k]); err != nil {
				return err
			}
		}
		above = above[:mark]
		return nil
	}
	return check(c.RuleTree)
}

// longerRef returns the reference of the first rule among rules, not a
// function, that is longer than a and that a can be a prefix of.
func longerRef(a ast.Ref, rules []*ast.Rule) ast.Ref {
	for _, r := range rules {
		if b := r.Ref(); len(r.Head.Args) == 0 && len(b) > len(a) && mayPrefix(a, b) {
			return b
		}
	}
	return nil
}

func nestedRuleRefsError(a, b ast.Ref) error {
	return &UnsupportedError{Feature: fmt.Sprintf(
		"rules that can build one document at two depths (%v and %v), which topdown refuses as a conflict", a, b)}
}

// mayPrefix reports whether a can be a prefix of b: at every term of a,
// equal ground terms, or a variable in either.
func mayPrefix(a, b ast.Ref) bool {
	for i, t := range a {
		_, av := t.Value.(ast.Var)
		_, bv := b[i].Value.(ast.Var)
		if !av && !bv && !t.Equal(b[i]) {
			return false
		}
	}
	return true
}

// checkNonStringRuleKeys refuses a policy with a rule whose reference has
// a constant key that is not a string before its first variable (q[1] :=
// "one", q[true] := 1, q[1][x] := ...). The compiler's rule tree places
// such a rule under its whole constant prefix (q.1), and topdown reads
// q's other rules as rules of their own; OPA's planner groups rules by the
// string prefix only (planner.go, buildFunctrie: q), and plans all of q as
// one object-building function. So, beside q[1]: a default under q
// (default q.a := true) never applies, an intermediate object with no rule
// of its own (q.a, {} when q.a.b is undefined) is missing, and base data
// under the prefix (data.d.m.a beside m[1] in package d) is hidden. Each
// made `not q.a` or `not deny` hold where topdown denies. Every module is
// looked at, reached or not: the planner's grouping hides base data that
// no rule reached names.
func checkNonStringRuleKeys(c *ast.Compiler) error {
	for _, name := range slices.Sorted(maps.Keys(c.Modules)) {
		for _, r := range c.Modules[name].Rules {
			if len(r.Head.Args) > 0 {
				continue
			}
			ref := r.Ref()
			if len(ref.GroundPrefix()) > len(ref.StringPrefix()) {
				return &UnsupportedError{Feature: fmt.Sprintf(
					"a rule reference with a key that is not a string (%v) at %v, which OPA's planner groups otherwise than topdown", ref, r.Loc())}
			}
		}
	}
	return nil
}

// checkEmptyPackages refuses a policy with a package that holds no rules
// and nothing below it (a module with only its package line, or imports).
// The compiler's rule tree has a node for it, and topdown reads the
// document there as {} (evalTree.leaves), which is defined; OPA's planner
// has a node for it too but no function, and a lookup by a variable key
// that lands there (data.blocked[input.user] for a package blocked.eve)
// reads only the base document: undefined. `not data.blocked[input.user]`
// allowed where topdown denies. When every node the key can select is
// such a package, the plan has no lookup at all to look at, so the
// package is refused wherever it is.
func checkEmptyPackages(c *ast.Compiler) error {
	var found ast.Ref
	var walk func(n *ast.TreeNode, path ast.Ref)
	walk = func(n *ast.TreeNode, path ast.Ref) {
		if found != nil {
			return
		}
		if len(n.Children) == 0 && len(n.Values) == 0 && len(path) > 1 {
			found = path
			return
		}
		for _, k := range n.Sorted {
			walk(n.Children[k], append(path[:len(path):len(path)], ast.NewTerm(k)))
		}
	}
	walk(c.RuleTree, nil)
	if found != nil {
		return &UnsupportedError{Feature: fmt.Sprintf(
			"a package with no rules (%v), which topdown reads as {} and OPA's planner's lookups as undefined", found)}
	}
	return nil
}
