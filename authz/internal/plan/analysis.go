package plan

import (
	"fmt"
	"reflect"
	"slices"

	"github.com/open-policy-agent/opa/v1/ast"
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

// dataPath is a path into the base document; a nil key stands for any key
// (a lookup by a variable, a scan).
type dataPath []*string

// wholeDataReads returns the paths of the base document that the plan (any
// of its functions) reads whole: for anything but a lookup below them, the
// data argument of a call (every function's second parameter), the target
// of a with, or the planner's own saving of that target. An assignment is
// a read: topdown evaluates a reference as one, and a variable bound to
// data.d holds the whole of data.d, even when the plan then looks up
// data.d.m in it. Where it cannot follow a register it returns the root, a
// prefix of every path. See errWithMergedIntoBase.
func wholeDataReads(policy *ir.Policy) []dataPath {
	var strs []string
	if policy.Static != nil {
		for _, s := range policy.Static.Strings {
			strs = append(strs, s.Value)
		}
	}
	planned := map[string]bool{}
	if policy.Funcs != nil {
		for _, f := range policy.Funcs.Funcs {
			planned[f.Name] = true
		}
	}
	var reads []dataPath
	analyze := func(blocks []*ir.Block, data ir.Local) {
		paths := map[ir.Local][]dataPath{data: {{}}}
		type edge struct {
			from, to ir.Local
			key      *string // appended to the path
			extend   bool    // false: the same path (an assignment)
		}
		var edges []edge
		eachStmt(blocks, func(s ir.Stmt) {
			switch s := s.(type) {
			case *ir.DotStmt:
				if l, ok := s.Source.Value.(ir.Local); ok {
					var key *string
					if i, ok := s.Key.Value.(ir.StringIndex); ok && int(i) < len(strs) {
						key = &strs[i]
					}
					edges = append(edges, edge{from: l, to: s.Target, key: key, extend: true})
				}
			case *ir.ScanStmt:
				edges = append(edges, edge{from: s.Source, to: s.Value, extend: true})
			case *ir.AssignVarStmt:
				if l, ok := s.Source.Value.(ir.Local); ok {
					edges = append(edges, edge{from: l, to: s.Target})
				}
			case *ir.AssignVarOnceStmt:
				if l, ok := s.Source.Value.(ir.Local); ok {
					edges = append(edges, edge{from: l, to: s.Target})
				}
			case *ir.ObjectMergeStmt:
				edges = append(edges, edge{from: s.A, to: s.Target}, edge{from: s.B, to: s.Target})
			case *ir.WithStmt:
				// The planner's with on data first sets the data register
				// to a copy of itself: an assignment, not a read.
				if l, ok := s.Value.Value.(ir.Local); ok && len(s.Path) == 0 {
					edges = append(edges, edge{from: l, to: s.Local})
				}
			}
		})
		seen := map[ir.Local]map[string]bool{}
		add := func(l ir.Local, p dataPath) bool {
			if seen[l] == nil {
				seen[l] = map[string]bool{}
			}
			k := fmt.Sprint(p)
			if seen[l][k] {
				return false
			}
			seen[l][k] = true
			paths[l] = append(paths[l], p)
			return true
		}
		// A register assigned in a loop of lookups would make paths grow
		// without end: past a bound, its path is the root.
		const maxPaths = 64
		for changed := true; changed; {
			changed = false
			for _, e := range edges {
				for _, p := range paths[e.from] {
					q := p
					if e.extend {
						q = append(append(dataPath{}, p...), e.key)
					}
					if len(q) > maxPaths || len(paths[e.to]) > maxPaths {
						q = dataPath{}
					}
					if add(e.to, q) {
						changed = true
					}
				}
			}
		}
		// The planner saves the register a with replaces (AssignVarStmt)
		// and sets it back after the with (a WithStmt without a path): not a
		// read.
		saves := map[ir.Local]bool{}
		eachStmt(blocks, func(s ir.Stmt) {
			if w, ok := s.(*ir.WithStmt); ok && len(w.Path) == 0 {
				if l, ok := w.Value.Value.(ir.Local); ok {
					saves[l] = true
				}
			}
		})
		eachStmt(blocks, func(s ir.Stmt) {
			if a, ok := s.(*ir.AssignVarStmt); ok && saves[a.Target] {
				return
			}
			for _, l := range readLocals(s, planned) {
				reads = append(reads, paths[l]...)
			}
		})
	}
	if policy.Plans != nil {
		for _, p := range policy.Plans.Plans {
			analyze(p.Blocks, ir.Data)
		}
	}
	if policy.Funcs != nil {
		for _, f := range policy.Funcs.Funcs {
			if len(f.Params) > 1 {
				analyze(f.Blocks, f.Params[1])
			}
		}
	}
	return reads
}

// readLocals returns the registers s reads: every local it names (as an
// operand or not), but those it writes, the source of a lookup, the data
// argument of a call of a planned function (planned) and the target of a
// with. Counting too many costs
// only a check at evaluation.
func readLocals(s ir.Stmt, planned map[string]bool) []ir.Local {
	var out []ir.Local
	eachLocal(s, func(field string, i int, l ir.Local) {
		switch {
		case notRead(s, field):
		case field == "Args" && i == 1:
			// The data argument of CallDynamicStmt, or of a call of a
			// planned function.
			if c, ok := s.(*ir.CallStmt); ok && !planned[c.Func] {
				out = append(out, l)
			}
		default:
			out = append(out, l)
		}
	})
	return out
}

// eachLocal calls f for every register s names, with the name of the field
// that names it and, in a list, its index (-1 otherwise).
func eachLocal(s ir.Stmt, f func(field string, i int, l ir.Local)) {
	v := reflect.ValueOf(s)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return
	}
	v = v.Elem()
	for i := range v.NumField() {
		name := v.Type().Field(i).Name
		switch x := v.Field(i).Interface().(type) {
		case ir.Local:
			f(name, -1, x)
		case ir.Operand:
			if l, ok := x.Value.(ir.Local); ok {
				f(name, -1, l)
			}
		case []ir.Local:
			for j, l := range x {
				f(name, j, l)
			}
		case []ir.Operand:
			for j, o := range x {
				if l, ok := o.Value.(ir.Local); ok {
					f(name, j, l)
				}
			}
		}
	}
}

// notRead reports whether the field name of s names a register s does not
// read whole (see readLocals).
func notRead(s ir.Stmt, name string) bool {
	if name == "Target" || name == "Result" {
		return true
	}
	switch s := s.(type) {
	case *ir.DotStmt:
		return name == "Source"
	case *ir.ScanStmt:
		return name == "Key" || name == "Value"
	case *ir.WithStmt:
		// The data register itself, or the copy of it the planner sets it
		// to.
		return name == "Local" || name == "Value" && len(s.Path) == 0
	}
	return false
}

// readAbove reports whether one of reads is a proper prefix of path.
func readAbove(reads []dataPath, path []*ast.Term) bool {
	for _, r := range reads {
		if len(r) >= len(path) {
			continue
		}
		above := true
		for i, k := range r {
			if k != nil && !ast.String(*k).Equal(path[i].Value) {
				above = false
				break
			}
		}
		if above {
			return true
		}
	}
	return false
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
// planner enumerates, or a relation built-in's results matched against a
// pattern (see enumerates) (not data.p.rules[x], where the rules under
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
	eachPolicyStmt(policy, visit)
	if found != nil {
		return &UnsupportedError{Feature: fmt.Sprintf("negation of a reference the planner enumerates (%s)", found.Location.Text)}
	}
	return nil
}

// enumerates reports whether b, a negation's block, holds at its top level
// a block statement followed by a scan (the planner's enumeration of rules,
// then of the base document), or a call of a relation built-in followed by
// a scan (not walk(x, [path, value]): the planner scans the relation's
// results for the pattern, and a scan that matches nothing still ends the
// block, so the negation never held), also inside a lookup by path or a
// with (enumeratesIn).
func enumerates(b *ir.Block) bool {
	return enumeratesIn(b.Stmts)
}

// enumeratesIn is enumerates over stmts. The rest of the negated
// expression that a lookup by path (isDynamicLookup) nests inside its
// block, and the body of a with, count as the negation's block too: the
// lookup's block is transparent, so an enumeration inside it ends the
// negation's block the same way (not u[input.a] == r[input.j], r uneven).
func enumeratesIn(stmts []ir.Stmt) bool {
	before := false
	for _, s := range stmts {
		switch s := s.(type) {
		case *ir.BlockStmt:
			if isDynamicLookup(s) && enumeratesIn(s.Blocks[0].Stmts[1:]) {
				return true
			}
			before = true
		case *ir.WithStmt:
			if enumeratesIn(s.Block.Stmts) {
				return true
			}
		case *ir.CallStmt:
			if bi := ast.BuiltinMap[s.Func]; bi != nil && bi.Relation {
				before = true
			}
		case *ir.ScanStmt:
			if before {
				return true
			}
		}
	}
	return false
}

// checkUnboundLocals refuses a plan in which a rule body (a block of a
// function, or of the query plan) reads a register that nothing in it
// writes: the planner lost a variable on the way. The one known case is a
// with that replaces a function, or a built-in function, by a composite
// value holding variables (with data.a.f as [x]): the compiler leaves the
// value as it is written, and the planner plans it inside each rule the
// replacement reaches, where x is not in scope, as a fresh register that
// is never set (a plain variable, with data.a.f as x, is passed to those
// rules as an argument). topdown replaces f with [1] for x = 1; the plan
// reads an undefined value, so a rule using f is undefined, and its
// negation holds. The check is by body, not by function: the planner
// numbers registers anew for each rule body and else branch, so another
// body or branch of the rule may set the lost register's number, and the
// plan would read what it left there. What one body of a function may read from another is
// the parameters, the function's value (the set or object the rule builds,
// a default's test) and the register where a complete rule's bodies and
// else branches leave their value, the planner's first register after
// those (lresult in its planRules). The condition register of a negated
// body is set, as the compiled evaluator resets it (negatedBodyCondition).
func checkUnboundLocals(policy *ir.Policy) error {
	check := func(name string, blocks []*ir.Block, shared []ir.Local) error {
		var err error
		for _, b := range blocks {
			written := map[ir.Local]bool{}
			for _, l := range shared {
				written[l] = true
			}
			body := []*ir.Block{b}
			eachStmt(body, func(s ir.Stmt) {
				eachLocal(s, func(field string, _ int, l ir.Local) {
					if writes(s, field) {
						written[l] = true
					}
				})
				if n, ok := s.(*ir.NotStmt); ok {
					if l, ok := negatedBodyCondition(n.Block); ok {
						written[l] = true // reset before the body runs
					}
				}
			})
			eachStmt(body, func(s ir.Stmt) {
				eachLocal(s, func(field string, _ int, l ir.Local) {
					if err == nil && !writes(s, field) && !written[l] {
						err = &UnsupportedError{Feature: fmt.Sprintf(
							"a plan that reads a register its rule body never sets (local %d of %s): the planner lost a variable, as in a with replacing a function by a value holding variables", l, name)}
					}
				})
			})
		}
		return err
	}
	if policy.Funcs != nil {
		for _, f := range policy.Funcs.Funcs {
			shared := append([]ir.Local{f.Return}, f.Params...)
			if err := check(f.Name, ruleBodies(f.Blocks), append(shared, slices.Max(shared)+1)); err != nil {
				return err
			}
		}
	}
	if policy.Plans != nil {
		for _, p := range policy.Plans.Plans {
			if err := check(p.Name, p.Blocks, []ir.Local{ir.Input, ir.Data}); err != nil {
				return err
			}
		}
	}
	return nil
}

// ruleBodies returns the bodies of a function's blocks: a block, or the
// blocks of a rule with else branches, which the planner puts in a block
// holding nothing but a BlockStmt, one block for each branch (each numbered
// anew, as any rule body) and a last one taking the branches' value.
func ruleBodies(blocks []*ir.Block) []*ir.Block {
	var out []*ir.Block
	for _, b := range blocks {
		if len(b.Stmts) == 1 {
			if s, ok := b.Stmts[0].(*ir.BlockStmt); ok {
				out = append(out, s.Blocks...)
				continue
			}
		}
		out = append(out, b)
	}
	return out
}

// writes reports whether the field of s names a register s sets: its
// target or result, and a scan's key and value. Every other register it
// names, it reads.
func writes(s ir.Stmt, field string) bool {
	if _, ok := s.(*ir.ScanStmt); ok && (field == "Key" || field == "Value") {
		return true
	}
	return field == "Target" || field == "Result"
}

// eachPolicyStmt calls f for every statement of the policy's plans and
// functions, as eachStmt does for blocks.
func eachPolicyStmt(policy *ir.Policy, f func(ir.Stmt)) {
	if policy.Plans != nil {
		for _, p := range policy.Plans.Plans {
			eachStmt(p.Blocks, f)
		}
	}
	if policy.Funcs != nil {
		for _, fn := range policy.Funcs.Funcs {
			eachStmt(fn.Blocks, f)
		}
	}
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
