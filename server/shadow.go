package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/internal/membudget"
	"github.com/verdict-pdp/verdict/server/decisionlog"
)

// Defaults for ShadowOptions fields left zero.
const (
	DefaultShadowQueue      = 1024
	DefaultShadowQueueBytes = 32 << 20
	DefaultShadowDrain      = 2 * time.Second
)

// ShadowEngine evaluates whole input documents against a candidate policy;
// *authz.Engine is one. Implementations must be safe for concurrent use.
type ShadowEngine interface {
	EvaluateInput(ctx context.Context, input any, opts authz.InputOptions) (authz.Decision, error)
	Status() authz.Status
}

var _ ShadowEngine = (*authz.Engine)(nil)

// ShadowOptions configures a Shadow. Every zero value means the documented
// default; only Engine is required.
type ShadowOptions struct {
	// Engine holds the candidate policy (required). Its own source loads it
	// (run elsewhere, as for the live engine).
	Engine ShadowEngine
	// Source, when set, is the candidate's source, reported in /v1/status.
	Source Source
	// Sample is the share of decisions the candidate also answers, in
	// (0, 1]. Default 1: every decision made by policy.
	Sample float64
	// Queue bounds the decisions waiting for the candidate; a sampled
	// decision that finds it full is not shadowed (counted "skipped").
	// Default 1024.
	Queue int
	// MaxQueueBytes bounds the estimated memory (decisionlog's
	// Record.MemoryBytes) of the decisions waiting for the candidate, which
	// hold their inputs; a sampled decision that would take it over is not
	// shadowed (counted "skipped"). Default DefaultShadowQueueBytes.
	MaxQueueBytes int64
	// Drain bounds how long Run keeps evaluating queued decisions after its
	// context is done; what is left is logged unshadowed. Default 2 s.
	Drain time.Duration
	// DecisionLog receives the records of shadowed decisions once the
	// candidate has answered, with a Shadow answer on those that flipped;
	// it should be the server's. Nil logs none.
	DecisionLog DecisionLog
	// Logger receives the candidate's flips at debug level; nil discards
	// them.
	Logger *slog.Logger
}

// ShadowOutcome is how a shadowed decision compared with the live one.
type ShadowOutcome int

// The outcomes, as verdict_shadow_decisions_total labels them.
const (
	ShadowSame        ShadowOutcome = iota // same allow or deny
	ShadowAllowToDeny                      // live allowed, candidate denies
	ShadowDenyToAllow                      // live denied, candidate allows
	ShadowError                            // the candidate failed (policy_error)
	ShadowSkipped                          // sampled but not evaluated: queue full, candidate not ready, shutdown
	numShadowOutcomes
)

var shadowOutcomeNames = [numShadowOutcomes]string{"same", "allow_to_deny", "deny_to_allow", "error", "skipped"}

// String is the outcome's label: same, allow_to_deny, deny_to_allow, error
// or skipped.
func (o ShadowOutcome) String() string {
	if o < 0 || o >= numShadowOutcomes {
		return fmt.Sprintf("ShadowOutcome(%d)", int(o))
	}
	return shadowOutcomeNames[o]
}

// Shadow evaluates a candidate policy beside the live one, on a sampled
// share of decisions, and reports where they differ; it never changes an
// answer. The request path only offers a decision's record to a bounded
// queue (never waiting); Run evaluates the queued inputs against the
// candidate, counts the outcomes, and passes each record on to the decision
// log, with the candidate's answer attached when it flipped. Build it with
// NewShadow and hand it to the server in Options.Shadow.
type Shadow struct {
	engine ShadowEngine
	source Source
	sample float64
	drain  time.Duration
	dlog   DecisionLog
	log    *slog.Logger
	queue  chan queuedRecord
	mem    *membudget.Budget
	// stop is held for reading by offer while it queues, and for writing
	// by Run when it stops taking decisions; stopped is then true, and
	// offer declines (the caller logs the record itself).
	stop    sync.RWMutex
	stopped bool
	counts  [numShadowOutcomes]atomic.Uint64
}

// NewShadow validates opts and builds a Shadow. It starts nothing.
func NewShadow(opts ShadowOptions) (*Shadow, error) {
	if opts.Engine == nil {
		return nil, fmt.Errorf("%w: shadow: Engine is required", ErrOptions)
	}
	if opts.Sample < 0 || opts.Sample > 1 || math.IsNaN(opts.Sample) {
		return nil, fmt.Errorf("%w: shadow: Sample %v is not in (0, 1]", ErrOptions, opts.Sample)
	}
	if opts.Queue < 0 || opts.Drain < 0 || opts.MaxQueueBytes < 0 {
		return nil, fmt.Errorf("%w: shadow: negative Queue, MaxQueueBytes or Drain", ErrOptions)
	}
	sh := &Shadow{
		engine: opts.Engine,
		source: opts.Source,
		sample: opts.Sample,
		drain:  opts.Drain,
		dlog:   opts.DecisionLog,
		log:    opts.Logger,
		queue:  make(chan queuedRecord, cmp.Or(opts.Queue, DefaultShadowQueue)),
		mem:    membudget.New(cmp.Or(opts.MaxQueueBytes, DefaultShadowQueueBytes)),
	}
	if sh.sample == 0 {
		sh.sample = 1
	}
	if sh.drain == 0 {
		sh.drain = DefaultShadowDrain
	}
	if sh.log == nil {
		sh.log = slog.New(slog.DiscardHandler)
	}
	return sh, nil
}

// Count returns how many sampled decisions had outcome o.
func (sh *Shadow) Count(o ShadowOutcome) uint64 {
	if o < 0 || o >= numShadowOutcomes {
		return 0
	}
	return sh.counts[o].Load()
}

// offer hands a decision made by policy (its record carries the input) to
// the shadow, when sampled. It reports whether the shadow took the record
// (and will log it); when not, the caller logs it. It never blocks.
func (sh *Shadow) offer(rec decisionlog.Record) bool {
	if rec.Input == nil || sh.sample < 1 && rand.Float64() >= sh.sample {
		return false
	}
	sh.stop.RLock()
	defer sh.stop.RUnlock()
	if sh.stopped {
		sh.counts[ShadowSkipped].Add(1)
		return false
	}
	q := queuedRecord{rec: rec, bytes: rec.MemoryBytes()}
	if !sh.mem.Take(q.bytes) {
		sh.counts[ShadowSkipped].Add(1)
		return false
	}
	select {
	case sh.queue <- q:
		return true
	default:
		sh.mem.Give(q.bytes)
		sh.counts[ShadowSkipped].Add(1)
		return false
	}
}

// skip counts a decision the shadow saw and could not compare (one cut
// short, with no answer of the live policy's).
func (sh *Shadow) skip() { sh.counts[ShadowSkipped].Add(1) }

// queuedRecord is a decision waiting for the candidate, with its estimated
// memory.
type queuedRecord struct {
	rec   decisionlog.Record
	bytes int64
}

// take returns q's record and gives its memory back to the queue.
func (sh *Shadow) take(q queuedRecord) decisionlog.Record {
	sh.mem.Give(q.bytes)
	return q.rec
}

// Run evaluates queued decisions until ctx is done, then keeps evaluating
// what is queued for up to ShadowOptions.Drain and logs the rest
// unshadowed (counted "skipped"), and returns nil. Stop it after the
// server (so the last decisions are queued) and before the decision log (so
// their records are written). Run may be called once.
func (sh *Shadow) Run(ctx context.Context) error {
	for {
		select {
		case q := <-sh.queue:
			sh.compare(ctx, sh.take(q))
		case <-ctx.Done():
			sh.stop.Lock() // no more offers: what is queued is all there will be
			sh.stopped = true
			sh.stop.Unlock()
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sh.drain)
			defer cancel()
			for {
				select {
				case q := <-sh.queue:
					rec := sh.take(q)
					if dctx.Err() != nil {
						sh.counts[ShadowSkipped].Add(1)
						sh.pass(rec)
						continue
					}
					sh.compare(dctx, rec)
				default:
					return nil
				}
			}
		}
	}
}

// compare evaluates rec's input against the candidate, as of the live
// decision's time, counts the outcome, and logs rec.
func (sh *Shadow) compare(ctx context.Context, rec decisionlog.Record) {
	d, err := sh.engine.EvaluateInput(context.WithoutCancel(ctx), rec.Input, authz.InputOptions{Time: rec.Time})
	var o ShadowOutcome
	switch {
	case errors.Is(err, authz.ErrNotReady):
		o = ShadowSkipped
	case err != nil && rec.Error != "":
		o = ShadowSame // both failed: both deny
	case err != nil:
		o = ShadowError
	case rec.Allow && !d.Allow:
		o = ShadowAllowToDeny
	case !rec.Allow && d.Allow:
		o = ShadowDenyToAllow
	default:
		o = ShadowSame
	}
	sh.counts[o].Add(1)
	if o == ShadowError || o == ShadowAllowToDeny || o == ShadowDenyToAllow {
		rec.Shadow = &decisionlog.Shadow{Revision: d.Revision, Allow: d.Allow, Reasons: d.Reasons}
		if err != nil {
			_, rec.Shadow.Error = answer(decideAPI, d, err, true)
		}
		sh.log.LogAttrs(ctx, slog.LevelDebug, "shadow policy flipped a decision",
			slog.String("decision_id", rec.DecisionID), slog.String("outcome", o.String()),
			slog.String("shadow_revision", d.Revision))
	}
	sh.pass(rec)
}

// pass hands rec on to the decision log.
func (sh *Shadow) pass(rec decisionlog.Record) {
	if sh.dlog != nil {
		sh.dlog.Log(rec)
	}
}

// ShadowStatus is the shadow policy's state in /v1/status.
type ShadowStatus struct {
	// Ready is true once the candidate has loaded.
	Ready bool `json:"ready"`
	// Revision and Origin name the candidate snapshot now shadowing.
	Revision string    `json:"revision,omitempty"`
	Origin   string    `json:"origin,omitempty"`
	LoadedAt time.Time `json:"loaded_at,omitzero"`
	// LastError is the candidate's most recent load failure.
	LastError string `json:"last_error,omitempty"`
	// Sample is the share of decisions shadowed.
	Sample float64 `json:"sample"`
	// Queued is how many decisions wait for the candidate now.
	Queued int `json:"queued"`
	// Outcomes counts shadowed decisions by outcome.
	Outcomes map[string]uint64 `json:"outcomes"`
}

// Status returns the shadow's state. Safe for concurrent use.
func (sh *Shadow) Status() ShadowStatus {
	st := sh.engine.Status()
	out := ShadowStatus{Ready: st.Ready, Revision: st.Revision, Origin: st.Origin, LoadedAt: st.LoadedAt,
		LastError: st.LastError, Sample: sh.sample, Queued: len(sh.queue),
		Outcomes: make(map[string]uint64, numShadowOutcomes)}
	if sh.source != nil {
		if ss := sh.source.Status(); ss.LastError != "" {
			out.LastError = ss.LastError
		}
	}
	for o := range numShadowOutcomes {
		out.Outcomes[o.String()] = sh.Count(o)
	}
	return out
}
