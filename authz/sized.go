package authz

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/verdict-pdp/verdict/bundles"
)

// sizedArgs are the built-in functions whose result is as large as some of
// their arguments say, and those arguments' positions, each a set that
// sizes the result when all of it may come from a request: fed a
// request's values, one evaluation allocates until its timeout ends it.
// replace is sized by its pattern (an empty one matches between every
// two characters), or by its replacement together with its subject (a
// request's text full of matches, each replaced by a request's long
// text); a request's replacement in a subject of the policy's own is not.
var sizedArgs = map[string][][]int{
	ast.NumbersRange.Name:     {{0}, {1}},
	ast.NumbersRangeStep.Name: {{0}, {1}, {2}},
	ast.NetCIDRExpand.Name:    {{0}},
	ast.Replace.Name:          {{1}, {0, 2}},
	ast.ReplaceN.Name:         {{0}},
}

// CodeSizedByInput is the code of the warnings SizedByInput returns.
const CodeSizedByInput = "verdict_sized_by_input"

// SizedByInput finds the calls of the compiled policy (c, as Compile
// returns it; test modules left out) to a built-in function whose result
// is as large as an argument says (numbers.range, numbers.range_step,
// net.cidr_expand, replace, strings.replace_n: see sizedArgs), where it may
// come from the input document, a request's values: directly, through
// the rule's variables, through another rule computed from the input, or
// as a function's argument. An argument (a variable or a reference)
// compared with a number literal in the same body counts as bounded.
// These are warnings, not errors: the analysis follows values, not their
// checks, so it cannot prove a call safe or unsafe.
func SizedByInput(c *ast.Compiler) []bundles.Problem {
	if c == nil {
		return nil
	}
	var rules []*ast.Rule
	for _, name := range slices.Sorted(maps.Keys(c.Modules)) {
		m := c.Modules[name]
		if strings.HasSuffix(name, "_test.rego") || strings.HasSuffix(m.Package.Path.String(), "_test") {
			continue
		}
		ast.WalkRules(m, func(r *ast.Rule) bool {
			rules = append(rules, r)
			return false
		})
	}
	s := &sizedScan{c: c, rules: map[*ast.Rule]bool{}}
	// The rules whose value may come from the input, to a fixpoint: a rule
	// computed from one that is.
	for changed := true; changed; {
		changed = false
		for _, r := range rules {
			if s.rules[r] {
				continue
			}
			vars := s.bodyVars(r.Body, s.params(r))
			if s.tainted(r.Head.Value, vars) || s.tainted(r.Head.Key, vars) {
				s.rules[r], changed = true, true
			}
		}
	}
	for _, r := range rules {
		s.report(r.Body, s.bodyVars(r.Body, s.params(r)))
	}
	return s.found
}

// sizedScan is SizedByInput's state.
type sizedScan struct {
	c     *ast.Compiler
	rules map[*ast.Rule]bool // rules whose value may come from the input
	found []bundles.Problem
}

// params are a function's arguments, which may come from the input.
func (s *sizedScan) params(r *ast.Rule) map[ast.Var]bool {
	vars := map[ast.Var]bool{}
	for _, a := range r.Head.Args {
		ast.WalkVars(a, func(v ast.Var) bool {
			vars[v] = true
			return false
		})
	}
	return vars
}

// bodyVars extends vars with the variables of body that may hold input
// values: every variable of an expression (a call, or =) with a term that
// may, to a fixpoint.
func (s *sizedScan) bodyVars(body ast.Body, vars map[ast.Var]bool) map[ast.Var]bool {
	for changed := true; changed; {
		changed = false
		for _, e := range body {
			terms, ok := e.Terms.([]*ast.Term)
			if !ok || !slices.ContainsFunc(terms, func(t *ast.Term) bool { return s.tainted(t, vars) }) {
				continue
			}
			for _, t := range terms {
				if v, ok := t.Value.(ast.Var); ok && !v.IsWildcard() && !vars[v] {
					vars[v], changed = true, true
				}
			}
		}
	}
	return vars
}

// tainted reports whether t may hold an input value: it refers to the
// input, to a variable in vars, or to a rule that may.
func (s *sizedScan) tainted(t *ast.Term, vars map[ast.Var]bool) bool {
	if t == nil {
		return false
	}
	found := false
	ast.WalkTerms(t, func(x *ast.Term) bool {
		if found {
			return true
		}
		switch v := x.Value.(type) {
		case ast.Var:
			found = vars[v] || v.Equal(ast.InputRootDocument.Value)
		case ast.Ref:
			if v.HasPrefix(ast.InputRootRef) {
				found = true
			} else if v.HasPrefix(ast.DefaultRootRef) {
				found = slices.ContainsFunc(s.c.GetRules(v), func(r *ast.Rule) bool { return s.rules[r] })
			}
		}
		return found
	})
	return found
}

// report records the sized calls of body (and of the comprehensions in
// it) whose size may come from the input and is not bounded.
func (s *sizedScan) report(body ast.Body, vars map[ast.Var]bool) {
	bounded := boundedTerms(body)
	for _, e := range body {
		terms, ok := e.Terms.([]*ast.Term)
		if ok && len(terms) > 0 {
			name := terms[0].String()
			sized := func(set []int) bool {
				for _, i := range set {
					if i+1 >= len(terms) || bounded[terms[i+1].String()] || !s.tainted(terms[i+1], vars) {
						return false
					}
				}
				return true
			}
			if slices.ContainsFunc(sizedArgs[name], sized) {
				s.found = append(s.found, sizedProblem(e, name))
			}
		}
		// Comprehensions: their bodies see the enclosing variables.
		ast.WalkClosures(e, func(x any) bool {
			switch c := x.(type) {
			case *ast.ArrayComprehension:
				s.report(c.Body, s.bodyVars(c.Body, maps.Clone(vars)))
			case *ast.SetComprehension:
				s.report(c.Body, s.bodyVars(c.Body, maps.Clone(vars)))
			case *ast.ObjectComprehension:
				s.report(c.Body, s.bodyVars(c.Body, maps.Clone(vars)))
			}
			return true
		})
	}
}

// boundedTerms are the variables and references body compares with a
// number literal, by their text.
func boundedTerms(body ast.Body) map[string]bool {
	bounded := map[string]bool{}
	for _, e := range body {
		terms, ok := e.Terms.([]*ast.Term)
		if !ok || len(terms) != 3 {
			continue
		}
		switch terms[0].String() {
		case ast.LessThan.Name, ast.LessThanEq.Name, ast.GreaterThan.Name, ast.GreaterThanEq.Name:
		default:
			continue
		}
		for _, pair := range [][2]*ast.Term{{terms[1], terms[2]}, {terms[2], terms[1]}} {
			if _, ok := pair[1].Value.(ast.Number); !ok {
				continue
			}
			switch pair[0].Value.(type) {
			case ast.Var, ast.Ref:
				bounded[pair[0].String()] = true
			}
		}
	}
	// The compiler gives each use of a reference a variable of its own
	// (x = input.n; lt(x, 100); y = input.n; numbers.range(1, y)): what
	// equals a bounded term is bounded.
	for changed := len(bounded) > 0; changed; {
		changed = false
		for _, e := range body {
			terms, ok := e.Terms.([]*ast.Term)
			if !ok || len(terms) != 3 || !ast.Equality.Ref().Equal(terms[0].Value) {
				continue
			}
			a, b := terms[1].String(), terms[2].String()
			if bounded[a] != bounded[b] {
				bounded[a], bounded[b], changed = true, true, true
			}
		}
	}
	return bounded
}

func sizedProblem(e *ast.Expr, name string) bundles.Problem {
	p := bundles.Problem{Code: CodeSizedByInput,
		Message: fmt.Sprintf("%s sized by a request's values: a request can make it allocate until limits.eval_timeout or limits.eval_heap_limit stops it; bound them first (a comparison with a number), see the policy guide", name)}
	if loc := e.Location; loc != nil {
		p.File, p.Line, p.Col = loc.File, loc.Row, loc.Col
	}
	return p
}
