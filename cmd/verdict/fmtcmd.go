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
met in a directory (each named on stderr): fmt never writes through a
link, and --write refuses a PATH with a link in it (policies/, policies/.
or policies/x.rego where policies is a link; for a relative PATH, any part
of it) or that steps back (inner/..), as check does. A file that
does not parse prints as file:line:col: code: message.

Exit status: 0 every file formatted (or written), 1 a file is not
formatted (without --write) or does not parse, 2 usage error (a PATH
without .rego files included).`,
		Example: `  verdict fmt .
  verdict fmt --diff policies/authz/rbac.rego
  verdict fmt --write ./policies`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError("name the Rego files: a directory (. for this one) or .rego files")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runFmt(cmd.OutOrStdout(), cmd.ErrOrStderr(), args, f)
		},
	}
	cmd.Flags().BoolVarP(&f.write, "write", "w", false, "rewrite the files that are not formatted")
	cmd.Flags().BoolVarP(&f.diff, "diff", "d", false, "print what formatting would change, as a unified diff")
	return cmd
}

// runFmt formats every .rego file the paths name.
func runFmt(out, errOut io.Writer, paths []string, f fmtFlags) error {
	var files []string
	for _, p := range paths {
		found, links, err := regoFiles(p, f.write)
		if err != nil {
			return err
		}
		for _, l := range links {
			fmt.Fprintf(errOut, "%s: a symbolic link, not formatted\n", printable.String(l))
		}
		if len(found) == 0 {
			return usageError("%s holds no .rego files", p)
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
// editor files); the symbolic links to .rego files met on the way are
// returned apart, not followed. A named path that is neither is a usage
// error, and so, when the files are to be written, is a path with a
// symbolic link in it (linkInPath) or one that steps back (stepsBack).
func regoFiles(path string, write bool) (files, links []string, err error) {
	if write {
		// As readPolicies refuses them without --follow-links: checked on
		// the cleaned path, since os.Lstat("policies/"), "policies/." and
		// "policies/x.rego" all go through a link named policies.
		if stepsBack(path) {
			return nil, nil, usageError("%s steps back through a directory (..): name the files without it (fmt never writes through a link)", path)
		}
		if link := linkInPath(path); link != "" {
			return nil, nil, usageError("%s is a symbolic link: name what it points to (fmt never writes through a link)", link)
		}
	}
	info, err := os.Lstat(path)
	if err != nil {
		return nil, nil, usageError("%v", err)
	}
	if info.Mode()&fs.ModeSymlink != 0 {
		if info, err = os.Stat(path); err != nil {
			return nil, nil, usageError("%v", err)
		}
		if info.IsDir() { // walked where it leads (a walk does not enter a link)
			if path, err = filepath.EvalSymlinks(path); err != nil {
				return nil, nil, usageError("%v", err)
			}
		}
	}
	switch {
	case info.Mode().IsRegular() && strings.HasSuffix(path, ".rego"):
		return []string{path}, nil, nil
	case !info.IsDir():
		return nil, nil, usageError("%s is neither a directory nor a .rego file", path)
	}
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
		switch {
		case !strings.HasSuffix(p, ".rego"):
		case d.Type().IsRegular():
			files = append(files, p)
		case d.Type()&fs.ModeSymlink != 0:
			links = append(links, p)
		}
		return nil
	})
	if err != nil {
		return nil, nil, &exitCode{code: exitError, err: err}
	}
	return files, links, nil
}

// readRego reads a module, at most bundles.DefaultMaxFileBytes of it (the
// largest file the server reads): fmt runs on trees someone else wrote.
func readRego(file string) ([]byte, error) {
	return regularfile.ReadFileMax(file, bundles.DefaultMaxFileBytes)
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

// diffLines splits text into lines, each with its line break.
// (difflib.SplitLines counts a final line break as one more, empty, line,
// and the diff would then not apply.) A last line without a break gets
// one, as the formatter ends every file with one.
func diffLines(text []byte) []string {
	lines := strings.SplitAfter(string(text), "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	} else {
		lines[len(lines)-1] += "\n"
	}
	return lines
}

// printDiff writes the unified diff from src to formatted.
func printDiff(out io.Writer, file string, src, formatted []byte) error {
	name := printable.String(file)
	diff, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A: diffLines(src), B: diffLines(formatted),
		FromFile: name, ToFile: name + " (formatted)", Context: 3,
	})
	if err != nil {
		return err
	}
	if diff == "" {
		// The only change is the line break the file does not end with
		// (diffLines gives it one): a hunk saying so, as diff -u writes it.
		last := src[bytes.LastIndexByte(src, '\n')+1:]
		n := bytes.Count(src, []byte("\n")) + 1
		diff = fmt.Sprintf("--- %s\n+++ %s (formatted)\n@@ -%d +%d @@\n-%s\n\\ No newline at end of file\n+%s\n", name, name, n, n, last, last)
	}
	_, err = io.WriteString(out, printableDiff(diff))
	return err
}

// printableDiff returns diff with each line's body after its first byte
// (the +, - or space of a unified diff) made printable (printable.String):
// the files are someone else's, and a comment holding ESC bytes would
// otherwise reach the terminal. A diff of such a line no longer applies.
func printableDiff(diff string) string {
	var b strings.Builder
	for line := range strings.Lines(diff) {
		body, nl := strings.CutSuffix(line, "\n")
		if body != "" {
			b.WriteString(body[:1])
			b.WriteString(printable.String(body[1:]))
		}
		if nl {
			b.WriteByte('\n')
		}
	}
	return b.String()
}
