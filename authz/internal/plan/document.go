package plan

import (
	"fmt"
	"unicode/utf8"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/util"
)

// dot looks key up in src: an object's value, an array's element, a set's
// member; nil when there is none.
func dot(src, key *ast.Term) *ast.Term {
	switch v := src.Value.(type) {
	case ast.Object:
		return v.Get(key)
	case *ast.Array:
		return v.Get(key)
	case ast.Set:
		if v.Contains(key) {
			return key
		}
	}
	return nil
}

// numberKeyWrittenOtherwise reports whether dot found key, a number, in an
// object under a key written otherwise (1.0 for 1). Objects compare number
// keys by value, while topdown finds a rule's key by how it is written (a
// rule p[1] is not p[1.0]), so only topdown can give topdown's answer.
func numberKeyWrittenOtherwise(src, key *ast.Term) bool {
	n, ok := key.Value.(ast.Number)
	if !ok {
		return false
	}
	obj, ok := src.Value.(ast.Object)
	if !ok {
		return false
	}
	return !obj.Until(func(k, _ *ast.Term) bool {
		m, ok := k.Value.(ast.Number)
		return ok && m == n
	})
}

// dotStorage looks key up in a base document the way OPA's store reads a
// path: the key as a string (a number as it is written), then an object's
// key or an array's index.
func dotStorage(src, key *ast.Term) *ast.Term {
	var k string
	switch v := key.Value.(type) {
	case ast.String:
		k = string(v)
	case ast.Number:
		k = v.String()
	default:
		return nil
	}
	switch v := src.Value.(type) {
	case ast.Object:
		return v.Get(ast.StringTerm(k))
	case *ast.Array:
		if i, ok := util.Atoi(k); ok && i >= 0 && i < v.Len() {
			return v.Elem(i)
		}
	}
	return nil
}

// mayStore reports whether dotStorage could find what dot did not: a
// number key in an object, or a string key in an array.
func mayStore(src, key *ast.Term) bool {
	switch key.Value.(type) {
	case ast.Number:
		_, ok := src.Value.(ast.Object)
		return ok
	case ast.String:
		_, ok := src.Value.(*ast.Array)
		return ok
	}
	return false
}

// ambiguousLookup is the error for a lookup in the base document that the
// language's values miss but OPA's store would find (data.users[1] with a
// key "1"; data.list["0"]). OPA's topdown evaluator answers such a lookup
// either way, depending on how the reference is evaluated, so the compiled
// evaluator refuses to answer: the caller evaluates with topdown instead.
func ambiguousLookup(in *instr, key *ast.Term) error {
	where := ""
	if in.loc != nil {
		where = fmt.Sprintf(" (%s:%d)", in.loc.File, in.loc.Row)
	}
	return &UnsupportedError{Feature: fmt.Sprintf("lookup of the %s key %v in the base document%s",
		ast.ValueName(key.Value), key, where)}
}

func length(v ast.Value) int {
	switch v := v.(type) {
	case *ast.Array:
		return v.Len()
	case ast.Object:
		return v.Len()
	case ast.Set:
		return v.Len()
	case ast.String:
		return utf8.RuneCountInString(string(v))
	}
	return 0
}

// merge combines a base document with the virtual document of the rules
// below it: objects merge key by key, and otherwise the base document
// stands (OPA's Wasm runtime does the same).
func merge(a, b *ast.Term) *ast.Term {
	ao, ok1 := a.Value.(ast.Object)
	bo, ok2 := b.Value.(ast.Object)
	if !ok1 || !ok2 {
		return a
	}
	out := ast.NewObject()
	ao.Foreach(func(k, v *ast.Term) {
		if other := bo.Get(k); other != nil {
			out.Insert(k, merge(v, other))
		} else {
			out.Insert(k, v)
		}
	})
	bo.Foreach(func(k, v *ast.Term) {
		if ao.Get(k) == nil {
			out.Insert(k, v)
		}
	})
	return ast.NewTerm(out)
}

// mergeAddsKeys reports whether merging the object base into v, as topdown
// merges a with's value into the base document it replaces, adds a key v
// lacks, at any depth: whether topdown's merge of the two differs from v.
func mergeAddsKeys(v *ast.Term, base ast.Object) bool {
	vo, ok := v.Value.(ast.Object)
	if !ok {
		return false
	}
	return base.Until(func(k, b *ast.Term) bool {
		w := vo.Get(k)
		if w == nil {
			return true
		}
		bo, ok := b.Value.(ast.Object)
		return ok && mergeAddsKeys(w, bo)
	})
}

// nonObjectAt reports whether doc holds anything but an object (or nothing)
// at one of the prefixes of path whose lengths are in prefixes: where an
// enclosing with replaced an object of the base document by something else
// (with data.d.m as 2), a with below it (with data.d.m.a as 3) makes the
// plan's document there {"a": 3}, but topdown's overlay of with values gets
// that object instead of 2 and merges it with the base document's object
// when a document above is read: {"a": 3} plus the base's other keys.
func nonObjectAt(doc *ast.Term, path []*ast.Term, prefixes []int) bool {
	if doc == nil {
		return len(prefixes) > 0
	}
	for _, n := range prefixes {
		v, err := doc.Value.Find(ast.Ref(path[:n]))
		if _, ok := v.(ast.Object); !ok || err != nil {
			return true
		}
	}
	return false
}

// upsert returns doc with value at path (object keys), copying each object
// on the way so that doc itself is unchanged. Missing nodes and nodes that
// are not objects become objects.
func upsert(doc *ast.Term, path []*ast.Term, value *ast.Term) *ast.Term {
	var obj ast.Object
	if doc != nil {
		obj, _ = doc.Value.(ast.Object)
	}
	cpy := shallowCopy(obj)
	if len(path) == 1 {
		cpy.Insert(path[0], value)
	} else {
		var child *ast.Term
		if obj != nil {
			child = obj.Get(path[0])
		}
		cpy.Insert(path[0], upsert(child, path[1:], value))
	}
	return ast.NewTerm(cpy)
}

func shallowCopy(obj ast.Object) ast.Object {
	cpy := ast.NewObject()
	if obj != nil {
		obj.Foreach(func(k, v *ast.Term) { cpy.Insert(k, v) })
	}
	return cpy
}
