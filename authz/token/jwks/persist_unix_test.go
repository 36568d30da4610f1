//go:build unix

package jwks_test

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/authz/token/jwks"
)

// TestPersistedSetNotRegular: a FIFO where the persisted key set should
// be was opened for reading, which waits for a writer forever: Run never
// fetched (never ready). A file larger than a key set may be (a sparse
// one costs nothing on disk) was read whole. Each is now refused at once
// ("persisted jwks not used"), and the first fetch serves.
func TestPersistedSetNotRegular(t *testing.T) {
	for _, tc := range []struct {
		name string
		make func(t *testing.T, p string)
		want string
	}{
		{name: "FIFO", want: "not a regular file", make: func(t *testing.T, p string) {
			if err := syscall.Mkfifo(p, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "over twice MaxBytes", want: "file too large", make: func(t *testing.T, p string) {
			if err := os.Truncate(p, 2*jwks.DefaultMaxBytes+1); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, clk, opts := setup(t)
			opts.PersistDir = filepath.Join(t.TempDir(), "jwks")
			stop := start(t, mustNew(t, opts))
			clk.idle(t)
			stop()
			files, _ := filepath.Glob(filepath.Join(opts.PersistDir, "*.json"))
			if len(files) != 1 {
				t.Fatalf("persisted files %v", files)
			}
			if tc.name == "FIFO" {
				if err := os.Remove(files[0]); err != nil {
					t.Fatal(err)
				}
			}
			tc.make(t, files[0])

			logs := &lockedBuffer{}
			opts.Logger = slog.New(slog.NewTextHandler(logs, nil))
			m := mustNew(t, opts)
			start(t, m)
			t.Cleanup(func() { unblockFIFO(files[0]) }) // before Run's cleanup: a reader blocked there returns
			select {
			case <-m.Initialized():
			case <-time.After(10 * time.Second):
				t.Fatal("not initialized: Run is held by the persisted file")
			}
			if err := m.Ready(); err != nil {
				t.Errorf("Ready after the first fetch: %v", err)
			}
			if got := logs.String(); !strings.Contains(got, "persisted jwks not used") || !strings.Contains(got, tc.want) {
				t.Errorf("logs:\n%s\nwant persisted jwks not used, saying %q", got, tc.want)
			}
		})
	}
}

// unblockFIFO opens p for writing, if it is a FIFO with a reader waiting,
// and closes it, so that the reader gets end of file.
func unblockFIFO(p string) {
	if f, err := os.OpenFile(p, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
		_ = f.Close()
	}
}

// lockedBuffer is a bytes.Buffer safe for a logger's writes while a test
// reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
