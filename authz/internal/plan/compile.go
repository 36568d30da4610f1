package plan

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/ir"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// compileProgram checks policy and resolves it against data. Anything it
// does not know makes it refuse the whole plan with an *UnsupportedError.
func compileProgram(policy *ir.Policy, data ast.Value, caps *ast.Capabilities) (*program, error) {
	if policy.Plans == nil || len(policy.Plans.Plans) != 1 {
		return nil, &UnsupportedError{Feature: "policy with other than one plan"}
	}
	if err := checkNegatedEnumerations(policy); err != nil {
		return nil, err
	}
	if err := checkUnboundLocals(policy); err != nil {
		return nil, err
	}
	c := &compiler{
		policy:   policy,
		funcs:    map[string]*function{},
		builtins: map[string]*builtin{},
		prog:     &program{data: ast.NewTerm(data), dyn: &dynNode{}, capabilities: caps},
		// Computed once for the with statements of every function.
		dataReads: wholeDataReads(policy),
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

// resolveBuiltin returns the built-in function name, or refuses it: those
// whose calls reach outside the process (topdown stops evaluating a
// complete rule or function at its first value; the plan evaluates every
// body and iteration, and would make calls topdown never makes), and those
// whose answer differs from one call to the next without a cache of their
// own (topdown keeps a function's result for the whole query; the plan
// keeps only rules'), are left to topdown.
func resolveBuiltin(name string) (*builtin, error) {
	switch name {
	case "http.send", "net.lookup_ip_addr":
		return nil, &UnsupportedError{Feature: fmt.Sprintf(
			"built-in function %q (it reaches the network, and the plan has no early exit: topdown stops at a rule's first value, the plan would call it for every body)", name)}
	case "io.jwt.encode_sign", "io.jwt.encode_sign_raw":
		return nil, &UnsupportedError{Feature: fmt.Sprintf(
			"built-in function %q (its answer differs from call to call, ES* and PS* signatures being random; topdown keeps a function's result for the query, so f(1) == f(1) holds there, and the plan calls it again)", name)}
	}
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
		glob:     name == ast.GlobMatch.Name,
	}, nil
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
	// dataReads are the paths of the base document the plan reads whole
	// (wholeDataReads).
	dataReads []dataPath
	lits      literalInfo
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
