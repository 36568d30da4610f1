package plan

// The refusals in this file concern topdown's rule index (ast/index.go,
// ast/index_affix.go) and its lookup of rules by key: where the index
// reads an expression otherwise than the built-in or the unification it
// stands for, topdown skips a rule whose body would hold, and the plan,
// which has no index, does not.

import (
	"fmt"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// checkGlobIndexed refuses a glob.match whose pattern is a constant string
// and whose delimiters are a constant array of strings, when topdown's rule
// indexer reads them otherwise than the built-in function does. The
// indexer (ast/index.go, updateGlobMatch) splits the pattern on every
// delimiter character and keeps a backslash escape in the part it stores,
// and it splits on a delimiter that is itself a glob metacharacter before
// the pattern's metacharacters mean anything; it then skips the rule
// whenever the request's value, split alike, does not equal the stored
// parts. So `glob.match("a\\.b", ["."], input.a)` never runs for "a.b",
// which the built-in matches, nor `glob.match("*", ["*"], input.a)` for
// "/": topdown denies what the compiled evaluator, calling the built-in,
// allows. Patterns without a backslash, with single-character delimiters
// that are not metacharacters, are indexed faithfully and stay compiled.
func checkGlobIndexed(c *ast.Compiler, query ast.Body) error {
	found := findInPolicy(c, query, func(n ast.Node) bool {
		e, ok := n.(*ast.Expr)
		return ok && e.IsCall() && len(e.Operands()) >= 3 && e.Operator().Equal(ast.GlobMatch.Ref()) &&
			globIndexedOtherwise(e.Operand(0), e.Operand(1))
	})
	if found != nil {
		return &UnsupportedError{Feature: fmt.Sprintf(
			"glob.match with a constant pattern that topdown's rule index reads otherwise (a backslash, or a delimiter that is not one plain character), at %v", found.Loc())}
	}
	return nil
}

// globIndexedOtherwise reports whether topdown indexes a glob.match of
// pattern and delimiters, and reads them otherwise than the built-in.
func globIndexedOtherwise(pattern, delimiters *ast.Term) bool {
	p, ok := pattern.Value.(ast.String)
	if !ok {
		return false
	}
	arr, ok := delimiters.Value.(*ast.Array)
	if !ok {
		return false
	}
	plain := true
	for i := range arr.Len() {
		d, ok := arr.Elem(i).Value.(ast.String)
		if !ok {
			return false // not indexed
		}
		// The index splits on bytes, the built-in on characters: only an
		// ASCII delimiter means the same to both.
		if len(d) != 1 || d[0] >= 0x80 || strings.ContainsAny(string(d), `*?[]{}\!,-^`) {
			plain = false
		}
	}
	return !plain || strings.Contains(string(p), `\`)
}

// checkVariableSetsInHeads refuses a rule whose head's key, reference or
// arguments hold a set with a variable in it, or an object with a variable
// key, at any depth (s contains {r} if some r in input.roles, or
// s contains {r: true}). A lookup by a constant key (s[{"admin"}]) makes
// topdown unify the key with the head before it evaluates the body, and
// its unification cannot bind a variable inside a set, nor an object's
// variable key: the lookup is undefined. The plan builds the set and finds
// the key, so the compiled evaluator allowed what topdown denies.
func checkVariableSetsInHeads(c *ast.Compiler, query ast.Body) error {
	for _, r := range policyRules(c, query) {
		terms := slices.Clone(r.Head.Args)
		if r.Head.Key != nil {
			terms = append(terms, r.Head.Key)
		}
		if len(r.Head.Reference) > 1 {
			terms = append(terms, r.Head.Reference[1:]...)
		}
		for _, t := range terms {
			var found *ast.Term
			ast.WalkTerms(t, func(x *ast.Term) bool {
				switch v := x.Value.(type) {
				case ast.Set:
					if found == nil && !v.IsGround() {
						found = x
					}
				case ast.Object:
					if found == nil && slices.ContainsFunc(v.Keys(), func(k *ast.Term) bool { return !k.IsGround() }) {
						found = x
					}
				}
				return found != nil
			})
			if found != nil {
				return &UnsupportedError{Feature: fmt.Sprintf(
					"a rule head whose key or arguments hold a set with a variable, or an object with a variable key, at %v, which topdown cannot unify with a key", found.Location)}
			}
		}
	}
	return nil
}

// indexedBuiltins are the built-in functions whose calls topdown's rule
// index reads (ast/index.go, index_affix.go): it skips a rule whose call
// could not hold for the request's value, as the real function means it.
var indexedBuiltins = []ast.Ref{ast.StartsWith.Ref(), ast.EndsWith.Ref(), ast.AnyPrefixMatch.Ref(),
	ast.AnySuffixMatch.Ref(), ast.GlobMatch.Ref()}

// checkIndexedBuiltinReplaced refuses a with that replaces one of
// indexedBuiltins. topdown's index ignores the replacement: it skips a rule
// whose startswith(input.path, "/admin") the real function denies, though
// the with made it true (q with startswith as true); the plan runs the
// rule with the replacement and it holds, a wrong allow.
func checkIndexedBuiltinReplaced(c *ast.Compiler, query ast.Body) error {
	for _, w := range policyWiths(c, query) {
		r, ok := w.Target.Value.(ast.Ref)
		if ok && slices.ContainsFunc(indexedBuiltins, func(b ast.Ref) bool { return b.Equal(r) }) {
			return &UnsupportedError{Feature: fmt.Sprintf(
				"a with that replaces %v, which topdown's rule index reads as the real function, at %v", r, w.Location)}
		}
	}
	return nil
}

// checkMemberVariableIndexed refuses a rule body that tests a variable
// with `in` against a document (y in input.roles) and uses the variable
// again later (y == "admin"). topdown's rule index reads the membership
// test as "input.roles is y" (index.go, updateMemberValueInRef records it
// as an alias), and the later use as "so input.roles is 'admin'": it skips
// the body for every real collection, where evaluation, and the plan,
// find "admin" in it, a wrong allow. Bodies of else branches and functions
// are checked alike; a variable that is a function's argument, or used
// only in the membership test, is not affected.
func checkMemberVariableIndexed(c *ast.Compiler, query ast.Body) error {
	for _, top := range policyRules(c, query) {
		// Only an argument that is a bare variable resolves to the call's
		// argument in the index; one inside [y] or {"k": y} does not.
		args := ast.NewVarSet()
		for _, a := range top.Head.Args {
			if v, ok := a.Value.(ast.Var); ok {
				args.Add(v)
			}
		}
		for r := top; r != nil; r = r.Else {
			if e := memberVariableReused(r.Body, args); e != nil {
				return &UnsupportedError{Feature: fmt.Sprintf(
					"a variable tested with in and used again in the body, at %v, which topdown's rule index takes for the collection", e.Location)}
			}
		}
	}
	return nil
}

// memberVariableReused returns the first expression of body, or of the
// bodies of its and and or operands, that tests a variable (not one of
// args) with `in`, the variable appearing in a later expression of that
// body; nil when there is none.
func memberVariableReused(body ast.Body, args ast.VarSet) *ast.Expr {
	for i, e := range body {
		// The index reads the operands of and and or as bodies of their own.
		var operands []ast.Body
		switch x := e.Terms.(type) {
		case *ast.LogicalAnd:
			operands = []ast.Body{x.Lhs, x.Rhs}
		case *ast.LogicalOr:
			operands = []ast.Body{x.Lhs, x.Rhs}
		}
		for _, b := range operands {
			if found := memberVariableReused(b, args); found != nil {
				return found
			}
		}
		if e.Negated || len(e.With) > 0 || !e.IsCall() || !e.Operator().Equal(ast.Member.Ref()) || len(e.Operands()) != 2 {
			continue
		}
		v, ok := e.Operand(0).Value.(ast.Var)
		if !ok || args.Contains(v) {
			continue
		}
		for _, later := range body[i+1:] {
			if later.Vars(ast.VarVisitorParams{}).Contains(v) {
				return e
			}
		}
	}
	return nil
}

// indexAnyVar is the variable topdown's rule index writes for "any value"
// (ast/index.go): a policy's own variable of that name (bound with =,
// which keeps names) resolves to whatever ref the index noted as only
// having to be defined, so `input.roles; __any__ = "admin"` reads as
// "input.roles is 'admin'", and the body is skipped.
var indexAnyVar = ast.Var("__any__")

// checkIndexAnyVar refuses a policy or query that names indexAnyVar.
func checkIndexAnyVar(c *ast.Compiler, query ast.Body) error {
	found := findInPolicy(c, query, func(n ast.Node) bool {
		t, ok := n.(*ast.Term)
		return ok && t.Value.Compare(indexAnyVar) == 0
	})
	if found != nil {
		return &UnsupportedError{Feature: fmt.Sprintf(
			"the variable %s, which topdown's rule index uses for its own, at %v", indexAnyVar, found.Loc())}
	}
	return nil
}

// checkElseUnderVariableRef refuses a rule with else branches that the
// query reaches when a node of the rule tree above it holds a rule whose
// reference has a variable (q[x] := 1 if ... above q.a := 2 if ... else
// := 3). The compiler indexes such a node's whole subtree as one
// (ast/compile.go, buildRuleIndices), and topdown evaluates it as a
// partial document (topdown/eval.go, evalVirtualPartial), which never
// reads a rule's else branches: q.a is undefined when its body fails,
// or, when the index skipped the body, the first else branch it reached
// stands alone, without the branches after it. The plan evaluates the
// else chain, so the compiled evaluator allowed on `q.a == 3` what
// topdown denies.
func checkElseUnderVariableRef(c *ast.Compiler, query ast.Body) error {
	reached, _ := reachRules(c, nil, query, nil, true)
	var found *ast.Rule
	var walk func(n *ast.TreeNode, under bool)
	walk = func(n *ast.TreeNode, under bool) {
		variable := false
		for _, r := range n.Values {
			if len(r.Head.Args) > 0 {
				continue
			}
			if under && r.Else != nil && reached[r] && found == nil {
				found = r
			}
			variable = variable || !r.Ref().IsGround()
		}
		for _, k := range n.Sorted {
			walk(n.Children[k], under || variable)
		}
	}
	walk(c.RuleTree, false)
	if found != nil {
		return &UnsupportedError{Feature: fmt.Sprintf(
			"a rule with else at %v below a rule whose reference has a variable (topdown evaluates it without its else branches)", found.Loc())}
	}
	return nil
}
