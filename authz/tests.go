package authz

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/cover"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"

	"github.com/verdict-pdp/verdict/bundles"
)

// DefaultTestTimeout bounds one Rego test when TestOptions.Timeout is zero.
const DefaultTestTimeout = 5 * time.Second

// TestOptions configures RunTests. The zero value runs every test of the
// "authz" entrypoint's snapshot with DefaultTestTimeout per test.
type TestOptions struct {
	// Entrypoint is the policy package, as for Compile; its entry module is
	// compiled with the tests, exactly as the engine compiles it.
	Entrypoint string
	// Run, when set, is a regular expression: only tests whose names match
	// run.
	Run string
	// Timeout bounds each test; 0 means DefaultTestTimeout.
	Timeout time.Duration
	// Trace records each test's evaluation trace in its Result.
	Trace bool
	// CapturePrint keeps print() output in each Result's Output.
	CapturePrint bool
	// Coverage reports which lines of the policy modules the tests ran.
	Coverage bool
	// NoNetwork refuses a policy or test that calls a built-in function
	// reaching the network, as Options.NoNetwork does.
	NoNetwork bool
	// Bench runs each test as a benchmark (repeated until its timing is
	// stable, as opa test --bench does); each Result then carries a
	// BenchmarkResult, allocations included. The tests run once first, and
	// only those that pass are benchmarked (OPA's benchmark of a failing
	// test ends the process); the others keep their failing Result.
	// It excludes Coverage and Trace.
	Bench bool
	// NoPanicGuard skips the run of each test ahead of OPA's tester, on a
	// goroutine that recovers, which makes a built-in function's panic
	// inside a test (bits.lsh by a huge count) a problem at the test
	// instead of the end of the process (OPA's tester runs tests on
	// goroutines of its own, where no recover reaches). The guard doubles
	// the time the tests take; skip it only where a panic may end the
	// process.
	NoPanicGuard bool
}

// TestRun is what RunTests found.
type TestRun struct {
	// Results are the tests' results, in the order the tester ran them.
	Results []*tester.Result
	// Coverage is the line coverage of the policy modules, test modules
	// excluded from every figure, when TestOptions.Coverage was set.
	Coverage *cover.Report
}

// Ran is how many tests ran: the results, less the tests skipped (todo_
// rules), which tested nothing.
func (r *TestRun) Ran() int {
	n := 0
	for _, res := range r.Results {
		if !res.Skip {
			n++
		}
	}
	return n
}

// Failed reports whether any test failed or erred.
func (r *TestRun) Failed() bool {
	for _, res := range r.Results {
		if res.Fail || res.Error != nil {
			return true
		}
	}
	return false
}

// RunTests runs the Rego unit tests (test_ rules in *_test.rego modules) of
// s with OPA's tester, against the snapshot's data, after parsing,
// type-checking every module against InputSchema and checking the
// entrypoint and the policy contract exactly as Load does: builtin errors
// fail a test, as they fail a decision. A snapshot that does
// not compile is a *CompileError wrapping ErrCompile; a failing test is not
// an error (see TestRun.Failed).
func RunTests(ctx context.Context, s *bundles.Snapshot, opts TestOptions) (_ *TestRun, err error) {
	defer recoverCompile(s, &err)
	entry, err := normalizeEntrypoint(opts.Entrypoint)
	if err != nil {
		return nil, err
	}
	if opts.Bench && (opts.Coverage || opts.Trace) {
		return nil, errors.New("authz: tests: Bench excludes Coverage and Trace")
	}
	// Refuse what Load refuses (the entrypoint package missing, a rule
	// breaking the policy contract, of the policy without its tests), not
	// only what fails to compile: a policy set whose tests pass must also
	// load.
	c, _, err := compileModules(s, entry, compileSettings{includeTests: true, noNetwork: opts.NoNetwork})
	if err != nil {
		return nil, err
	}
	modules, err := entryModules(s, entry, true)
	if err != nil {
		return nil, err
	}
	schema, err := inputSchemaSet()
	if err != nil {
		return nil, err
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultTestTimeout
	}
	store := inmem.NewFromObjectWithOpts(s.Data, inmem.OptRoundTripOnWrite(false))
	txn, err := store.NewTransaction(ctx)
	if err != nil {
		return nil, fmt.Errorf("authz: tests: %w", err)
	}
	defer store.Abort(ctx, txn)
	if !opts.NoPanicGuard {
		if p, err := panickingTest(ctx, c, store, txn, timeout, opts.Run); err != nil {
			return nil, err
		} else if p != nil {
			return nil, &CompileError{Revision: s.Revision, Problems: []bundles.Problem{*p}}
		}
	}
	newRunner := func(modules map[string]*ast.Module) *tester.Runner {
		return tester.NewRunner().
			SetCompiler(ast.NewCompiler().WithSchemas(schema).WithEnablePrintStatements(opts.CapturePrint)).
			SetStore(store).
			SetModules(modules).
			RaiseBuiltinErrors(true).
			SetTimeout(timeout).
			EnableTracing(opts.Trace).
			CapturePrintOutput(opts.CapturePrint).
			Filter(opts.Run)
	}
	collect := func(ch chan *tester.Result, err error) ([]*tester.Result, error) {
		if err != nil {
			var astErrs ast.Errors
			if errors.As(err, &astErrs) {
				return nil, &CompileError{Revision: s.Revision, Problems: problemsOf(err, ""), cause: err}
			}
			return nil, fmt.Errorf("authz: tests: %w", err)
		}
		var rs []*tester.Result
		for r := range ch {
			rs = append(rs, r)
		}
		return rs, nil
	}
	runner := newRunner(modules)
	var cov *cover.Cover
	if opts.Coverage {
		cov = cover.New()
		runner.SetCoverageQueryTracer(cov)
	}
	run := &TestRun{}
	if run.Results, err = collect(runner.RunTests(ctx, txn)); err != nil {
		return nil, err
	}
	if cov != nil {
		run.Coverage = policyCoverage(cov, modules)
	}
	if opts.Bench {
		// The tests that did not pass are left out of the modules the
		// benchmarks run on (by location: the tester renames a test whose
		// name another has, in no fixed order).
		notPassed := map[string]bool{}
		for _, r := range run.Results {
			if !r.Pass() {
				notPassed[r.Location.String()] = true
			}
		}
		if len(notPassed) == len(run.Results) {
			return run, nil
		}
		benched, err := collect(newRunner(withoutRules(modules, notPassed)).
			RunBenchmarks(ctx, txn, tester.BenchmarkOptions{ReportAllocations: true}))
		if err != nil {
			return nil, err
		}
		run.Results = withBenchmarks(run.Results, benched)
	}
	return run, nil
}

// panickingTest (unless TestOptions.NoPanicGuard) runs every test of c that run
// matches once, on this
// goroutine, and returns a problem at the first that panics, or nil. OPA's
// tester runs tests on goroutines of its own, where a built-in function's
// panic (bits.lsh by a huge count) cannot be recovered and ends the
// process: under policy.require_tests, a saved test file would stop the
// server, and again at every restart. Errors and results are the
// tester's to report; only a panic is looked for here. Tests are chosen
// as the tester chooses them (testRef), and evaluated without early exit,
// so that every definition of a name runs.
func panickingTest(ctx context.Context, c *ast.Compiler, store storage.Store, txn storage.Transaction, timeout time.Duration, run string) (*bundles.Problem, error) {
	var match *regexp.Regexp
	if run != "" {
		var err error
		if match, err = regexp.Compile(run); err != nil {
			return nil, fmt.Errorf("authz: tests: %w", err)
		}
	}
	done := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(c.Modules)) {
		m := c.Modules[name]
		for _, r := range m.Rules {
			ref, ok := testRef(m, r)
			if !ok || done[ref.String()] || match != nil && !match.MatchString(ref.String()) {
				continue
			}
			done[ref.String()] = true
			if p := evalRecovered(ctx, c, store, txn, ref, timeout); p != nil {
				return &bundles.Problem{File: r.Location.File, Line: r.Location.Row, Col: r.Location.Col, Code: "verdict_test_error",
					Message: fmt.Sprintf("test %v panicked inside OPA: %v", ref, p)}, nil
			}
		}
	}
	return nil, nil
}

// testRef is what OPA's tester (tester.Runner's shouldRun) runs for r: the
// reference up to the first part of r's ground prefix named test_ (a
// todo_ part, a test skipped, ends the search), and whether there is one.
// A function is not a test.
func testRef(m *ast.Module, r *ast.Rule) (ast.Ref, bool) {
	if len(r.Head.Args) > 0 {
		return nil, false
	}
	prefix := r.Head.Ref().GroundPrefix()
	for i, t := range prefix {
		var name string
		switch v := t.Value.(type) {
		case ast.Var:
			name = string(v)
		case ast.String:
			name = string(v)
		}
		switch {
		case strings.HasPrefix(name, tester.TestPrefix):
			return m.Package.Path.Extend(prefix[:i+1]), true
		case strings.HasPrefix(name, tester.SkipTestPrefix):
			return nil, false
		}
	}
	return nil, false
}

// evalRecovered evaluates ref once within timeout, every definition of it
// (no early exit), and returns what it panicked with, or nil. The
// built-in functions that reach the network answer null here, and print()
// prints nothing (no print hook): the test's own run, whose result is
// reported, is the one that may call them and whose prints are shown.
func evalRecovered(ctx context.Context, c *ast.Compiler, store storage.Store, txn storage.Transaction, ref ast.Ref, timeout time.Duration) (panicked any) {
	defer func() { panicked = recover() }()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	query := ref.String()
	for _, b := range []ast.Ref{ast.HTTPSend.Ref(), ast.NetLookupIPAddr.Ref()} {
		query += " with " + b.String() + " as null"
	}
	pq, err := rego.New(rego.Compiler(c), rego.Store(store), rego.Transaction(txn), rego.Query(query),
		rego.StrictBuiltinErrors(true)).PrepareForEval(ctx)
	if err == nil {
		_, _ = pq.Eval(ctx, rego.EvalTransaction(txn), rego.EvalEarlyExit(false))
	}
	return nil
}

// withoutRules is modules without the rules at the locations given; a
// module that loses none is shared, not copied.
func withoutRules(modules map[string]*ast.Module, at map[string]bool) map[string]*ast.Module {
	out := make(map[string]*ast.Module, len(modules))
	for name, m := range modules {
		out[name] = m
		if !slices.ContainsFunc(m.Rules, func(r *ast.Rule) bool { return at[r.Loc().String()] }) {
			continue
		}
		cp := *m
		cp.Rules = slices.DeleteFunc(slices.Clone(m.Rules), func(r *ast.Rule) bool { return at[r.Loc().String()] })
		out[name] = &cp
	}
	return out
}

// withBenchmarks replaces each result in results that has a benchmark in
// benched (the same test: the same location) with it, keeping what the
// test printed in its run: a benchmark prints nothing, and what the test
// printed would be lost.
func withBenchmarks(results, benched []*tester.Result) []*tester.Result {
	byLoc := make(map[string]*tester.Result, len(benched))
	for _, b := range benched {
		byLoc[b.Location.String()] = b
	}
	out := make([]*tester.Result, len(results))
	for i, r := range results {
		out[i] = r
		if b, ok := byLoc[r.Location.String()]; ok {
			b.Output = r.Output
			out[i] = b
		}
	}
	return out
}

// policyCoverage is cov's report for the policy modules alone: test modules
// and the engine's entry module count in no figure.
func policyCoverage(cov *cover.Cover, modules map[string]*ast.Module) *cover.Report {
	policy := make(map[string]*ast.Module, len(modules))
	for name, m := range modules {
		if !strings.HasSuffix(name, "_test.rego") && !strings.HasPrefix(name, "verdict:") {
			policy[name] = m
		}
	}
	report := cov.Report(policy)
	report.CoveredLines, report.NotCoveredLines, report.Coverage = 0, 0, 0
	for name, fr := range report.Files {
		if _, ok := policy[name]; !ok {
			delete(report.Files, name)
			continue
		}
		report.CoveredLines += fr.CoveredLines
		report.NotCoveredLines += fr.NotCoveredLines
	}
	if total := report.CoveredLines + report.NotCoveredLines; total > 0 {
		report.Coverage = 100 * float64(report.CoveredLines) / float64(total)
	}
	return &report
}

// requireTests runs a snapshot's own tests before it may serve
// (Options.RequireTests): every failing or erroring test is a problem at
// the test's location, and a snapshot without tests that run (none, or
// every one a todo_) is refused too, since the operator asked for tests to
// gate every change.
func requireTests(ctx context.Context, s *bundles.Snapshot, entry string, noNetwork bool) error {
	run, err := RunTests(ctx, s, TestOptions{Entrypoint: entry, NoNetwork: noNetwork})
	if err != nil {
		return err
	}
	if run.Ran() == 0 {
		return &CompileError{Revision: s.Revision, Problems: []bundles.Problem{{Code: "verdict_test_error",
			Message: fmt.Sprintf("policy.require_tests is set but the snapshot has no tests that run (test_ rules in *_test.rego files; %d skipped)",
				len(run.Results))}}}
	}
	var problems []bundles.Problem
	for _, r := range run.Results {
		if !r.Fail && r.Error == nil {
			continue
		}
		p := bundles.Problem{Code: "verdict_test_error", Message: fmt.Sprintf("test %s.%s failed", r.Package, r.Name)}
		if r.Error != nil {
			p.Message = fmt.Sprintf("test %s.%s errored: %v", r.Package, r.Name, r.Error)
		}
		if r.Location != nil {
			p.File, p.Line, p.Col = r.Location.File, r.Location.Row, r.Location.Col
		}
		problems = append(problems, p)
	}
	if len(problems) > 0 {
		return &CompileError{Revision: s.Revision, Problems: problems}
	}
	return nil
}
