package plan

import (
	"crypto/rand"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/topdown/builtins"
)

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
	if bi.glob && len(args) > 2 {
		if v, ok := args[2].Value.(ast.String); ok && strings.ContainsRune(string(v), '\\') {
			return false, errGlobEscapedValue
		}
	}

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
	case n == 0:
		return false, nil
	case in.bi.void:
		return true, nil
	case out == nil:
		return false, nil
	}
	if !s.unplain && !plainNumbers(out.Value) {
		s.unplain = true // see errNumberWrittenOtherwise
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
