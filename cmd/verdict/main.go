// Command verdict is Verdict's command line: it serves decisions (serve),
// answers single decisions for policy authors (decide), runs Rego tests
// (test), compiles and type-checks a policy set (check), replays a decision
// log against a candidate policy (replay), mints development tokens (token)
// and says which build it is (version).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/verdict-pdp/verdict/bundles"
	"github.com/verdict-pdp/verdict/internal/printable"
)

// Exit codes shared by every command.
const (
	exitAllow = 0 // success; for decide: allowed
	exitDeny  = 1 // decide: denied; test/check: failures found
	exitError = 2 // usage, configuration or evaluation error
)

// exitCode carries a process exit code through cobra.
type exitCode struct {
	code     int
	err      error             // printed when non-nil
	problems []bundles.Problem // printed one per line, as file:line:col: message ("verdict: message" in no file)
}

func (e *exitCode) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}

func main() {
	// The first SIGINT or SIGTERM cancels ctx: serve shuts down gracefully,
	// other commands stop at their next check. A second one ends the
	// process at once (stop gives the signals their default action back),
	// even when the work under way does not heed ctx: a test stuck in a
	// built-in that never checks, a read from a pipe that never closes.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	context.AfterFunc(ctx, stop)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes the command line and returns the process exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCommand()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitAllow
	}
	var ec *exitCode
	if errors.As(err, &ec) {
		for _, p := range ec.problems {
			if p.File == "" {
				// In no file: an error of the command's, said as the others are.
				fmt.Fprintln(stderr, "verdict:", p)
				continue
			}
			fmt.Fprintln(stderr, p)
		}
		if ec.err != nil {
			fmt.Fprintln(stderr, "verdict:", printable.Lines(ec.err.Error(), "  "))
		}
		return ec.code
	}
	// Errors carry names from the tree read (a link's, a file's): made
	// safe for the terminal, as the problems are, their lines kept (an
	// OPA error of several lines).
	fmt.Fprintln(stderr, "verdict:", printable.Lines(err.Error(), "  "))
	return exitError
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "verdict",
		Short:         "Verdict: a policy decision point for microservices",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       versionLine(buildInfo()),
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.AddCommand(
		newDecideCommand(),
		newTestCommand(),
		newCheckCommand(),
		newFmtCommand(),
		newReplayCommand(),
		newTokenCommand(),
		newServeCommand(),
		newVersionCommand(),
	)
	return root
}

// printJSON writes v to w as indented JSON, one document and a line break,
// with what a CI runner would read as a command in its strings written so
// that it reads as none (printable.JSON): the reports hold a policy's text.
func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(printable.JSON(b), '\n'))
	return err
}
