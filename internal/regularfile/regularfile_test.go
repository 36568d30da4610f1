//go:build unix

package regularfile_test

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/internal/regularfile"
)

// TestOpen: a regular file (also through a link) opens and reads; a FIFO
// (with no writer, which os.Open would wait for forever), a link to one
// and a directory are refused at once with ErrNotRegular.
func TestOpen(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "p.rego")
	if err := os.WriteFile(file, []byte("package p\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.rego")
	if err := os.Symlink(file, link); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{file, link} {
		f, err := regularfile.Open(p)
		if err != nil {
			t.Fatalf("Open(%s): %v", p, err)
		}
		b, err := io.ReadAll(f)
		_ = f.Close()
		if err != nil || string(b) != "package p\n" {
			t.Errorf("read %q, %v", b, err)
		}
	}
	fifo := filepath.Join(dir, "fifo.rego")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	fifoLink := filepath.Join(dir, "fifolink.rego")
	if err := os.Symlink(fifo, fifoLink); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, fifo, fifoLink} {
		done := make(chan error, 1)
		go func() {
			f, err := regularfile.Open(p)
			if err == nil {
				_ = f.Close()
			}
			done <- err
		}()
		select {
		case err := <-done:
			if !errors.Is(err, regularfile.ErrNotRegular) {
				t.Errorf("Open(%s): %v, want ErrNotRegular", p, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("Open(%s) blocked", p)
		}
	}
	if b, err := regularfile.ReadFile(link); err != nil || string(b) != "package p\n" {
		t.Errorf("ReadFile: %q, %v", b, err)
	}
	if _, err := regularfile.ReadFile(fifo); !errors.Is(err, regularfile.ErrNotRegular) {
		t.Errorf("ReadFile of a FIFO: %v, want ErrNotRegular", err)
	}
	if _, err := regularfile.Open(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// TestReadFileMax: a file of limit bytes reads whole; one byte more is
// refused with ErrTooLarge, and a FIFO with ErrNotRegular, at once.
func TestReadFileMax(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "bundle.tar.gz")
	if err := os.WriteFile(file, []byte("0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := regularfile.ReadFileMax(file, 10); err != nil || string(b) != "0123456789" {
		t.Errorf("ReadFileMax(10): %q, %v", b, err)
	}
	if b, err := regularfile.ReadFileMax(file, 9); !errors.Is(err, regularfile.ErrTooLarge) || b != nil {
		t.Errorf("ReadFileMax(9): %q, %v, want ErrTooLarge", b, err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := regularfile.ReadFileMax(fifo, 10); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, regularfile.ErrNotRegular) {
			t.Errorf("ReadFileMax of a FIFO: %v, want ErrNotRegular", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ReadFileMax of a FIFO blocked")
	}
}
