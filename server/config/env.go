package config

import (
	"fmt"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// envRef matches a reference to an environment variable, ${NAME}, and the
// escape $${ (a literal "${").
var envRef = regexp.MustCompile(`\$\$\{|\$\{([^}]*)\}`)

// envName is what a variable's name may be.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// expandEnv replaces ${NAME} in every scalar value of the document with
// the environment variable NAME (lookup), and $${ with a literal ${. Keys
// and comments are left alone, and a value can never change the
// document's structure: it is substituted into a parsed scalar, which is
// then read as if written there (so ${PORT} can be an integer), except
// that a value YAML reads as null (~, null) stays a string, so that it
// cannot remove a whole section. An unset or empty variable is an error
// naming it, its key and line. It returns the nodes
// it changed: errors about their values must not repeat them, since they
// may be secrets.
func expandEnv(file string, root *yaml.Node, lookup func(string) (string, bool)) (map[*yaml.Node]string, error) {
	expanded := map[*yaml.Node]string{}
	var errs []string
	walkValues(root, func(n *yaml.Node, path string) {
		if n.Kind != yaml.ScalarNode || !strings.Contains(n.Value, "${") {
			return
		}
		var names []string
		value := envRef.ReplaceAllStringFunc(n.Value, func(ref string) string {
			if ref == "$${" {
				return "${"
			}
			name := ref[2 : len(ref)-1]
			if !envName.MatchString(name) {
				errs = append(errs, fmt.Sprintf("%s:%d: %s: %q is not a variable reference: want ${NAME}, NAME letters, digits and _ (write $${ for a literal ${)", file, n.Line, path, ref))
				return ref
			}
			v, ok := lookup(name)
			if !ok {
				errs = append(errs, fmt.Sprintf("%s:%d: %s: environment variable %s is not set", file, n.Line, path, name))
				return ref
			}
			if v == "" {
				// Set but empty is as much a mistake as unset, and would
				// turn some settings off (an empty key file name).
				errs = append(errs, fmt.Sprintf("%s:%d: %s: environment variable %s is empty", file, n.Line, path, name))
				return ref
			}
			names = append(names, name)
			return v
		})
		if len(names) > 0 {
			expanded[n] = strings.Join(names, ", ")
		}
		n.Value = value
		if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) == 0 && n.Tag == "!!str" &&
			!yamlNull(value) {
			n.Tag = "" // a plain scalar: read the new value as if written there
		}
	})
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, strings.Join(errs, "\n"))
	}
	return expanded, nil
}

// yamlNull reports whether a plain scalar v reads as null in YAML.
func yamlNull(v string) bool {
	switch v {
	case "", "~", "null", "Null", "NULL":
		return true
	}
	return false
}
