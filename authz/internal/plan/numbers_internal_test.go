package plan

import (
	"runtime"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

// TestNumberNotPlainDeep: finding where a number written otherwise stands
// in a deep document costs about its depth, not its depth squared (a
// 10,000-deep data.json allocated some 400 MB copying the path at every
// level), and names the place.
func TestNumberNotPlainDeep(t *testing.T) {
	const depth = 10_000
	v := ast.Value(ast.Number("1.0"))
	for range depth {
		v = ast.NewArray(ast.NewTerm(v))
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	path, n, found := numberNotPlain(v, ast.DefaultRootRef)
	runtime.ReadMemStats(&after)
	if !found || n != "1.0" || len(path) != depth+1 {
		t.Fatalf("found %v, %v at a path of %d terms; want 1.0 at %d", found, n, len(path), depth+1)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8<<20 {
		t.Errorf("allocated %.1f MiB for a %d-deep document, want at most 8", float64(alloc)/(1<<20), depth)
	}
	if _, _, found := numberNotPlain(ast.NewArray(ast.NumberTerm("1")), ast.DefaultRootRef); found {
		t.Error("a plain number reported")
	}
}
