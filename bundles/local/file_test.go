package local_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/verdict-pdp/verdict/bundles"
	"github.com/verdict-pdp/verdict/bundles/internal/bundletest"
	"github.com/verdict-pdp/verdict/bundles/local"
)

func TestFileBundle(t *testing.T) {
	key, other := bundletest.NewKey(t), bundletest.NewKey(t)
	mods := func(v int) map[string]string {
		return map[string]string{"authz/authz.rego": bundletest.Policy("authz", v)}
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "bundle.tar.gz")
	bundletest.WriteFile(t, p, bundletest.Tarball(t, mods(1), map[string]any{"v": 1}, "rev-1", &key))

	f, err := local.NewFile(local.FileOptions{Path: p, Debounce: debounce, Verify: bundletest.VerifyWith(key.Public)})
	if err != nil {
		t.Fatal(err)
	}
	sink := bundletest.NewSink(16)
	start(t, f, sink)
	if s := sink.Next(t, wait); s.Revision != "rev-1" || s.Origin != "bundle:"+p {
		t.Fatalf("initial snapshot %s from %s", s.Revision, s.Origin)
	}

	// Replaced by rename (how CI pipelines and `opa build -o` + mv publish).
	tmp := filepath.Join(dir, ".bundle.tar.gz.tmp")
	bundletest.WriteFile(t, tmp, bundletest.Tarball(t, mods(2), nil, "rev-2", &key))
	bundletest.Must(t, os.Rename(tmp, p))
	if s := sink.Next(t, wait); s.Revision != "rev-2" {
		t.Fatalf("after rename: revision %s, want rev-2", s.Revision)
	}
	sink.None(t, quiet)

	// Written in place.
	bundletest.WriteFile(t, p, bundletest.Tarball(t, mods(3), nil, "rev-3", &key))
	if s := sink.Next(t, wait); s.Revision != "rev-3" {
		t.Fatalf("after write: revision %s, want rev-3", s.Revision)
	}
	sink.None(t, quiet)

	// Wrongly signed, then unsigned: refused, rev-3 keeps serving.
	for _, bad := range [][]byte{
		bundletest.Tarball(t, mods(4), nil, "rev-4", &other),
		bundletest.Tarball(t, mods(5), nil, "rev-5", nil),
	} {
		before := f.Status().ReloadErrors
		bundletest.WriteFile(t, p, bad)
		st := waitStatus(t, f.Status, func(s bundles.Status) bool { return s.ReloadErrors > before })
		if !strings.Contains(st.LastError, "signature") || st.Revision != "rev-3" || sink.Current().Revision != "rev-3" {
			t.Fatalf("status = %+v, serving %s", st, sink.Current().Revision)
		}
	}

	// Deleted and recreated, good again.
	bundletest.Must(t, os.Remove(p))
	bundletest.WriteFile(t, p, bundletest.Tarball(t, mods(6), nil, "rev-6", &key))
	if s := sink.Next(t, wait); s.Revision != "rev-6" {
		t.Fatalf("after recreate: revision %s, want rev-6", s.Revision)
	}
	if st := waitStatus(t, f.Status, func(s bundles.Status) bool { return s.Revision == "rev-6" }); st.LastError != "" {
		t.Fatalf("status = %+v", st)
	}
}

func TestFileConfigMapSwap(t *testing.T) {
	cm := &configMap{dir: t.TempDir()}
	tb := func(v int) string {
		return string(bundletest.Tarball(t, map[string]string{"a.rego": bundletest.Policy("a", v)}, nil, "rev-"+string(rune('0'+v)), nil))
	}
	cm.update(t, map[string]string{"bundle.tar.gz": tb(1)})
	f, err := local.NewFile(local.FileOptions{Path: filepath.Join(cm.dir, "bundle.tar.gz"), Debounce: debounce})
	if err != nil {
		t.Fatal(err)
	}
	sink := bundletest.NewSink(8)
	start(t, f, sink)
	sink.Next(t, wait)
	cm.update(t, map[string]string{"bundle.tar.gz": tb(2)})
	if s := sink.Next(t, wait); s.Revision != "rev-2" {
		t.Fatalf("revision %s, want rev-2", s.Revision)
	}
	sink.None(t, quiet)
}

func TestNewFileOptions(t *testing.T) {
	if _, err := local.NewFile(local.FileOptions{}); err == nil {
		t.Error("empty Path accepted")
	}
	if _, err := local.NewFile(local.FileOptions{Path: "b.tar.gz", Verify: bundletest.VerifyWith([]byte("x"))}); err == nil {
		t.Error("non-PEM RS256 key accepted")
	}
	bad := []local.FileOptions{{Path: "b.tar.gz", MaxBytes: -1}}
	for _, l := range bundletest.NegativeLimits() {
		bad = append(bad, local.FileOptions{Path: "b.tar.gz", Limits: l})
	}
	for _, o := range bad {
		if _, err := local.NewFile(o); !errors.Is(err, local.ErrOptions) {
			t.Errorf("NewFile(%+v) = %v, want ErrOptions", o, err)
		}
	}
}

// TestFileLimits: the unpacking limits reach the bundle reader; a bundle
// over one is refused and reported.
func TestFileLimits(t *testing.T) {
	raw := bundletest.Tarball(t, map[string]string{"a.rego": bundletest.Policy("a", 1)}, nil, "rev-1", nil)
	for _, tc := range []struct {
		name string
		opts local.FileOptions
		want string
	}{
		{name: "files", opts: local.FileOptions{Limits: bundles.Limits{MaxFiles: 1}}, want: "more than 1 files"},
		{name: "unpacked bytes", opts: local.FileOptions{Limits: bundles.Limits{MaxUnpackedBytes: 20}}, want: "unpacks to more than 20 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "bundle.tar.gz")
			bundletest.WriteFile(t, p, raw)
			opts := tc.opts
			opts.Path, opts.Debounce = p, debounce
			f, err := local.NewFile(opts)
			bundletest.Must(t, err)
			sink := bundletest.NewSink(1)
			start(t, f, sink)
			if st := f.Status(); !strings.Contains(st.LastError, tc.want) || sink.Calls() != 0 {
				t.Fatalf("status = %+v, loads = %d; want an error containing %q", st, sink.Calls(), tc.want)
			}
		})
	}
}

// TestFileBrokenBundleRetriedQuietly: a bundle file that cannot be read is
// retried every RetryInterval, logged and counted once; put back, it logs
// one recovery and clears the status without reloading (the sink never
// saw the broken file).
func TestFileBrokenBundleRetriedQuietly(t *testing.T) {
	good := bundletest.Tarball(t, map[string]string{"a.rego": bundletest.Policy("a", 1)}, nil, "rev-1", nil)
	p := filepath.Join(t.TempDir(), "bundle.tar.gz")
	bundletest.WriteFile(t, p, good)
	var logs bundletest.Logs
	f, err := local.NewFile(local.FileOptions{Path: p, Debounce: debounce, RetryInterval: retry, Logger: logs.Logger()})
	bundletest.Must(t, err)
	sink := bundletest.NewSink(4)
	start(t, f, sink)
	sink.Next(t, wait)

	bundletest.WriteFile(t, p, good[:len(good)/2]) // truncated: a half-written file
	st := waitStatus(t, f.Status, func(s bundles.Status) bool {
		return s.LastError != "" && s.LastAttempt.Sub(s.LastErrorAt) >= 20*retry
	})
	if n := logs.Count("policy reload failed"); n != 1 || st.ReloadErrors != 1 {
		t.Errorf("read failed lines, ReloadErrors = %d, %d; want 1, 1 after 20 retries", n, st.ReloadErrors)
	}

	bundletest.WriteFile(t, p, good)
	st = waitStatus(t, f.Status, func(s bundles.Status) bool { return s.LastError == "" })
	sink.None(t, quiet)
	if n := logs.Count("policy recovered"); n != 1 || sink.Calls() != 1 || st.Revision != "rev-1" || len(st.Errors) != 0 {
		t.Errorf("recovered lines = %d, sink calls = %d, status = %+v; want 1, 1, rev-1 without errors", n, sink.Calls(), st)
	}
}
