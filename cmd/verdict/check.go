package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/internal/printable"
)

func newCheckCommand() *cobra.Command {
	var (
		entrypoint  string
		followLinks bool
		strict      bool
	)
	cmd := &cobra.Command{
		Use:   "check PATH",
		Short: "Compile a policy set and type-check it against the input schema",
		Long: `Check parses and compiles every module of PATH — a policy directory (. for
this one), a .rego file that stands alone (one using rules of its
directory's other files is checked with them: check the directory) or a
bundle file — tests included, exactly as the engine does when it loads them: type-checked against the input document's
schema and the policy contract (allow boolean, reasons strings, headers an
object of strings). Problems are printed one per line as
file:line:col: code: message.

--strict adds OPA's strict-mode checks, as opa check --strict makes them:
unused local variables, function arguments and imports, duplicate imports,
deprecated built-ins, and input or data assigned to. The server does not
make them: a policy that fails only these still loads.

Warnings, on standard error, do not change the exit status: a call that lets
a request's values size a built-in's result (numbers.range, net.cidr_expand,
replace's pattern...), which lets a request make one evaluation allocate until
limits.eval_timeout ends it; compare the value with a number first.

Exit status: 0 no problems, 1 problems found, 2 usage error.`,
		Example: `  verdict check .
  verdict check ./policies
  verdict check my_policy.rego
  verdict check bundle.tar.gz
  verdict check --strict ./policies`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			snap, err := readPolicies(firstArg(args), nil, followLinks)
			if err != nil {
				return policyError(err)
			}
			c, err := authz.Compile(snap, authz.CompileOptions{Entrypoint: entrypoint, IncludeTests: true, Strict: strict})
			if err != nil {
				return policyError(err)
			}
			for _, p := range authz.SizedByInput(c) {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s\n", p)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "ok: %d modules, revision %s\n", len(snap.Modules), printable.String(snap.Revision))
			return nil
		},
	}
	cmd.Flags().StringVar(&entrypoint, "entrypoint", "", `policy package that must define allow (default "authz")`)
	cmd.Flags().BoolVar(&strict, "strict", false, "also report what OPA's strict mode refuses: unused variables, arguments and imports, deprecated built-ins")
	addFollowLinks(cmd.Flags(), &followLinks)
	return cmd
}

// firstArg returns the first positional argument, or "".
func firstArg(args []string) string {
	if len(args) == 0 {
		return ""
	}
	return args[0]
}
