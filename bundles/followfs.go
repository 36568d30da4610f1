package bundles

import (
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/verdict-pdp/verdict/internal/regularfile"
)

// followFS wraps os.DirFS so that fs.WalkDir (and so OPA's bundle loader)
// sees every symbolic link as what it points to: a link to a file as a
// regular file and a link to a directory as a directory. Dangling links are
// left out, and so is a link to a directory already listed in this walk
// (an ancestor of the link, which would make the walk endless, or a
// directory reached before: links between siblings would otherwise make it
// exponential). Files are opened with regularfile.Open, so that a FIFO or
// a device put in a policy file's place is refused instead of blocking the
// reader. A followFS serves one walk.
type followFS struct {
	root     string
	rootReal string // root with its links resolved, once needed
	fsys     fs.FS
	listed   map[string]bool // real paths of the directories listed
	// confined refuses a link that leads out of the root (see
	// ReadOptions.NoLinksOut).
	confined bool
}

func newFollowFS(root string, confined bool) *followFS {
	// One path for listing and opening: os.DirFS lists what the kernel
	// resolves (inner/.. through a link inner), filepath.Join would open
	// what the text says (inner/.. cleaned away), another directory.
	if real, err := filepath.EvalSymlinks(root); err == nil {
		root = real
	}
	return &followFS{root: root, rootReal: root, fsys: os.DirFS(root), listed: map[string]bool{}, confined: confined}
}

var (
	_ fs.ReadDirFS = (*followFS)(nil)
	_ fs.StatFS    = (*followFS)(nil)
)

func (f *followFS) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	if info, err := f.Stat(name); err == nil && info.IsDir() {
		return f.fsys.Open(name)
	}
	return regularfile.Open(f.real(name))
}

func (f *followFS) Stat(name string) (fs.FileInfo, error) { return fs.Stat(f.fsys, name) }

// real returns the path of name on the operating system's file system.
func (f *followFS) real(name string) string { return filepath.Join(f.root, filepath.FromSlash(name)) }

// lexical returns the real path name has when no link below the root
// leads to it.
func (f *followFS) lexical(name string) string {
	if f.rootReal == "" {
		f.rootReal, _ = filepath.EvalSymlinks(f.root)
	}
	return filepath.Join(f.rootReal, filepath.FromSlash(name))
}

func (f *followFS) ReadDir(name string) ([]fs.DirEntry, error) {
	entries, err := fs.ReadDir(f.fsys, name)
	if err != nil {
		return nil, err
	}
	if real, err := filepath.EvalSymlinks(f.real(name)); err == nil {
		if f.listed[real] && real != f.lexical(name) {
			// Reached through a link, listed already: two links of one
			// listing to one directory both pass the check below.
			return nil, nil
		}
		f.listed[real] = true
	}
	out := entries[:0]
	for _, e := range entries {
		if e.Type()&fs.ModeSymlink == 0 {
			out = append(out, e)
			continue
		}
		if IgnoredName(e.Name(), false) {
			// Hidden links (ConfigMap's ..data) are never content; keep the
			// entry as a link so the filter drops it without resolving it.
			out = append(out, e)
			continue
		}
		p := path.Join(name, e.Name())
		info, err := fs.Stat(f.fsys, p)
		if err != nil {
			continue // dangling
		}
		if f.confined {
			if target, err := filepath.EvalSymlinks(f.real(p)); err != nil || !isWithin(target, f.lexical("")) {
				return nil, &LinkOutError{Path: p}
			}
		}
		if info.IsDir() {
			target, err := filepath.EvalSymlinks(f.real(p))
			if err != nil || f.listed[target] || f.isListedAncestor(target) {
				continue // a cycle, or listed already
			}
		}
		out = append(out, fs.FileInfoToDirEntry(renamed{info, e.Name()}))
	}
	return out, nil
}

// isListedAncestor reports whether target is a listed directory's ancestor:
// following a link to it would list that directory again.
func (f *followFS) isListedAncestor(target string) bool {
	for dir := range f.listed {
		if isWithin(dir, target) {
			return true
		}
	}
	return false
}

// isWithin reports whether dir is target or lies below it.
func isWithin(dir, target string) bool {
	if dir == "" || target == "" {
		return false
	}
	rel, err := filepath.Rel(target, dir)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(os.PathSeparator))
}

// renamed reports a link target's file info under the link's own name.
type renamed struct {
	fs.FileInfo
	name string
}

func (r renamed) Name() string { return r.name }
