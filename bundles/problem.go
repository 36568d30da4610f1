package bundles

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/verdict-pdp/verdict/internal/printable"
)

// Problem is one located problem in a policy set: a parse, compile, type or
// contract error, or a failing test. It is the one shape every command,
// log line and /v1/status answer uses.
type Problem struct {
	// File is the file's path within the policy set ("authz/rbac.rego");
	// empty when the problem is not in one file.
	File string `json:"file,omitempty"`
	// Line and Col locate it in File (1-based); zero when unknown.
	Line int `json:"line,omitempty"`
	Col  int `json:"col,omitempty"`
	// Code classifies it, as OPA does ("rego_parse_error",
	// "rego_type_error") or Verdict ("verdict_contract_error").
	Code string `json:"code,omitempty"`
	// Message says what is wrong.
	Message string `json:"message"`
	// Details are OPA's further lines about a type error (the types that
	// did not match, have/want), when it gives them.
	Details []string `json:"details,omitempty"`
}

// String renders the problem as "file:line:col: code: message", leaving
// out the parts that are unknown, followed by its details, one per line,
// indented with a tab. Control characters in the file name, the message
// or a detail (a tarball entry's name, a line of a binary file read as a
// policy) are written as Go escapes, so that the text cannot move a
// terminal's cursor or forge a line of its own.
func (p Problem) String() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(printable.String(p.File))
		if p.Line > 0 {
			fmt.Fprintf(&b, ":%d", p.Line)
			if p.Col > 0 {
				fmt.Fprintf(&b, ":%d", p.Col)
			}
		}
		b.WriteString(": ")
	}
	if p.Code != "" {
		b.WriteString(p.Code)
		b.WriteString(": ")
	}
	b.WriteString(printable.String(p.Message))
	for _, d := range p.Details {
		b.WriteString("\n\t")
		b.WriteString(printable.String(d))
	}
	return b.String()
}

// ProblemCarrier is implemented by errors that carry located problems
// (authz.CompileError does).
type ProblemCarrier interface {
	error
	PolicyProblems() []Problem
}

// Problems returns the located problems behind err: those of a
// ProblemCarrier in its chain, else OPA's own located errors (ast.Errors or
// *ast.Error), else nil.
func Problems(err error) []Problem {
	if err == nil {
		return nil
	}
	var pc ProblemCarrier
	if errors.As(err, &pc) {
		return append([]Problem(nil), pc.PolicyProblems()...)
	}
	var errs ast.Errors
	var one *ast.Error
	switch {
	case errors.As(err, &errs):
		out := make([]Problem, 0, len(errs))
		for _, e := range errs {
			p := ProblemOf(e)
			if n := len(out); n > 0 && restates(out[n-1], p) {
				// Keep the one that says more, where the first was.
				if len(p.Message) > len(out[n-1].Message) {
					out[n-1] = p
				}
				continue
			}
			out = append(out, p)
		}
		return out
	case errors.As(err, &one):
		return []Problem{ProblemOf(one)}
	}
	return nil
}

// restates reports whether b says what a says at the same place, one
// message the other's start: OPA's parser reports a module that stops
// short as "unexpected eof token", then again with what it expected
// ("unexpected eof token: expected rule value term ...").
func restates(a, b Problem) bool {
	return a.File == b.File && a.Line == b.Line && a.Col == b.Col && a.Code == b.Code &&
		(strings.HasPrefix(b.Message, a.Message) || strings.HasPrefix(a.Message, b.Message))
}

// PlaceAtEnd locates, in place, the problems in ps of parsing src (the
// text of file) that OPA puts at the end of src without a column: for a
// text that ends with a line break, OPA names the line after it, which an
// editor does not show, and column 0. Such a problem is placed just after
// src's last character other than white space, the line and column where
// the text stops short (the line OPA's own excerpt in Details shows), so
// that it reads file:line:col as every other problem does. Other problems
// are left as they are.
func PlaceAtEnd(ps []Problem, file string, src []byte) {
	atEnd := 1 + bytes.Count(src, []byte("\n")) // the line OPA names for the end
	var line, col int
	for i := range ps {
		p := &ps[i]
		if p.File != file || p.Code != ast.ParseErr || p.Col != 0 || p.Line != atEnd {
			continue
		}
		if line == 0 {
			text := bytes.TrimRightFunc(src, unicode.IsSpace)
			line = 1 + bytes.Count(text, []byte("\n"))
			col = 1 + utf8.RuneCount(text[bytes.LastIndexByte(text, '\n')+1:])
		}
		p.Line, p.Col = line, col
	}
}

// ProblemOf converts one of OPA's located errors, naming the file as the
// error does.
func ProblemOf(e *ast.Error) Problem {
	p := Problem{Code: e.Code, Message: e.Message}
	if e.Details != nil {
		for _, l := range e.Details.Lines() {
			if l = strings.TrimRight(l, " \t"); strings.TrimSpace(l) != "" {
				p.Details = append(p.Details, l)
			}
		}
	}
	if e.Location != nil {
		p.File, p.Line, p.Col = e.Location.File, e.Location.Row, e.Location.Col
	}
	return p
}

// FormatError renders err for status and logs: every located problem as
// "file:line:col: code: message", one per line, or err.Error() when err
// carries no locations. It returns "" for a nil err.
func FormatError(err error) string {
	if err == nil {
		return ""
	}
	ps := Problems(err)
	if len(ps) == 0 {
		return err.Error()
	}
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// readError is a read of a policy set that failed on located problems (a
// module that does not parse), named as the snapshot names its files.
type readError struct {
	problems []Problem
	cause    error
}

func (e *readError) Error() string             { return ErrRead.Error() + ": " + e.cause.Error() }
func (e *readError) Unwrap() []error           { return []error{ErrRead, e.cause} }
func (e *readError) PolicyProblems() []Problem { return e.problems }

// readFailed wraps an error of OPA's bundle reader, reading files, in
// ErrRead. Its located problems name files as the snapshot does: the
// reader names them "/dir/x.rego", the snapshot "dir/x.rego"; those at the
// end of a file are placed as PlaceAtEnd places them.
func readFailed(files []entry, err error) error {
	ps := Problems(err)
	if len(ps) == 0 {
		return fmt.Errorf("%w: %w", ErrRead, err)
	}
	for i := range ps {
		ps[i].File = strings.TrimPrefix(ps[i].File, "/")
	}
	for _, f := range files {
		name := strings.TrimPrefix(f.path, "/")
		if slices.ContainsFunc(ps, func(p Problem) bool { return p.File == name }) {
			PlaceAtEnd(ps, name, f.data)
		}
	}
	return &readError{problems: ps, cause: err}
}

// locateFileError turns an error of OPA's bundle reader about one of files
// that carries no location (a data file that does not decode) into a
// located problem: the file, and for JSON and YAML syntax errors the line
// and column, so that it reads like a module's. Other errors are returned
// as they are.
func locateFileError(files []entry, err error) error {
	if len(Problems(err)) > 0 {
		return err
	}
	msg := err.Error()
	for _, f := range files {
		prefix := "bundle load failed on " + f.path + ": "
		i := strings.Index(msg, prefix)
		if i < 0 {
			continue
		}
		p := Problem{File: f.path, Code: "verdict_data_error", Message: msg[i+len(prefix):]}
		p.Line, p.Col = syntaxErrorAt(f.path, f.data, p.Message)
		return &readError{problems: []Problem{p}, cause: err}
	}
	return err
}

// yamlLine finds the line go-yaml names in its errors.
var yamlLine = regexp.MustCompile(`\bline (\d+):`)

// syntaxErrorAt returns the line and column (1-based; 0 when unknown) of
// the syntax error in a data file: JSON's from a scan of it (which builds
// no values), YAML's line from the reader's message (msg), since decoding
// YAML again could expand what its parse estimate did not charge for.
func syntaxErrorAt(name string, data []byte, msg string) (line, col int) {
	if path.Ext(name) != ".json" {
		if m := yamlLine.FindStringSubmatch(msg); m != nil {
			line, _ = strconv.Atoi(m[1])
		}
		return line, 0
	}
	data = bytes.TrimPrefix(data, utf8BOM)
	var se *json.SyntaxError
	// encoding/json scans the whole input before it decodes anything: a
	// syntax error is found without a value built.
	if err := json.Unmarshal(data, new(struct{})); errors.As(err, &se) {
		// Offset counts the bytes read, the offending one included.
		before := data[:min(max(int(se.Offset)-1, 0), len(data))]
		line = 1 + bytes.Count(before, []byte("\n"))
		col = 1 + utf8.RuneCount(before[bytes.LastIndexByte(before, '\n')+1:])
	}
	return line, col
}
