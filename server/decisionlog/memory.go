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

// valueBytes estimates the memory of v, its terms included.
func valueBytes(v ast.Value) int64 {
	const term = 32 // a *Term: its Value interface and Location
	switch v := v.(type) {
	case ast.String:
		return 16 + int64(len(v))
	case ast.Number:
		return 16 + int64(len(v))
	case *ast.Array:
		n := int64(48 + (8+term)*v.Len())
		for i := range v.Len() {
			n += valueBytes(v.Elem(i).Value)
		}
		return n
	case ast.Object:
		n := int64(112)
		v.Foreach(func(k, x *ast.Term) {
			n += 96 + 2*term + valueBytes(k.Value) + valueBytes(x.Value)
		})
		return n
	case ast.Set:
		n := int64(112)
		v.Foreach(func(x *ast.Term) {
			n += 64 + term + valueBytes(x.Value)
		})
		return n
	}
	return 16
}
