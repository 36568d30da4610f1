package bundles

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"path"
	"strings"

	"github.com/open-policy-agent/opa/v1/bundle"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protowire"
)

// Parsing a data file costs far more memory than the file's bytes: OPA
// decodes data.json into Go values, and data.yaml through a YAML node tree,
// Go values, JSON text and Go values again. A file of millions of tiny
// values, well under MaxFileBytes, takes a gigabyte or more, and OPA parses
// data files while it checks a bundle's signature, before their digests are
// compared. So readers estimate, before any data file is parsed, what
// parsing it will allocate, and refuse the bundle when its data files
// together would allocate more than MaxUnpackedBytes (checkParse).
//
// The estimate is a cost per file, plus an upper bound on the number of
// values, from bytes that can begin one, times a cost per value, plus a
// cost per byte for long strings. The costs below are bytes allocated
// (runtime.MemStats.TotalAlloc) by one parse, as OPA's signature check
// (util.Unmarshal and the canonical hash) or its bundle reader does it,
// measured with OPA v1.22.3 and Go 1.26 on amd64, and rounded up.
// TestParseCostBoundsOPA measures them again.
const (
	// jsonFileCost and yamlFileCost are charged per file: the decoders'
	// and the parser's own state. Measured on a first parse: "{}" 1,984,
	// a .manifest 3,576, "a: 1" 11,752.
	jsonFileCost = 4 << 10
	yamlFileCost = 16 << 10
	// jsonValueCost is charged per JSON value counted (',' ':' '[' '{'
	// and one). Measured per count: arrays of empty arrays 64, of nulls
	// or booleans 101, of small ints 134, of short strings 136, objects
	// of short strings 102-114, nesting 9,000 deep 136, an array of
	// {"a":1} 166 (the worst found).
	jsonValueCost = 168
	// jsonByteCost is charged per byte of JSON: strings of 1,000 bytes
	// cost 3.1 bytes a byte (the decoder's buffer, the string, the hash).
	jsonByteCost = 4
	// yamlValueCost is charged per YAML value counted (also '-', '?' and
	// line breaks). Measured per count: "- []" 182, "- 1" 222, "- a: b"
	// 692, "[a: b, …]" 1,035, "{k0, k1, …}" (keys without values) 1,364
	// (the worst found).
	yamlValueCost = 1536
	// yamlByteCost is charged per byte of YAML: long plain, quoted and
	// folded scalars and keys cost 10.9-12.3 bytes a byte, 100 lines of
	// long comments up to 16.
	yamlByteCost = 16
	// yamlAliasCost is charged per node decoded again through an alias
	// (an anchored value is decoded once per alias to it): 139-192
	// measured.
	yamlAliasCost = 256
	// yamlKeyPairCost is charged per pair of keys of one mapping: go-yaml
	// compares every pair (about 3 ns each, with no allocation), so a
	// mapping of n keys takes n²/2 steps. A byte per pair keeps that
	// within the same budget: 128 Mi pairs, well under a second, at the
	// default.
	yamlKeyPairCost = 1
	// yamlEqualKeysCost and yamlEqualKeysByteCost are charged per pair of
	// equal keys of one mapping that OPA does not merge (null, timestamp,
	// tagged, alias and collection keys): go-yaml writes an error message
	// for every such pair, which is how 16 KB of "?" lines would take
	// 5 GB. Measured: 330-390 bytes a pair, plus 5.2 a byte of the key; a
	// key of control characters is quoted at 4 bytes a byte.
	yamlEqualKeysCost     = 512
	yamlEqualKeysByteCost = 24
	// protoByteCost is charged per byte of a protobuf manifest
	// (.manifest.pb), on top of the JSON scan's charge: OPA decodes it
	// into messages, then into Go values, so that every two or four bytes
	// of wire (an empty metadata value, an empty wasm resolver or
	// annotation) are objects of a hundred bytes or more. Measured per
	// byte: a list of empty values 63, of empty structs 58, empty wasm
	// resolvers 91, empty annotations 235 (the worst found, doubled).
	protoByteCost = 512
	// rootPairCost is charged per pair of a manifest's root segments
	// (roots split at '/'): OPA checks every pair of roots for overlap,
	// splitting both each time, about 120 ns and 32 bytes a pair of
	// one-segment roots (16,000 roots, 130 KB of JSON, took 16 s), and
	// walks the data down to every root, building and splitting each
	// path on the way against every root, about 560 ns and 100 bytes a
	// pair of segments (one root 5,000 segments deep, beside data as
	// deep, took 7 s and 1.2 GB).
	rootPairCost = 128
	// regoVersionPatternCost is charged per file_rego_versions pattern of
	// a manifest (OPA compiles each into a glob: about 70 µs and 2.5 KB
	// measured), and regoVersionMatchCost per pair of a pattern and a
	// module (OPA tries the patterns in turn against every module's path:
	// about 100 ns and 14 bytes). 20,000 patterns, 350 KB of JSON, took
	// 2.4 s beside 1,000 modules.
	regoVersionPatternCost = 32 << 10
	regoVersionMatchCost   = 64
)

// dataSyntax says how OPA parses a bundle file.
type dataSyntax int

const (
	notData       dataSyntax = iota // never parsed as data
	jsonOnly                        // .signatures.json, patch.json, x.manifest: JSON only
	jsonOrYAML                      // data.json, data.yaml, data.yml, .manifest
	protoManifest                   // .manifest.pb, x.manifest.pb: protobuf
)

// syntaxOf says how OPA parses the bundle file at name. Every structured
// document may be read as YAML: OPA's signature check reads any of them
// that is not valid JSON as YAML, not only data.yaml. OPA's bundle reader
// takes any file whose name ends in .manifest (not only one named
// .manifest) for the manifest, and decodes it as JSON, and one ending in
// .manifest.pb as a protobuf manifest, signed or not.
func syntaxOf(name string) dataSyntax {
	switch {
	case bundle.IsStructuredDoc(name):
		return jsonOrYAML
	case strings.HasSuffix(name, bundle.ManifestProtoExt):
		return protoManifest
	case bundle.IsSignaturesFile(name), path.Base(name) == "patch.json", strings.HasSuffix(name, bundle.ManifestExt):
		return jsonOnly
	}
	return notData
}

// isManifest reports whether OPA's bundle reader takes the file at name
// for the bundle's manifest.
func isManifest(name string) bool {
	switch syntaxOf(name) {
	case jsonOrYAML, jsonOnly:
		return strings.HasSuffix(name, bundle.ManifestExt)
	case protoManifest:
		return true
	}
	return false
}

// checkParse refuses a bundle whose data files would together allocate
// more than l.totalBytes to parse, as estimated by parseCost, before any of
// them is parsed. The error wraps ErrTooLarge and names the first file
// over the limit.
func (l limits) checkParse(files []entry) error {
	var (
		total   int64
		modules int64
	)
	for _, f := range files {
		if strings.HasSuffix(f.path, bundle.RegoExt) {
			modules++
		}
	}
	for _, f := range files {
		room := l.totalBytes - total
		c := parseCost(f.path, f.data, room)
		if c <= room && isManifest(f.path) {
			c = addSat(c, manifestCost(f.path, f.data, modules))
		}
		if c <= room {
			total += c
			continue
		}
		name := strings.TrimPrefix(f.path, "/")
		if total == 0 {
			return fmt.Errorf("%w: parsing bundle file %q would take an estimated %d bytes, more than %d",
				ErrTooLarge, name, c, l.totalBytes)
		}
		return fmt.Errorf("%w: parsing bundle file %q would take an estimated %d bytes, more than the %d left of %d after the data files before it",
			ErrTooLarge, name, c, room, l.totalBytes)
	}
	return nil
}

// parseCost returns an upper bound on the bytes OPA allocates to parse the
// bundle file name holding data, or 0 for a file it does not parse as
// data. Valid JSON is costed as JSON; anything else that OPA may read as
// YAML, as YAML. The first estimate comes from a scan of the bytes that
// allocates nothing. For YAML within room, the YAML is then parsed into
// nodes (which the scan's estimate covers) to add what no scan can see:
// values repeated through aliases, and the pairs of keys go-yaml checks.
func parseCost(name string, data []byte, room int64) int64 {
	syntax := syntaxOf(name)
	if syntax == notData {
		return 0
	}
	jsonValues, yamlValues := countValues(data)
	size := int64(len(data))
	c := jsonFileCost + jsonValues*jsonValueCost + size*jsonByteCost
	if syntax == protoManifest {
		return addSat(c, mulSat(size, protoByteCost))
	}
	// Costed as YAML, data would cost more still: refuse it without
	// scanning it again to tell which.
	if syntax == jsonOnly || c > room || json.Valid(bytes.TrimPrefix(data, utf8BOM)) {
		return c
	}
	c = yamlFileCost + yamlValues*yamlValueCost + size*yamlByteCost
	if c > room {
		return c
	}
	return addSat(c, yamlExtraCost(data))
}

// manifestCost returns what OPA's bundle reader spends, beyond parsing it,
// on the manifest name holding data in a bundle of modules modules: it
// checks every pair of roots for overlap, walks the data down to every
// root (each step against every root), compiles every
// file_rego_versions pattern and tries each against every module. Both
// are quadratic, so that a manifest of a few thousand roots or patterns,
// tiny beside the limits, would keep a reader busy for minutes or days.
// It decodes the roots and patterns as OPA does (JSON: the first value,
// as OPA's decoder reads it; protobuf: the top-level fields), within the
// estimate parseCost made for the file, and returns 0 for a manifest
// OPA would refuse to decode.
func manifestCost(name string, data []byte, modules int64) int64 {
	var roots, patterns int64 // roots counts the roots' segments
	if syntaxOf(name) == protoManifest {
		roots, patterns = protoManifestCounts(data)
	} else {
		var m struct {
			Roots            *[]string      `json:"roots"`
			FileRegoVersions map[string]int `json:"file_rego_versions"`
		}
		if err := json.NewDecoder(bytes.NewReader(data)).Decode(&m); err != nil {
			return 0
		}
		if m.Roots != nil {
			for _, r := range *m.Roots {
				roots += int64(strings.Count(strings.Trim(r, "/"), "/")) + 1
			}
		}
		patterns = int64(len(m.FileRegoVersions))
	}
	var c int64
	if roots > 1 {
		c = mulSat(mulSat(roots, roots-1)/2, rootPairCost)
	}
	c = addSat(c, mulSat(patterns, regoVersionPatternCost))
	return addSat(c, mulSat(mulSat(patterns, max(modules, 1)), regoVersionMatchCost))
}

// protoManifestCounts returns how many root segments and
// file_rego_versions entries the top level of a protobuf manifest
// (v1pb.Manifest) holds, at most: fields 2 and 5, counted until the wire
// format breaks.
func protoManifestCounts(data []byte) (roots, patterns int64) {
	for len(data) > 0 {
		num, typ, n := protowire.ConsumeTag(data)
		if n < 0 {
			break
		}
		data = data[n:]
		if n = protowire.ConsumeFieldValue(num, typ, data); n < 0 {
			break
		}
		if typ == protowire.BytesType {
			switch num {
			case 2:
				root, _ := protowire.ConsumeBytes(data)
				roots += int64(bytes.Count(bytes.Trim(root, "/"), []byte("/"))) + 1
			case 5:
				patterns++
			}
		}
		data = data[n:]
	}
	return roots, patterns
}

// utf8BOM is stripped, as OPA does, before JSON is recognised.
var utf8BOM = []byte{0xef, 0xbb, 0xbf}

// countValues returns upper bounds on the number of values data holds as
// JSON and as YAML, from the bytes that can begin or separate one: for
// JSON ',' ':' '[' '{', for YAML also '-', '?' and line breaks (each
// needed by a block sequence item, explicit key, mapping entry or scalar
// on its own line), plus one for a document of a single value. It reads
// data once per byte counted and allocates nothing.
func countValues(data []byte) (jsonValues, yamlValues int64) {
	count := func(b byte) int64 { return int64(bytes.Count(data, []byte{b})) }
	jsonValues = 1 + count(',') + count(':') + count('[') + count('{')
	lineBreaks := count('\n') + count('\r') - int64(bytes.Count(data, []byte("\r\n")))
	return jsonValues, jsonValues + count('-') + count('?') + lineBreaks
}

// yamlExtraCost returns what decoding data's first YAML document, as OPA's
// YAML conversion does, allocates beyond what countValues charges for: the
// nodes decoded again through aliases, and go-yaml's check of every pair of
// keys in each mapping (decoded once more per alias to it). Like OPA, it
// parses every document, and it returns 0 when one does not parse, since
// OPA then decodes nothing. It does not model go-yaml's limit on alias
// expansion, which only stops a decode sooner.
func yamlExtraCost(data []byte) int64 {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var first *yaml.Node
	for {
		var n yaml.Node
		if err := dec.Decode(&n); err != nil {
			if !errors.Is(err, io.EOF) {
				return 0
			}
			break
		}
		if first == nil {
			first = &n
		}
	}
	if first == nil {
		return 0
	}
	w := yamlWalk{aliased: map[*yaml.Node]int64{}}
	return w.cost(first, false)
}

// yamlWalk sums the cost of decoding a YAML node graph.
type yamlWalk struct {
	// aliased memoizes the cost of decoding a node reached through an
	// alias (so each node is costed at most twice, however often it is
	// aliased); -1 marks one being costed, so that an alias into its own
	// anchor (which go-yaml refuses) ends the walk there.
	aliased map[*yaml.Node]int64
}

// cost returns the extra cost of decoding n: its mappings' key pairs and,
// when n is decoded through an alias, yamlAliasCost for each of its nodes.
func (w *yamlWalk) cost(n *yaml.Node, aliased bool) int64 {
	if aliased {
		if c, ok := w.aliased[n]; ok {
			return max(c, 0)
		}
		w.aliased[n] = -1
	}
	var c int64
	if aliased {
		c = yamlAliasCost
	}
	switch n.Kind {
	case yaml.AliasNode:
		if n.Alias != nil {
			c = addSat(c, w.cost(n.Alias, true))
		}
	case yaml.MappingNode:
		c = addSat(c, keyPairsCost(n.Content))
	}
	for _, child := range n.Content {
		c = addSat(c, w.cost(child, aliased))
	}
	if aliased {
		w.aliased[n] = c
	}
	return c
}

// keyPairsCost is what go-yaml's duplicate-key check costs for a mapping
// whose key and value nodes are content: every pair of keys is compared
// (kind and text), and every equal pair gets an error message. Keys OPA
// merges before decoding are counted too, which only overestimates.
func keyPairsCost(content []*yaml.Node) int64 {
	keys := int64(len(content) / 2)
	c := mulSat(keys*(keys-1)/2, yamlKeyPairCost)
	equal := func(pairs int64, k *yaml.Node) int64 {
		return mulSat(pairs, yamlEqualKeysCost+yamlEqualKeysByteCost*int64(len(k.Value)))
	}
	if keys <= 16 {
		for i := 0; i+1 < len(content); i += 2 {
			for j := i + 2; j+1 < len(content); j += 2 {
				if content[i].Kind == content[j].Kind && content[i].Value == content[j].Value {
					c = addSat(c, equal(1, content[i]))
				}
			}
		}
		return c
	}
	type key struct {
		kind  yaml.Kind
		value string
	}
	seen := make(map[key]int64, keys)
	for i := 0; i+1 < len(content); i += 2 {
		seen[key{content[i].Kind, content[i].Value}]++
	}
	for i := 0; i+1 < len(content); i += 2 {
		k := key{content[i].Kind, content[i].Value}
		if g := seen[k]; g > 1 {
			c = addSat(c, equal(g*(g-1)/2, content[i]))
			delete(seen, k)
		}
	}
	return c
}

// addSat returns a+b for non-negative a and b, or math.MaxInt64 when that
// overflows (aliases can repeat a cost exponentially).
func addSat(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// mulSat returns a*b for non-negative a and positive b, or math.MaxInt64
// when that overflows.
func mulSat(a, b int64) int64 {
	if a > math.MaxInt64/b {
		return math.MaxInt64
	}
	return a * b
}
