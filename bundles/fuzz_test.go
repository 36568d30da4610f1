package bundles_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/verdict-pdp/verdict/bundles"
	"github.com/verdict-pdp/verdict/bundles/internal/bundletest"
)

// FuzzReadTarball feeds arbitrary bytes to the bundle reader, without and
// with signature verification: it must return a snapshot or an error
// wrapping ErrRead, never panic, and stay within small limits.
func FuzzReadTarball(f *testing.F) {
	key := bundletest.NewKey(f)
	mods := map[string]string{"a.rego": bundletest.Policy("a", 1)}
	f.Add(bundletest.Tarball(f, mods, map[string]any{"x": 1}, "r", nil))
	f.Add(bundletest.Tarball(f, mods, map[string]any{"x": 1}, "r", &key))
	f.Add([]byte("\x1f\x8b\x08\x00"))
	verify := bundles.VerifyOptions{Key: key.Public}
	f.Fuzz(func(t *testing.T, raw []byte) {
		for _, v := range []bundles.VerifyOptions{{}, verify} {
			s, err := bundles.ReadTarball(bytes.NewReader(raw), bundles.TarballOptions{
				Verify: v, Limits: bundles.Limits{MaxFileBytes: 1 << 20, MaxUnpackedBytes: 4 << 20, MaxFiles: 100},
			})
			if err == nil && (s == nil || s.Data == nil) {
				t.Fatal("nil snapshot or data without error")
			}
			if err != nil && !errors.Is(err, bundles.ErrRead) {
				t.Fatalf("err = %v, want ErrRead", err)
			}
		}
	})
}
