package bundles

import (
	"bytes"
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/util"
)

// costShape is a data file in one of the shapes the parse costs were
// measured on.
type costShape struct {
	name string
	file string // the bundle file name, which says how OPA parses it
	data []byte
}

// joined returns open + n copies of item (with "#" replaced by the copy's
// index) separated by sep + close.
func joined(open, item, sep, close string, n int) []byte {
	var b bytes.Buffer
	b.WriteString(open)
	for i := range n {
		if i > 0 {
			b.WriteString(sep)
		}
		b.WriteString(strings.ReplaceAll(item, "#", fmt.Sprint(i)))
	}
	b.WriteString(close)
	return b.Bytes()
}

func costShapes() []costShape {
	const n = 20_000 // JSON values
	const m = 3_000  // YAML values: OPA's YAML costs several times more
	long := strings.Repeat("x", 1000)
	anchored := func(target string, aliases int) []byte {
		return []byte("p: [" + strings.Repeat("1,", 1000) + "1]\n" +
			"a: &a " + target + "\n" +
			"b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n" +
			"c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n" +
			"d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n" +
			"e: [" + strings.Repeat("*d,", aliases) + "*d]\n")
	}
	return []costShape{
		{name: "json: empty object", file: "data.json", data: []byte("{}")},
		{name: "json: empty arrays", file: "data.json", data: joined("[", "[]", ",", "]", n)},
		{name: "json: empty objects", file: "data.json", data: joined("[", "{}", ",", "]", n)},
		{name: "json: nulls", file: "data.json", data: joined("[", "null", ",", "]", n)},
		{name: "json: small ints", file: "data.json", data: joined("[", "#", ",", "]", n)},
		{name: "json: floats", file: "data.json", data: joined("[", "0.5", ",", "]", n)},
		{name: "json: short strings", file: "data.json", data: joined("[", `"s#"`, ",", "]", n)},
		{name: "json: one-key objects", file: "data.json", data: joined("[", `{"a":1}`, ",", "]", n)},
		{name: "json: objects of short strings", file: "data.json", data: joined("[", `{"a":"x","b":"y"}`, ",", "]", n)},
		{name: "json: one large object", file: "data.json", data: joined("{", `"k#":"v"`, ",", "}", n)},
		{name: "json: long strings", file: "data.json", data: joined("[", `"`+long+`"`, ",", "]", n/100)},
		{name: "json: long keys", file: "data.json", data: joined("[", `{"`+long+`#":1}`, ",", "]", n/100)},
		{name: "json: deep", file: "data.json", data: []byte(strings.Repeat("[", 9000) + strings.Repeat("]", 9000))},
		{name: "json: manifest", file: ".manifest", data: []byte(`{"revision":"rev-1","roots":[""]}`)},
		{name: "yaml: one entry", file: "data.yaml", data: []byte("a: 1\n")},
		{name: "yaml: empty sequences", file: "data.yaml", data: joined("", "- []", "\n", "\n", m)},
		{name: "yaml: nulls", file: "data.yaml", data: joined("", "-", "\n", "\n", m)},
		{name: "yaml: small ints", file: "data.yaml", data: joined("", "- #", "\n", "\n", m)},
		{name: "yaml: one-key mappings", file: "data.yaml", data: joined("", "- a: b", "\n", "\n", m)},
		{name: "yaml: two-key mappings", file: "data.yaml", data: joined("", "- a: x\n  b: y", "\n", "\n", m)},
		{name: "yaml: flow pairs", file: "data.yaml", data: joined("[", "a: b", ", ", "]", m)},
		{name: "yaml: flow mappings", file: "data.yaml", data: joined("[", "{a}", ", ", "]", m)},
		{name: "yaml: keys without values", file: "data.yaml", data: joined("{", "k#", ",", "}", m)},
		{name: "yaml: explicit keys", file: "data.yaml", data: joined("", "- ? a", "\n", "\n", m)},
		{name: "yaml: unique keys", file: "data.yaml", data: joined("", "k#: v", "\n", "\n", m)},
		{name: "yaml: long scalars", file: "data.yaml", data: joined("", "- "+long, "\n", "\n", 100)},
		{name: "yaml: long keys", file: "data.yaml", data: joined("", "- "+long+": 1", "\n", "\n", 100)},
		{name: "yaml: folded scalars", file: "data.yaml", data: joined("", "- >\n  "+long, "\n", "\n", 100)},
		{name: "yaml: comments", file: "data.yaml", data: joined("", "# "+long+"\n- 1", "\n", "\n", 100)},
		{name: "yaml: in data.json", file: "data.json", data: joined("", "- []", "\n", "\n", m)},
		{name: "yaml: in .manifest", file: ".manifest", data: joined("", "- []", "\n", "\n", m)},
		// What the scan cannot see: equal keys, each pair of which gets an
		// error message, and values repeated through aliases.
		{name: "yaml: null keys", file: "data.yaml", data: bytes.Repeat([]byte("?\n"), 600)},
		{name: "yaml: sequence keys", file: "data.yaml", data: bytes.Repeat([]byte("? []\n"), 500)},
		{name: "yaml: timestamp keys", file: "data.yaml", data: bytes.Repeat([]byte("2001-01-01: 1\n"), 500)},
		{name: "yaml: long tagged keys", file: "data.yaml", data: bytes.Repeat([]byte("!!int "+strings.Repeat("z", 300)+": 1\n"), 300)},
		{name: "yaml: aliased sequences", file: "data.yaml", data: anchored("[x,x,x,x,x,x,x,x,x,x]", 3)},
		{name: "yaml: aliased mappings", file: "data.yaml", data: anchored("{k0: x,k1: x,k2: x,k3: x,k4: x,k5: x,k6: x,k7: x,k8: x,k9: x}", 3)},
	}
}

// allocatedBy returns the bytes f allocates: the least of a few runs, since
// the process's allocation counter also counts what other goroutines (a
// watcher an earlier test left running, the runtime) allocate meanwhile,
// which only ever adds.
func allocatedBy(f func()) int64 {
	least := int64(math.MaxInt64)
	for range 3 {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		f()
		runtime.ReadMemStats(&after)
		least = min(least, int64(after.TotalAlloc-before.TotalAlloc))
	}
	return least
}

// TestParseCostBoundsOPA parses each shape as OPA's signature check and its
// bundle reader do, and checks that parseCost is an upper bound on what
// each allocates. It fails when an OPA or Go upgrade makes parsing dearer
// than the costs in parsecost.go. The race detector adds up to a third to
// some parses' allocations; under it, the estimate is allowed half again.
func TestParseCostBoundsOPA(t *testing.T) {
	slack := 1.0
	if raceEnabled {
		slack = 1.5
	}
	for _, tc := range costShapes() {
		t.Run(tc.name, func(t *testing.T) {
			estimate := int64(slack * float64(parseCost(tc.file, tc.data, math.MaxInt64)))
			paths := map[string]func(){
				"signature check": func() {
					files := map[string]bundle.FileInfo{tc.file: {Name: tc.file, Hash: "00", Algorithm: string(bundle.SHA256)}}
					_ = bundle.VerifyBundleFile(tc.file, *bytes.NewBuffer(tc.data), files)
				},
				"reader": func() {
					var v any
					if bundle.IsYAMLDataFile(tc.file) {
						_ = util.Unmarshal(tc.data, &v)
					} else {
						_ = util.UnmarshalJSON(tc.data, &v)
					}
				},
			}
			for path, parse := range paths {
				got := allocatedBy(parse)
				t.Logf("%-40s %s: %d bytes allocated, %d estimated (%.0f%%)", tc.name, path, got, estimate, 100*float64(got)/float64(estimate))
				if got > estimate {
					t.Errorf("%s allocated %d bytes parsing %d bytes, more than the estimate %d", path, got, len(tc.data), estimate)
				}
			}
		})
	}
}

// TestParseCostScanAllocatesNothing: refusing a file from its byte scan
// allocates nothing, however many values it holds.
func TestParseCostScanAllocatesNothing(t *testing.T) {
	bombs := map[string][]byte{
		"data.yaml": bytes.Repeat([]byte("- []\n"), 1<<20),
		"data.json": joined("[", "[]", ",", "]", 1<<20),
	}
	for name, data := range bombs {
		var c int64
		allocs := testing.AllocsPerRun(10, func() { c = parseCost(name, data, DefaultMaxUnpackedBytes) })
		if allocs != 0 || c <= DefaultMaxUnpackedBytes {
			t.Errorf("%s: estimate %d with %v allocations, want over %d with none", name, c, allocs, DefaultMaxUnpackedBytes)
		}
	}
}

// FuzzParseCost feeds arbitrary bytes to the estimate as every kind of data
// file: it parses YAML it has not seen before, so it must never panic, and
// it must never charge less than the byte scan does.
func FuzzParseCost(f *testing.F) {
	for _, tc := range costShapes() {
		if len(tc.data) < 4<<10 {
			f.Add(tc.data)
		}
	}
	f.Add([]byte("a: &a [*a]\nb: *a\n"))
	f.Add([]byte("? [a]\n? [a]\n<<: {}\n<<: {}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, name := range []string{"data.yaml", "data.json", ".manifest", "x.manifest", ".manifest.pb", ".signatures.json", "a.rego"} {
			c := parseCost(name, data, math.MaxInt64)
			jsonValues, _ := countValues(data)
			if syntaxOf(name) != notData && c < jsonFileCost+jsonValues*jsonValueCost {
				t.Fatalf("%s: estimate %d is below the byte scan's", name, c)
			}
		}
	})
}
