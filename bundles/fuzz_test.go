package bundles_test

import (
	"bytes"
	"testing"

	"github.com/verdict-pdp/verdict/bundles"
	"github.com/verdict-pdp/verdict/bundles/internal/bundletest"
)

// FuzzReadTarball feeds arbitrary bytes to the bundle reader: it must
// return a snapshot or an error, never panic.
func FuzzReadTarball(f *testing.F) {
	f.Add(bundletest.Tarball(f, map[string]string{"a.rego": bundletest.Policy("a", 1)}, map[string]any{"x": 1}, "r", nil))
	f.Add([]byte("\x1f\x8b\x08\x00"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		s, err := bundles.ReadTarball(bytes.NewReader(raw), bundles.TarballOptions{MaxFileBytes: 1 << 20})
		if err == nil && (s == nil || s.Data == nil) {
			t.Fatal("nil snapshot or data without error")
		}
	})
}
