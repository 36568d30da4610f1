package config

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

var yamlLine = regexp.MustCompile(`line (\d+): (.*)`)
var notFound = regexp.MustCompile(`field (\S+) not found in type (\S+)`)

// yamlError rewrites yaml.v3's messages as "file:line: message" lines.
func yamlError(file string, err error) string {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		lines := make([]string, 0, len(te.Errors))
		for _, e := range te.Errors {
			lines = append(lines, rewriteYAMLMessage(file, e))
		}
		return strings.Join(lines, "\n")
	}
	return rewriteYAMLMessage(file, strings.TrimPrefix(err.Error(), "yaml: "))
}

func rewriteYAMLMessage(file, msg string) string {
	m := yamlLine.FindStringSubmatch(msg)
	if m == nil {
		return file + ": " + msg
	}
	text := m[2]
	if nf := notFound.FindStringSubmatch(text); nf != nil {
		text = fmt.Sprintf("unknown key %q", nf[1])
	}
	return fmt.Sprintf("%s:%s: %s", file, m[1], text)
}

// lineOf finds the line of a dotted key path such as "tokens.issuers[0].aud"
// in the document, or the deepest line found on the way.
func lineOf(root *yaml.Node, key string) int {
	n := docRoot(root)
	line := n.Line
	for _, part := range strings.Split(key, ".") {
		name, idx := part, -1
		if i := strings.IndexByte(part, '['); i >= 0 {
			name = part[:i]
			idx, _ = strconv.Atoi(strings.TrimSuffix(part[i+1:], "]"))
		}
		next := mappingValue(n, name)
		if next == nil {
			return line
		}
		line = next.line
		n = next.value
		if idx >= 0 {
			if n.Kind != yaml.SequenceNode || idx >= len(n.Content) {
				return line
			}
			n = n.Content[idx]
			line = n.Line
		}
	}
	return line
}

// docRoot is the document's top-level node.
func docRoot(root *yaml.Node) *yaml.Node {
	if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		return root.Content[0]
	}
	return root
}

type keyValue struct {
	line  int
	value *yaml.Node
}

func mappingValue(n *yaml.Node, name string) *keyValue {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == name {
			return &keyValue{line: n.Content[i].Line, value: n.Content[i+1]}
		}
	}
	return nil
}

// unknownKeys returns the "file:line: unknown key" lines of a strict
// decode's error, or "" when it names no unknown key.
func unknownKeys(file string, err error) string {
	msgs := []string{err.Error()}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	var out []string
	for _, m := range msgs {
		if notFound.MatchString(m) {
			out = append(out, rewriteYAMLMessage(file, m))
		}
	}
	return strings.Join(out, "\n")
}

var cannotUnmarshal = regexp.MustCompile("^cannot unmarshal !!(\\w+)(?: `(.*)`)? into (.+)$")

// valueErrors rewrites a decode's errors as "file:line: key: want ..., got
// ..." lines, naming the key each value belongs to. A value taken from the
// environment (fromEnv) is named by its variable, never repeated.
func valueErrors(file string, err error, root *yaml.Node, fromEnv map[*yaml.Node]string) string {
	msgs := []string{strings.TrimPrefix(err.Error(), "yaml: ")}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	out := make([]string, 0, len(msgs))
	for _, msg := range msgs {
		m := yamlLine.FindStringSubmatch(msg)
		var c []string
		if m != nil {
			c = cannotUnmarshal.FindStringSubmatch(m[2])
		}
		if c == nil {
			out = append(out, rewriteYAMLMessage(file, msg))
			continue
		}
		line, _ := strconv.Atoi(m[1])
		key, node := keyAt(root, line, c[1], c[2])
		got := describeGot(c[1], c[2])
		if names, ok := fromEnv[node]; ok {
			got = "the value of ${" + names + "}"
		} else if names := envOnLine(fromEnv, line); names != "" {
			// Not sure which value it is: never repeat one that may be a
			// secret.
			got = "a value on that line (${" + names + "} is there)"
		}
		text := fmt.Sprintf("want %s, got %s", describeWant(c[3]), got)
		if key != "" {
			text = key + ": " + text
		}
		out = append(out, fmt.Sprintf("%s:%d: %s", file, line, text))
	}
	return strings.Join(out, "\n")
}

// keyAt finds the key whose value is on line, preferring the first whose
// value has tag ("str", "int", "map", "seq", ...) and, for a scalar, is
// value: its dotted path, such as "tokens.issuers[0].max_lifetime", and its
// node ("" and nil when there is none).
func keyAt(root *yaml.Node, line int, tag, value string) (string, *yaml.Node) {
	var key string
	var node *yaml.Node
	matched := false
	walkValues(root, func(n *yaml.Node, path string) {
		if n.Line != line || matched {
			return
		}
		switch {
		case n.Kind == yaml.MappingNode && tag == "map", n.Kind == yaml.SequenceNode && tag == "seq",
			n.Kind == yaml.ScalarNode && sameScalar(n.Value, value):
			key, node, matched = path, n, true
		case node == nil:
			key, node = path, n
		}
	})
	return key, node
}

// sameScalar reports whether a scalar written v is the one a decode
// error quotes as quoted, which the YAML library cuts short with "..."
// past a few characters.
func sameScalar(v, quoted string) bool {
	if short, ok := strings.CutSuffix(quoted, "..."); ok && len(v) > len(short) {
		return strings.HasPrefix(v, short)
	}
	return v == quoted
}

// walkValues calls visit for every value in the document (not keys), in
// document order, with its dotted path ("tokens.issuers[0].issuer").
// Aliases are not followed: their anchor's node is visited where it is
// defined.
func walkValues(root *yaml.Node, visit func(n *yaml.Node, path string)) {
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		if path != "" {
			visit(n, path)
		}
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				walk(n.Content[i+1], joinKey(path, n.Content[i].Value))
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				walk(c, path+"["+strconv.Itoa(i)+"]")
			}
		}
	}
	walk(root, "")
}

// joinKey appends key to a dotted path.
func joinKey(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// describeWant says what a Go type wants, in configuration terms.
func describeWant(goType string) string {
	switch goType {
	case "int", "int64", "int32", "uint", "uint64", "uint32":
		return "an integer"
	case "float64", "float32":
		return "a number"
	case "bool":
		return "true or false"
	case "time.Duration":
		return "a duration such as 30s or 5m"
	case "config.ByteSize":
		return "a size such as 1048576, 512KiB or 1MiB"
	case "string":
		return "a string"
	}
	switch {
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case strings.HasPrefix(goType, "map["), strings.HasPrefix(goType, "config."), strings.HasPrefix(goType, "*config."):
		return "a mapping"
	}
	return goType
}

// describeGot says what a YAML value is.
func describeGot(tag, value string) string {
	switch tag {
	case "map":
		return "a mapping"
	case "seq":
		return "a list"
	}
	return strconv.Quote(value)
}

// envOnLine returns the variables of the values taken from the environment
// on line, or "".
func envOnLine(fromEnv map[*yaml.Node]string, line int) string {
	var names []string
	for n, v := range fromEnv {
		if n.Line == line {
			names = append(names, v)
		}
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}
