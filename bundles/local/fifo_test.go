//go:build unix

package local_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/verdict-pdp/verdict/bundles"
	"github.com/verdict-pdp/verdict/bundles/internal/bundletest"
	"github.com/verdict-pdp/verdict/bundles/local"
)

// TestFileReplacedByFIFO: someone who can write the bundle's directory
// renames a FIFO over the bundle. Opening it for reading waited for a
// writer forever, so Run stopped reloading, reported nothing and could not
// be stopped. It is now a read error like any other (the last good bundle
// keeps serving), and a good file put back is read.
func TestFileReplacedByFIFO(t *testing.T) {
	good := bundletest.Tarball(t, map[string]string{"a.rego": bundletest.Policy("a", 1)}, nil, "rev-1", nil)
	dir := t.TempDir()
	p := filepath.Join(dir, "bundle.tar.gz")
	bundletest.WriteFile(t, p, good)
	f, err := local.NewFile(local.FileOptions{Path: p, Debounce: debounce, RetryInterval: retry})
	bundletest.Must(t, err)
	sink := bundletest.NewSink(4)
	start(t, f, sink)
	sink.Next(t, wait)

	fifo := filepath.Join(dir, ".fifo")
	bundletest.Must(t, syscall.Mkfifo(fifo, 0o600))
	bundletest.Must(t, os.Rename(fifo, p))
	st := waitStatus(t, f.Status, func(s bundles.Status) bool { return s.LastError != "" })
	if !strings.Contains(st.LastError, "not a regular file") || st.Revision != "rev-1" {
		t.Errorf("status = %+v, want a read error naming the FIFO, rev-1 still serving", st)
	}

	bundletest.Must(t, os.Remove(p))
	bundletest.WriteFile(t, p, good)
	waitStatus(t, f.Status, func(s bundles.Status) bool { return s.LastError == "" })
}
