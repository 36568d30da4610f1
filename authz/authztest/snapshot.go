package authztest

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/bundles"
	"github.com/verdict-pdp/verdict/policies"
)

// Snapshot builds an in-memory policy snapshot from Rego sources keyed by
// file path, with the given data (nil means {}). The revision is given
// explicitly so tests can tell snapshots apart; empty means a content hash.
func Snapshot(tb testing.TB, revision string, modules map[string]string, data map[string]any) *bundles.Snapshot {
	tb.Helper()
	s := &bundles.Snapshot{
		Revision: revision,
		Origin:   "test",
		Data:     data,
		ReadAt:   time.Now(),
	}
	if s.Data == nil {
		s.Data = map[string]any{}
	}
	for _, p := range slices.Sorted(maps.Keys(modules)) {
		s.Modules = append(s.Modules, bundles.Module{Path: p, Raw: []byte(modules[p])})
	}
	if s.Revision == "" {
		s.Revision = bundles.ContentHash(s)
	}
	return s
}

// Policy is Snapshot for a single module named "policy.rego".
func Policy(tb testing.TB, revision, rego string) *bundles.Snapshot {
	tb.Helper()
	return Snapshot(tb, revision, map[string]string{"policy.rego": rego}, nil)
}

// PolicyFile is the snapshot of the one Rego file at path, its module
// named by the file's name.
func PolicyFile(tb testing.TB, path string) *bundles.Snapshot {
	tb.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return Snapshot(tb, "", map[string]string{filepath.Base(path): string(raw)}, nil)
}

// PolicyFiles is every .rego file in dir as a PolicyFile, keyed by the
// file's name. A directory with none is a failure.
func PolicyFiles(tb testing.TB, dir string) map[string]*bundles.Snapshot {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.rego"))
	if err != nil || len(files) == 0 {
		tb.Fatalf("no policies in %s (%v)", dir, err)
	}
	out := make(map[string]*bundles.Snapshot, len(files))
	for _, f := range files {
		out[filepath.Base(f)] = PolicyFile(tb, f)
	}
	return out
}

// DefaultPolicies is the embedded default policy set, policies.FS(), read
// as the server reads it.
func DefaultPolicies(tb testing.TB) *bundles.Snapshot {
	tb.Helper()
	s, err := bundles.ReadFS(policies.FS(), bundles.ReadOptions{Origin: "embedded"})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}
