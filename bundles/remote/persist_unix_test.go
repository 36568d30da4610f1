//go:build unix

package remote_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/bundles/internal/bundletest"
	"github.com/verdict-pdp/verdict/bundles/remote"
	"github.com/verdict-pdp/verdict/internal/atomicfile"
)

// TestPollerPersistedNotRegular: a FIFO where the persisted bundle or its
// companion should be was opened for reading, which waits for a writer
// forever: Run never polled (never ready, nothing in its status). A file
// larger than MaxBytes (a sparse one costs nothing on disk) was read
// whole. Each is now refused at once, logged as an unreadable persisted
// bundle, and the first poll serves.
func TestPollerPersistedNotRegular(t *testing.T) {
	const maxBytes = 1 << 20
	good := bundletest.Tarball(t, policy(1), nil, "rev-1", nil)
	goodMeta, err := json.Marshal(map[string]any{"url": "x", "saved_at": time.Now().UTC()})
	bundletest.Must(t, err)
	fifo := func(t *testing.T, p string) { bundletest.Must(t, syscall.Mkfifo(p, 0o600)) }
	sparse := func(t *testing.T, p string) {
		f, err := os.Create(p)
		bundletest.Must(t, err)
		bundletest.Must(t, f.Truncate(4*maxBytes))
		bundletest.Must(t, f.Close())
	}
	for _, tc := range []struct {
		name         string
		bundle, meta func(t *testing.T, p string) // nil: a good one
		want         string
	}{
		{name: "bundle FIFO", bundle: fifo, want: "not a regular file"},
		{name: "companion FIFO", meta: fifo, want: "not a regular file"},
		{name: "bundle over MaxBytes", bundle: sparse, want: "file too large: more than 1048576 bytes"},
		{name: "companion over MaxBytes", meta: sparse, want: "file too large: more than 1048576 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, good)
			dir := t.TempDir()
			name := filepath.Join(dir, atomicfile.Name("bundle-", srv.URL, ""))
			bp, mp := name+".tar.gz", name+".json"
			for _, f := range []struct {
				path string
				make func(*testing.T, string)
				good []byte
			}{{bp, tc.bundle, good}, {mp, tc.meta, goodMeta}} {
				if f.make != nil {
					f.make(t, f.path)
				} else {
					bundletest.WriteFile(t, f.path, f.good)
				}
			}
			logs := &bundletest.Logs{}
			p, st, sink := startPoller(t, remote.Options{URL: srv.URL, PersistDir: dir, MaxBytes: maxBytes,
				Logger: logs.Logger()}, 2)
			t.Cleanup(func() { unblockFIFOs(bp, mp) }) // before Run's cleanup: a reader blocked there returns
			st.polled(t)
			if s := sink.Next(t, wait); s.Revision != "rev-1" || p.Status().LastError != "" {
				t.Fatalf("served %s, status %+v", s.Revision, p.Status())
			}
			v, ok := logs.Attr("persisted policy bundle unreadable", "error")
			if !ok || !strings.Contains(v.String(), tc.want) {
				t.Errorf("log: %v (found %v), want one saying %q", v, ok, tc.want)
			}
		})
	}
}

// unblockFIFOs opens every FIFO among paths for writing and closes it, so
// that a reader waiting on it gets end of file.
func unblockFIFOs(paths ...string) {
	for _, p := range paths {
		if f, err := os.OpenFile(p, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			_ = f.Close()
		}
	}
}
