//go:build unix

package bundles

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/verdict-pdp/verdict/internal/regularfile"
)

// TestFollowFSOpenRefusesFIFO: the directory reader lists files first and
// opens them later, so a policy file swapped for a FIFO in between reached
// an open that waited for a writer forever. followFS opens files without
// blocking and refuses what is not a regular file.
func TestFollowFSOpenRefusesFIFO(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "authz.rego"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data.json"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	fsys := newFollowFS(dir, false)
	if _, err := fsys.Open("authz.rego"); !errors.Is(err, regularfile.ErrNotRegular) {
		t.Errorf("Open of a FIFO: %v, want ErrNotRegular", err)
	}
	f, err := fsys.Open("data.json")
	if err != nil {
		t.Fatalf("Open of a regular file: %v", err)
	}
	_ = f.Close()
	if _, err := fsys.Open("../x"); err == nil {
		t.Error("Open of a path outside the root succeeded")
	}
}
