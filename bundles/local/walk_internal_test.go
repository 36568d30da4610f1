package local

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/verdict-pdp/verdict/bundles"
)

// siblingLinks makes, under root, directories L0..L<levels> where each
// level holds two links (a, b) to the next: 2^levels paths lead to the
// last level. It returns L0.
func siblingLinks(t *testing.T, root string, levels int) string {
	t.Helper()
	for i := 0; i <= levels; i++ {
		mustDo(t, os.Mkdir(filepath.Join(root, fmt.Sprintf("L%d", i)), 0o755))
	}
	for i := 0; i < levels; i++ {
		next := filepath.Join(root, fmt.Sprintf("L%d", i+1))
		for _, name := range []string{"a", "b"} {
			mustDo(t, os.Symlink(next, filepath.Join(root, fmt.Sprintf("L%d", i), name)))
		}
	}
	return filepath.Join(root, "L0")
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestWalkDirsOnceEach: the watch walk collects each directory once,
// whatever number of links lead to it, and follows no link to an ancestor
// of what it collected (a link to / would walk the whole file system).
func TestWalkDirsOnceEach(t *testing.T) {
	const levels = 12 // 8,191 paths through the links; 14 directories
	root := t.TempDir()
	pol := filepath.Join(root, "policy")
	mustDo(t, os.MkdirAll(filepath.Join(pol, "sub"), 0o755))
	mustDo(t, os.Mkdir(filepath.Join(root, "beside"), 0o755))
	mustDo(t, os.Symlink(siblingLinks(t, root, levels), filepath.Join(pol, "lib")))
	mustDo(t, os.Symlink(root, filepath.Join(pol, "up")))
	mustDo(t, os.Symlink("/", filepath.Join(pol, "slash")))
	mustDo(t, os.Symlink(filepath.Join(pol, "sub"), filepath.Join(pol, "sub2")))

	out := map[string]string{}
	if err := walkDirs(pol, out, bundles.DefaultMaxFiles); err != nil {
		t.Fatalf("walkDirs = %v", err)
	}
	reals := map[string][]string{}
	for p, r := range out {
		reals[r] = append(reals[r], p)
	}
	for r, ps := range reals {
		if len(ps) > 1 {
			sort.Strings(ps)
			t.Errorf("%s collected %d times (as %s, %s, ...)", r, len(ps), ps[0], ps[1])
		}
	}
	// policy, policy/sub, L0..L<levels>; not root, beside or /.
	if want := levels + 3; len(out) != want {
		t.Errorf("collected %d directories, want %d", len(out), want)
	}
	for _, p := range []string{root, filepath.Join(root, "beside"), "/"} {
		real, _ := filepath.EvalSymlinks(p)
		if len(reals[real]) > 0 {
			t.Errorf("%s collected (as %v): a link above the policy directory was followed", p, reals[real])
		}
	}
}

// TestWalkDirsStopsAtLimit: a link to a tree of more directories than
// MaxFiles stops the walk at MaxFiles, with an error that says so.
func TestWalkDirsStopsAtLimit(t *testing.T) {
	root := t.TempDir()
	pol := filepath.Join(root, "policy")
	mustDo(t, os.Mkdir(pol, 0o755))
	huge := filepath.Join(root, "huge")
	for i := range 30 {
		mustDo(t, os.MkdirAll(filepath.Join(huge, fmt.Sprintf("d%d", i), "inner"), 0o755))
	}
	mustDo(t, os.Symlink(huge, filepath.Join(pol, "lib")))

	out := map[string]string{}
	err := walkDirs(pol, out, 10)
	if !errors.Is(err, bundles.ErrTooLarge) || !errors.Is(err, bundles.ErrRead) ||
		!strings.Contains(err.Error(), "more than 10 directories") {
		t.Errorf("walkDirs = %v, want ErrTooLarge saying more than 10 directories", err)
	}
	if len(out) != 11 { // the policy directory and 10 below it
		t.Errorf("collected %d directories, want 11", len(out))
	}
}
