package plan

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/topdown/builtins"
	"github.com/open-policy-agent/opa/v1/topdown/cache"
	"github.com/open-policy-agent/opa/v1/topdown/print"
)

// ErrUnsupported is wrapped by the errors of Prepare and Eval after which
// the caller should evaluate with OPA's topdown evaluator instead: Prepare
// refuses a query that needs something this package does not do as
// topdown does, and Eval an input on which it cannot promise topdown's
// answer (see Eval).
var ErrUnsupported = errors.New("not supported by the compiled evaluator")

// errKeyGivenTwice refuses an object built (as a literal, or by the
// planner's insertions) with one key twice: the planner orders a literal's
// keys its own way, and topdown keeps one of the values depending on how
// the keys were written, so only topdown can give topdown's answer.
var errKeyGivenTwice = &UnsupportedError{Feature: "an object built with one key twice"}

// errNumberKeyWrittenOtherwise refuses a lookup by a number written
// otherwise than the object's key (1.0 for 1): topdown finds a rule's key
// by its writing, values by their value.
var errNumberKeyWrittenOtherwise = &UnsupportedError{Feature: "a number key written otherwise than the object's"}

// errEqualValuesWrittenOtherwise refuses an object given one key twice with
// equal values written differently (1 and 1.0): topdown keeps the last in
// an object comprehension and the first in a partial object rule.
var errEqualValuesWrittenOtherwise = &UnsupportedError{Feature: "an object given one key twice with equal values written differently"}

// errWithMergedIntoBase refuses a with on data whose value, an object,
// replaces an object of the base document that has keys the value lacks
// (with data.roles.admin as {"read": true} where the base document's
// data.roles.admin has "write" too). topdown reads the target itself, and
// anything below it, from the with's value alone, but a document above it
// (data.roles) as the value merged with the base document's keys (its
// resolveReadFromStorage merges the with's overlay into what the store
// holds); the plan holds the value alone at every depth.
var errWithMergedIntoBase = &UnsupportedError{Feature: "a with on data whose value topdown merges with the base document"}

// errGlobEscapedValue refuses, at evaluation, a glob.match of a value
// holding a backslash. topdown's rule index splits the value with the
// pattern's escaping rules (a\.b is one part, not two), so it skips a rule
// whose glob.match("*.*", ["."], input.a) the built-in matches for "a\.b":
// topdown denies what the compiled evaluator, calling the built-in,
// allowed. Values without a backslash, the usual case, stay compiled.
var errGlobEscapedValue = &UnsupportedError{Feature: "a glob.match of a value holding a backslash, which topdown's rule index splits otherwise"}

// errWithBelowNonObject refuses a with on data whose target lies below a
// value of the base document that is not an object (with data.d.x.z as 1
// where data.d.x is an array). The plan replaces that value by an object
// holding the with's value alone (as Wasm does), while topdown reads every
// other key from the store: data.d.x[1] is still the array's element.
// not data.d.x[1] then held in the plan only, a wrong allow.
var errWithBelowNonObject = &UnsupportedError{Feature: "a with on data below a value of the base document that is not an object"}

// errDynamicCallArguments refuses a lookup by path (CallDynamicStmt) that
// reaches rules the planner gave more parameters than the lookup passes:
// under a with that replaces a function by a variable (with count as x),
// the planner passes x to the rules it re-plans as an extra argument, but a
// lookup by path passes only input and data, so the rules have no x where
// topdown has its value (and the interpreter would index past the
// arguments).
var errDynamicCallArguments = &UnsupportedError{Feature: "a lookup by path of rules that take a replaced function's value as an argument"}

// UnsupportedError says why Prepare or Eval refused. It wraps
// ErrUnsupported and the error behind the refusal, if any: the planner's,
// or, for an evaluation error, the *topdown.Error.
type UnsupportedError struct {
	// Feature says what is not supported, for example `built-in function
	// "x.y" (no implementation)` or "planning".
	Feature string
	cause   error
}

// Error says what is not supported and why.
func (e *UnsupportedError) Error() string {
	if e.cause != nil {
		return fmt.Sprintf("compiled evaluation: %s: %v", e.Feature, e.cause)
	}
	return "compiled evaluation: unsupported " + e.Feature
}

// Unwrap lets errors.Is(err, ErrUnsupported) hold and reaches the cause.
func (e *UnsupportedError) Unwrap() []error {
	if e.cause == nil {
		return []error{ErrUnsupported}
	}
	return []error{ErrUnsupported, e.cause}
}

// Options is what Prepare plans.
type Options struct {
	// Compiler holds the compiled modules. Prepare plans from it the way
	// OPA's rego package prepares a query for a compilation target, which
	// switches the compiler's evaluation mode; Prepare switches it back to
	// topdown mode, the default. It must therefore not run concurrently
	// with another use of the same compiler. Required.
	Compiler *ast.Compiler
	// Query is the query to plan, for example
	// `decision = data.verdict_entrypoint.decision`. Required.
	Query ast.Body
	// Data is the base document (the value of `data` outside the rules),
	// an object; nil means {}. It is shared, never modified, by every
	// evaluation.
	Data ast.Value
}

// Query is a prepared query: OPA's plan for it, checked and turned into a
// form the interpreter runs directly. A Query is immutable and safe for
// concurrent use; each evaluation borrows its own registers.
type Query struct {
	prog  *program
	state sync.Pool // of *evalState
}

// Prepare plans opts.Query with OPA's planner and makes it ready to
// evaluate. It returns an error wrapping ErrUnsupported (an
// *UnsupportedError naming the feature) when the plan needs something this
// evaluator does not implement; the caller then evaluates the query with
// OPA's evaluator instead, never with a partial plan.
func Prepare(ctx context.Context, opts Options) (*Query, error) {
	if opts.Compiler == nil {
		return nil, errors.New("plan: no compiler")
	}
	if len(opts.Query) == 0 {
		return nil, errors.New("plan: empty query")
	}
	data := opts.Data
	if data == nil {
		data = ast.NewObject()
	}
	obj, ok := data.(ast.Object)
	if !ok {
		return nil, fmt.Errorf("plan: data must be an object, got %s", ast.ValueName(data))
	}
	if obj.Get(ast.InternedTerm(string(ast.SystemDocumentKey))) != nil {
		// topdown hides data.system when it reads the whole of data.
		return nil, &UnsupportedError{Feature: "base document with data.system"}
	}
	// The refusals, each documented where it is written; the first found
	// is the one reported.
	c, q := opts.Compiler, opts.Query
	for _, check := range []func() error{
		func() error { return checkCompiler(c, q) },
		func() error { return checkPlainNumbers(c, q, obj) },
		func() error { return checkLiteralsWrittenWithVariables(c, q) },
		func() error { return checkNestedRuleRefs(c) },
		func() error { return checkNonStringRuleKeys(c) },
		func() error { return checkEmptyPackages(c) },
		func() error { return checkMixedIteration(c, q, obj) },
		func() error { return checkWithOrder(c, q) },
		func() error { return checkShadowedFunctionWith(c, q) },
		func() error { return checkBoundFunctionOutputs(c, q) },
		func() error { return checkReplacementReachesMock(c, q) },
		func() error { return checkGlobIndexed(c, q) },
		func() error { return checkVariableSetsInHeads(c, q) },
		func() error { return checkIndexedBuiltinReplaced(c, q) },
		func() error { return checkMemberVariableIndexed(c, q) },
		func() error { return checkIndexAnyVar(c, q) },
		func() error { return checkElseUnderVariableRef(c, q) },
		func() error { return checkWithFunctionValue(c, q) },
		func() error { return checkNegatedUnificationNeverHolds(c, q) },
	} {
		if err := check(); err != nil {
			return nil, err
		}
	}
	return prepareRecovered(ctx, opts.Compiler, opts.Query, data)
}

// prepareRecovered is prepareWithRego with a panic (OPA's planner panics on
// a few policies its compiler accepts, such as a with target on data with
// a variable in its path) turned into a refusal, so that loading a policy
// never takes the process down and topdown serves it.
func prepareRecovered(ctx context.Context, c *ast.Compiler, query ast.Body, data ast.Value) (q *Query, err error) {
	defer func() {
		if p := recover(); p != nil {
			q, err = nil, &UnsupportedError{Feature: "planning", cause: fmt.Errorf("the planner panicked: %v", p)}
		}
	}()
	return prepareWithRego(ctx, c, query, data)
}

// EvalOptions tunes one evaluation. The zero value evaluates with the
// current time, OPA's default randomness, no print output and built-in
// errors that make their expression undefined (OPA's default).
type EvalOptions struct {
	// Time is the evaluation's clock reading (time.now_ns and token
	// checks); zero means time.Now().
	Time time.Time
	// StrictBuiltinErrors turns a built-in function's error into an
	// evaluation error, as rego.StrictBuiltinErrors does. Without it the
	// failing call is undefined.
	StrictBuiltinErrors bool
	// PrintHook receives the output of print(); nil discards it.
	PrintHook print.Hook
	// Cancel, when set, stops the evaluation once cancelled, as
	// rego.EvalExternalCancel does. The evaluation also stops when ctx is
	// done.
	Cancel topdown.Cancel
	// Seed is the source of randomness for built-in functions; nil means
	// crypto/rand.
	Seed io.Reader
	// Metrics receives built-in function metrics; nil discards them.
	Metrics metrics.Metrics
	// NDBuiltinCache records (and replays) non-deterministic built-in
	// results, as rego.EvalNDBuiltinCache does.
	NDBuiltinCache builtins.NDBCache
	// InterQueryBuiltinCache and InterQueryBuiltinValueCache are handed to
	// built-in functions that cache across queries (http.send, io.jwt.*).
	InterQueryBuiltinCache      cache.InterQueryCache
	InterQueryBuiltinValueCache cache.InterQueryValueCache
	// Runtime is the value of opa.runtime(); nil means undefined.
	Runtime *ast.Term
	// Capabilities are handed to built-in functions that consult them.
	Capabilities *ast.Capabilities
}

// ResultSet holds one object per distinct solution of the query, mapping
// each of the query's variables to its value. A query expression that is
// not an assignment or comparison (a bare reference, say) is captured under
// a name starting with "^"; bind it to a variable to read it by name.
type ResultSet []ast.Object

// Eval evaluates the query with input as `input` (nil: undefined). It
// returns the query's solutions (none when the query is undefined) exactly
// as OPA's topdown evaluator would, or an error. Safe for concurrent use.
//
// Every error Eval returns, except for cancellation, wraps ErrUnsupported,
// and the caller should take topdown's answer for that input instead:
//
//   - a lookup in the base document that OPA's store would resolve where
//     the language's values do not (data.users[1] with a key "1"), which
//     topdown answers either way depending on how it evaluates the
//     reference;
//   - an evaluation error (a conflict, or a built-in function's error under
//     StrictBuiltinErrors), which wraps topdown's own *topdown.Error too.
//     Topdown's indexes skip rule bodies and its early exit stops at the
//     first value, so it evaluates less and may never meet the error.
//
// Cancellation (ctx done, or opts.Cancel) is a *topdown.Error with code
// topdown.CancelErr.
func (p *Query) Eval(ctx context.Context, input ast.Value, opts EvalOptions) (ResultSet, error) {
	s, _ := p.state.Get().(*evalState)
	if s == nil {
		s = newEvalState(p.prog)
	}
	finished := false
	defer func() {
		if finished { // a state a panic went through is dropped
			s.reset()
			p.state.Put(s)
		}
	}()
	var in *ast.Term
	if input != nil {
		if !plainNumbers(input) {
			finished = true
			return nil, errNumberWrittenOtherwise
		}
		in = ast.NewTerm(input)
	}
	rs, err := s.run(ctx, in, &opts)
	finished = true
	if err != nil {
		var te *topdown.Error
		if errors.As(err, &te) && te.Code == topdown.CancelErr {
			return nil, err
		}
		if !errors.Is(err, ErrUnsupported) {
			err = &UnsupportedError{Feature: "evaluation error, left to topdown", cause: err}
		}
		return nil, err
	}
	return rs, nil
}
