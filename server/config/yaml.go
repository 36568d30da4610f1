package config

import (
	"errors"
	"fmt"
	"regexp"
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
