package plan

import (
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/ir"
)

// The planner spells a composite literal, {"allow": true, "reason": r}, as
// a MakeObjectStmt followed by one ObjectInsertStmt per key (MakeArrayStmt
// and ArrayAppendStmt, MakeSetStmt and SetAddStmt likewise). The compiler
// folds such a run into one instruction that builds the value at its final
// size, and a literal of constants into the constant itself, built once
// when the plan is prepared and shared by every evaluation, when nothing in
// its function can modify it (see shareable).

// literalRun reports whether stmts[i] starts a literal and how many of the
// statements after it fill it in: insertions into the new value, one after
// the other, of values that are not the value itself.
func literalRun(stmts []ir.Stmt, i int) (int, bool) {
	var t ir.Local
	switch s := stmts[i].(type) {
	case *ir.MakeObjectStmt:
		t = s.Target
	case *ir.MakeArrayStmt:
		t = s.Target
	case *ir.MakeSetStmt:
		t = s.Target
	default:
		return 0, false
	}
	n := 0
	for _, s := range stmts[i+1:] {
		if !fillsLiteral(stmts[i], s, t) {
			break
		}
		n++
	}
	return n, true
}

func fillsLiteral(mk, s ir.Stmt, t ir.Local) bool {
	other := func(ops ...ir.Operand) bool {
		for _, o := range ops {
			if l, ok := o.Value.(ir.Local); ok && l == t {
				return false
			}
		}
		return true
	}
	switch mk.(type) {
	case *ir.MakeObjectStmt:
		s, ok := s.(*ir.ObjectInsertStmt)
		return ok && s.Object == t && other(s.Key, s.Value)
	case *ir.MakeArrayStmt:
		s, ok := s.(*ir.ArrayAppendStmt)
		return ok && s.Array == t && other(s.Value)
	case *ir.MakeSetStmt:
		s, ok := s.(*ir.SetAddStmt)
		return ok && s.Set == t && other(s.Value)
	}
	return false
}

// mutation is what a statement modifies in place: the register whose value
// it changes, if any.
func mutation(s ir.Stmt) (ir.Local, bool) {
	switch s := s.(type) {
	case *ir.ObjectInsertStmt:
		return s.Object, true
	case *ir.ObjectInsertOnceStmt:
		return s.Object, true
	case *ir.ArrayAppendStmt:
		return s.Array, true
	case *ir.SetAddStmt:
		return s.Set, true
	}
	return 0, false
}

// literalInfo is what the compiler needs to know about a function's
// literals: which registers other statements modify, which registers
// something other than a Make writes, and whether its constant literals
// may be shared.
type literalInfo struct {
	mutated   map[ir.Local]bool
	shareable bool
	// literalInserts are the insertions the compiler does not fold into a
	// literal and that do not put back a merge of rule objects: a key
	// given twice there is errKeyGivenTwice.
	literalInserts map[*ir.ObjectInsertStmt]bool
}

// analyzeLiterals finds the registers of blocks that statements other than
// literal runs modify, and decides whether constant literals may be
// shared. They may when every such register only ever receives a value its
// own Make statement creates (never one assigned, looked up, returned by a
// call, scanned or merged): then an in-place modification always reaches a
// value made in this evaluation, never a shared constant, wherever the
// constant travels. The planner's nested object building (a lookup, then
// an insertion into what it found) fails the test, and keeps its literals
// unshared.
func analyzeLiterals(blocks []*ir.Block) literalInfo {
	info := literalInfo{mutated: map[ir.Local]bool{}, shareable: true, literalInserts: map[*ir.ObjectInsertStmt]bool{}}
	written := map[ir.Local]bool{} // written by something other than a Make
	var walk func(b *ir.Block)
	walk = func(b *ir.Block) {
		for i := 0; i < len(b.Stmts); i++ {
			if n, ok := literalRun(b.Stmts, i); ok {
				i += n
				continue
			}
			s := b.Stmts[i]
			if t, ok := mutation(s); ok {
				info.mutated[t] = true
			}
			for _, t := range targets(s) {
				written[t] = true
			}
			switch s := s.(type) {
			case *ir.BlockStmt:
				for _, sub := range s.Blocks {
					walk(sub)
				}
			case *ir.ScanStmt:
				walk(s.Block)
			case *ir.NotStmt:
				walk(s.Block)
			case *ir.WithStmt:
				walk(s.Block)
			}
		}
	}
	for _, b := range blocks {
		walk(b)
	}
	for t := range info.mutated {
		if written[t] {
			info.shareable = false
		}
	}
	// The planner overwrites a key on purpose only when it merges the
	// objects of rules: it looks the nested object up, merges it
	// (ObjectMergeStmt) and inserts the merge. Every other insertion is a
	// literal's, which must not meet its key twice.
	merged := map[ir.Local]bool{}
	eachStmt(blocks, func(s ir.Stmt) {
		if m, ok := s.(*ir.ObjectMergeStmt); ok {
			merged[m.Target] = true
		}
	})
	eachStmt(blocks, func(s ir.Stmt) {
		if in, ok := s.(*ir.ObjectInsertStmt); ok {
			if l, ok := in.Value.Value.(ir.Local); !ok || !merged[l] {
				info.literalInserts[in] = true
			}
		}
	})
	return info
}

// targets are the registers a statement writes, other than by Make.
func targets(s ir.Stmt) []ir.Local {
	switch s := s.(type) {
	case *ir.CallStmt:
		return []ir.Local{s.Result}
	case *ir.CallDynamicStmt:
		return []ir.Local{s.Result}
	case *ir.DotStmt:
		return []ir.Local{s.Target}
	case *ir.LenStmt:
		return []ir.Local{s.Target}
	case *ir.AssignVarStmt:
		return []ir.Local{s.Target}
	case *ir.AssignVarOnceStmt:
		return []ir.Local{s.Target}
	case *ir.AssignIntStmt:
		return []ir.Local{s.Target}
	case *ir.MakeNullStmt:
		return []ir.Local{s.Target}
	case *ir.MakeNumberIntStmt:
		return []ir.Local{s.Target}
	case *ir.MakeNumberRefStmt:
		return []ir.Local{s.Target}
	case *ir.ObjectMergeStmt:
		return []ir.Local{s.Target}
	case *ir.ScanStmt:
		return []ir.Local{s.Key, s.Value}
	case *ir.WithStmt:
		return []ir.Local{s.Local}
	case *ir.ResetLocalStmt:
		return []ir.Local{s.Target}
	}
	return nil
}

// literal compiles a literal run: the Make statement and the insertions
// that follow it.
func (c *compiler) literal(run []ir.Stmt) (instr, error) {
	in := instr{owner: c.fn}
	var t ir.Local
	switch s := run[0].(type) {
	case *ir.MakeObjectStmt:
		in.op, t = opLitObject, s.Target
	case *ir.MakeArrayStmt:
		in.op, t, in.index = opLitArray, s.Target, int(max(s.Capacity, 0))
	case *ir.MakeSetStmt:
		in.op, t = opLitSet, s.Target
	}
	in.target = c.local(t)
	for _, s := range run[1:] {
		var k, v ir.Operand
		switch s := s.(type) {
		case *ir.ObjectInsertStmt:
			k, v = s.Key, s.Value
		case *ir.ArrayAppendStmt:
			v = s.Value
		case *ir.SetAddStmt:
			v = s.Value
		}
		if in.op == opLitObject {
			ko, err := c.operand(k)
			if err != nil {
				return in, err
			}
			in.args = append(in.args, ko)
		}
		vo, err := c.operand(v)
		if err != nil {
			return in, err
		}
		in.vals = append(in.vals, vo)
	}
	in.distinct = in.op == opLitObject && distinctConstants(in.args)
	c.prog.maxPairs = max(c.prog.maxPairs, len(in.vals))
	if c.lits.shareable && !c.lits.mutated[t] && constants(in.args) && constants(in.vals) {
		v, _, err := buildLiteral(&in, nil, nil)
		if err != nil {
			return in, err
		}
		return instr{op: opAssignConst, target: in.target, a: operand{c: v}, owner: c.fn}, nil
	}
	return in, nil
}

func constants(ops []operand) bool {
	for _, o := range ops {
		if o.c == nil {
			return false
		}
	}
	return true
}

func distinctConstants(ops []operand) bool {
	if !constants(ops) {
		return false
	}
	for i := range ops {
		for j := range i {
			if ops[i].c.Value.Compare(ops[j].c.Value) == 0 {
				return false
			}
		}
	}
	return true
}

// buildLiteral builds a literal's value with operands read from fr, using
// pairs as scratch space. When an operand is undefined it returns what the
// planner's statements would have built up to it, and false. An object
// whose keys turn out equal at evaluation is errKeyGivenTwice.
func buildLiteral(in *instr, fr []*ast.Term, pairs [][2]*ast.Term) (*ast.Term, bool, error) {
	n := len(in.vals)
	switch in.op {
	case opLitObject:
		if in.distinct {
			pairs = pairs[:0]
			for i := range n {
				v := read(fr, in.vals[i])
				if v == nil {
					obj := ast.NewObject(pairs...)
					clear(pairs)
					return ast.NewTerm(obj), false, nil
				}
				pairs = append(pairs, [2]*ast.Term{in.args[i].c, v})
			}
			obj := ast.NewObject(pairs...)
			clear(pairs)
			return ast.NewTerm(obj), true, nil
		}
		obj := ast.NewObjectWithCapacity(n)
		for i := range n {
			k, v := read(fr, in.args[i]), read(fr, in.vals[i])
			if k == nil || v == nil {
				return ast.NewTerm(obj), false, nil
			}
			if obj.Get(k) != nil {
				return nil, false, errKeyGivenTwice
			}
			obj.Insert(k, v)
		}
		return ast.NewTerm(obj), true, nil
	case opLitArray:
		if n == 0 {
			return ast.NewTerm(ast.NewArrayWithCapacity(in.index)), true, nil
		}
		elems := make([]*ast.Term, 0, max(n, in.index))
		for i := range n {
			v := read(fr, in.vals[i])
			if v == nil {
				return ast.NewTerm(ast.NewArray(elems...)), false, nil
			}
			elems = append(elems, v)
		}
		return ast.NewTerm(ast.NewArray(elems...)), true, nil
	}
	set := ast.NewSetWithCapacity(n)
	for i := range n {
		v := read(fr, in.vals[i])
		if v == nil {
			return ast.NewTerm(set), false, nil
		}
		set.Add(v)
	}
	return ast.NewTerm(set), true, nil
}
