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
		entrypoint string
		verbose    bool
		coverage   bool
		run        string
		timeout    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "test PATH",
		Short: "Run the Rego unit tests of a policy set",
		Long: `Test runs every test_ rule in the *_test.rego files of PATH — a policy
directory (. for this one), a .rego file or a bundle file — with OPA's
tester, after compiling and type-checking every module exactly as the server
loads them. Problems in the policies print as file:line:col: code: message.

Exit status: 0 all passed, 1 a test failed, none ran or the policies have
problems, 2 usage error.`,
		Example: `  verdict test .
  verdict test ./policies --coverage
  verdict test ./policies --run 'viewer' -v`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			snap, err := readPolicies(firstArg(args), nil)
			if err != nil {
				return policyError(err)
			}
			tr, err := authz.RunTests(cmd.Context(), snap, authz.TestOptions{
				Entrypoint: entrypoint, Run: run, Timeout: timeout, Trace: verbose, Coverage: coverage,
			})
			if err != nil {
				return policyError(err)
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
	cmd.Flags().StringVar(&entrypoint, "entrypoint", "", `policy package that must define allow (default "authz")`)
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
