package filewatch_test

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/internal/filewatch"
)

// TestLoopWithoutWatcherRechecks: with no watcher (none could be set up),
// the loop still reloads every Recheck, and a failed reload is retried.
func TestLoopWithoutWatcherRechecks(t *testing.T) {
	var reloads atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	l := filewatch.Loop{Debounce: time.Millisecond, Retry: time.Millisecond, Recheck: 5 * time.Millisecond, What: "test", Log: slog.New(slog.DiscardHandler)}
	go func() {
		done <- l.Run(ctx, nil, nil, func() bool { return reloads.Add(1)%2 == 0 }, false)
	}()
	for deadline := time.Now().Add(10 * time.Second); reloads.Load() < 6; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d reloads", reloads.Load())
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
