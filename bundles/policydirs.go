package bundles

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// PolicyDirs returns the directories ReadDir lists when it reads dir with
// opts, for a watcher to watch: dir and every directory below it that is
// not ignored (IgnoredName, opts.Skip), reached through symbolic links by
// ReadDir's rules, because it is ReadDir's own walk (a link to a directory
// listed already, or to an ancestor of one, is not followed; a dangling or
// hidden link is not; with opts.NoLinksOut, nor is a link out of dir). Each
// is keyed by its path through the links, dir followed by the names the
// walk took (what fsnotify reports events under), with its real path, its
// links resolved, as value. A directory ReadDir lists more than once (a
// directory and a link to it) is in the map once, under the path the walk
// reached first: one watch of it sees every change.
//
// A directory that cannot be listed (unreadable, holding a link out of dir
// with opts.NoLinksOut, removed while walked) is in the map but nothing
// below it is; the read reports why, and the watch sees the change that
// fixes it. A dir that does not exist gives an empty map.
//
// More directories below dir than opts.MaxFiles, ReadDir's limit, stop the
// walk with an error wrapping ErrRead and ErrTooLarge; the map then holds
// dir and the first MaxFiles. A negative limit gives an error wrapping
// ErrConfig.
func PolicyDirs(dir string, opts ReadOptions) (map[string]string, error) {
	lim, err := newLimits(opts.Limits)
	if err != nil {
		return nil, err
	}
	fsys := newFollowFS(dir, opts.NoLinksOut)
	w := &dirWalk{root: dir, fsys: fsys, opts: opts, limit: lim.files, out: map[string]string{}, seen: map[string]bool{}}
	if err := fs.WalkDir(fsys, ".", w.visit); err != nil {
		return w.out, fmt.Errorf("%w: %w", ErrRead, err)
	}
	return w.out, nil
}

// dirWalk is one PolicyDirs walk.
type dirWalk struct {
	root  string // the directory walked, as the caller named it
	fsys  *followFS
	opts  ReadOptions
	limit int               // most directories below the root
	n     int               // directories walked below the root
	out   map[string]string // path → real path
	seen  map[string]bool   // real paths in out
}

// visit is the fs.WalkDirFunc of a dirWalk: it skips what ReadDir skips,
// counts directories as ReadDir does, and records each real directory once.
func (w *dirWalk) visit(name string, d fs.DirEntry, err error) error {
	switch {
	case err != nil && d == nil:
		return fs.SkipAll // the root is missing
	case err != nil:
		return nil // a directory that cannot be listed: kept, nothing below
	case !d.IsDir():
		return nil
	}
	if name != "." {
		if w.opts.skips(name, true) {
			return fs.SkipDir
		}
		if w.n++; w.n > w.limit {
			return fmt.Errorf("%w: policy directory has more than %d directories", ErrTooLarge, w.limit)
		}
	}
	real, err := filepath.EvalSymlinks(w.fsys.real(name))
	if err != nil {
		return fs.SkipDir // gone since listed
	}
	if !w.seen[real] {
		w.seen[real] = true
		w.out[w.path(name)] = real
	}
	return nil
}

// path returns the path of name, relative to the root, as the caller names
// it: the root's own text, not cleaned (root/inner/.. through a link inner
// is not root), then the names the walk took.
func (w *dirWalk) path(name string) string {
	if name == "." {
		return w.root
	}
	sep := string(os.PathSeparator)
	return strings.TrimSuffix(w.root, sep) + sep + filepath.FromSlash(name)
}
