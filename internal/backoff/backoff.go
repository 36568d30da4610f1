// Package backoff decides how long a poller waits before its next attempt
// and waits that long: exponential backoff after failures, jitter so that
// replicas started together do not act in step, and a wait that ends early
// when its context is done or someone asks for an attempt now.
//
// It is the timing shared by Verdict's pollers (remote bundles, remote key
// sets). It holds no state: Exponential is a value, and the caller counts
// its failures in a row, which is one int in its loop. Waits take an
// injectable timer so that tests step through them without sleeping.
package backoff

import (
	"context"
	"math"
	"math/rand/v2"
	"time"
)

// Exponential is exponential backoff with jitter: the wait after the n-th
// failure in a row is Min doubled n-1 times, at most Max, then spread by
// up to ±Jitter of its length. It is a value, safe for concurrent use.
// The zero value never waits.
type Exponential struct {
	// Min is the wait after the first failure.
	Min time.Duration
	// Max caps the doubling; a Max below Min means Min.
	Max time.Duration
	// Jitter spreads each wait uniformly by up to ±Jitter of its length,
	// after the cap (so a wait may exceed Max by that much); 0 means none.
	// It should be in [0, 1).
	Jitter float64
}

// Delay returns the wait after n failures in a row; n below 1 counts as 1.
func (e Exponential) Delay(n int) time.Duration {
	ceiling := max(e.Max, e.Min)
	d := e.Min
	for i := 1; i < n && d < ceiling; i++ {
		if d > ceiling/2 {
			d = ceiling
			break
		}
		d *= 2
	}
	return Spread(min(d, ceiling), e.Jitter, e.Jitter)
}

// Spread returns d scaled by a uniformly random factor in
// [1-below, 1+above]: Spread(d, j, j) jitters both ways, Spread(d, j, 0)
// only shortens (for a wait that must not run past a deadline, such as a
// cache lifetime). Fractions at or below 0, or NaN, leave that side
// alone (a NaN scaled every wait to the longest Duration). A
// result past what a Duration holds is the longest Duration, never a
// wrapped negative one (a server's Retry-After may ask for centuries). It
// is safe for concurrent use.
func Spread(d time.Duration, below, above float64) time.Duration {
	if !(below > 0) { // NaN too
		below = 0
	}
	if !(above > 0) {
		above = 0
	}
	if below == 0 && above == 0 {
		return d
	}
	f := 1 - below + rand.Float64()*(below+above)
	// float64(math.MaxInt64) is 2^63, itself past the range: a product at
	// or over it does not convert.
	if s := float64(d) * f; s < math.MaxInt64 {
		return time.Duration(s)
	}
	return math.MaxInt64
}

// Wait waits d, and reports true when the caller should make its next
// attempt: d has passed, or wake received a value (someone asked for an
// attempt now; a nil wake never does). It reports false as soon as ctx is
// done. after is the timer: after(d) returns a channel that receives once
// d has passed; nil means a real timer, stopped before Wait returns, so an
// early return leaves nothing behind. Tests inject after to step through
// waits without sleeping. Wait starts no goroutine.
func Wait(ctx context.Context, d time.Duration, after func(time.Duration) <-chan time.Time, wake <-chan struct{}) bool {
	var fire <-chan time.Time
	if after != nil {
		fire = after(d)
	} else {
		t := time.NewTimer(d)
		defer t.Stop()
		fire = t.C
	}
	select {
	case <-ctx.Done():
		return false
	case <-fire:
	case <-wake:
	}
	return true
}
