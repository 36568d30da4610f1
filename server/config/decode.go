package config

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

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
var decisionLogKeys = []string{"output", "mask", "hash", "hash_key_file", "hash_key_env", "max_record_bytes", "max_queue_records", "max_queue_bytes", "max_records_per_second", "upload"}

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

// ByteSize is a size in bytes, written as an integer (1048576) or with a
// binary unit: B, KiB, MiB or GiB (512KiB, 1MiB).
type ByteSize int

var byteUnits = map[string]int{"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}

// UnmarshalYAML reads an integer or a number with a unit.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	v, ok := parseByteSize(n.Value)
	if n.Kind != yaml.ScalarNode || !ok {
		// In yaml.v3's own words, so that the error names the key.
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: cannot unmarshal !!%s `%s` into config.ByteSize",
			n.Line, strings.TrimPrefix(n.ShortTag(), "!!"), n.Value)}}
	}
	*b = ByteSize(v)
	return nil
}

// parseByteSize reads "1048576", "512KiB", "1 MiB"; at most 1 TiB.
func parseByteSize(s string) (int, bool) {
	s = strings.TrimSpace(s)
	i := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	if i < 0 {
		i = len(s)
	}
	num, unit := s[:i], strings.TrimSpace(s[i:])
	mult, ok := byteUnits[unit]
	n, err := strconv.Atoi(num)
	if !ok || err != nil || n > (1<<40)/mult {
		return 0, false
	}
	return n * mult, true
}
