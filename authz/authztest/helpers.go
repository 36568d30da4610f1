package authztest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// SyncBuffer is a bytes.Buffer safe for concurrent use: the output of a
// process or a goroutine that a test reads while it is still being
// written. The zero value is an empty buffer ready to use.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p to the buffer.
func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// WriteFile writes content to path with mode 0644, creating the parent
// directories; a failure fails the test. Tests write configuration,
// policies and certificates into t.TempDir() with it.
func WriteFile(tb testing.TB, path, content string) {
	tb.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		tb.Fatal(err)
	}
}

// StopTimeout bounds how long the stop function of Start waits for Run to
// return.
const StopTimeout = 10 * time.Second

// Start runs run (a component's blocking Run method) in a goroutine with a
// context that stop cancels. stop waits up to StopTimeout for run to return
// and returns its error (an error of its own when run does not return);
// calling it again returns the same. A cleanup calls stop when the test
// ends, discarding the error: a test that cares calls stop itself.
func Start(tb testing.TB, run func(context.Context) error) (stop func() error) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(StopTimeout):
				err = fmt.Errorf("authztest: Run did not return within %v of its context's end", StopTimeout)
			}
		})
		return err
	}
	tb.Cleanup(func() { _ = stop() })
	return stop
}
