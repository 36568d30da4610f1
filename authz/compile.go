package authz

import (
	"cmp"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"github.com/verdict-pdp/verdict/authz/internal/plan"
	"github.com/verdict-pdp/verdict/bundles"
)

// InputSchema is the JSON Schema of the input document. Policies are
// type-checked against it when they load, so a reference to a field the
// document never has (input.subjet) is a load error, not a silent deny.
//
//go:embed input.schema.json
var InputSchema []byte

// entryPackage holds the module the engine adds to every snapshot: one
// complete rule that reads allow, reasons and headers from the entrypoint
// package, so that a decision is a single evaluation. Each part defaults to
// null, which is how the engine tells "undefined" from a value.
const entryPackage = "verdict_entrypoint"

const entryModuleTemplate = `package ` + entryPackage + `

decision := {"allow": allow, "reasons": reasons, "headers": headers}

default allow := null

allow := data.%[1]s.allow

default reasons := null

reasons := data.%[1]s.reasons

default headers := null

headers := data.%[1]s.headers
`

// CompileError is returned (wrapped with ErrCompile) when a snapshot does not
// parse, compile or type-check, breaks the policy contract, or (with
// Options.RequireTests) fails its tests. Problems are sorted as OPA reports
// them.
type CompileError struct {
	Revision string
	Problems []bundles.Problem
	cause    error // OPA's own error value, when there is one
}

var _ bundles.ProblemCarrier = (*CompileError)(nil)

// PolicyProblems returns Problems (bundles.ProblemCarrier), so that sources
// and logs show the same file:line:col lines.
func (e *CompileError) PolicyProblems() []bundles.Problem { return e.Problems }

// Error lists every problem, one per line, as file:row:col: message.
func (e *CompileError) Error() string {
	lines := make([]string, 0, len(e.Problems))
	for _, p := range e.Problems {
		lines = append(lines, p.String())
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.Is(err, ErrCompile) hold, and errors.As reach OPA's
// ast.Errors when they caused it.
func (e *CompileError) Unwrap() []error {
	if e.cause == nil {
		return []error{ErrCompile}
	}
	return []error{ErrCompile, e.cause}
}

// compiled is one prepared policy snapshot. It is immutable after compile
// returns and shared by all decisions that load it.
type compiled struct {
	snapshot *bundles.Snapshot
	query    rego.PreparedEvalQuery
	// plan is the compiled evaluator's form of the query; nil when topdown
	// evaluates the snapshot (see evaluator).
	plan      *plan.Query
	evaluator string
	// decisions caches this snapshot's answers, keyed as keys says; nil
	// when they are not cached (see cacheNote).
	decisions *expiringCache[cachedDecision]
	keys      keyPlan
	cacheNote string
	// elseRules are the else branches, for explanations.
	elseRules map[*ast.Rule]bool
}

// CompileOptions tunes Compile. The zero value uses the "authz" entrypoint
// and leaves test modules out.
type CompileOptions struct {
	// Entrypoint is the policy package that defines allow, reasons and
	// headers, with or without the "data." prefix. Default "authz".
	Entrypoint string
	// IncludeTests compiles *_test.rego modules too (for `verdict check`).
	IncludeTests bool
	// Strict adds OPA's strict-mode checks (opa check --strict): unused
	// local variables, function arguments and imports, duplicate imports,
	// deprecated built-ins, input and data assigned to. Load does not
	// make them.
	Strict bool
}

// Compile parses, compiles and type-checks a snapshot against InputSchema,
// exactly as Load does, without loading it. It is what `verdict check` runs.
// It returns a *CompileError (wrapping ErrCompile) listing every problem.
func Compile(s *bundles.Snapshot, opts CompileOptions) (_ *ast.Compiler, err error) {
	defer recoverCompile(s, &err)
	entry, err := normalizeEntrypoint(opts.Entrypoint)
	if err != nil {
		return nil, err
	}
	c, _, err := compileModules(s, entry, compileSettings{includeTests: opts.IncludeTests, strict: opts.Strict})
	return c, err
}

// recoverCompile, deferred, turns a panic of OPA's while compiling,
// preparing or testing s into a CompileError: a policy set must never take
// the process down, and a saved file is not to stop a server. (OPA's
// compiler panics, for one, on a rule reference with a key that is not a
// string, q[1] in package p, beside a package p.q.z.)
func recoverCompile(s *bundles.Snapshot, err *error) {
	if p := recover(); p != nil {
		*err = &CompileError{Revision: s.Revision, Problems: []bundles.Problem{{Code: "verdict_compile_error",
			Message: fmt.Sprintf("OPA failed on this policy set (a panic: %v)", p)}}}
	}
}

// compileSettings say what compileModules checks beyond what Load needs.
type compileSettings struct {
	includeTests bool // the tests too, for their own problems
	noNetwork    bool // a call of a built-in that reaches the network is a problem
	strict       bool // OPA's strict mode
}

// compileModules parses every module of s, adds the entry module and
// compiles the set with the input schema, then checks the policy contract's
// types; with noNetwork, a call of a built-in function that reaches the
// network is a problem (networkCalls). With includeTests, the checks Load makes apply to the policy
// alone (a rule in a test file does not make the contract hold), and the
// tests are then compiled beside it, for their own problems. It never
// touches the engine.
func compileModules(s *bundles.Snapshot, entry string, set compileSettings) (*ast.Compiler, ast.Body, error) {
	if tooDeep(s.Data, maxDataDepth) {
		return nil, nil, &CompileError{Revision: s.Revision, Problems: []bundles.Problem{{Code: "verdict_compile_error",
			Message: fmt.Sprintf("data nested deeper than %d levels (a map or slice that holds itself?)", maxDataDepth)}}}
	}
	includeTests, noNetwork := set.includeTests, set.noNetwork
	query := ast.MustParseBody("data." + entryPackage + ".decision")
	modules, err := entryModules(s, entry, false)
	if err != nil {
		return nil, nil, err
	}
	if noNetwork {
		all := modules
		if includeTests {
			if all, err = entryModules(s, entry, true); err != nil {
				return nil, nil, err
			}
		}
		if problems := networkCalls(all); len(problems) > 0 {
			return nil, nil, &CompileError{Revision: s.Revision, Problems: problems}
		}
	}
	c, err := compileChecked(s, modules, entry, set.strict)
	if err != nil || !includeTests {
		return c, query, err
	}
	if modules, err = entryModules(s, entry, true); err != nil {
		return nil, nil, err
	}
	if problems := testsExtendingPolicy(s, modules); len(problems) > 0 {
		return nil, nil, &CompileError{Revision: s.Revision, Problems: problems}
	}
	if c, err = compileSchema(s, modules, set.strict); err != nil {
		return nil, nil, err
	}
	return c, query, nil
}

// testsExtendingPolicy returns a problem for each rule of a test module (a
// *_test.rego file) that adds to a rule or function the policy's own
// modules define ("blocked contains ..." in package authz beside the
// policy's blocked): test files are left out when the policy serves, so
// its tests would pass on another policy than the one served. Helpers
// under names of their own, in any package, are fine.
func testsExtendingPolicy(s *bundles.Snapshot, modules map[string]*ast.Module) []bundles.Problem {
	tests := make(map[string]bool, len(s.Modules))
	for _, m := range s.Modules {
		tests[m.Path] = m.IsTest()
	}
	defined := map[string]bool{}
	for name, m := range modules {
		if !tests[name] {
			for _, r := range m.Rules {
				defined[rulePath(m, r)] = true
			}
		}
	}
	var problems []bundles.Problem
	for name, m := range modules {
		if !tests[name] {
			continue
		}
		for _, r := range m.Rules {
			if p := rulePath(m, r); defined[p] {
				problems = append(problems, bundles.Problem{File: name, Line: r.Location.Row, Col: r.Location.Col, Code: "verdict_test_error",
					Message: fmt.Sprintf("a test file may not add to the policy's rule %s: tests run with it, the server without, so they would test another policy than the one served", p)})
			}
		}
	}
	slices.SortFunc(problems, func(a, b bundles.Problem) int {
		return cmp.Or(strings.Compare(a.File, b.File), a.Line-b.Line)
	})
	return problems
}

// rulePath is the path of the document rule r of module m defines, up to
// its first variable: "data.authz.blocked" for blocked contains x.
func rulePath(m *ast.Module, r *ast.Rule) string {
	return m.Package.Path.Extend(r.Head.Ref().GroundPrefix()).String()
}

// entryModules parses the modules of s (tests only when includeTests) and
// adds the entry module for the entrypoint package entry.
func entryModules(s *bundles.Snapshot, entry string, includeTests bool) (map[string]*ast.Module, error) {
	modules, problems, cause := parseModules(s, includeTests)
	if len(problems) > 0 {
		return nil, &CompileError{Revision: s.Revision, Problems: problems, cause: cause}
	}
	entryName := "verdict:" + entryPackage
	entryModule, err := ast.ParseModuleWithOpts(entryName, fmt.Sprintf(entryModuleTemplate, entry), parserOptions)
	if err != nil {
		return nil, fmt.Errorf("%w: entry module: %w", ErrCompile, err)
	}
	modules[entryName] = entryModule
	return modules, nil
}

// compileChecked compiles modules (entryModules') with the input schema and
// checks what Load requires beyond OPA: the entrypoint package exists and
// the policy contract's types hold.
func compileChecked(s *bundles.Snapshot, modules map[string]*ast.Module, entry string, strict bool) (*ast.Compiler, error) {
	c, err := compileSchema(s, modules, strict)
	if err != nil {
		return nil, err
	}
	if !hasPackage(c, entry) {
		ee := &EntrypointError{Entrypoint: entry, Packages: policyPackages(c, s)}
		return nil, &CompileError{Revision: s.Revision, Problems: []bundles.Problem{{Message: ee.Error()}}, cause: ee}
	}
	if problems := checkContract(c, s, entry); len(problems) > 0 {
		return nil, &CompileError{Revision: s.Revision, Problems: problems}
	}
	return c, nil
}

// compileSchema compiles modules with the input schema (in OPA's strict
// mode with strict); the compiler works on copies, so modules stay as
// parsed.
func compileSchema(s *bundles.Snapshot, modules map[string]*ast.Module, strict bool) (*ast.Compiler, error) {
	schema, err := inputSchemaSet()
	if err != nil {
		return nil, err
	}
	// A rule at a path where the data holds a value (data.json's
	// {"allow": true} beside package authz's allow) is refused, as OPA
	// refuses it: the rule would hide the value, or the value the rule.
	// Read as the engine's store reads it (as AST values), so that data of
	// other Go types (map[string]string, a struct) is an object here too.
	store := inmem.NewFromObjectWithOpts(s.Data, inmem.OptRoundTripOnWrite(false), inmem.OptReturnASTValuesOnRead(true))
	ctx := context.Background() // an in-memory store: nothing to cancel
	txn, err := store.NewTransaction(ctx)
	if err != nil {
		return nil, fmt.Errorf("authz: %w", err)
	}
	defer store.Abort(ctx, txn)
	// print() calls are kept: they print only when the engine has a hook.
	c := ast.NewCompiler().WithSchemas(schema).WithEnablePrintStatements(true).
		WithPathConflictsCheck(storage.NonEmpty(ctx, store, txn)).WithStrict(strict)
	if c.Compile(modules); c.Failed() {
		return nil, &CompileError{Revision: s.Revision, Problems: policyProblems(problemsOf(c.Errors, "")), cause: c.Errors}
	}
	return c, nil
}

// networkBuiltins are the built-in functions that reach the network: the
// JSON Schema ones fetch (and read from the file system) what a schema's
// $ref names.
var networkBuiltins = []ast.Ref{ast.HTTPSend.Ref(), ast.NetLookupIPAddr.Ref(),
	ast.JSONMatchSchema.Ref(), ast.JSONSchemaVerify.Ref()}

// networkCalls returns a problem at every call of a networkBuiltins
// function in modules, and at every with that puts one in a function's
// place; a with that replaces one (a test's mock) is not a call, and
// neither is a call it replaces (http.send(req) with http.send as mock).
func networkCalls(modules map[string]*ast.Module) []bundles.Problem {
	var problems []bundles.Problem
	found := func(ref ast.Ref, loc *ast.Location) {
		p := bundles.Problem{Code: "verdict_network_error",
			Message: ref.String() + " reaches the network (or, through a schema's $ref, files), which is not allowed here"}
		if loc != nil {
			p.File, p.Line, p.Col = loc.File, loc.Row, loc.Col
		}
		problems = append(problems, p)
	}
	isNetwork := func(r ast.Ref) bool {
		return slices.ContainsFunc(networkBuiltins, func(b ast.Ref) bool { return b.Equal(r) })
	}
	network := func(t *ast.Term) (ast.Ref, bool) {
		r, ok := t.Value.(ast.Ref)
		return r, ok && isNetwork(r)
	}
	// checkExpr looks at e and what it holds; mocked are the network
	// built-ins a with replaces there (e's own, and those of the
	// expressions around it), whose calls are not calls.
	//
	// walk looks at n's calls, and its expressions with checkExpr, under
	// mocked.
	var checkExpr func(e *ast.Expr, mocked []ast.Ref)
	walk := func(n ast.Node, mocked []ast.Ref, skip *ast.Expr) {
		live := func(r ast.Ref) bool {
			return isNetwork(r) && !slices.ContainsFunc(mocked, func(m ast.Ref) bool { return m.Equal(r) })
		}
		ast.WalkNodes(n, func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.Expr:
				if x != skip {
					checkExpr(x, mocked)
					return true
				}
			case *ast.With:
				return true // its expression's to look at
			case *ast.Term:
				if call, ok := x.Value.(ast.Call); ok && len(call) > 0 {
					if r, ok := call[0].Value.(ast.Ref); ok && live(r) {
						found(r, x.Location)
					}
				}
			}
			return false
		})
	}
	checkExpr = func(e *ast.Expr, mocked []ast.Ref) {
		inner := mocked
		for _, w := range e.With {
			if r, ok := network(w.Value); ok {
				found(r, w.Location)
			}
			// A with's value is evaluated where the expression is, under
			// the mocks around it but not its own.
			walk(w.Value, mocked, nil)
			if r, ok := network(w.Target); ok {
				inner = append(inner[:len(inner):len(inner)], r)
			}
		}
		if e.IsCall() && isNetwork(e.Operator()) && !slices.ContainsFunc(inner, func(m ast.Ref) bool { return m.Equal(e.Operator()) }) {
			found(e.Operator(), e.Location)
		}
		walk(e, inner, e)
	}
	for _, name := range slices.Sorted(maps.Keys(modules)) {
		ast.WalkNodes(modules[name], func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.Expr:
				checkExpr(x, nil)
				return true
			case *ast.Term:
				if call, ok := x.Value.(ast.Call); ok && len(call) > 0 {
					if r, ok := network(call[0]); ok {
						found(r, x.Location)
					}
				}
			}
			return false
		})
	}
	return problems
}

// parserOptions parse every module: Rego v1, with annotations (schemas).
var parserOptions = ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true}

// parseModules parses the modules of s (tests only when includeTests),
// refusing the package the engine reserves for its entry module. It returns
// the problems found and OPA's errors behind them.
func parseModules(s *bundles.Snapshot, includeTests bool) (map[string]*ast.Module, []bundles.Problem, error) {
	modules := make(map[string]*ast.Module, len(s.Modules)+1)
	var problems []bundles.Problem
	var causes []error
	reserved := ast.MustParseRef("data." + entryPackage)
	for _, m := range s.Modules {
		if m.IsTest() && !includeTests {
			continue
		}
		switch {
		case strings.HasPrefix(m.Path, "verdict:"):
			problems = append(problems, bundles.Problem{File: m.Path, Message: "module names starting with verdict: are reserved by Verdict"})
			continue
		case modules[m.Path] != nil:
			// A second module of one name would replace the first, its rules
			// gone without a word.
			problems = append(problems, bundles.Problem{File: m.Path, Message: "two modules have this name"})
			continue
		}
		parsed, err := ast.ParseModuleWithOpts(m.Path, string(m.Raw), parserOptions)
		if err != nil {
			ps := problemsOf(err, m.Path)
			bundles.PlaceAtEnd(ps, m.Path, m.Raw)
			problems = append(problems, ps...)
			causes = append(causes, err)
			continue
		}
		if parsed.Package.Path.HasPrefix(reserved) {
			problems = append(problems, bundles.Problem{File: m.Path, Line: parsed.Package.Location.Row,
				Message: "package " + entryPackage + " is reserved by Verdict"})
			continue
		}
		modules[m.Path] = parsed
	}
	return modules, problems, errors.Join(causes...)
}

func inputSchemaSet() (*ast.SchemaSet, error) {
	var schema any
	if err := json.Unmarshal(InputSchema, &schema); err != nil {
		return nil, fmt.Errorf("input schema: %w", err)
	}
	ss := ast.NewSchemaSet()
	ss.Put(ast.SchemaRootRef, schema)
	return ss, nil
}

// prepare compiles a snapshot and prepares its decision query, for topdown
// and, as ev allows, for the compiled evaluator.
func prepare(ctx context.Context, s *bundles.Snapshot, entry string, ev Evaluator, decisionCache cacheLimits, noNetwork bool) (_ *compiled, err error) {
	defer recoverCompile(s, &err)
	c, query, err := compileModules(s, entry, compileSettings{noNetwork: noNetwork})
	if err != nil {
		return nil, err
	}
	store := inmem.NewFromObjectWithOpts(s.Data, inmem.OptRoundTripOnWrite(false), inmem.OptReturnASTValuesOnRead(true))
	pq, err := rego.New(
		rego.ParsedQuery(query),
		rego.Compiler(c),
		rego.Store(store),
		// A builtin error is an evaluation error, which denies: never an
		// undefined value that a `not deny` rule would turn into an allow.
		rego.StrictBuiltinErrors(true),
		rego.EnablePrintStatements(true),
	).PrepareForEval(ctx)
	if err != nil {
		return nil, &CompileError{Revision: s.Revision, Problems: problemsOf(err, ""), cause: err}
	}
	cp := &compiled{snapshot: s, query: pq, cacheNote: "off: disabled"}
	if cp.plan, cp.evaluator, err = preparePlan(ctx, c, s, ev); err != nil {
		return nil, err
	}
	cp.elseRules = elseBranches(c)
	if decisionCache.bytes > 0 {
		cp.keys = planDecisionKeys(c)
		cp.cacheNote = cp.keys.note
		if cp.keys.mode != keyOff {
			cp.decisions = newExpiringCache[cachedDecision](decisionCache)
		}
	}
	return cp, nil
}

// policyProblems is ps without the recursion problems located in the
// engine's own entry module when the policy's files have one: a recursion
// through allow is reported at the policy's rule, and again along every
// rule of the entry module that reads it, which the policy's author never
// wrote. Other problems there stay (allow written as a function shows
// only there).
func policyProblems(ps []bundles.Problem) []bundles.Problem {
	const recursion = "rego_recursion_error"
	restated := func(p bundles.Problem) bool { return strings.HasPrefix(p.File, "verdict:") && p.Code == recursion }
	if slices.ContainsFunc(ps, func(p bundles.Problem) bool { return !strings.HasPrefix(p.File, "verdict:") && p.Code == recursion }) {
		return slices.DeleteFunc(ps, restated)
	}
	return ps
}

// problemsOf lists the located problems behind err; a problem without a
// file is placed in file, and an error without locations becomes one
// problem.
func problemsOf(err error, file string) []bundles.Problem {
	ps := bundles.Problems(err)
	if len(ps) == 0 {
		return []bundles.Problem{{File: file, Message: err.Error()}}
	}
	for i := range ps {
		if ps[i].File == "" {
			ps[i].File = file
		}
	}
	return ps
}
