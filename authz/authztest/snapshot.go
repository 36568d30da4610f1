package authztest

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/bundles"
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
