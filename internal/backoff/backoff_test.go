package backoff_test

import (
	"context"
	"math"
	"testing"
	"testing/synctest"
	"time"

	"github.com/verdict-pdp/verdict/internal/backoff"
)

func TestDelay(t *testing.T) {
	tests := []struct {
		name string
		e    backoff.Exponential
		n    []int
		want []time.Duration
	}{
		{name: "doubles up to the cap", e: backoff.Exponential{Min: time.Second, Max: 4 * time.Second},
			n: []int{1, 2, 3, 4, 5}, want: []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second, 4 * time.Second}},
		{name: "cap not a power of two", e: backoff.Exponential{Min: time.Second, Max: time.Minute},
			n: []int{6, 7, 8}, want: []time.Duration{32 * time.Second, time.Minute, time.Minute}},
		{name: "n below 1 counts as 1", e: backoff.Exponential{Min: time.Second, Max: time.Minute},
			n: []int{0, -3}, want: []time.Duration{time.Second, time.Second}},
		{name: "max below min", e: backoff.Exponential{Min: 3 * time.Second, Max: time.Second},
			n: []int{1, 10}, want: []time.Duration{3 * time.Second, 3 * time.Second}},
		{name: "no overflow", e: backoff.Exponential{Min: time.Second, Max: math.MaxInt64},
			n: []int{64, 1000, math.MaxInt}, want: []time.Duration{math.MaxInt64, math.MaxInt64, math.MaxInt64}},
		{name: "zero value", n: []int{1, 5}, want: []time.Duration{0, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for i, n := range tc.n {
				if got := tc.e.Delay(n); got != tc.want[i] {
					t.Errorf("Delay(%d) = %s, want %s", n, got, tc.want[i])
				}
			}
		})
	}
}

func TestDelayJitter(t *testing.T) {
	e := backoff.Exponential{Min: time.Second, Max: 8 * time.Second, Jitter: 0.1}
	seen := map[bool]bool{}
	for range 1000 {
		got := e.Delay(10)
		if got < 7200*time.Millisecond || got > 8800*time.Millisecond {
			t.Fatalf("Delay(10) = %s, want 8s ±10%%", got)
		}
		seen[got > 8*time.Second] = true
	}
	if !seen[true] || !seen[false] {
		t.Errorf("jitter went one way only: %v", seen)
	}
}

func TestSpread(t *testing.T) {
	const d = 10 * time.Minute
	tests := []struct {
		name          string
		below, above  float64
		lo, hi        time.Duration
		wantUnchanged bool
	}{
		{name: "both ways", below: 0.1, above: 0.1, lo: 9 * time.Minute, hi: 11 * time.Minute},
		{name: "shorten only", below: 0.1, lo: 9 * time.Minute, hi: d},
		{name: "lengthen only", above: 0.5, lo: d, hi: 15 * time.Minute},
		{name: "none", wantUnchanged: true},
		{name: "negative is none", below: -1, above: -1, wantUnchanged: true},
		// A NaN made every wait the longest Duration: a poller or uploader
		// given one never tried again.
		{name: "NaN is none", below: math.NaN(), above: math.NaN(), wantUnchanged: true},
		{name: "NaN below, shorten none", below: math.NaN(), above: 0.5, lo: d, hi: 15 * time.Minute},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for range 1000 {
				got := backoff.Spread(d, tc.below, tc.above)
				if tc.wantUnchanged && got != d {
					t.Fatalf("Spread = %s, want %s", got, d)
				}
				if !tc.wantUnchanged && (got < tc.lo || got > tc.hi) {
					t.Fatalf("Spread = %s, want within [%s, %s]", got, tc.lo, tc.hi)
				}
			}
		})
	}
}

// TestSpreadSaturates: a wait spread past what a Duration holds is the
// longest Duration; it wrapped to a negative one, so that a client retried
// at once where a server's Retry-After asked for centuries.
func TestSpreadSaturates(t *testing.T) {
	for _, d := range []time.Duration{math.MaxInt64, math.MaxInt64 / 10 * 9} {
		for range 1000 {
			if got := backoff.Spread(d, 0, 0.2); got < d {
				t.Fatalf("Spread(%d, 0, 0.2) = %d, want at least %d", d, got, d)
			}
			if got := backoff.Spread(d, 0.2, 0.2); got < d/10*8 {
				t.Fatalf("Spread(%d, 0.2, 0.2) = %d, want at least %d", d, got, d/10*8)
			}
		}
	}
}

func TestWait(t *testing.T) {
	fired := func(time.Duration) <-chan time.Time {
		c := make(chan time.Time, 1)
		c <- time.Time{}
		return c
	}
	never := func(time.Duration) <-chan time.Time { return nil }
	woken := make(chan struct{}, 1)
	woken <- struct{}{}
	done, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name  string
		ctx   context.Context
		after func(time.Duration) <-chan time.Time
		wake  chan struct{}
		want  bool
	}{
		{name: "timer fires", ctx: context.Background(), after: fired, want: true},
		{name: "woken", ctx: context.Background(), after: never, wake: woken, want: true},
		{name: "context done", ctx: done, after: never, want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := backoff.Wait(tc.ctx, time.Hour, tc.after, tc.wake); got != tc.want {
				t.Errorf("Wait = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestWaitRealTimer runs the real timer on synctest's fake clock: it
// waits exactly d, and an early return (context done) leaves no timer or
// goroutine behind (synctest.Test fails on a goroutine left blocked).
func TestWaitRealTimer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		if !backoff.Wait(t.Context(), time.Minute, nil, nil) {
			t.Fatal("Wait = false, want true")
		}
		if got := time.Since(start); got != time.Minute {
			t.Errorf("waited %s, want 1m", got)
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		start = time.Now()
		if backoff.Wait(ctx, time.Hour, nil, nil) {
			t.Fatal("Wait after the context ended = true, want false")
		}
		if got := time.Since(start); got != time.Second {
			t.Errorf("returned after %s, want 1s (the context's end)", got)
		}
	})
}
