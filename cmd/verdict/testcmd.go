package main

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/cover"
	"github.com/open-policy-agent/opa/v1/tester"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/spf13/cobra"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/internal/printable"
)

type testFlags struct {
	entrypoint string
	verbose    bool
	coverage   bool
	bench      bool
	asJSON     bool
	run        string
	timeout    time.Duration
	// followLinks and allowNet: see addFollowLinks and addAllowNet.
	followLinks bool
	allowNet    bool
}

func newTestCommand() *cobra.Command {
	var f testFlags
	cmd := &cobra.Command{
		Use:   "test PATH",
		Short: "Run the Rego unit tests of a policy set",
		Long: `Test runs every test_ rule in the *_test.rego files of PATH — a policy
directory (. for this one), a .rego file or a bundle file — with OPA's
tester, after compiling and type-checking every module exactly as the server
loads them. Problems in the policies print as file:line:col: code: message.
What the tests print() goes to stderr, each line after the test's name.

--coverage reports line coverage of the policy modules (test files count in
no figure) and lists the lines no test ran as file:row-row. --bench runs each
test as a benchmark, as opa test --bench does. --json prints the whole report
as one JSON document.

Exit status: 0 all passed, 1 a test failed, none ran or the policies have
problems, 2 usage error.`,
		Example: `  verdict test .
  verdict test ./policies --coverage
  verdict test ./policies --run 'viewer' -v
  verdict test ./policies --bench --run 'test_viewer'
  verdict test ./policies --coverage --json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.bench && (f.coverage || f.verbose) {
				return usageError("--bench cannot be combined with --coverage or --verbose")
			}
			snap, err := readPolicies(firstArg(args), nil, f.followLinks)
			if err != nil {
				return policyError(err)
			}
			tr, err := authz.RunTests(cmd.Context(), snap, authz.TestOptions{
				Entrypoint: f.entrypoint, Run: f.run, Timeout: f.timeout, Trace: f.verbose,
				Coverage: f.coverage, Bench: f.bench, CapturePrint: true, NoNetwork: !f.allowNet,
			})
			if err != nil {
				return policyError(err)
			}
			printOutput(cmd.ErrOrStderr(), tr.Results)
			out := cmd.OutOrStdout()
			if f.asJSON {
				err = printJSON(out, newTestReport(tr))
			} else {
				err = printTestRun(out, tr, f)
			}
			if err != nil {
				return &exitCode{code: exitError, err: err}
			}
			switch {
			case len(tr.Results) == 0:
				return &exitCode{code: exitDeny, err: fmt.Errorf("no tests found")}
			case tr.Ran() == 0:
				return &exitCode{code: exitDeny, err: fmt.Errorf("no tests ran: all %d are skipped (todo_)", len(tr.Results))}
			}
			if tr.Failed() {
				return &exitCode{code: exitDeny}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&f.verbose, "verbose", "v", false, "print every test and its trace on failure")
	fl.BoolVar(&f.coverage, "coverage", false, "report line coverage of the policies (test files excluded) and the lines no test ran")
	fl.BoolVar(&f.bench, "bench", false, "run each test as a benchmark (time and allocations per run)")
	fl.BoolVar(&f.asJSON, "json", false, "print the report as JSON")
	fl.StringVar(&f.run, "run", "", "run only tests whose names match this regular expression")
	fl.DurationVar(&f.timeout, "timeout", authz.DefaultTestTimeout, "timeout for each test")
	fl.StringVar(&f.entrypoint, "entrypoint", "", `policy package that must define allow (default "authz")`)
	addFollowLinks(fl, &f.followLinks)
	addAllowNet(fl, &f.allowNet)
	return cmd
}

// printOutput writes what each test printed to w, every line prefixed by
// the test's name, and clears it from the result (so that the report does
// not repeat it).
func printOutput(w io.Writer, results []*tester.Result) {
	for _, r := range results {
		if len(r.Output) == 0 {
			continue
		}
		for line := range strings.Lines(string(r.Output)) {
			fmt.Fprintf(w, "%s.%s: %s\n", r.Package, r.Name, printable.String(strings.TrimSuffix(line, "\n")))
		}
		r.Output = nil
	}
}

// printTestRun writes the report a reader wants: OPA's pretty test report,
// then the coverage and the lines no test ran.
func printTestRun(w io.Writer, tr *authz.TestRun, f testFlags) error {
	lw := &lineWriter{w: w}
	pretty := tester.PrettyReporter{Output: lw, Verbose: f.verbose, FailureLine: true,
		BenchmarkResults: f.bench, BenchMarkShowAllocations: f.bench}
	if err := pretty.Report(replay(tr.Results)); err != nil {
		return err
	}
	if err := lw.Flush(); err != nil {
		return err
	}
	if tr.Coverage == nil {
		return nil
	}
	c := tr.Coverage
	fmt.Fprintf(w, "coverage: %.1f%% (%d of %d lines)\n", c.Coverage, c.CoveredLines, c.CoveredLines+c.NotCoveredLines)
	for _, file := range slices.Sorted(maps.Keys(c.Files)) {
		fmt.Fprintf(w, "  %s: %.1f%%\n", printable.String(file), c.Files[file].Coverage)
	}
	if uncovered := uncoveredLines(c); len(uncovered) > 0 {
		fmt.Fprintln(w, "not covered:")
		for _, u := range uncovered {
			fmt.Fprintf(w, "  %s\n", printable.String(u))
		}
	}
	return nil
}

// uncoveredLines lists the lines no test ran as file:row-row (file:row for
// one line), by file and row.
func uncoveredLines(c *cover.Report) []string {
	var out []string
	for _, file := range slices.Sorted(maps.Keys(c.Files)) {
		out = append(out, fileUncovered(file, c.Files[file])...)
	}
	return out
}

// fileUncovered lists one file's uncovered lines, overlapping and adjacent
// ranges merged (the coverage report can name a line more than once).
func fileUncovered(file string, fr *cover.FileReport) []string {
	ranges := slices.Clone(fr.NotCovered)
	slices.SortFunc(ranges, func(a, b cover.Range) int { return a.Start.Row - b.Start.Row })
	var merged [][2]int
	for _, r := range ranges {
		if n := len(merged); n > 0 && r.Start.Row <= merged[n-1][1]+1 {
			merged[n-1][1] = max(merged[n-1][1], r.End.Row)
			continue
		}
		merged = append(merged, [2]int{r.Start.Row, max(r.Start.Row, r.End.Row)})
	}
	out := make([]string, 0, len(merged))
	for _, m := range merged {
		if m[1] > m[0] {
			out = append(out, fmt.Sprintf("%s:%d-%d", file, m[0], m[1]))
		} else {
			out = append(out, fmt.Sprintf("%s:%d", file, m[0]))
		}
	}
	return out
}

// testReport is the --json output.
type testReport struct {
	Passed   int             `json:"passed"`
	Failed   int             `json:"failed"`
	Errored  int             `json:"errored"`
	Skipped  int             `json:"skipped"`
	Tests    []testResult    `json:"tests"`
	Coverage *coverageReport `json:"coverage,omitempty"`
}

// testResult is one test in the --json output.
type testResult struct {
	Package string `json:"package"`
	Name    string `json:"name"`
	// Location is file:row of the test rule.
	Location string `json:"location,omitempty"`
	// Result is pass, fail, error or skip.
	Result     string  `json:"result"`
	Error      string  `json:"error,omitempty"`
	DurationMS float64 `json:"duration_ms"`
	// Bench is set with --bench.
	Bench *benchResult `json:"bench,omitempty"`
}

type benchResult struct {
	N           int   `json:"n"`
	NsPerOp     int64 `json:"ns_per_op"`
	BytesPerOp  int64 `json:"bytes_per_op"`
	AllocsPerOp int64 `json:"allocs_per_op"`
}

// coverageReport is --coverage in the --json output.
type coverageReport struct {
	Percent         float64        `json:"percent"`
	CoveredLines    int            `json:"covered_lines"`
	NotCoveredLines int            `json:"not_covered_lines"`
	Files           []fileCoverage `json:"files"`
}

type fileCoverage struct {
	File    string  `json:"file"`
	Percent float64 `json:"percent"`
	// NotCovered lists the lines no test ran, as file:row-row.
	NotCovered []string `json:"not_covered"`
}

func newTestReport(tr *authz.TestRun) testReport {
	rep := testReport{Tests: make([]testResult, 0, len(tr.Results))}
	for _, r := range tr.Results {
		res := testResult{Package: r.Package, Name: r.Name, DurationMS: float64(r.Duration.Microseconds()) / 1000}
		if r.Location != nil {
			res.Location = fmt.Sprintf("%s:%d", r.Location.File, r.Location.Row)
		}
		switch {
		case r.Error != nil:
			res.Result, res.Error = "error", r.Error.Error()
			rep.Errored++
		case r.Fail:
			res.Result = "fail"
			rep.Failed++
		case r.Skip:
			res.Result = "skip"
			rep.Skipped++
		default:
			res.Result = "pass"
			rep.Passed++
		}
		if b := r.BenchmarkResult; b != nil {
			res.Bench = &benchResult{N: b.N, NsPerOp: b.NsPerOp(), BytesPerOp: b.AllocedBytesPerOp(), AllocsPerOp: b.AllocsPerOp()}
		}
		rep.Tests = append(rep.Tests, res)
	}
	if c := tr.Coverage; c != nil {
		rep.Coverage = &coverageReport{Percent: c.Coverage, CoveredLines: c.CoveredLines, NotCoveredLines: c.NotCoveredLines,
			Files: []fileCoverage{}}
		for _, file := range slices.Sorted(maps.Keys(c.Files)) {
			fr := c.Files[file]
			rep.Coverage.Files = append(rep.Coverage.Files, fileCoverage{File: file, Percent: fr.Coverage,
				NotCovered: append([]string{}, fileUncovered(file, fr)...)})
		}
	}
	return rep
}

// replay sends the results to OPA's reporter, with the text the tree's
// author controls made safe for a terminal and a CI log first: package
// paths, names and file names, and, as one line each (a line break
// written \n), the error messages, which quote the policy's strings, the
// trace's notes and the source of the failing expressions. The reporter
// indents what it prints of them, but GitHub Actions reads a
// ::workflow-command:: after leading spaces as well.
func replay(results []*tester.Result) chan *tester.Result {
	ch := make(chan *tester.Result, len(results))
	for _, r := range results {
		r.Package, r.Name = printable.String(r.Package), printable.String(r.Name)
		r.Location = printableLocation(r.Location)
		if r.Error != nil {
			r.Error = &printableError{msg: printable.String(r.Error.Error()), err: r.Error}
		}
		printableTrace(r.Trace)
		r.SubResults = printableSubResults(r.SubResults)
		ch <- r
	}
	close(ch)
	return ch
}

// printableLocation returns a copy of loc with its file name and source
// text made printable (nil for nil). Locations are shared with the
// compiled modules, so they are copied, never changed.
func printableLocation(loc *ast.Location) *ast.Location {
	if loc == nil {
		return nil
	}
	c := *loc
	c.File = printable.String(c.File)
	if t := printable.String(string(c.Text)); t != string(c.Text) {
		c.Text = []byte(t)
	}
	return &c
}

// printableTrace makes the events' notes and locations printable, in place
// (the events are the run's own).
func printableTrace(trace []*topdown.Event) {
	for _, e := range trace {
		e.Message = printable.String(e.Message)
		e.Location = printableLocation(e.Location)
	}
}

// printableSubResults returns srm with its names (a parameterized test's
// values) and traces made printable.
func printableSubResults(srm tester.SubResultMap) tester.SubResultMap {
	if len(srm) == 0 {
		return srm
	}
	out := make(tester.SubResultMap, len(srm))
	for k, sr := range srm {
		sr.Name = printable.String(sr.Name)
		printableTrace(sr.Trace)
		sr.SubResults = printableSubResults(sr.SubResults)
		out[printable.String(k)] = sr
	}
	return out
}

// printableError is an error whose message is made printable; Unwrap
// gives the error it stands for.
type printableError struct {
	msg string
	err error
}

func (e *printableError) Error() string { return e.msg }
func (e *printableError) Unwrap() error { return e.err }

// lineWriter writes each line written to it to w made printable
// (printable.String): what OPA's reporter prints of a policy that replay
// did not clean cannot reach the terminal raw either. Flush writes a last
// line that has no line break.
type lineWriter struct {
	w   io.Writer
	buf []byte
}

func (lw *lineWriter) Write(p []byte) (int, error) {
	lw.buf = append(lw.buf, p...)
	for {
		i := bytes.IndexByte(lw.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		if _, err := io.WriteString(lw.w, printable.String(string(lw.buf[:i]))+"\n"); err != nil {
			return 0, err
		}
		lw.buf = lw.buf[i+1:]
	}
}

// Flush writes what is left of the last line.
func (lw *lineWriter) Flush() error {
	if len(lw.buf) == 0 {
		return nil
	}
	_, err := io.WriteString(lw.w, printable.String(string(lw.buf)))
	lw.buf = nil
	return err
}
