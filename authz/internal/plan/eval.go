package plan

import (
	"context"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/topdown/builtins"
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

	// unplain: a built-in function made a number written otherwise than
	// its plain form (to_number("1.0")) in this evaluation. Nothing else
	// can (Eval refuses such input, Prepare such data and policies), so
	// the checks where topdown's shortcuts would meet one run only then.
	unplain bool

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
	s.unplain = false
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
