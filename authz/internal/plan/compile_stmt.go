package plan

import (
	"fmt"
	"slices"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/ir"
)

func (c *compiler) stmt(s ir.Stmt) (instr, error) {
	var (
		in  = instr{owner: c.fn}
		err error
	)
	two := func(a, b ir.Operand) {
		if err == nil {
			in.a, err = c.operand(a)
		}
		if err == nil {
			in.b, err = c.operand(b)
		}
	}
	switch s := s.(type) {
	case *ir.NopStmt:
		in.op = opNop
	case *ir.ResultSetAddStmt:
		in.op, in.a = opResultSetAdd, operand{local: c.local(s.Value)}
	case *ir.ReturnLocalStmt:
		in.op, in.a = opReturnLocal, operand{local: c.local(s.Source)}
	case *ir.BlockStmt:
		in.op = opBlock
		in.transparent = isDynamicLookup(s)
		in.blocks, err = c.blocks(s.Blocks)
	case *ir.BreakStmt:
		in.op, in.index = opBreak, int(s.Index)
	case *ir.CallStmt:
		in.target, in.loc = c.local(s.Result), c.location(&s.Location)
		for _, a := range s.Args {
			o, oerr := c.operand(a)
			if oerr != nil {
				return in, oerr
			}
			in.args = append(in.args, o)
		}
		if fn, ok := c.funcs[s.Func]; ok {
			in.op, in.fn = opCall, fn
			if len(in.args) != fn.nparams {
				// The planner names functions by their path joined with
				// dots, so o["a.b"] and o.a.b can meet under one name.
				return in, &UnsupportedError{Feature: fmt.Sprintf("call of %s with %d arguments", s.Func, len(in.args))}
			}
		} else if bi, ok := c.builtins[s.Func]; ok {
			in.op, in.bi = opCallBuiltin, bi
			if len(in.args) != bi.decl.Decl.Arity() && bi.decl.Decl.FuncArgs().Variadic == nil {
				return in, &UnsupportedError{Feature: fmt.Sprintf("call of %s with %d arguments", s.Func, len(in.args))}
			}
		} else {
			return in, &UnsupportedError{Feature: fmt.Sprintf("call of unknown function %q", s.Func)}
		}
	case *ir.CallDynamicStmt:
		in.op, in.target = opCallDynamic, c.local(s.Result)
		for _, a := range s.Args {
			in.args = append(in.args, operand{local: c.local(a)})
		}
		for _, p := range s.Path {
			o, oerr := c.operand(p)
			if oerr != nil {
				return in, oerr
			}
			in.path = append(in.path, o)
		}
		if len(in.args) != 2 {
			return in, &UnsupportedError{Feature: fmt.Sprintf("dynamic call with %d arguments", len(in.args))}
		}
	case *ir.WithStmt:
		in.op, in.target = opWith, c.local(s.Local)
		in.a, err = c.operand(s.Value)
		for _, p := range s.Path {
			if p < 0 || p >= len(c.strings) {
				return in, fmt.Errorf("plan: string constant %d out of range", p)
			}
			in.wpath = append(in.wpath, c.strings[p])
		}
		if c.dataRegs[s.Local] {
			for n := 1; n < len(in.wpath); n++ {
				v, ferr := c.prog.data.Value.Find(ast.Ref(in.wpath[:n]))
				if _, ok := v.(ast.Object); ferr == nil && !ok {
					return in, errWithBelowNonObject
				}
			}
		}
		if c.dataRegs[s.Local] && len(in.wpath) > 0 && readAbove(c.dataReads, in.wpath) {
			if v, ferr := c.prog.data.Value.Find(ast.Ref(in.wpath)); ferr == nil {
				in.wbase, _ = v.(ast.Object)
			}
			for n := 1; n < len(in.wpath); n++ {
				v, ferr := c.prog.data.Value.Find(ast.Ref(in.wpath[:n]))
				if _, ok := v.(ast.Object); ok && ferr == nil && readAbove(c.dataReads, in.wpath[:n]) {
					in.wobjects = append(in.wobjects, n)
				}
			}
		}
		if err == nil {
			in.body, err = c.block(s.Block)
		}
	case *ir.AssignVarStmt:
		in.op, in.target = opAssignVar, c.local(s.Target)
		in.a, err = c.operand(s.Source)
	case *ir.AssignVarOnceStmt:
		in.op, in.target, in.loc = opAssignVarOnce, c.local(s.Target), c.location(&s.Location)
		in.a, err = c.operand(s.Source)
	case *ir.AssignIntStmt:
		in.op, in.target, in.a = opAssignConst, c.local(s.Target), operand{c: ast.InternedTerm(s.Value)}
	case *ir.MakeNumberIntStmt:
		in.op, in.target, in.a = opAssignConst, c.local(s.Target), operand{c: ast.InternedTerm(s.Value)}
	case *ir.MakeNumberRefStmt:
		in.op, in.target = opAssignConst, c.local(s.Target)
		if s.Index < 0 || s.Index >= len(c.strings) {
			return in, fmt.Errorf("plan: number constant %d out of range", s.Index)
		}
		in.a = operand{c: c.number(s.Index)}
	case *ir.MakeNullStmt:
		in.op, in.target, in.a = opAssignConst, c.local(s.Target), operand{c: ast.InternedNullTerm}
	case *ir.ScanStmt:
		in.op, in.a = opScan, operand{local: c.local(s.Source)}
		in.key, in.target = c.local(s.Key), c.local(s.Value)
		in.body, err = c.block(s.Block)
	case *ir.NotStmt:
		in.op = opNot
		if l, ok := negatedBodyCondition(s.Block); ok && c.bodyLocal(l) {
			in.target, in.reset = c.local(l), true
		}
		in.body, err = c.block(s.Block)
	case *ir.DotStmt:
		in.op, in.target = opDot, c.local(s.Target)
		if l, ok := s.Source.Value.(ir.Local); ok && c.dataRegs[l] {
			in.op, in.loc = opDotData, c.location(&s.Location)
		}
		two(s.Source, s.Key)
	case *ir.LenStmt:
		in.op, in.target = opLen, c.local(s.Target)
		in.a, err = c.operand(s.Source)
	case *ir.EqualStmt:
		in.op = opEqual
		two(s.A, s.B)
	case *ir.NotEqualStmt:
		in.op = opNotEqual
		two(s.A, s.B)
	case *ir.IsArrayStmt:
		in.op = opIsArray
		in.a, err = c.operand(s.Source)
	case *ir.IsObjectStmt:
		in.op = opIsObject
		in.a, err = c.operand(s.Source)
	case *ir.IsSetStmt:
		in.op = opIsSet
		in.a, err = c.operand(s.Source)
	case *ir.IsDefinedStmt:
		in.op, in.a = opIsDefined, operand{local: c.local(s.Source)}
	case *ir.IsUndefinedStmt:
		in.op, in.a = opIsUndefined, operand{local: c.local(s.Source)}
	case *ir.ResetLocalStmt:
		in.op, in.target = opResetLocal, c.local(s.Target)
	case *ir.ArrayAppendStmt:
		in.op, in.target = opArrayAppend, c.local(s.Array)
		in.a, err = c.operand(s.Value)
	case *ir.ObjectInsertStmt:
		in.op, in.target = opObjectInsert, c.local(s.Object)
		if c.lits.literalInserts[s] {
			// A literal's insertion the compiler could not fold: a key
			// given twice is errKeyGivenTwice, as in a folded one.
			in.op = opObjectInsertLiteral
		}
		two(s.Key, s.Value)
	case *ir.ObjectInsertOnceStmt:
		in.op, in.target, in.loc = opObjectInsertOnce, c.local(s.Object), c.location(&s.Location)
		two(s.Key, s.Value)
	case *ir.ObjectMergeStmt:
		in.op, in.target = opObjectMerge, c.local(s.Target)
		in.a, in.b = operand{local: c.local(s.A)}, operand{local: c.local(s.B)}
	case *ir.SetAddStmt:
		in.op, in.target = opSetAdd, c.local(s.Set)
		in.a, err = c.operand(s.Value)
	default:
		return in, &UnsupportedError{Feature: fmt.Sprintf("statement %T", s)}
	}
	return in, err
}

// negatedBodyCondition returns the register in which OPA's planner records
// that a negated body (not { ... }) succeeded: the block sets it to true
// where the body succeeds and ends by testing it. The planner takes a new
// register for it but does not reset it (it does for and, or and every),
// and it numbers registers anew for each rule body, so the register may
// still hold a value another body, or an earlier iteration of a loop around
// the negation, put there: the body would then seem to have succeeded. The
// compiled evaluator resets it before the body runs. A body the planner
// knows cannot succeed (it unifies literals of different shapes, [x] = [1,
// 2]) has no statement that sets the register at all; it is reset too. The
// register is taken for a condition only when nothing else in the block
// names it: the block only sets it to true (or resets it, as and and or do
// with theirs).
func negatedBodyCondition(b *ir.Block) (ir.Local, bool) {
	if len(b.Stmts) == 0 {
		return 0, false
	}
	last, ok := b.Stmts[len(b.Stmts)-1].(*ir.IsDefinedStmt)
	if !ok {
		return 0, false
	}
	cond := true
	eachStmt([]*ir.Block{{Stmts: b.Stmts[:len(b.Stmts)-1]}}, func(s ir.Stmt) {
		eachLocal(s, func(_ string, _ int, l ir.Local) {
			if l != last.Source {
				return
			}
			switch s := s.(type) {
			case *ir.AssignVarStmt:
				if v, ok := s.Source.Value.(ir.Bool); ok && bool(v) {
					return // its target: the source is no register
				}
			case *ir.ResetLocalStmt:
				return
			}
			cond = false
		})
	})
	return last.Source, cond
}

// bodyLocal reports whether l is a register of a rule body, not one the
// function's bodies share (its parameters, input and data among them, and
// its value): a register the planner took for a body's negation is one.
func (c *compiler) bodyLocal(l ir.Local) bool {
	r := int32(l)
	return r > int32(ir.Data) && r != c.fn.ret && !slices.Contains(c.fn.params, r)
}
