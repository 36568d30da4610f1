// Package regularfile opens files that must be regular files (policies,
// data, bundles) without blocking on whatever else a writer of their
// directory may have put in their place: opening a FIFO for reading waits
// for a writer forever, and a device may never end.
package regularfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// ErrNotRegular is wrapped by Open's error for anything but a regular file.
var ErrNotRegular = errors.New("not a regular file")

// ErrTooLarge is wrapped by ReadFileMax's error for a file over its limit.
var ErrTooLarge = errors.New("file too large")

// Open opens path, following symbolic links, for reading. It refuses
// anything but a regular file without blocking: the file is opened
// non-blocking (which for a regular file changes nothing) and checked
// through the open handle, so that a file swapped for a FIFO between a
// listing and the open is refused too.
func Open(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|nonBlock, 0)
	if err != nil {
		return nil, err
	}
	info, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	if !info.Mode().IsRegular() {
		_ = f.Close()
		return nil, &fs.PathError{Op: "open", Path: path, Err: ErrNotRegular}
	}
	return f, nil
}

// ReadFile reads the regular file at path as Open opens it.
func ReadFile(path string) ([]byte, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// ReadFileMax reads the regular file at path as Open opens it, but no
// more than limit bytes of it: a longer file (a huge or sparse one, or one
// growing) is refused with an error wrapping ErrTooLarge once one byte
// more has been read.
func ReadFileMax(path string, limit int64) ([]byte, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, &fs.PathError{Op: "read", Path: path, Err: fmt.Errorf("%w: more than %d bytes", ErrTooLarge, limit)}
	}
	return b, nil
}
