package plan

import (
	"github.com/open-policy-agent/opa/v1/ast"
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
	opObjectInsertLiteral // opObjectInsert into an object only its Make fills
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
	// reset: a NotStmt clears its target, the register its body sets
	// when it succeeds, before running (negatedBodyCondition).
	reset bool
	path  []operand   // CallDynamicStmt
	wpath []*ast.Term // WithStmt
	// wbase is, for a WithStmt on data somewhere above whose target the
	// plan reads the base document whole, the base document's object at
	// wpath (nil when there is none): see errWithMergedIntoBase.
	wbase ast.Object
	// wobjects are, for the same WithStmt, the lengths of the proper
	// prefixes of wpath at which the base document holds an object and the
	// plan reads a document above: see nonObjectAt.
	wobjects []int
	loc      *ast.Location
	owner    *function // for conflict messages
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
	glob     bool // glob.match: see errGlobEscapedValue
}

// dynNode is a node of the function-path tree that CallDynamicStmt looks
// paths up in.
type dynNode struct {
	children map[string]*dynNode
	fn       *function
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
