// Package atomicfile replaces a file's content so that a reader, or the
// next start after a crash, sees the old content or the new one, never a
// mix or a truncated file. Verdict's pollers keep their last good document
// (a policy bundle, a key set) this way.
//
// The package holds no state; Write is safe for concurrent use on
// different paths. Concurrent Writes to one path each leave a complete
// file; which one wins is unspecified.
package atomicfile

import (
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
)

// Modes of a persisted document and of the directory that holds it: only
// the process's user may read them, since a bundle may hold data an
// operator would not publish and a key set says which issuers are trusted.
const (
	PrivateFile fs.FileMode = 0o600
	PrivateDir  fs.FileMode = 0o700
)

// Name returns the file name under which a poller keeps the document it
// fetched for key (a URL, an issuer): prefix, 16 hex digits of key's
// SHA-256, then ext. Any key makes a safe file name, the same one on every
// start, and different keys share a directory without clashing.
func Name(prefix, key, ext string) string {
	sum := sha256.Sum256([]byte(key))
	return prefix + hex.EncodeToString(sum[:8]) + ext
}

// Write replaces the file at path with data: it creates path's directory
// (and its parents) with mode dirPerm when missing, writes data to a new
// hidden temporary file in that directory, sets its mode to perm (exactly:
// the umask does not apply), flushes it to stable storage, and renames it
// over path. It then flushes the directory too where the platform allows
// (best effort), so that the rename itself survives a crash. On error the
// temporary file is removed and the file at path is untouched.
//
// Errors are the file system's (*fs.PathError, *os.LinkError), which name
// the paths involved; callers wrap them under their own category.
func Write(path string, data []byte, perm, dirPerm fs.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, dirPerm); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	syncDir(dir)
	return nil
}

// syncDir flushes a directory's entries; some platforms cannot, which is
// why it is best effort.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	_ = d.Sync()
	_ = d.Close()
}
