package decisionlog

import "github.com/open-policy-agent/opa/v1/ast"

// DefaultMaxQueueBytes bounds the estimated memory of the records waiting
// for the writer when Options.MaxQueueBytes is 0: 64 MiB.
const DefaultMaxQueueBytes = 64 << 20

// MemoryBytes estimates the memory r holds, its input above all: an OPA
// value takes many times the bytes of the JSON it was built from (a term
// per value, bookkeeping per element), so a queue of records is bounded
// by this, not by their count alone. It walks the input once, allocating
// nothing.
func (r *Record) MemoryBytes() int64 {
	n := int64(256 + len(r.DecisionID) + len(r.Revision) + len(r.SubjectID) + len(r.CallerID) +
		len(r.Action.Name) + len(r.Action.Method) + len(r.Action.Path))
	for _, s := range r.Reasons {
		n += 16 + int64(len(s))
	}
	if r.Shadow != nil {
		n += 64
		for _, s := range r.Shadow.Reasons {
			n += 16 + int64(len(s))
		}
	}
	if r.Input != nil {
		n += valueBytes(r.Input)
	}
	return n
}

// valueBytes estimates the memory of v, its terms included. The walk's
// functions are made once per call, not once per collection, so that it
// allocates a few times whatever v's size.
func valueBytes(v ast.Value) int64 {
	const term = 32 // a *Term: its Value interface and Location
	var n int64
	var walk func(v ast.Value)
	pair := func(k, x *ast.Term) {
		n += 96 + 2*term
		walk(k.Value)
		walk(x.Value)
	}
	elem := func(x *ast.Term) {
		n += 64 + term
		walk(x.Value)
	}
	walk = func(v ast.Value) {
		switch v := v.(type) {
		case ast.String:
			n += 16 + int64(len(v))
		case ast.Number:
			n += 16 + int64(len(v))
		case *ast.Array:
			n += int64(48 + (8+term)*v.Len())
			for i := range v.Len() {
				walk(v.Elem(i).Value)
			}
		case ast.Object:
			n += 112
			v.Foreach(pair)
		case ast.Set:
			n += 112
			v.Foreach(elem)
		default:
			n += 16
		}
	}
	walk(v)
	return n
}
