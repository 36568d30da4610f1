package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/format"
	"github.com/pmezard/go-difflib/difflib"
	"github.com/spf13/cobra"

	"github.com/verdict-pdp/verdict/bundles"
	"github.com/verdict-pdp/verdict/internal/atomicfile"
	"github.com/verdict-pdp/verdict/internal/printable"
	"github.com/verdict-pdp/verdict/internal/regularfile"
)

type fmtFlags struct {
	write bool
	diff  bool
}

func newFmtCommand() *cobra.Command {
	var f fmtFlags
	cmd := &cobra.Command{
		Use:   "fmt PATH...",
		Short: "Format Rego files as opa fmt does, or list those that are not",
		Long: `Fmt formats the .rego files of each PATH — a policy directory (. for this one,
searched recursively) or a .rego file — in OPA's canonical style, the style
opa fmt writes (Rego v1).

Without flags it lists the files whose formatting differs and changes
nothing: a CI step fails (exit 1) on an unformatted file. --diff prints what
would change as a unified diff; --write rewrites the files in place (each
replaced whole: a reader never sees half a file) and lists them.

Files and directories named like editor leftovers or hidden (.git, *~,
*.swp) are skipped, as the server skips them, and so are symbolic links
met in a directory: fmt never writes through a link. A file that does not
parse prints as file:line:col: code: message.

Exit status: 0 every file formatted (or written), 1 a file is not
formatted (without --write) or does not parse, 2 usage error.`,
		Example: `  verdict fmt .
  verdict fmt --diff policies/authz/rbac.rego
  verdict fmt --write ./policies`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runFmt(cmd.OutOrStdout(), args, f)
		},
	}
	cmd.Flags().BoolVarP(&f.write, "write", "w", false, "rewrite the files that are not formatted")
	cmd.Flags().BoolVarP(&f.diff, "diff", "d", false, "print what formatting would change, as a unified diff")
	return cmd
}

// runFmt formats every .rego file the paths name.
func runFmt(out io.Writer, paths []string, f fmtFlags) error {
	var files []string
	for _, p := range paths {
		found, err := regoFiles(p)
		if err != nil {
			return err
		}
		files = append(files, found...)
	}
	var problems []bundles.Problem
	unformatted := 0
	for _, file := range files {
		src, err := readRego(file)
		if err != nil {
			return &exitCode{code: exitError, err: err}
		}
		formatted, ps, err := formatRego(file, src)
		if err != nil {
			return &exitCode{code: exitError, err: fmt.Errorf("%s: %w", file, err)}
		}
		if len(ps) > 0 {
			problems = append(problems, ps...)
			continue
		}
		if bytes.Equal(src, formatted) {
			continue
		}
		unformatted++
		if f.diff {
			if err := printDiff(out, file, src, formatted); err != nil {
				return err
			}
		}
		if f.write {
			info, err := os.Stat(file)
			if err != nil {
				return &exitCode{code: exitError, err: err}
			}
			if err := atomicfile.Write(file, formatted, info.Mode().Perm(), 0o755); err != nil {
				return &exitCode{code: exitError, err: err}
			}
		}
		if !f.diff {
			fmt.Fprintln(out, printable.String(file))
		}
	}
	switch {
	case len(problems) > 0:
		return &exitCode{code: exitDeny, problems: problems}
	case unformatted > 0 && !f.write:
		return &exitCode{code: exitDeny}
	}
	return nil
}

// regoFiles returns path when it is a .rego file, or the .rego files below
// it when it is a directory, skipping what the server skips (hidden and
// editor files) and every symbolic link met on the way. A named path that
// is a link, or neither, is a usage error.
func regoFiles(path string) ([]string, error) {
	info, err := os.Lstat(path)
	if err != nil {
		return nil, usageError("%v", err)
	}
	switch {
	case info.Mode()&fs.ModeSymlink != 0:
		return nil, usageError("%s is a symbolic link: name what it points to (fmt never writes through a link)", path)
	case info.Mode().IsRegular() && strings.HasSuffix(path, ".rego"):
		return []string{path}, nil
	case !info.IsDir():
		return nil, usageError("%s is neither a directory nor a .rego file", path)
	}
	var files []string
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != path && bundles.IgnoredName(d.Name(), d.IsDir()) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() && strings.HasSuffix(p, ".rego") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, &exitCode{code: exitError, err: err}
	}
	return files, nil
}

// readRego reads a module, at most bundles.DefaultMaxFileBytes of it (the
// largest file the server reads): fmt runs on trees someone else wrote.
func readRego(file string) ([]byte, error) {
	f, err := regularfile.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	src, err := io.ReadAll(io.LimitReader(f, bundles.DefaultMaxFileBytes+1))
	if err == nil && len(src) > bundles.DefaultMaxFileBytes {
		err = fmt.Errorf("%s: larger than %d bytes", file, bundles.DefaultMaxFileBytes)
	}
	return src, err
}

// formatRego formats one module in OPA's canonical style; a module that does
// not parse has problems instead.
func formatRego(name string, src []byte) ([]byte, []bundles.Problem, error) {
	out, err := format.SourceWithOpts(name, src, format.Opts{
		RegoVersion:   ast.RegoV1,
		ParserOptions: &ast.ParserOptions{RegoVersion: ast.RegoV1},
	})
	var errs ast.Errors
	if errors.As(err, &errs) {
		ps := make([]bundles.Problem, len(errs))
		for i, e := range errs {
			ps[i] = bundles.ProblemOf(e)
		}
		return nil, ps, nil
	}
	return out, nil, err
}

// printDiff writes the unified diff from src to formatted.
func printDiff(out io.Writer, file string, src, formatted []byte) error {
	name := printable.String(file)
	diff, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A: difflib.SplitLines(string(src)), B: difflib.SplitLines(string(formatted)),
		FromFile: name, ToFile: name + " (formatted)", Context: 3,
	})
	if err != nil {
		return err
	}
	_, err = io.WriteString(out, diff)
	return err
}
