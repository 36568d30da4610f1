package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/cover"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"
	"github.com/spf13/cobra"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/bundles"
)

func newTestCommand() *cobra.Command {
	var (
		verbose  bool
		coverage bool
		run      string
		timeout  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "test [DIR|BUNDLE.tar.gz]",
		Short: "Run the Rego unit tests of a policy directory",
		Long: `Test runs every test_ rule in the *_test.rego files of DIR (default: the
embedded default policies) with OPA's tester, type-checking every module
against the input document's schema first.

Exit status: 0 all passed, 1 a test failed or none ran, 2 error.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var p policyFlags
			if len(args) == 1 {
				p.dir = args[0]
			}
			snap, err := p.snapshot(nil)
			if err != nil {
				return &exitCode{code: exitError, err: err}
			}
			modules, err := parseModules(snap)
			if err != nil {
				return &exitCode{code: exitDeny, err: err}
			}
			schema := ast.NewSchemaSet()
			var raw any
			if err := json.Unmarshal(authz.InputSchema, &raw); err != nil {
				return &exitCode{code: exitError, err: err}
			}
			schema.Put(ast.SchemaRootRef, raw)

			ctx := cmd.Context()
			store := inmem.NewFromObjectWithOpts(snap.Data, inmem.OptRoundTripOnWrite(false))
			txn, err := store.NewTransaction(ctx)
			if err != nil {
				return &exitCode{code: exitError, err: err}
			}
			defer store.Abort(ctx, txn)

			var cov *cover.Cover
			runner := tester.NewRunner().
				SetCompiler(ast.NewCompiler().WithSchemas(schema)).
				SetStore(store).
				SetModules(modules).
				RaiseBuiltinErrors(true).
				SetTimeout(timeout).
				EnableTracing(verbose).
				Filter(run)
			if coverage {
				cov = cover.New()
				runner.SetCoverageQueryTracer(cov)
			}
			ch, err := runner.RunTests(ctx, txn)
			if err != nil {
				return &exitCode{code: exitDeny, err: compileProblems(err)}
			}
			results := collect(ch)
			out := cmd.OutOrStdout()
			if err := (tester.PrettyReporter{Output: out, Verbose: verbose, FailureLine: true}).Report(replay(results)); err != nil {
				return &exitCode{code: exitError, err: err}
			}
			if cov != nil {
				report := cov.Report(modules)
				fmt.Fprintf(out, "coverage: %.1f%%\n", report.Coverage)
				for file, fr := range report.Files {
					if strings.HasSuffix(file, "_test.rego") {
						continue
					}
					fmt.Fprintf(out, "  %s: %.1f%%\n", file, fr.Coverage)
				}
			}
			if len(results) == 0 {
				return &exitCode{code: exitDeny, err: fmt.Errorf("no tests found")}
			}
			for _, r := range results {
				if r.Fail || r.Error != nil {
					return &exitCode{code: exitDeny}
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "print every test and its trace on failure")
	cmd.Flags().BoolVar(&coverage, "coverage", false, "report line coverage of the policies")
	cmd.Flags().StringVar(&run, "run", "", "run only tests whose names match this regular expression")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "timeout for each test")
	return cmd
}

// parseModules parses every module of a snapshot, tests included, as Rego v1.
func parseModules(snap *bundles.Snapshot) (map[string]*ast.Module, error) {
	modules := make(map[string]*ast.Module, len(snap.Modules))
	var errs ast.Errors
	for _, m := range snap.Modules {
		parsed, err := ast.ParseModuleWithOpts(m.Path, string(m.Raw), ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true})
		if err != nil {
			if e, ok := err.(ast.Errors); ok {
				errs = append(errs, e...)
				continue
			}
			return nil, err
		}
		modules[m.Path] = parsed
	}
	if len(errs) > 0 {
		return nil, compileProblems(errs)
	}
	return modules, nil
}

// compileProblems renders OPA errors as one file:row:col line each.
func compileProblems(err error) error {
	errs, ok := err.(ast.Errors)
	if !ok {
		return err
	}
	ce := &authz.CompileError{}
	for _, e := range errs {
		p := authz.Problem{Code: e.Code, Message: e.Message}
		if e.Location != nil {
			p.File, p.Row, p.Col = e.Location.File, e.Location.Row, e.Location.Col
		}
		ce.Problems = append(ce.Problems, p)
	}
	return ce
}

func collect(ch chan *tester.Result) []*tester.Result {
	var out []*tester.Result
	for r := range ch {
		out = append(out, r)
	}
	return out
}

func replay(results []*tester.Result) chan *tester.Result {
	ch := make(chan *tester.Result, len(results))
	for _, r := range results {
		ch <- r
	}
	close(ch)
	return ch
}
