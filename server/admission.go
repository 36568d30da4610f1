package server

import (
	"context"
	"errors"
	"runtime"
	"time"
)

// Decisions are admitted a few at a time. The work of one (decoding its
// body into OPA values, evaluating, writing the answer) is CPU-bound, so
// more at once than a few per core buys no throughput, only memory: a
// 64 KiB body shaped for it decodes to tens of megabytes, and a thousand
// clients asking at once took a process past 4 GiB. A request waits for a
// slot after its body is read (a client sending its body slowly holds no
// slot) and before it is decoded, holds it until its answer is written,
// and is answered 503 overloaded when none frees within admissionWait.

// admissionWait is how long a request waits for a decision slot before it
// is answered 503 overloaded (Retry-After: 1).
const admissionWait = time.Second

// errOverloaded is the error of a request that found no decision slot.
var errOverloaded = errors.New("overloaded")

// DefaultMaxConcurrentDecisions is Limits.MaxConcurrentDecisions' default:
// four per core the process may use, and at least eight.
func DefaultMaxConcurrentDecisions() int { return max(8, 4*runtime.GOMAXPROCS(0)) }

// admission hands out decision slots.
type admission struct {
	slots   chan struct{}
	wait    time.Duration
	release func() // gives a slot back; made once (a method value would allocate on every admit)
}

func newAdmission(n int) *admission {
	a := &admission{slots: make(chan struct{}, n), wait: admissionWait}
	a.release = func() { <-a.slots }
	return a
}

// admit takes a decision slot, waiting up to a.wait, and returns the
// function that gives it back. It fails with errOverloaded when none
// frees in time — before ctx's deadline, when it has one (Envoy gives
// ext_authz 200 ms by default): a caller that hears nothing back may let
// the request through (failure_mode_allow) — or when the client goes away
// first.
func (a *admission) admit(ctx context.Context) (release func(), err error) {
	select {
	case a.slots <- struct{}{}:
		return a.release, nil
	default:
	}
	wait := a.wait
	if dl, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(dl)-deadlineMargin)
	}
	overloaded := frontErr(errOverloaded, "too many decisions at once (limits.max_concurrent_decisions): try again")
	if wait <= 0 {
		return nil, overloaded
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case a.slots <- struct{}{}:
		return a.release, nil
	case <-t.C:
		return nil, overloaded
	case <-ctx.Done():
		return nil, overloaded
	}
}

// deadlineMargin is how long before its caller's deadline a request that
// found no slot is answered overloaded, for the answer to arrive in time.
const deadlineMargin = 20 * time.Millisecond

// admit takes a decision slot for a request through a, counting the
// requests shed.
func (s *Server) admit(ctx context.Context, a api) (release func(), err error) {
	release, err = s.admission.admit(ctx)
	if errors.Is(err, errOverloaded) {
		s.metrics.shed.WithLabelValues(string(a)).Inc()
	}
	return release, err
}
