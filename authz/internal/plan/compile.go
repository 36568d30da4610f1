package plan

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/ir"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// program is a checked plan in the form the interpreter runs: statements
// with their operands resolved to registers or constant terms, calls
// resolved to functions or to OPA's built-in implementations.
type program struct {
	query *function // the plan: registers 0 and 1 hold input and data
	dyn   *dynNode  // functions by path, for CallDynamicStmt
	data  *ast.Term
	// capabilities are handed to built-in functions, as topdown hands
	// them the compiler's.
	capabilities *ast.Capabilities
	// memoized is the number of functions whose results are memoized per
	// evaluation (those of the rules without arguments).
	memoized int
	// maxPairs is the size of the largest object literal.
	maxPairs int
}

// function is an IR function (a rule set, or a function rule), or the query
// plan itself.
type function struct {
	name    string // e.g. g0.data.authz.allow
	params  []int32
	ret     int32
	nlocals int
	nparams int
	blocks  []*block
	memo    int  // index into the evaluation's memo table; -1 when not memoized
	isFunc  bool // a function rule (has arguments), for error messages
	path    string
}

type block struct {
	instrs []instr
}

type opcode uint8

const (
	opNop opcode = iota
	opResultSetAdd
	opReturnLocal
	opBlock
	opBreak
	opCall
	opCallBuiltin
	opCallDynamic
	opWith
	opAssignVar
	opAssignVarOnce
	opAssignConst // AssignIntStmt and the Make* of constants
	opScan
	opNot
	opDot
	opDotData // a lookup that may be in the base document (dataRegisters)
	opLen
	opEqual
	opNotEqual
	opIsArray
	opIsObject
	opIsSet
	opIsDefined
	opIsUndefined
	opResetLocal
	opArrayAppend
	opObjectInsert
	opObjectInsertOnce
	opObjectMerge
	opSetAdd
	opLitObject // a MakeObjectStmt and the insertions that fill it (literal.go)
	opLitArray
	opLitSet
)

// operand is a register or, when c is set, a constant.
type operand struct {
	local int32
	c     *ast.Term
}

// instr is one statement. Which fields are used depends on op.
type instr struct {
	op       opcode
	a, b     operand
	target   int32 // register written
	key      int32 // ScanStmt key register
	index    int   // BreakStmt index; an array literal's capacity
	body     *block
	blocks   []*block
	fn       *function
	bi       *builtin
	args     []operand // call arguments; an object literal's keys
	vals     []operand // a literal's values
	distinct bool      // an object literal's keys are distinct constants
	// transparent: an undefined statement in the block ends the block
	// around it too (isDynamicLookup).
	transparent bool
	path        []operand   // CallDynamicStmt
	wpath       []*ast.Term // WithStmt
	loc         *ast.Location
	owner       *function // for conflict messages
}

// builtin is one of OPA's built-in functions, called through topdown's own
// implementation.
type builtin struct {
	name     string
	decl     *ast.Builtin
	f        topdown.BuiltinFunc
	relation bool // all outputs, as an array (walk)
	void     bool // no output value (print)
	skipBctx bool // needs only the call's location
	nondet   bool
}

// dynNode is a node of the function-path tree that CallDynamicStmt looks
// paths up in.
type dynNode struct {
	children map[string]*dynNode
	fn       *function
}

// compileProgram checks policy and resolves it against data. Anything it
// does not know makes it refuse the whole plan with an *UnsupportedError.
func compileProgram(policy *ir.Policy, data ast.Value, caps *ast.Capabilities) (*program, error) {
	if policy.Plans == nil || len(policy.Plans.Plans) != 1 {
		return nil, &UnsupportedError{Feature: "policy with other than one plan"}
	}
	c := &compiler{
		policy:   policy,
		funcs:    map[string]*function{},
		builtins: map[string]*builtin{},
		prog:     &program{data: ast.NewTerm(data), dyn: &dynNode{}, capabilities: caps},
	}
	if policy.Static != nil {
		for _, s := range policy.Static.Strings {
			c.strings = append(c.strings, ast.InternedTerm(s.Value))
		}
		for _, f := range policy.Static.Files {
			c.files = append(c.files, f.Value)
		}
		for _, bf := range policy.Static.BuiltinFuncs {
			b, err := resolveBuiltin(bf.Name)
			if err != nil {
				return nil, err
			}
			c.builtins[bf.Name] = b
		}
	}
	// Declare every function first: calls may precede definitions.
	if policy.Funcs != nil {
		for _, f := range policy.Funcs.Funcs {
			if len(f.Params) < 2 {
				return nil, &UnsupportedError{Feature: fmt.Sprintf("function %s with %d parameters", f.Name, len(f.Params))}
			}
			fn := &function{name: f.Name, memo: -1, path: rulePath(f.Name), nparams: len(f.Params)}
			if len(f.Params) == 2 {
				fn.memo = c.prog.memoized
				c.prog.memoized++
			} else {
				fn.isFunc = true
			}
			c.funcs[f.Name] = fn
			if len(f.Path) > 0 {
				c.prog.dyn.insert(f.Path, fn)
			}
		}
		for _, f := range policy.Funcs.Funcs {
			if err := c.function(c.funcs[f.Name], f); err != nil {
				return nil, err
			}
		}
	}
	pl := policy.Plans.Plans[0]
	q := &function{name: pl.Name, memo: -1}
	c.fn, c.maxLocal = q, int32(ir.Data)
	c.dataRegs = dataRegisters(pl.Blocks, ir.Data)
	c.lits = analyzeLiterals(pl.Blocks)
	for _, b := range pl.Blocks {
		cb, err := c.block(b)
		if err != nil {
			return nil, err
		}
		q.blocks = append(q.blocks, cb)
	}
	q.nlocals = int(c.maxLocal) + 1
	c.prog.query = q
	return c.prog, nil
}

// rulePath turns a function name (g0.data.authz.allow) into the path of
// its rules (data.authz.allow).
func rulePath(name string) string {
	if _, rest, ok := strings.Cut(name, "."); ok && strings.HasPrefix(name, "g") {
		return rest
	}
	return name
}

func resolveBuiltin(name string) (*builtin, error) {
	decl, ok := ast.BuiltinMap[name]
	if !ok {
		return nil, &UnsupportedError{Feature: fmt.Sprintf("built-in function %q (no declaration)", name)}
	}
	f := topdown.GetBuiltin(name)
	if f == nil {
		return nil, &UnsupportedError{Feature: fmt.Sprintf("built-in function %q (no implementation)", name)}
	}
	return &builtin{
		name:     name,
		decl:     decl,
		f:        f,
		relation: decl.Relation,
		void:     decl.Decl.Result() == nil,
		skipBctx: decl.CanSkipBctx,
		nondet:   decl.Nondeterministic,
	}, nil
}

func (n *dynNode) insert(path []string, fn *function) {
	for _, p := range path {
		if n.children == nil {
			n.children = map[string]*dynNode{}
		}
		child := n.children[p]
		if child == nil {
			child = &dynNode{}
			n.children[p] = child
		}
		n = child
	}
	n.fn = fn
}

type compiler struct {
	policy   *ir.Policy
	prog     *program
	strings  []*ast.Term
	files    []string
	funcs    map[string]*function
	builtins map[string]*builtin
	numbers  map[int]*ast.Term

	fn       *function // being compiled
	maxLocal int32
	// dataRegs are the registers of the function being compiled that hold
	// the base document or a document below it, reached by lookups and
	// scans from the data register (see dataRegisters).
	dataRegs map[ir.Local]bool
	lits     literalInfo
}

func (c *compiler) function(fn *function, f *ir.Func) error {
	c.fn, c.maxLocal = fn, 0
	for _, p := range f.Params {
		fn.params = append(fn.params, c.local(p))
	}
	fn.ret = c.local(f.Return)
	// By convention the second parameter of every function is data.
	c.dataRegs = dataRegisters(f.Blocks, f.Params[1])
	c.lits = analyzeLiterals(f.Blocks)
	for _, b := range f.Blocks {
		cb, err := c.block(b)
		if err != nil {
			return fmt.Errorf("%s: %w", f.Name, err)
		}
		fn.blocks = append(fn.blocks, cb)
	}
	fn.nlocals = int(c.maxLocal) + 1
	return nil
}

func (c *compiler) local(l ir.Local) int32 {
	r := int32(l)
	if r > c.maxLocal {
		c.maxLocal = r
	}
	return r
}

func (c *compiler) operand(o ir.Operand) (operand, error) {
	switch v := o.Value.(type) {
	case ir.Local:
		return operand{local: c.local(v)}, nil
	case ir.Bool:
		return operand{c: ast.InternedTerm(bool(v))}, nil
	case ir.StringIndex:
		if int(v) < 0 || int(v) >= len(c.strings) {
			return operand{}, fmt.Errorf("plan: string constant %d out of range", v)
		}
		return operand{c: c.strings[v]}, nil
	}
	return operand{}, &UnsupportedError{Feature: fmt.Sprintf("operand %T", o.Value)}
}

func (c *compiler) location(l *ir.Location) *ast.Location {
	file := ""
	if l.File >= 0 && l.File < len(c.files) {
		file = c.files[l.File]
	}
	return &ast.Location{File: file, Row: l.Row, Col: l.Col, Text: bytes.Clone(l.Text)}
}

func (c *compiler) block(b *ir.Block) (*block, error) {
	out := &block{instrs: make([]instr, 0, len(b.Stmts))}
	for i := 0; i < len(b.Stmts); i++ {
		var (
			in  instr
			err error
		)
		if n, ok := literalRun(b.Stmts, i); ok {
			in, err = c.literal(b.Stmts[i : i+1+n])
			i += n
		} else {
			in, err = c.stmt(b.Stmts[i])
		}
		if err != nil {
			return nil, err
		}
		out.instrs = append(out.instrs, in)
	}
	return out, nil
}

func (c *compiler) blocks(bs []*ir.Block) ([]*block, error) {
	out := make([]*block, 0, len(bs))
	for _, b := range bs {
		cb, err := c.block(b)
		if err != nil {
			return nil, err
		}
		out = append(out, cb)
	}
	return out, nil
}

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
				return in, fmt.Errorf("plan: call of %s with %d arguments", s.Func, len(in.args))
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

// number returns the constant number spelled by string constant i.
func (c *compiler) number(i int) *ast.Term {
	if t, ok := c.numbers[i]; ok {
		return t
	}
	s := c.policy.Static.Strings[i].Value
	t := ast.InternedIntNumberTermFromString(s)
	if t == nil {
		t = ast.NewTerm(ast.Number(s))
	}
	if c.numbers == nil {
		c.numbers = map[int]*ast.Term{}
	}
	c.numbers[i] = t
	return t
}

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
	var walk func(b *ir.Block)
	walk = func(b *ir.Block) {
		for _, s := range b.Stmts {
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
				walk(s.Block)
			case *ir.BlockStmt:
				for _, sub := range s.Blocks {
					walk(sub)
				}
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
