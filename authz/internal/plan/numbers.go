package plan

import (
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/open-policy-agent/opa/v1/ast"
)

// errNumberWrittenOtherwise refuses an input holding a number written
// otherwise than its plain form (1.0, 1e0, 1.50 rather than 1 and 1.5).
// topdown lets equal numbers written differently stand in for each other
// where the plan does not: it binds a variable unified with a constant to
// the constant rather than to the set's element (some l; levels[l] = 1
// gives 1 where the set holds 1.0), and it answers a function call or a
// lookup into a partial set from the result of an earlier call or lookup
// with an equal argument (f(1) after f(1.0) gives 1.0). The two evaluators
// then write a number differently, and a rule keyed by a number (o[1] :=
// true), which topdown finds by how the key is written, or text made of the
// number (json.marshal), tells them apart: both allowed what topdown
// denies. Plain numbers cannot be written two ways, so only inputs holding
// others are left to topdown (and Prepare refuses such numbers in the base
// document and the policy). Built-in functions make such numbers from text
// (to_number("1.0"), json.unmarshal), so once one has (evalState.unplain),
// Eval refuses such a number where topdown's shortcuts would meet it: as an
// argument of a function of the policy, in a key looked up in a set or an
// object or inserted into an object, and in an equality with an equal
// number written otherwise.
var errNumberWrittenOtherwise = &UnsupportedError{Feature: "a number written otherwise than its plain form (1.0 for 1), which topdown may take for an equal number written otherwise"}

// plainNumber reports whether n is written in its plain form: an integer
// without a sign other than a minus (not -0), a fraction or an exponent,
// or else a number that is not an integer written as Go's shortest
// representation writes it. An integer beyond int64 is no exception: Go
// writes 10^21 as 1e+21 (and so does OPA, for a float64 in the request),
// and that is 1000000000000000000000 written otherwise.
func plainNumber(n ast.Number) bool {
	s := string(n)
	if integerText(s) {
		return s != "-0"
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f == math.Trunc(f) {
		return false // an integer written as a fraction or with an exponent, or out of range
	}
	return strconv.FormatFloat(f, 'g', -1, 64) == s
}

// integerText reports whether s is an optional minus and decimal digits
// without a leading zero (or the single digit 0).
func integerText(s string) bool {
	if len(s) > 0 && s[0] == '-' {
		s = s[1:]
	}
	if s == "" || (s[0] == '0' && len(s) > 1) {
		return false
	}
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// plainNumbers reports whether every number in v (object keys included) is
// written in its plain form.
func plainNumbers(v ast.Value) bool {
	switch x := v.(type) {
	case ast.Number:
		return plainNumber(x)
	case ast.Object:
		return !x.Until(func(k, e *ast.Term) bool { return !plainNumbers(k.Value) || !plainNumbers(e.Value) })
	case *ast.Array:
		for i := range x.Len() {
			if !plainNumbers(x.Elem(i).Value) {
				return false
			}
		}
	case ast.Set:
		return !x.Until(func(e *ast.Term) bool { return !plainNumbers(e.Value) })
	}
	return true
}

// numberNotPlain finds the first number in v, at path, that is not in its
// plain form, and where it is (an object's key is named by its path). The
// walk is plainNumbers' (no allocation) until one is found; only then is
// the way to it written down, on one stack the walk shares, so that a deep
// document costs no more than its depth.
func numberNotPlain(v ast.Value, path ast.Ref) (ast.Ref, ast.Number, bool) {
	if plainNumbers(v) {
		return nil, "", false
	}
	stack := slices.Clone(path)
	var num ast.Number
	var walk func(v ast.Value) bool
	walk = func(v ast.Value) bool {
		switch x := v.(type) {
		case ast.Number:
			if !plainNumber(x) {
				num = x
				return true
			}
		case ast.Object:
			return x.Until(func(k, e *ast.Term) bool {
				if walk(k.Value) {
					return true
				}
				stack = append(stack, k)
				if walk(e.Value) {
					return true
				}
				stack = stack[:len(stack)-1]
				return false
			})
		case *ast.Array:
			for i := range x.Len() {
				stack = append(stack, ast.InternedTerm(i))
				if walk(x.Elem(i).Value) {
					return true
				}
				stack = stack[:len(stack)-1]
			}
		case ast.Set:
			return x.Until(func(e *ast.Term) bool { return walk(e.Value) })
		}
		return false
	}
	walk(v)
	return stack, num, true
}

// plainKey reports whether a lookup of key in src, a set or an object,
// holds plain numbers only (a lookup in anything else is not answered from
// a rule).
func plainKey(src, key *ast.Term) bool {
	switch src.Value.(type) {
	case ast.Set, ast.Object:
		return plainNumbers(key.Value)
	}
	return true
}

// plainArgs reports whether the arguments of a call of a function of the
// policy (after input and data) hold plain numbers only.
func plainArgs(fr []*ast.Term, args []operand) bool {
	for _, a := range args[min(2, len(args)):] {
		if v := read(fr, a); v != nil && !plainNumbers(v.Value) {
			return false
		}
	}
	return true
}

// checkPlainNumbers refuses a base document or a policy holding a number
// written otherwise than its plain form: see errNumberWrittenOtherwise.
func checkPlainNumbers(c *ast.Compiler, query ast.Body, data ast.Value) error {
	if path, n, found := numberNotPlain(data, ast.DefaultRootRef); found {
		return &UnsupportedError{Feature: fmt.Sprintf("a base document holding %s: %v is %v", errNumberWrittenOtherwise.Feature, path, n)}
	}
	found := findInPolicy(c, query, func(n ast.Node) bool {
		t, ok := n.(*ast.Term)
		if !ok {
			return false
		}
		num, ok := t.Value.(ast.Number)
		return ok && !plainNumber(num)
	})
	if found != nil {
		return &UnsupportedError{Feature: fmt.Sprintf("%s, at %v", errNumberWrittenOtherwise.Feature, found.Loc())}
	}
	return nil
}
