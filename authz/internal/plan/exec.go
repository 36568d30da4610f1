package plan

import (
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// exec runs a block with the registers fr and returns its outcome.
func (s *evalState) exec(fr []*ast.Term, b *block) (int, error) {
	for i := range b.instrs {
		in := &b.instrs[i]
		switch in.op {
		case opNop:
		case opAssignConst:
			fr[in.target] = in.a.c
		case opAssignVar:
			fr[in.target] = read(fr, in.a)
		case opResetLocal:
			fr[in.target] = nil
		case opIsDefined:
			if fr[in.a.local] == nil {
				return 0, nil
			}
		case opIsUndefined:
			if fr[in.a.local] != nil {
				return 0, nil
			}
		case opDot, opDotData:
			src, key := read(fr, in.a), read(fr, in.b)
			if src == nil || key == nil {
				return 0, nil
			}
			if s.unplain && !plainKey(src, key) {
				// topdown answers a later lookup of an equal key into a
				// partial set from this one, and binds a partial
				// object's key to the key looked up: see
				// errNumberWrittenOtherwise.
				return 0, errNumberWrittenOtherwise
			}
			v := dot(src, key)
			if v == nil {
				if in.op == opDotData && mayStore(src, key) && dotStorage(src, key) != nil {
					return 0, ambiguousLookup(in, key)
				}
				return 0, nil
			}
			if numberKeyWrittenOtherwise(src, key) {
				return 0, errNumberKeyWrittenOtherwise
			}
			fr[in.target] = v
		case opEqual:
			a, b := read(fr, in.a), read(fr, in.b)
			if a == nil || b == nil || (a != b && a.Value.Compare(b.Value) != 0) {
				return 0, nil
			}
			if s.unplain && a != b && (!plainNumbers(a.Value) || !plainNumbers(b.Value)) {
				// Equal, and one of them written otherwise: topdown may
				// go on with either writing (a variable unified with a
				// constant, a comprehension it indexes).
				return 0, errNumberWrittenOtherwise
			}
		case opNotEqual:
			a, b := read(fr, in.a), read(fr, in.b)
			if a == nil || b == nil || a == b || a.Value.Compare(b.Value) == 0 {
				return 0, nil
			}
		case opIsArray:
			v := read(fr, in.a)
			if v == nil {
				return 0, nil
			}
			if _, ok := v.Value.(*ast.Array); !ok {
				return 0, nil
			}
		case opIsObject:
			v := read(fr, in.a)
			if v == nil {
				return 0, nil
			}
			if _, ok := v.Value.(ast.Object); !ok {
				return 0, nil
			}
		case opIsSet:
			v := read(fr, in.a)
			if v == nil {
				return 0, nil
			}
			if _, ok := v.Value.(ast.Set); !ok {
				return 0, nil
			}
		case opLen:
			v := read(fr, in.a)
			if v == nil {
				return 0, nil
			}
			fr[in.target] = ast.InternedTerm(length(v.Value))
		case opLitObject, opLitArray, opLitSet:
			v, ok, err := buildLiteral(in, fr, s.pairs)
			if err != nil {
				return 0, err
			}
			fr[in.target] = v
			if !ok {
				return 0, nil
			}
		case opArrayAppend:
			v := read(fr, in.a)
			t := fr[in.target]
			if v == nil || t == nil {
				return 0, nil
			}
			arr, ok := t.Value.(*ast.Array)
			if !ok {
				return 0, s.internal(in, "append to a %s", ast.ValueName(t.Value))
			}
			// The array is this evaluation's own (MakeArrayStmt), not yet
			// shared: every register that holds it sees the new element.
			t.Value = arr.Append(v)
		case opObjectInsert, opObjectInsertLiteral, opObjectInsertOnce:
			k, v := read(fr, in.a), read(fr, in.b)
			t := fr[in.target]
			if k == nil || v == nil || t == nil {
				return 0, nil
			}
			obj, ok := t.Value.(ast.Object)
			if !ok {
				return 0, s.internal(in, "insert into a %s", ast.ValueName(t.Value))
			}
			if s.unplain && !plainNumbers(k.Value) {
				// A key made from text (r[to_number(input.s)]) beside an
				// equal one: topdown keeps the computed writing, the plan
				// the first inserted. See errNumberWrittenOtherwise.
				return 0, errNumberWrittenOtherwise
			}
			switch in.op {
			case opObjectInsertOnce:
				if old := obj.Get(k); old != nil {
					switch {
					case old == v:
					case old.Value.Compare(v.Value) != 0:
						return 0, &topdown.Error{Code: topdown.ConflictErr, Location: in.loc, Message: "object keys must be unique"}
					case old.Value.String() != v.Value.String():
						// Equal values written differently (1 and 1.0): an
						// object comprehension keeps the last, a partial
						// object rule the first.
						return 0, errEqualValuesWrittenOtherwise
					}
					continue
				}
			case opObjectInsertLiteral:
				if obj.Get(k) != nil {
					return 0, errKeyGivenTwice
				}
			}
			obj.Insert(k, v)
		case opSetAdd:
			v := read(fr, in.a)
			t := fr[in.target]
			if v == nil || t == nil {
				return 0, nil
			}
			set, ok := t.Value.(ast.Set)
			if !ok {
				return 0, s.internal(in, "add to a %s", ast.ValueName(t.Value))
			}
			set.Add(v)
		case opObjectMerge:
			a, b := fr[in.a.local], fr[in.b.local]
			if a == nil || b == nil {
				return 0, nil
			}
			fr[in.target] = merge(a, b)
		case opAssignVarOnce:
			v := read(fr, in.a)
			if v == nil {
				return 0, nil
			}
			if old := fr[in.target]; old != nil {
				if old != v && old.Value.Compare(v.Value) != 0 {
					return 0, conflict(in)
				}
				continue
			}
			fr[in.target] = v
		case opBreak:
			return in.index, nil
		case opBlock:
			for _, sub := range in.blocks {
				r, err := s.exec(fr, sub)
				if err != nil || r == ret {
					return r, err
				}
				if r > 0 {
					return r - 1, nil
				}
				if r == 0 && in.transparent {
					return 0, nil
				}
			}
		case opNot:
			if in.reset {
				fr[in.target] = nil
			}
			r, err := s.exec(fr, in.body)
			switch {
			case err != nil || r == ret:
				return r, err
			case r == done:
				return 0, nil
			case r > 0:
				return r - 1, nil
			}
		case opScan:
			r, err := s.scan(fr, in)
			if err != nil || r != done {
				return r, err
			}
		case opCall:
			if err := s.tick(); err != nil {
				return 0, err
			}
			if s.unplain && in.fn.isFunc && !plainArgs(fr, in.args) {
				// topdown answers a later call with equal arguments from
				// this one: see errNumberWrittenOtherwise.
				return 0, errNumberWrittenOtherwise
			}
			v, err := s.call(in.fn, fr, in.args)
			if err != nil {
				return 0, err
			}
			if v == nil {
				return 0, nil
			}
			fr[in.target] = v
		case opCallDynamic:
			fn := s.lookup(fr, in.path)
			if fn == nil {
				return 0, nil
			}
			if fn.nparams != len(in.args) {
				return 0, errDynamicCallArguments
			}
			v, err := s.call(fn, fr, in.args)
			if err != nil {
				return 0, err
			}
			if v == nil {
				// As OPA's Wasm compiler does: an undefined rule ends
				// the block around the lookup, skipping the base
				// document fallback the planner put beside it.
				return 3, nil
			}
			fr[in.target] = v
		case opCallBuiltin:
			defined, err := s.callBuiltin(fr, in)
			if err != nil {
				return 0, err
			}
			if !defined {
				return 0, nil
			}
		case opWith:
			r, err := s.with(fr, in)
			if err != nil || r != done {
				return r, err
			}
		case opResultSetAdd:
			v := fr[in.a.local]
			if v == nil {
				return 0, nil
			}
			obj, ok := v.Value.(ast.Object)
			if !ok {
				return 0, s.internal(in, "result is a %s", ast.ValueName(v.Value))
			}
			s.addResult(obj)
		case opReturnLocal:
			s.retval = fr[in.a.local]
			return ret, nil
		default:
			return 0, s.internal(in, "unknown instruction %d", in.op)
		}
	}
	return done, nil
}

func (s *evalState) internal(in *instr, format string, args ...any) error {
	return &topdown.Error{Code: topdown.InternalErr, Location: in.loc, Message: "compiled evaluation: " + fmt.Sprintf(format, args...)}
}

func conflict(in *instr) error {
	msg := "rule " + in.owner.path + " produced conflicting values"
	if in.owner.isFunc {
		msg = "function " + in.owner.path + " produced conflicting values for the same inputs"
	}
	return &topdown.Error{Code: topdown.ConflictErr, Location: in.loc, Message: msg}
}

func (s *evalState) addResult(obj ast.Object) {
	for _, r := range s.results {
		if r.Compare(obj) == 0 {
			return
		}
	}
	s.results = append(s.results, obj)
}

// scan runs the body of a ScanStmt once per element. Its outcome counts
// two levels for the statement (the loop and the block around it), as
// OPA's Wasm compiler does: BreakStmt 1 in the body ends the scan only.
func (s *evalState) scan(fr []*ast.Term, in *instr) (int, error) {
	src := fr[in.a.local]
	if src == nil {
		return done, nil
	}
	each := func(k, v *ast.Term) (bool, int, error) {
		if err := s.tick(); err != nil {
			return true, 0, err
		}
		fr[in.key], fr[in.target] = k, v
		r, err := s.exec(fr, in.body)
		switch {
		case err != nil || r == ret:
			return true, r, err
		case r == done || r == 0:
			return false, done, nil
		case r == 1:
			return true, done, nil
		}
		return true, r - 2, nil
	}
	switch v := src.Value.(type) {
	case *ast.Array:
		for i := range v.Len() {
			if stop, r, err := each(ast.InternedTerm(i), v.Elem(i)); stop {
				return r, err
			}
		}
	case ast.Object:
		for _, k := range v.Keys() {
			if stop, r, err := each(k, v.Get(k)); stop {
				return r, err
			}
		}
	case ast.Set:
		for _, e := range v.Slice() {
			if stop, r, err := each(e, e); stop {
				return r, err
			}
		}
	}
	return done, nil
}

// with runs a WithStmt: the register holds the replaced document while the
// body runs, and its old value again afterwards. Rules are memoized apart
// from the enclosing evaluation while it runs, as they see other documents.
func (s *evalState) with(fr []*ast.Term, in *instr) (int, error) {
	orig := fr[in.target]
	v := read(fr, in.a)
	if len(in.wpath) == 0 {
		fr[in.target] = v
	} else {
		if v == nil {
			return 0, nil
		}
		if in.wbase != nil && mergeAddsKeys(v, in.wbase) || nonObjectAt(orig, in.wpath, in.wobjects) {
			return 0, errWithMergedIntoBase
		}
		fr[in.target] = upsert(orig, in.wpath, v)
	}
	s.pushMemo()
	r, err := s.exec(fr, in.body)
	s.popMemo()
	fr[in.target] = orig
	switch {
	case err != nil || r == ret || r == done:
		return r, err
	case r == 0:
		return 0, nil
	}
	return r - 1, nil
}
