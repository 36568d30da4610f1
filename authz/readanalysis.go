package authz

import (
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Builtins whose answer depends on the clock although OPA does not mark
// them nondeterministic.
var timeDependent = map[string]bool{
	"io.jwt.decode_verify":                                   true,
	"crypto.x509.parse_and_verify_certificates":              true,
	"crypto.x509.parse_and_verify_certificates_with_options": true,
}

var (
	entryRef     = ast.MustParseRef("data." + entryPackage)
	objectGetRef = ast.ObjectGet.Ref()
)

// planDecisionKeys works out how the compiled policy's decisions may be
// cached: what they read of the input, or why they cannot be cached.
func planDecisionKeys(c *ast.Compiler) keyPlan {
	a := &readAnalysis{c: c, seen: map[*ast.Rule]bool{}}
	a.addRules(entryRef)
	for len(a.queue) > 0 {
		r := a.queue[0]
		a.queue = a.queue[1:]
		a.rule(r)
	}
	return a.plan()
}

// readAnalysis is the state of one planDecisionKeys walk.
type readAnalysis struct {
	c     *ast.Compiler
	seen  map[*ast.Rule]bool
	queue []*ast.Rule
	reads []readAt
	// off is the first reason found not to cache at all, and request the
	// first reason to key on the request; each "reason (file)".
	off, request string
}

// readAt is a read and the file of the rule that makes it.
type readAt struct {
	inputRead
	file string
}

// addRules queues every rule that a data ref can reach: the rules at each
// node along its constant prefix (a rule there may produce the document
// the rest of the ref selects) and every rule below that prefix (the ref
// may select any of them, or all of them, when it has a computed key or
// ends there).
func (a *readAnalysis) addRules(ref ast.Ref) {
	node := a.c.RuleTree
	for i, t := range ref {
		// The rule tree is keyed by a key's text, while refs select by
		// value: p[1.0] selects the rules of p[1]. Only a string has one
		// text per value; at any other key, take every rule below.
		if _, ok := t.Value.(ast.String); i > 0 && !ok {
			break
		}
		if node = node.Child(t.Value); node == nil {
			return
		}
		a.enqueue(node.Values)
	}
	node.DepthFirst(func(n *ast.TreeNode) bool {
		a.enqueue(n.Values)
		return false
	})
}

func (a *readAnalysis) enqueue(rules []*ast.Rule) {
	for _, r := range rules {
		if !a.seen[r] {
			a.seen[r] = true
			a.queue = append(a.queue, r)
		}
	}
}

// varUse is how a local variable of a rule is used, for the one pattern
// the analysis follows through a variable: `v = input.x` (the compiler
// writes every input value passed to a call that way), with v then used
// only as object.get's first argument with a constant key, or as the
// head of a ref (v.a.b).
type varUse struct {
	bindings int     // v = <input ref with constant keys>
	bound    ast.Ref // that ref (the last one, meaningful when bindings == 1)
	paths    []ast.Ref
	other    int // any other occurrence
}

// rule collects the reads of one rule (with its else branches) and queues
// the rules it refers to.
func (a *readAnalysis) rule(r *ast.Rule) {
	file := ""
	if r.Location != nil {
		file = strings.TrimPrefix(r.Location.File, "verdict:")
	}
	// Pass 1: how each local variable is used.
	uses := map[ast.Var]*varUse{}
	use := func(v ast.Var) *varUse {
		u := uses[v]
		if u == nil {
			u = &varUse{}
			uses[v] = u
		}
		return u
	}
	var classify *ast.GenericVisitor
	classify = ast.NewGenericVisitor(func(x any) bool {
		switch x := x.(type) {
		case *ast.Head:
			// The generic walk skips the head's ref (p[x].q), which can
			// hold variables.
			walkEach(classify, x.Reference...)
		case *ast.Expr:
			for _, w := range x.With {
				classify.Walk(w.Target)
				classify.Walk(w.Value)
			}
			if v, ref, ok := inputBinding(x); ok {
				u := use(v)
				u.bindings++
				u.bound = ref
				return true
			}
			if x.IsCall() {
				if v, key, ok := objectGetOnVar(x.Operator(), x.Operands()); ok {
					u := use(v)
					u.paths = append(u.paths, key)
					walkEach(classify, x.Operands()[2:]...)
					return true
				}
			}
			walkTerms(classify, x)
			return true
		case ast.Call:
			if len(x) > 0 {
				if v, key, ok := objectGetOnVar(x[0].Value, x[1:]); ok {
					use(v).paths = append(use(v).paths, key)
					walkEach(classify, x[3:]...)
					return true
				}
			}
		case ast.Ref:
			if v, ok := x[0].Value.(ast.Var); ok && isLocal(v) {
				use(v).paths = append(use(v).paths, constantPrefix(x[1:]))
				walkEach(classify, x[1:]...)
				return true
			}
		case ast.Var:
			if isLocal(x) {
				use(x).other++
			}
		}
		return false
	})
	classify.Walk(r)

	followed := func(v ast.Var) bool {
		u := uses[v]
		return u != nil && u.bindings == 1 && u.other == 0
	}

	// Pass 2: the reads, the builtins named, the rules referred to.
	var collect *ast.GenericVisitor
	collect = ast.NewGenericVisitor(func(x any) bool {
		switch x := x.(type) {
		case *ast.Head:
			walkEach(collect, x.Reference...)
		case *ast.Expr:
			for _, w := range x.With {
				if target, ok := w.Target.Value.(ast.Ref); ok && target.HasPrefix(ast.InputRootRef) {
					a.requestBecause("the policy replaces input with `with`", file)
				} else {
					collect.Walk(w.Target)
				}
				collect.Walk(w.Value)
			}
			if v, _, ok := inputBinding(x); ok && followed(v) {
				return true // read through v, below
			}
			walkTerms(collect, x)
			return true
		case ast.Ref:
			a.named(x, file)
			switch {
			case x.HasPrefix(ast.InputRootRef):
				a.read(x, false, file)
			case x.HasPrefix(ast.DefaultRootRef):
				a.addRules(x)
			}
			walkEach(collect, x[1:]...)
			return true
		case ast.Var:
			if x.Equal(ast.InputRootDocument.Value) {
				a.read(ast.InputRootRef, false, file)
			}
		}
		return false
	})
	collect.Walk(r)

	for v, u := range uses {
		if !followed(v) {
			continue
		}
		a.read(u.bound, true, file)
		for _, p := range u.paths {
			a.read(u.bound.Concat(p), false, file)
		}
	}
}

// walkTerms walks an expression's terms (a call's operator and operands,
// or its one term) with v.
func walkTerms(v *ast.GenericVisitor, x *ast.Expr) {
	switch ts := x.Terms.(type) {
	case []*ast.Term:
		walkEach(v, ts...)
	default:
		v.Walk(ts)
	}
}

// walkEach walks each of ts with v.
func walkEach(v *ast.GenericVisitor, ts ...*ast.Term) {
	for _, t := range ts {
		v.Walk(t)
	}
}

// named turns caching off when ref names a nondeterministic or
// clock-dependent builtin, called or not (`with f as http.send` names it
// without calling it).
func (a *readAnalysis) named(ref ast.Ref, file string) {
	if _, ok := ref[0].Value.(ast.Var); !ok || a.off != "" {
		return
	}
	op := ref.String()
	if b, ok := ast.BuiltinMap[op]; timeDependent[op] || ok && b.Nondeterministic {
		a.offBecause("the policy uses "+op, file)
	}
}

// read records a read of the input at ref's constant prefix (a computed
// key reads the whole subtree above it); kindOnly records only the type of
// the value there.
func (a *readAnalysis) read(ref ast.Ref, kindOnly bool, file string) {
	path := constantPrefix(ref[1:])
	if len(path) < len(ref)-1 {
		kindOnly = false
	}
	switch {
	case len(path) == 0 && kindOnly:
		return // input is always an object
	case len(path) == 0:
		a.offBecause("the policy reads the whole input document", file)
		return
	}
	name, ok := path[0].Value.(ast.String)
	if !ok {
		return // the engine builds no other member: always undefined
	}
	s := slices.Index(sectionNames[:], string(name))
	if s < 0 {
		return
	}
	r := inputRead{section: section(s), path: path[1:], kindOnly: kindOnly}
	switch {
	case r.section == sectionContext:
		a.offBecause("the policy reads input.context", file)
		return
	case kindOnly && len(r.path) == 0:
		return // the engine always builds the four sections as objects
	case !kindOnly && (r.section == sectionSubject || r.section == sectionCaller) &&
		(len(r.path) == 0 || len(r.path) == 1 && r.path[0].Value.Compare(ast.String("claims")) == 0):
		a.requestBecause("the policy reads all of "+r.String(), file)
	}
	a.reads = append(a.reads, readAt{inputRead: r, file: file})
}

func (a *readAnalysis) offBecause(reason, file string) {
	if a.off == "" {
		a.off = reason + " (" + file + ")"
	}
}

func (a *readAnalysis) requestBecause(reason, file string) {
	if a.request == "" {
		a.request = reason + " (" + file + ")"
	}
}

// inputBinding matches `v = input.<constant keys>` (either way round), the
// form the compiler gives every input value it passes to a call.
func inputBinding(x *ast.Expr) (ast.Var, ast.Ref, bool) {
	if x.Negated || len(x.With) > 0 || !x.IsEquality() {
		return "", nil, false
	}
	l, r := x.Operand(0), x.Operand(1)
	if _, ok := l.Value.(ast.Var); !ok {
		l, r = r, l
	}
	v, ok := l.Value.(ast.Var)
	ref, isRef := r.Value.(ast.Ref)
	if !ok || !isLocal(v) || !isRef || !ref.HasPrefix(ast.InputRootRef) || len(constantPrefix(ref[1:])) != len(ref)-1 {
		return "", nil, false
	}
	return v, ref, true
}

// objectGetOnVar matches object.get(v, key, ...) with v a local variable
// and key constant, and returns the path below v that the call reads: the
// key, or the key's elements when it is an array (object.get's path form),
// cut at the first element that is not a scalar.
func objectGetOnVar(op ast.Value, args []*ast.Term) (ast.Var, ast.Ref, bool) {
	ref, ok := op.(ast.Ref)
	if !ok || !ref.Equal(objectGetRef) || len(args) < 3 {
		return "", nil, false
	}
	v, ok := args[0].Value.(ast.Var)
	if !ok || !isLocal(v) || !ast.IsConstant(args[1].Value) {
		return "", nil, false
	}
	switch key := args[1].Value.(type) {
	case *ast.Array:
		path := make(ast.Ref, 0, key.Len())
		for i := range key.Len() {
			path = append(path, key.Elem(i))
		}
		return v, constantPrefix(path), true
	default:
		if isPathKey(key) {
			return v, ast.Ref{args[1]}, true
		}
		return v, ast.Ref{}, true // an object or set key: read it all
	}
}

// constantPrefix is the part of keys before the first one that is not a
// path key (isPathKey).
func constantPrefix(keys ast.Ref) ast.Ref {
	for i, t := range keys {
		if !isPathKey(t.Value) {
			return keys[:i]
		}
	}
	return keys
}

// isPathKey reports whether v is a constant key that a read's path may
// hold: a string, boolean or null, or a number written as a non-negative
// integer without sign, fraction, exponent or leading zero. Reads are
// compared and merged by value, and the key then finds by value (Get) what
// evaluation finds; a number written otherwise (1.0, 1e0) may select
// differently (an array is indexed by 1.0 but not by 1e0), so a read stops
// before it and reads the whole value there.
func isPathKey(v ast.Value) bool {
	switch v := v.(type) {
	case ast.String, ast.Boolean, ast.Null:
		return true
	case ast.Number:
		s := string(v)
		if s == "" || s[0] == '0' && len(s) > 1 {
			return false
		}
		for i := range len(s) {
			if s[i] < '0' || s[i] > '9' {
				return false
			}
		}
		return true
	}
	return false
}

// isLocal reports whether v is a rule's variable, not a root document.
func isLocal(v ast.Var) bool {
	return !v.Equal(ast.InputRootDocument.Value) && !v.Equal(ast.DefaultRootDocument.Value)
}
