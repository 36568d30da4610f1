package main

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/open-policy-agent/opa/v1/tester"
	"github.com/spf13/cobra"

	"github.com/verdict-pdp/verdict/authz"
)

func newTestCommand() *cobra.Command {
	var (
		p        policyFlags
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
against the input document's schema first, exactly as the server loads them.

Exit status: 0 all passed, 1 a test failed or none ran, 2 error.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				p.dir = args[0]
			}
			snap, err := p.snapshot(nil)
			if err != nil {
				return &exitCode{code: exitError, err: err}
			}
			tr, err := authz.RunTests(cmd.Context(), snap, authz.TestOptions{
				Entrypoint: p.entrypoint, Run: run, Timeout: timeout, Trace: verbose, Coverage: coverage,
			})
			if err != nil {
				return &exitCode{code: exitDeny, err: err}
			}
			out := cmd.OutOrStdout()
			if err := (tester.PrettyReporter{Output: out, Verbose: verbose, FailureLine: true}).Report(replay(tr.Results)); err != nil {
				return &exitCode{code: exitError, err: err}
			}
			if tr.Coverage != nil {
				fmt.Fprintf(out, "coverage: %.1f%%\n", tr.Coverage.Coverage)
				for _, file := range slices.Sorted(maps.Keys(tr.Coverage.Files)) {
					fmt.Fprintf(out, "  %s: %.1f%%\n", file, tr.Coverage.Files[file].Coverage)
				}
			}
			if len(tr.Results) == 0 {
				return &exitCode{code: exitDeny, err: fmt.Errorf("no tests found")}
			}
			if tr.Failed() {
				return &exitCode{code: exitDeny}
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "print every test and its trace on failure")
	cmd.Flags().BoolVar(&coverage, "coverage", false, "report line coverage of the policies (test files excluded)")
	cmd.Flags().StringVar(&run, "run", "", "run only tests whose names match this regular expression")
	cmd.Flags().DurationVar(&timeout, "timeout", authz.DefaultTestTimeout, "timeout for each test")
	cmd.Flags().StringVar(&p.entrypoint, "entrypoint", "", `policy package that must define allow (default "authz")`)
	return cmd
}

func replay(results []*tester.Result) chan *tester.Result {
	ch := make(chan *tester.Result, len(results))
	for _, r := range results {
		ch <- r
	}
	close(ch)
	return ch
}
