package bundles

import (
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// followFS wraps os.DirFS so that fs.WalkDir (and so OPA's bundle loader)
// sees every symbolic link as what it points to: a link to a file as a
// regular file and a link to a directory as a directory. Dangling links are
// left out, and so are links to a directory that contains the link, which
// would make the walk endless.
type followFS struct {
	root string
	fsys fs.FS
}

var (
	_ fs.ReadDirFS = followFS{}
	_ fs.StatFS    = followFS{}
)

func (f followFS) Open(name string) (fs.File, error) { return f.fsys.Open(name) }

func (f followFS) Stat(name string) (fs.FileInfo, error) { return fs.Stat(f.fsys, name) }

func (f followFS) ReadDir(name string) ([]fs.DirEntry, error) {
	entries, err := fs.ReadDir(f.fsys, name)
	if err != nil {
		return nil, err
	}
	var dirReal string
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
		if info.IsDir() {
			if dirReal == "" {
				dirReal, _ = filepath.EvalSymlinks(filepath.Join(f.root, filepath.FromSlash(name)))
			}
			target, err := filepath.EvalSymlinks(filepath.Join(f.root, filepath.FromSlash(p)))
			if err != nil || isWithin(dirReal, target) {
				continue // a cycle
			}
		}
		out = append(out, fs.FileInfoToDirEntry(renamed{info, e.Name()}))
	}
	return out, nil
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
