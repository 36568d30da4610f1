package authztest_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/verdict-pdp/verdict/authz/authztest"
)

func TestSyncBuffer(t *testing.T) {
	var b authztest.SyncBuffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				_, _ = b.Write([]byte("x"))
				_ = b.String()
			}
		})
	}
	wg.Wait()
	if got := b.String(); got != strings.Repeat("x", 800) {
		t.Errorf("got %d bytes, want 800", len(got))
	}
}

func TestWriteFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b", "c.txt")
	authztest.WriteFile(t, path, "hello")
	got, err := os.ReadFile(path)
	if err != nil || string(got) != "hello" {
		t.Errorf("read back %q, %v", got, err)
	}
}

func TestStart(t *testing.T) {
	errStopped := errors.New("stopped")
	stop := authztest.Start(t, func(ctx context.Context) error {
		<-ctx.Done()
		return errStopped
	})
	if err := stop(); err != errStopped {
		t.Errorf("stop = %v, want Run's error", err)
	}
	if err := stop(); err != errStopped {
		t.Errorf("second stop = %v, want the same error", err)
	}
	stop = authztest.Start(t, func(context.Context) error { return nil })
	if err := stop(); err != nil {
		t.Errorf("stop = %v, want nil", err)
	}
}
