package server

import (
	"context"
	"errors"
	"runtime"
	"time"

	"github.com/verdict-pdp/verdict/internal/membudget"
)

// Decisions are admitted a few at a time. The work of one (decoding its
// body into OPA values, evaluating, writing the answer) is CPU-bound, so
// more at once than a few per core buys no throughput, only memory: a
// 64 KiB body shaped for it decodes to tens of megabytes, and a thousand
// clients asking at once took a process past 4 GiB. A request waits for a
// slot after its body is read (a client sending its body slowly holds no
// slot) and before it is decoded, holds it until its answer is written,
// and is answered 503 overloaded when none frees within admissionWait.
//
// The bodies being read are bounded too, in bytes: an HTTP/2 connection
// carries MaxStreams requests at once, so without a bound the bodies of
// max_connections connections could hold gigabytes before any of them
// asks for a slot. A body holds nothing while it waits for its first byte,
// and its first bodyProbe bytes (most bodies) are read outside the budget,
// like its goroutine and headers; a longer one reserves the whole capacity
// of the buffer it is read into, doubled as it fills, before it reads into
// it: a body holds at most twice what its client has sent (one declared
// large but sent slowly holds what was sent, not its length), and gives it
// back once it is decoded. Its first reservation waits for bytes as a
// request waits for a slot; a later one does not wait (bodies each holding
// a part and waiting for the rest would wait on each other): a body that
// finds the budget spent is answered 503 overloaded.

// admissionWait is how long a request waits for a decision slot before it
// is answered 503 overloaded (Retry-After: 1).
const admissionWait = time.Second

// errOverloaded is the error of a request that found no decision slot.
var errOverloaded = errors.New("overloaded")

// DefaultMaxConcurrentDecisions is Limits.MaxConcurrentDecisions' default:
// four per core the process may use, and at least eight.
func DefaultMaxConcurrentDecisions() int { return max(8, 4*runtime.GOMAXPROCS(0)) }

// bodyProbe is how many bytes of a body are read, into a pooled probe of
// its own, before it reserves any of the body budget: a body with a token
// and an action fits, and it costs a request little beside its goroutine
// and stream (which are not counted either). An HTTP/2 flood of stalled
// bodies fills a probe a stream (see BENCHMARKS.md).
const bodyProbe = 4 << 10

// DefaultMaxBodyBytesInFlight is Limits.MaxBodyBytesInFlight's default:
// 64 MiB, which a thousand HTTP/1.1 bodies of the default 64 KiB fit.
const DefaultMaxBodyBytesInFlight = 64 << 20

// admission hands out decision slots and the bytes of the body budget.
type admission struct {
	slots   chan struct{}
	wait    time.Duration
	release func() // gives a slot back; made once (a method value would allocate on every admit)

	bodies *membudget.Budget
}

func newAdmission(slots int, bodyBytes int64) *admission {
	a := &admission{slots: make(chan struct{}, slots), wait: admissionWait, bodies: membudget.New(bodyBytes)}
	a.release = func() { <-a.slots }
	return a
}

// patience is how long a request may wait for a slot or for body bytes:
// a.wait, or until deadlineMargin before ctx's deadline when that is
// sooner.
func (a *admission) patience(ctx context.Context) time.Duration {
	wait := a.wait
	if dl, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(dl)-deadlineMargin)
	}
	return wait
}

// reserveBody takes n bytes of the body budget for a body's first
// reservation (first), waiting for them as admit waits, or for a later
// one, without waiting. It fails with errOverloaded when the bytes are not free in
// time or ctx ends.
func (a *admission) reserveBody(ctx context.Context, n int64, first bool) error {
	if a.bodies.Take(n) || first && waitFor(ctx, func() bool { return a.bodies.TakeWithin(ctx, n, time.Now().Add(a.patience(ctx))) }) {
		return nil
	}
	return frontErr(errOverloaded, "too many request bodies being read at once (limits.max_body_bytes_in_flight): try again")
}

// waitFor runs wait, a wait for room others hold (body bytes, a decision
// slot), as a wait of the request's call (see limitListener): a connection
// whose calls all wait, for their clients or for room, is not busy.
// Otherwise clients holding the room with slow bodies, and keeping one
// call waiting for it on each connection, shut new clients out.
func waitFor(ctx context.Context, wait func() bool) bool {
	lc := connOf(ctx)
	lc.callWaiting()
	defer lc.callResumed()
	return wait()
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
	wait := a.patience(ctx)
	overloaded := frontErr(errOverloaded, "too many decisions at once (limits.max_concurrent_decisions): try again")
	if wait <= 0 {
		return nil, overloaded
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	lc := connOf(ctx) // a wait for room, as in waitFor
	lc.callWaiting()
	defer lc.callResumed()
	select {
	case a.slots <- struct{}{}:
		return a.release, nil
	case <-t.C:
		return nil, overloaded
	case <-ctx.Done():
		return nil, overloaded
	}
}

// heldSlot is a decision slot a handler holds: giveBack gives it back
// once, before the answer is written (a client that takes its answer
// slowly, or not at all, would otherwise hold it for the write timeout)
// and, deferred, on any other way out.
type heldSlot struct {
	release func()
}

func (h *heldSlot) giveBack() {
	if h.release != nil {
		h.release()
		h.release = nil
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
