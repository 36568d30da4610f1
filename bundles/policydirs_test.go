package bundles_test

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/verdict-pdp/verdict/bundles"
	"github.com/verdict-pdp/verdict/bundles/internal/bundletest"
)

// siblingLinks makes, under root, directories L0..L<levels> where each
// level holds two links (a, b) to the next: 2^levels paths lead to the
// last level. With withFiles, each level holds a policy file too. It
// returns L0.
func siblingLinks(t *testing.T, root string, levels int, withFiles bool) string {
	t.Helper()
	for i := 0; i <= levels; i++ {
		dir := filepath.Join(root, fmt.Sprintf("L%d", i))
		bundletest.Must(t, os.Mkdir(dir, 0o755))
		if withFiles {
			policyFile(t, dir)
		}
	}
	for i := 0; i < levels; i++ {
		next := filepath.Join(root, fmt.Sprintf("L%d", i+1))
		for _, name := range []string{"a", "b"} {
			bundletest.Must(t, os.Symlink(next, filepath.Join(root, fmt.Sprintf("L%d", i), name)))
		}
	}
	return filepath.Join(root, "L0")
}

// policyFile writes a policy file, x.rego, into dir, creating dir.
func policyFile(t *testing.T, dir string) {
	t.Helper()
	bundletest.WriteFile(t, filepath.Join(dir, "x.rego"), []byte(bundletest.Policy("x", 1)))
}

// realPath returns p with its links resolved, failing the test if it
// cannot be.
func realPath(t *testing.T, p string) string {
	t.Helper()
	r, err := filepath.EvalSymlinks(p)
	bundletest.Must(t, err)
	return r
}

// TestPolicyDirsOnceEach: the walk collects each directory once, whatever
// number of links lead to it, and follows no link to an ancestor of what
// it collected (a link to / would walk the whole file system).
func TestPolicyDirsOnceEach(t *testing.T) {
	const levels = 12 // 8,191 paths through the links; 14 directories
	root := t.TempDir()
	pol := filepath.Join(root, "policy")
	bundletest.Must(t, os.MkdirAll(filepath.Join(pol, "sub"), 0o755))
	bundletest.Must(t, os.Mkdir(filepath.Join(root, "beside"), 0o755))
	bundletest.Must(t, os.Symlink(siblingLinks(t, root, levels, false), filepath.Join(pol, "lib")))
	bundletest.Must(t, os.Symlink(root, filepath.Join(pol, "up")))
	bundletest.Must(t, os.Symlink("/", filepath.Join(pol, "slash")))
	bundletest.Must(t, os.Symlink(filepath.Join(pol, "sub"), filepath.Join(pol, "sub2")))

	out, err := bundles.PolicyDirs(pol, bundles.ReadOptions{})
	if err != nil {
		t.Fatalf("PolicyDirs = %v", err)
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
		if r := realPath(t, p); len(reals[r]) > 0 {
			t.Errorf("%s collected (as %v): a link above the policy directory was followed", p, reals[r])
		}
	}
}

// TestPolicyDirsStopsAtLimit: a link to a tree of more directories than
// MaxFiles stops the walk at MaxFiles, with an error that says so.
func TestPolicyDirsStopsAtLimit(t *testing.T) {
	root := t.TempDir()
	pol := filepath.Join(root, "policy")
	bundletest.Must(t, os.Mkdir(pol, 0o755))
	huge := filepath.Join(root, "huge")
	for i := range 30 {
		bundletest.Must(t, os.MkdirAll(filepath.Join(huge, fmt.Sprintf("d%d", i), "inner"), 0o755))
	}
	bundletest.Must(t, os.Symlink(huge, filepath.Join(pol, "lib")))

	out, err := bundles.PolicyDirs(pol, bundles.ReadOptions{Limits: bundles.Limits{MaxFiles: 10}})
	if !errors.Is(err, bundles.ErrTooLarge) || !errors.Is(err, bundles.ErrRead) ||
		!strings.Contains(err.Error(), "policy directory has more than 10 directories") {
		t.Errorf("PolicyDirs = %v, want ErrTooLarge saying more than 10 directories", err)
	}
	if len(out) != 11 { // the policy directory and 10 below it
		t.Errorf("collected %d directories, want 11", len(out))
	}
	if _, err := bundles.PolicyDirs(pol, bundles.ReadOptions{Limits: bundles.Limits{MaxFiles: -1}}); !errors.Is(err, bundles.ErrConfig) {
		t.Errorf("PolicyDirs with MaxFiles -1 = %v, want ErrConfig", err)
	}
}

// linkTree makes a policy directory, in a directory of its own, with
// every kind of link the reader meets, and a policy file in every
// directory, so that each directory read shows as a module. It returns
// the policy directory, and the real paths of the directories the read
// lists (a link to / is there, but nothing below / holds a policy file).
func linkTree(t *testing.T) (string, []string) {
	t.Helper()
	root := t.TempDir()
	pol := filepath.Join(root, "policy")
	policyFile(t, pol)
	// Links between siblings: 2^4 paths to the last level.
	bundletest.Must(t, os.Symlink(siblingLinks(t, root, 4, true), filepath.Join(pol, "lib")))
	// A link to a directory beside it, sorting after it (never read
	// through it), and one sorting before (read through both, once each).
	policyFile(t, filepath.Join(pol, "sub"))
	bundletest.Must(t, os.Symlink("sub", filepath.Join(pol, "sub2")))
	policyFile(t, filepath.Join(pol, "b"))
	bundletest.Must(t, os.Symlink("b", filepath.Join(pol, "a")))
	// A link to an ancestor, to /, and a dangling one.
	policyFile(t, filepath.Join(root, "beside"))
	bundletest.Must(t, os.Symlink(root, filepath.Join(pol, "up")))
	bundletest.Must(t, os.Symlink("/", filepath.Join(pol, "slash")))
	bundletest.Must(t, os.Symlink(filepath.Join(root, "nothing"), filepath.Join(pol, "gone")))
	// A ConfigMap volume: hidden directories, a hidden link to one, and
	// links to files through it.
	ts := filepath.Join(pol, "..2024_01_01_00_00_00.000000001")
	bundletest.WriteFile(t, filepath.Join(ts, "cm.rego"), []byte(bundletest.Policy("cm", 1)))
	bundletest.Must(t, os.Symlink(filepath.Base(ts), filepath.Join(pol, "..data")))
	bundletest.Must(t, os.Symlink("..data/cm.rego", filepath.Join(pol, "cm.rego")))
	// A link to a directory, then one to its parent: the parent is read.
	policyFile(t, filepath.Join(root, "x", "y"))
	policyFile(t, filepath.Join(root, "x"))
	bundletest.Must(t, os.Symlink(filepath.Join(root, "x", "y"), filepath.Join(pol, "n1")))
	bundletest.Must(t, os.Symlink(filepath.Join(root, "x"), filepath.Join(pol, "n2")))
	// A tree deeper than 64 levels.
	deep := filepath.Join(pol, "deep")
	for range 70 {
		policyFile(t, deep)
		deep = filepath.Join(deep, "d")
	}

	want := []string{pol, filepath.Join(pol, "sub"), filepath.Join(pol, "b"),
		filepath.Join(root, "x"), filepath.Join(root, "x", "y")}
	for i := 0; i <= 4; i++ {
		want = append(want, filepath.Join(root, fmt.Sprintf("L%d", i)))
	}
	deep = filepath.Join(pol, "deep")
	for range 70 {
		want = append(want, deep)
		deep = filepath.Join(deep, "d")
	}
	for i, p := range want {
		want[i] = realPath(t, p)
	}
	slices.Sort(want)
	return pol, want
}

// TestPolicyDirsAreTheDirsRead: the directories PolicyDirs returns for a
// watcher are those the read lists, each once, through sibling links,
// links to an ancestor and to /, dangling and hidden links, links to a
// directory and to its parent, and a tree deeper than 64 levels: a
// directory read but not watched is a save that never reloads, one
// watched but not read a watch wasted.
func TestPolicyDirsAreTheDirsRead(t *testing.T) {
	pol, want := linkTree(t)
	got := sameDirs(t, pol, bundles.ReadOptions{})
	if !slices.Equal(got, want) {
		t.Errorf("directories watched:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// What ReadOptions.Skip leaves out is neither read nor watched.
	skip := func(p string, isDir bool) bool { return isDir && p == "lib" }
	want = slices.DeleteFunc(want, func(r string) bool { return strings.HasPrefix(filepath.Base(r), "L") })
	if got := sameDirs(t, pol, bundles.ReadOptions{Skip: skip}); !slices.Equal(got, want) {
		t.Errorf("with lib skipped: directories watched:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestPolicyDirsMissing: a directory that does not exist has no
// directories to watch, and is no error (the read reports it).
func TestPolicyDirsMissing(t *testing.T) {
	out, err := bundles.PolicyDirs(filepath.Join(t.TempDir(), "nothing"), bundles.ReadOptions{})
	if err != nil || len(out) != 0 {
		t.Errorf("PolicyDirs = %v, %v; want none, no error", out, err)
	}
}

// TestPolicyDirsLinkOut: a link out of the policy directory is followed,
// by the read and the walk alike, unless NoLinksOut: then the read is
// refused and the walk leaves out the directory the link leads to, and
// everything below the one holding it.
func TestPolicyDirsLinkOut(t *testing.T) {
	root := t.TempDir()
	pol := filepath.Join(root, "policy")
	policyFile(t, pol)
	policyFile(t, filepath.Join(pol, "sub"))
	bundletest.Must(t, os.Symlink("sub", filepath.Join(pol, "sub2")))
	ts := filepath.Join(pol, "..2024_01_01_00_00_00.000000001")
	bundletest.WriteFile(t, filepath.Join(ts, "cm.rego"), []byte(bundletest.Policy("cm", 1)))
	bundletest.Must(t, os.Symlink(filepath.Base(ts), filepath.Join(pol, "..data")))
	bundletest.Must(t, os.Symlink("nothing", filepath.Join(pol, "gone")))
	holder := filepath.Join(pol, "zz")
	policyFile(t, holder)
	policyFile(t, filepath.Join(holder, "inner"))
	outside := filepath.Join(root, "outside")
	policyFile(t, outside)
	bundletest.Must(t, os.Symlink(outside, filepath.Join(holder, "out")))

	inside := []string{pol, filepath.Join(pol, "sub"), holder}
	want := append(slices.Clone(inside), filepath.Join(holder, "inner"), outside)
	for _, l := range [][]string{inside, want} {
		for i, p := range l {
			l[i] = realPath(t, p)
		}
		slices.Sort(l)
	}
	if got := sameDirs(t, pol, bundles.ReadOptions{}); !slices.Equal(got, want) {
		t.Errorf("following links out: directories watched %v, want %v", got, want)
	}

	confined := bundles.ReadOptions{NoLinksOut: true}
	if _, err := bundles.ReadDir(pol, confined); !errors.Is(err, bundles.ErrLinkOut) {
		t.Fatalf("ReadDir with NoLinksOut = %v, want ErrLinkOut", err)
	}
	out, err := bundles.PolicyDirs(pol, confined)
	if err != nil {
		t.Fatalf("PolicyDirs with NoLinksOut = %v", err)
	}
	if got := watchSet(t, pol, out); !slices.Equal(got, inside) {
		t.Errorf("with NoLinksOut: directories watched %v, want %v", got, inside)
	}
}

// TestPolicyDirsRootThroughLink: the paths to watch begin with the
// directory as named, not cleaned: root/inner/.. through a link inner is
// the link target's parent, not root, as the read has it.
func TestPolicyDirsRootThroughLink(t *testing.T) {
	tree := t.TempDir()
	policyFile(t, filepath.Join(tree, "decoy"))
	policyFile(t, filepath.Join(tree, "decoy", "deep"))
	policyFile(t, filepath.Join(tree, "decoy", "a"))
	policyFile(t, filepath.Join(tree, "a"))
	bundletest.Must(t, os.Symlink(filepath.Join("decoy", "deep"), filepath.Join(tree, "inner")))
	want := []string{filepath.Join(tree, "decoy"), filepath.Join(tree, "decoy", "a"), filepath.Join(tree, "decoy", "deep")}
	for i, p := range want {
		want[i] = realPath(t, p)
	}
	if got := sameDirs(t, tree+"/inner/..", bundles.ReadOptions{}); !slices.Equal(got, want) {
		t.Errorf("directories watched %v, want %v", got, want)
	}
}

// sameDirs fails the test unless the real paths of the directories
// PolicyDirs returns for dir are those of the directories the modules of
// ReadDir come from (in a tree with a policy file in every directory),
// and returns them, sorted.
func sameDirs(t *testing.T, dir string, opts bundles.ReadOptions) []string {
	t.Helper()
	s, err := bundles.ReadDir(dir, opts)
	if err != nil {
		t.Fatalf("ReadDir = %v", err)
	}
	read := map[string]bool{}
	for _, m := range s.Modules {
		// Not filepath.Join: dir is not cleaned (root/inner/..), as the read.
		read[realPath(t, dir+string(os.PathSeparator)+filepath.FromSlash(path.Dir(m.Path)))] = true
	}
	out, err := bundles.PolicyDirs(dir, opts)
	if err != nil {
		t.Fatalf("PolicyDirs = %v", err)
	}
	watched := watchSet(t, dir, out)
	for _, r := range watched {
		if !read[r] {
			t.Errorf("%s is watched, not read", r)
		}
		delete(read, r)
	}
	for r := range read {
		t.Errorf("%s is read, not watched", r)
	}
	return watched
}

// watchSet checks that every path of out, PolicyDirs' result for dir,
// is under dir as named and leads to its real path, and that no real path
// is there twice; it returns the real paths, sorted.
func watchSet(t *testing.T, dir string, out map[string]string) []string {
	t.Helper()
	var reals []string
	for p, r := range out {
		if p != dir && !strings.HasPrefix(p, dir+string(os.PathSeparator)) {
			t.Errorf("path %s is not under %s", p, dir)
		}
		if got := realPath(t, p); got != r {
			t.Errorf("path %s leads to %s, not to %s", p, got, r)
		}
		reals = append(reals, r)
	}
	slices.Sort(reals)
	if c := slices.Compact(slices.Clone(reals)); len(c) != len(reals) {
		t.Errorf("a directory is watched under two paths: %v", reals)
	}
	return reals
}
