package plan

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/topdown/builtins"
	"github.com/open-policy-agent/opa/v1/util"
)

// Block outcomes. A block that runs to its end returns done. A statement
// that is undefined, or a BreakStmt, ends blocks: the outcome n >= 0 says
// how many enclosing blocks end besides the current one (OPA's BreakStmt
// index). ret unwinds to the function being run.
const (
	done = -1
	ret  = -2
)

// cancelCheckEvery is how many loop iterations and calls pass between two
// looks at the context and the cancel flag.
const cancelCheckEvery = 32

type memoEntry struct {
	set bool
	v   *ast.Term
}

// evalState is one evaluation's mutable state: registers, memo table,
// results and the built-in call context. A Query keeps them in a pool;
// reset clears every reference before one goes back, so nothing of one
// evaluation is visible to the next.
type evalState struct {
	p     *program
	ctx   context.Context
	opts  *EvalOptions
	stack []*ast.Term // registers of the active frames

	memo      []memoEntry   // rules' values, per evaluation (and per with)
	memoSaved [][]memoEntry // memo tables of the enclosing with statements
	memoSpare [][]memoEntry

	results []ast.Object
	pairs   [][2]*ast.Term // scratch for object literals
	retval  *ast.Term
	steps   uint32

	// Built-in calls.
	bctx     topdown.BuiltinContext // full context, built on first need
	bctxInit bool
	cache    builtins.Cache
	args     []*ast.Term
	out      *ast.Term
	outN     int
	relation bool
	relOut   []*ast.Term
	onOutput func(*ast.Term) error
}

func newEvalState(p *program) *evalState {
	s := &evalState{p: p, memo: make([]memoEntry, p.memoized), pairs: make([][2]*ast.Term, 0, p.maxPairs)}
	s.onOutput = s.output
	return s
}

// reset drops every reference the evaluation left behind.
func (s *evalState) reset() {
	clear(s.stack) // every frame was popped; this is a safety net
	s.stack = s.stack[:0]
	clear(s.memo)
	for _, m := range s.memoSaved {
		clear(m)
	}
	s.memoSaved = s.memoSaved[:0]
	s.results = nil
	s.retval, s.out, s.outN = nil, nil, 0
	s.ctx, s.opts = nil, nil
	s.bctx, s.bctxInit = topdown.BuiltinContext{}, false
	clear(s.cache)
	clear(s.args[:cap(s.args)])
	s.args = s.args[:0]
	clear(s.relOut[:cap(s.relOut)])
	s.relOut = s.relOut[:0]
	s.steps = 0
}

func (s *evalState) run(ctx context.Context, input *ast.Term, opts *EvalOptions) (ResultSet, error) {
	s.ctx, s.opts = ctx, opts
	if err := s.checkCancel(); err != nil {
		return nil, err
	}
	q := s.p.query
	fr := s.push(q.nlocals)
	defer s.pop(fr)
	fr[0], fr[1] = input, s.p.data
	for _, b := range q.blocks {
		r, err := s.exec(fr, b)
		if err != nil {
			return nil, err
		}
		if r != done && r != 0 {
			break
		}
	}
	rs := ResultSet(s.results)
	s.results = nil
	return rs, nil
}

// push returns n registers for a new frame. They are clear: registers are
// zero when the stack grows, and pop clears a frame's registers when it is
// done, so that no value outlives its frame. A frame keeps its registers
// while frames above it come and go: when the stack outgrows its array, new
// frames come from a larger one, and the frames below stay where they are
// (nothing reads them through the new array).
func (s *evalState) push(n int) []*ast.Term {
	base := len(s.stack)
	need := base + n
	if need > cap(s.stack) {
		s.stack = make([]*ast.Term, need, max(2*cap(s.stack), need, 64))
	} else {
		s.stack = s.stack[:need]
	}
	return s.stack[base:need:need]
}

func (s *evalState) pop(fr []*ast.Term) {
	clear(fr)
	s.stack = s.stack[:len(s.stack)-len(fr)]
}

func read(fr []*ast.Term, o operand) *ast.Term {
	if o.c != nil {
		return o.c
	}
	return fr[o.local]
}

func (s *evalState) checkCancel() error {
	if (s.opts.Cancel != nil && s.opts.Cancel.Cancelled()) || s.ctx.Err() != nil {
		return &topdown.Error{Code: topdown.CancelErr, Message: "caller cancelled query execution"}
	}
	return nil
}

func (s *evalState) tick() error {
	s.steps++
	if s.steps%cancelCheckEvery != 0 {
		return nil
	}
	return s.checkCancel()
}

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
			v := dot(src, key)
			if v == nil {
				if in.op == opDotData && mayStore(src, key) && dotStorage(src, key) != nil {
					return 0, ambiguousLookup(in, key)
				}
				return 0, nil
			}
			fr[in.target] = v
		case opEqual:
			a, b := read(fr, in.a), read(fr, in.b)
			if a == nil || b == nil || (a != b && a.Value.Compare(b.Value) != 0) {
				return 0, nil
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
			v, ok := buildLiteral(in, fr, s.pairs)
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
		case opObjectInsert, opObjectInsertOnce:
			k, v := read(fr, in.a), read(fr, in.b)
			t := fr[in.target]
			if k == nil || v == nil || t == nil {
				return 0, nil
			}
			obj, ok := t.Value.(ast.Object)
			if !ok {
				return 0, s.internal(in, "insert into a %s", ast.ValueName(t.Value))
			}
			if in.op == opObjectInsertOnce {
				if old := obj.Get(k); old != nil {
					if old != v && old.Value.Compare(v.Value) != 0 {
						return 0, &topdown.Error{Code: topdown.ConflictErr, Location: in.loc, Message: "object keys must be unique"}
					}
					continue
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

// call runs fn with arguments read from the caller's registers and returns
// its value, nil when undefined.
func (s *evalState) call(fn *function, fr []*ast.Term, args []operand) (*ast.Term, error) {
	if fn.memo >= 0 {
		if e := s.memo[fn.memo]; e.set {
			return e.v, nil
		}
	}
	nf := s.push(fn.nlocals)
	for i, p := range fn.params {
		nf[p] = read(fr, args[i])
	}
	var v *ast.Term
	for _, b := range fn.blocks {
		r, err := s.exec(nf, b)
		if err != nil {
			s.pop(nf)
			return nil, err
		}
		if r == ret {
			v, s.retval = s.retval, nil
			break
		}
		if r > 0 {
			s.pop(nf)
			return nil, &topdown.Error{Code: topdown.InternalErr, Message: "compiled evaluation: break out of function " + fn.name}
		}
	}
	s.pop(nf)
	if fn.memo >= 0 {
		s.memo[fn.memo] = memoEntry{set: true, v: v}
	}
	return v, nil
}

// lookup finds the function a CallDynamicStmt names; nil when there is none.
func (s *evalState) lookup(fr []*ast.Term, path []operand) *function {
	n := s.p.dyn
	for _, o := range path {
		t := read(fr, o)
		if t == nil {
			return nil
		}
		k, ok := t.Value.(ast.String)
		if !ok {
			return nil
		}
		if n = n.children[string(k)]; n == nil {
			return nil
		}
	}
	return n.fn
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

func (s *evalState) pushMemo() {
	s.memoSaved = append(s.memoSaved, s.memo)
	if n := len(s.memoSpare); n > 0 {
		s.memo, s.memoSpare = s.memoSpare[n-1], s.memoSpare[:n-1]
	} else {
		s.memo = make([]memoEntry, s.p.memoized)
	}
}

func (s *evalState) popMemo() {
	clear(s.memo)
	s.memoSpare = append(s.memoSpare, s.memo)
	n := len(s.memoSaved)
	s.memo, s.memoSaved = s.memoSaved[n-1], s.memoSaved[:n-1]
}

// callBuiltin calls OPA's implementation of a built-in function and
// reports whether the call is defined.
func (s *evalState) callBuiltin(fr []*ast.Term, in *instr) (bool, error) {
	bi := in.bi
	args := s.args[:0]
	for _, a := range in.args {
		v := read(fr, a)
		if v == nil {
			clear(args)
			return false, nil
		}
		args = append(args, v)
	}
	s.args = args
	defer clear(args)

	var ndKey *ast.Array
	if bi.nondet && s.opts.NDBuiltinCache != nil {
		ndKey = ast.NewArray(append([]*ast.Term(nil), args...)...)
		if v, ok := s.opts.NDBuiltinCache.Get(bi.name, ndKey); ok {
			return s.builtinResult(fr, in, ast.NewTerm(v), 1)
		}
	}

	var bctx topdown.BuiltinContext
	if bi.skipBctx {
		bctx.Location = in.loc
	} else {
		s.initBctx()
		bctx = s.bctx
		bctx.Location = in.loc
	}
	s.out, s.outN, s.relation = nil, 0, bi.relation
	err := bi.f(bctx, args, s.onOutput)
	out, n := s.out, s.outN
	s.out = nil
	if bi.relation {
		out = ast.ArrayTerm(append([]*ast.Term(nil), s.relOut...)...)
		clear(s.relOut)
		s.relOut = s.relOut[:0]
	}
	if err != nil {
		if h, ok := err.(topdown.Halt); ok {
			return false, h.Err
		}
		if s.opts.StrictBuiltinErrors {
			return false, err
		}
		return false, nil
	}
	if n > 1 && !bi.relation {
		return false, s.internal(in, "%s produced %d values", bi.name, n)
	}
	if ndKey != nil && n == 1 && out != nil {
		s.opts.NDBuiltinCache.Put(bi.name, ndKey, out.Value)
	}
	return s.builtinResult(fr, in, out, n)
}

func (s *evalState) builtinResult(fr []*ast.Term, in *instr, out *ast.Term, n int) (bool, error) {
	switch {
	case in.bi.relation:
		fr[in.target] = out
		return true, nil
	case n == 0:
		return false, nil
	case in.bi.void:
		return true, nil
	case out == nil:
		return false, nil
	}
	fr[in.target] = out
	return true, nil
}

// output receives a built-in function's values.
func (s *evalState) output(t *ast.Term) error {
	s.outN++
	if s.relation {
		s.relOut = append(s.relOut, t)
		return nil
	}
	s.out = t
	return nil
}

// initBctx builds the full built-in context, as topdown does, on the first
// call of a built-in function that needs it.
func (s *evalState) initBctx() {
	if s.bctxInit {
		return
	}
	o := s.opts
	now := o.Time
	if now.IsZero() {
		now = time.Now()
	}
	seed := o.Seed
	if seed == nil {
		seed = rand.Reader
	}
	m := o.Metrics
	if m == nil {
		m = metrics.NoOp()
	}
	if s.cache == nil {
		s.cache = builtins.Cache{}
	}
	caps := o.Capabilities
	if caps == nil {
		caps = s.p.capabilities
	}
	s.bctx = topdown.BuiltinContext{
		Context:                     s.ctx,
		Metrics:                     m,
		Seed:                        seed,
		Time:                        ast.NumberTerm(json.Number(strconv.FormatInt(now.UnixNano(), 10))),
		Cancel:                      o.Cancel,
		Runtime:                     o.Runtime,
		Cache:                       s.cache,
		InterQueryBuiltinCache:      o.InterQueryBuiltinCache,
		InterQueryBuiltinValueCache: o.InterQueryBuiltinValueCache,
		NDBuiltinCache:              o.NDBuiltinCache,
		PrintHook:                   o.PrintHook,
		Capabilities:                caps,
	}
	s.bctxInit = true
}

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
