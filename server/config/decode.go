package config

import (
	"fmt"
	"slices"

	"go.yaml.in/yaml/v3"
)

// UnmarshalYAML reads a header value as a string or {file, prefix}.
func (h *HeaderValue) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		return n.Decode(&h.Value)
	}
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: want a string or {file: PATH, prefix: TEXT}", n.Line)
	}
	var v struct {
		File   string `yaml:"file"`
		Prefix string `yaml:"prefix"`
	}
	if err := knownKeys(n, []string{"file", "prefix"}, "HeaderValue"); err != nil {
		return err
	}
	if err := n.Decode(&v); err != nil {
		return err
	}
	if v.File == "" {
		return fmt.Errorf("line %d: file is required in {file: PATH, prefix: TEXT}", n.Line)
	}
	h.File, h.Prefix = v.File, v.Prefix
	return nil
}

// decisionLogKeys are the keys of the decision_log object.
var decisionLogKeys = []string{"output", "mask", "hash", "max_record_bytes", "upload"}

// UnmarshalYAML reads decision_log as a target string or an object whose
// keys are all known.
func (d *DecisionLog) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		return n.Decode(&d.Output)
	}
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: decision_log: want a target (stdout, off, a file) or an object", n.Line)
	}
	if err := knownKeys(n, decisionLogKeys, "DecisionLog"); err != nil {
		return err
	}
	type plain DecisionLog
	return n.Decode((*plain)(d))
}

// knownKeys refuses a key of the mapping n that is not one of keys, in the
// words of the file's strict decoder (typ names the Go type): an object
// with a decoder of its own is decoded without it.
func knownKeys(n *yaml.Node, keys []string, typ string) error {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; !slices.Contains(keys, k.Value) {
			return fmt.Errorf("line %d: field %s not found in type config.%s", k.Line, k.Value, typ)
		}
	}
	return nil
}
