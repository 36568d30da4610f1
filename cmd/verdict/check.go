package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/verdict-pdp/verdict/authz"
)

func newCheckCommand() *cobra.Command {
	var p policyFlags
	cmd := &cobra.Command{
		Use:   "check [DIR|BUNDLE.tar.gz]",
		Short: "Compile a policy directory and type-check it against the input schema",
		Long: `Check parses and compiles every module of DIR (default: the embedded default
policies), tests included, exactly as the engine does when it loads them, and
type-checks them against the input document's schema. Problems are printed
one per line as file:line:col: message.

Exit status: 0 no problems, 1 problems found, 2 error.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				p.dir = args[0]
			}
			snap, err := p.snapshot(nil)
			if err != nil {
				return &exitCode{code: exitError, err: err}
			}
			if _, err := authz.Compile(snap, authz.CompileOptions{Entrypoint: p.entrypoint, IncludeTests: true}); err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), err)
				return &exitCode{code: exitDeny}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "ok: %d modules, revision %s\n", len(snap.Modules), snap.Revision)
			return nil
		},
	}
	cmd.Flags().StringVar(&p.entrypoint, "entrypoint", "", `policy package that must define allow (default "authz")`)
	return cmd
}
