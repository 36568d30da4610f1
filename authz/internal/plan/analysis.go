package plan

import (
	"fmt"

	"github.com/open-policy-agent/opa/v1/ir"
)

// dataRegisters returns the registers that may hold the base document or
// a document inside it: the data register, and what lookups, scans and
// assignments take from those. OPA's topdown evaluator resolves a
// reference into the base document against its store, whose paths are
// strings: depending on how it evaluates the reference, data.a[1] may find
// the key "1", and data.list["0"] the first element. A lookup from one of
// these registers (opDotData) notices when that could happen and refuses
// to answer; counting a register in too many costs nothing but that check.
func dataRegisters(blocks []*ir.Block, data ir.Local) map[ir.Local]bool {
	regs := map[ir.Local]bool{data: true}
	type edge struct{ from, to ir.Local }
	var edges []edge
	from := func(o ir.Operand, to ir.Local) {
		if l, ok := o.Value.(ir.Local); ok {
			edges = append(edges, edge{l, to})
		}
	}
	eachStmt(blocks, func(s ir.Stmt) {
		switch s := s.(type) {
		case *ir.DotStmt:
			from(s.Source, s.Target)
		case *ir.AssignVarStmt:
			from(s.Source, s.Target)
		case *ir.AssignVarOnceStmt:
			from(s.Source, s.Target)
		case *ir.ObjectMergeStmt:
			edges = append(edges, edge{s.A, s.Target})
		case *ir.ScanStmt:
			edges = append(edges, edge{s.Source, s.Value})
		}
	})
	for changed := true; changed; {
		changed = false
		for _, e := range edges {
			if regs[e.from] && !regs[e.to] {
				regs[e.to], changed = true, true
			}
		}
	}
	return regs
}

// isDynamicLookup reports whether s is the block the planner builds around
// a reference into rules that it looks up by path (data.pkg.rules[x].f
// with x bound):
//
//	block outer
//	  block b
//	    block c1: CallDynamicStmt, break 1   (the rule, if there is one)
//	    block c2: lookups in data, break 1    (else the base document)
//	    break 2                               (neither: undefined)
//	  ...the rest of the reference and of the query...
//
// The rest of the query sits inside the outer block, so an undefined
// statement there ends that block only, and execution resumes after it
// as if the query had succeeded. Nothing follows in a rule body, but a
// negation (not data.pkg.rules[x]) or an every over such a reference reads
// the end of its block as success, and would be wrong: the interpreter
// lets an undefined statement in that outer block end the block around it
// too (opBlock), as it would without the lookup by path.
func isDynamicLookup(s *ir.BlockStmt) bool {
	if len(s.Blocks) != 1 || len(s.Blocks[0].Stmts) == 0 {
		return false
	}
	b, ok := s.Blocks[0].Stmts[0].(*ir.BlockStmt)
	if !ok || len(b.Blocks) != 1 || len(b.Blocks[0].Stmts) != 2 {
		return false
	}
	alts, ok := b.Blocks[0].Stmts[0].(*ir.BlockStmt)
	if brk, isBreak := b.Blocks[0].Stmts[1].(*ir.BreakStmt); !ok || !isBreak || brk.Index != 2 || len(alts.Blocks) != 2 {
		return false
	}
	if len(alts.Blocks[0].Stmts) == 0 {
		return false
	}
	_, ok = alts.Blocks[0].Stmts[0].(*ir.CallDynamicStmt)
	return ok
}

// checkNegatedEnumerations refuses a plan that negates a reference the
// planner enumerates (not data.p.rules[x], where the rules under
// data.p.rules sit at different depths, so the planner cannot look them up
// by path): the planner plans a negated expression with nothing after it,
// and the enumeration, one alternative per rule and then a scan of the
// base document, then reaches the end of the negation's block only through
// the base document, whatever the rules say. OPA's Wasm compiler reads the
// plan so; topdown does not, so only topdown can give its answer. The
// shape: a block statement and, after it in the negation's block, a scan.
func checkNegatedEnumerations(policy *ir.Policy) error {
	var found *ir.NotStmt
	visit := func(s ir.Stmt) {
		if n, ok := s.(*ir.NotStmt); ok && found == nil && enumerates(n.Block) {
			found = n
		}
	}
	if policy.Plans != nil {
		for _, p := range policy.Plans.Plans {
			eachStmt(p.Blocks, visit)
		}
	}
	if policy.Funcs != nil {
		for _, f := range policy.Funcs.Funcs {
			eachStmt(f.Blocks, visit)
		}
	}
	if found != nil {
		return &UnsupportedError{Feature: fmt.Sprintf("negation of a reference the planner enumerates (%s)", found.Location.Text)}
	}
	return nil
}

// enumerates reports whether b, a negation's block, holds a block
// statement followed by a scan at its top level: the planner's
// enumeration of rules, then of the base document.
func enumerates(b *ir.Block) bool {
	block := false
	for _, s := range b.Stmts {
		switch s.(type) {
		case *ir.BlockStmt:
			block = true
		case *ir.ScanStmt:
			if block {
				return true
			}
		}
	}
	return false
}

// eachStmt calls f for every statement of blocks, those nested in block,
// scan, negation and with statements included, each after the statement
// that holds it.
func eachStmt(blocks []*ir.Block, f func(ir.Stmt)) {
	for _, b := range blocks {
		for _, s := range b.Stmts {
			f(s)
			switch s := s.(type) {
			case *ir.BlockStmt:
				eachStmt(s.Blocks, f)
			case *ir.ScanStmt:
				eachStmt([]*ir.Block{s.Block}, f)
			case *ir.NotStmt:
				eachStmt([]*ir.Block{s.Block}, f)
			case *ir.WithStmt:
				eachStmt([]*ir.Block{s.Block}, f)
			}
		}
	}
}
