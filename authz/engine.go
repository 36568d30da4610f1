package authz

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	opaprint "github.com/open-policy-agent/opa/v1/topdown/print"
	"go.opentelemetry.io/otel/trace"

	"github.com/verdict-pdp/verdict/authz/token"
	"github.com/verdict-pdp/verdict/bundles"
	"github.com/verdict-pdp/verdict/internal/oteltrace"
)

// Defaults for Options fields left zero.
const (
	DefaultEntrypoint  = "authz"
	DefaultEvalTimeout = 500 * time.Millisecond
	// DefaultTokenCacheBytes bounds the verified-token cache: 64 MiB of
	// estimated memory, about 14,000 tokens of a dozen short claims (the
	// estimate runs above the heap they take, by 20-40 %).
	DefaultTokenCacheBytes = 64 << 20
	// DefaultDecisionCacheBytes bounds each snapshot's decision cache:
	// 16 MiB of estimated memory, about 20,000 decisions with a reason
	// and four headers.
	DefaultDecisionCacheBytes = 16 << 20
)

// Options configures an Engine. Every zero value means the documented default.
type Options struct {
	// Entrypoint is the policy package that defines allow, reasons and
	// headers. Default "authz".
	Entrypoint string
	// Tokens configures bearer-token verification: trusted issuers, leeway,
	// maximum size. With no issuers, every presented token is rejected
	// ("token: bad_issuer"); requests without a token are still evaluated as
	// anonymous.
	Tokens token.Options
	// TokenCacheBytes bounds the verified-token cache, in bytes of
	// estimated memory (each token's claims as OPA values, its key and
	// bookkeeping). Default DefaultTokenCacheBytes (64 MiB); negative
	// disables the cache. A token enters a small probationary part of the
	// cache when first verified and the main part on its second use, so
	// tokens used once never displace tokens in use. An entry is kept only
	// when it fits in 1/160 of the bound (a fifth of one of 32 shards):
	// below about 1 MiB the cache holds few tokens or none.
	TokenCacheBytes int
	// TokenCacheSize, when positive, also bounds the verified-token cache
	// in entries. Zero means no bound in entries (TokenCacheBytes alone);
	// negative disables the cache.
	TokenCacheSize int
	// DecisionCacheBytes bounds each snapshot's decision cache, in bytes of
	// estimated memory (key, reasons, headers, bookkeeping). Default
	// DefaultDecisionCacheBytes (16 MiB); negative disables it. Decisions
	// are keyed on the input values the policy reads, so a new token for a
	// known subject is answered from the cache (see Status.DecisionCache
	// and Decide); like tokens, decisions enter the main part of the
	// cache on their second use.
	DecisionCacheBytes int
	// DecisionCacheSize, when positive, also bounds each snapshot's
	// decision cache in entries. Zero means no bound in entries
	// (DecisionCacheBytes alone); negative disables it.
	DecisionCacheSize int
	// Evaluator chooses how policies are evaluated: EvaluatorAuto (the
	// default, "" too) runs every snapshot the compiled evaluator supports
	// on it and the rest on OPA's topdown; EvaluatorTopdown always uses
	// topdown; EvaluatorCompiled refuses to load a snapshot the compiled
	// evaluator does not support. Explanations always use topdown.
	Evaluator Evaluator
	// EvalTimeout bounds one policy evaluation. Default 500ms. The
	// compiled evaluator has the first half; when it runs out, topdown
	// evaluates with the rest.
	EvalTimeout time.Duration
	// EvalHeapLimit, when positive, stops an evaluation still running
	// after 10 ms (and looks again every 10 ms) once the Go heap's live
	// bytes, as of the last garbage collection, are past it: the decision
	// is an ErrPolicy refusal (HeapLimitDetail, cause ErrHeapLimit),
	// counted in Status.HeapStops, and the stopped evaluation collects
	// the garbage it left before it answers (the reading is as of the last
	// collection). It bounds what policies that let a request size a
	// built-in function's result (numbers.range(1, input.n)) can make the
	// process hold: every evaluation running long then is stopped, a
	// legitimate one too. Set it well above the heap the process holds
	// at rest (caches included) and below its memory limit. It is not a
	// hard bound: the heap passes it by what the evaluations running
	// allocate before they are stopped and the collector frees it (one
	// step of numbers.range doubles an array), and objects allocated
	// while the collector marks count live, so a process allocating very
	// fast reads higher than it holds. Zero means no limit.
	EvalHeapLimit int64
	// KeepInput sets Decision.Input on every decision, for a decision log
	// that records inputs. It costs building the document for decisions
	// answered from the decision cache, which otherwise need none.
	KeepInput bool
	// Print receives the output of the policy's print() calls, with the
	// call's location ("file:row"); nil discards it. Decisions answered from
	// the decision cache print nothing.
	Print func(ctx context.Context, location, message string)
	// RequireTests makes Load run a snapshot's own Rego tests (RunTests)
	// after it compiles: a snapshot with a failing test, or with no tests,
	// is refused like one that does not compile.
	RequireTests bool
	// Now is the clock; nil means time.Now. Token checks use Tokens.Now,
	// which defaults to this clock.
	Now func() time.Time
	// NoNetwork refuses, at Load, a policy that calls a built-in function
	// reaching the network (http.send, net.lookup_ip_addr, and
	// json.match_schema and json.verify_schema, whose $refs fetch URLs and
	// read files), as a problem
	// at the call (code verdict_network_error); its tests run under
	// RequireTests likewise. For running policies one does not trust,
	// such as a pull request's.
	NoNetwork bool
	// Logger receives "policy loaded" for each successful Load (with the
	// evaluator and the decision cache it chose) and recovered panics; nil
	// discards them. A failed Load is returned, not logged. Decisions are
	// not logged here (that is the decision log's job).
	Logger *slog.Logger
	// TracerProvider, when set, traces each decision's steps as
	// OpenTelemetry spans (verdict.verify_token, verdict.evaluate; see
	// SpanVerifyToken), children of the span in Decide's context. They
	// carry no token, claim or input value. Nil, or a no-op provider, traces
	// nothing and costs nothing.
	TracerProvider trace.TracerProvider
}

// Engine decides requests against the current policy snapshot. Build it with
// New; it is safe for concurrent use. Decide never blocks on Load: the
// compiled snapshot sits behind an atomic pointer, each decision reads it
// once, and Load compiles outside any lock shared with Decide.
//
// The zero Engine, and a nil *Engine, are never ready: they decide every
// request as an ErrNotReady refusal (Decide, Pin, Middleware), refuse to
// Load, and report a Status that is not Ready. They never panic.
type Engine struct {
	entry       string
	verifier    *token.Verifier
	cache       *expiringCache[*verifiedToken]
	decisions   cacheLimits // decision cache bounds per snapshot; no bytes disables
	evaluator   Evaluator
	evalTimeout time.Duration
	heapLimit   int64         // Options.EvalHeapLimit; 0: none
	tests       bool          // Options.RequireTests
	noNetwork   bool          // Options.NoNetwork
	keepInput   bool          // Options.KeepInput
	print       opaprint.Hook // Options.Print; nil when none
	now         func() time.Time
	log         *slog.Logger
	tracer      trace.Tracer // nil when not tracing

	current atomic.Pointer[compiled]
	// forgets counts ForgetKeys sweeps: a verification that overlapped one is
	// not cached, since it may have used the key being forgotten.
	forgets atomic.Uint64
	// fallbacks counts evaluations the compiled evaluator left to topdown.
	fallbacks atomic.Uint64
	// heapStops counts evaluations stopped by Options.EvalHeapLimit;
	// collecting is set while one of them collects garbage, and
	// stopsToCollect counts the stops it has yet to collect for;
	// heapWarned is when the heap was last said to be past the limit at
	// rest (Unix nanoseconds).
	heapStops      atomic.Uint64
	collecting     atomic.Bool
	stopsToCollect atomic.Int64
	heapWarned     atomic.Int64
	// Cache lookups, for Status: token (verified-token cache) and decision
	// (every snapshot's decision cache), each a hit or a miss.
	tokenHits, tokenMisses       atomic.Uint64
	decisionHits, decisionMisses atomic.Uint64
	tokenCacheBytes              int // the verified-token cache's bound; 0 when off

	loadMu sync.Mutex // serialises Load: compiles run one at a time
	mu     sync.Mutex // guards status, held only briefly, never while compiling
	status Status
}

var _ bundles.Sink = (*Engine)(nil)

// New builds an Engine. It has no policy until the first successful Load;
// until then Decide denies with ErrNotReady.
func New(opts Options) (*Engine, error) {
	entry, err := normalizeEntrypoint(opts.Entrypoint)
	if err != nil {
		return nil, fmt.Errorf("authz: %w", err)
	}
	if _, err := inputSchemaSet(); err != nil {
		return nil, fmt.Errorf("authz: %w", err)
	}
	e := &Engine{
		entry:       entry,
		evalTimeout: opts.EvalTimeout,
		heapLimit:   opts.EvalHeapLimit,
		tests:       opts.RequireTests,
		noNetwork:   opts.NoNetwork,
		keepInput:   opts.KeepInput,
		print:       printHook(opts.Print),
		now:         opts.Now,
		log:         opts.Logger,
		tracer:      oteltrace.Tracer(opts.TracerProvider, TracerName),
	}
	if e.evaluator, err = ParseEvaluator(string(opts.Evaluator)); err != nil {
		return nil, fmt.Errorf("authz: %w", err)
	}
	if e.evalTimeout <= 0 {
		e.evalTimeout = DefaultEvalTimeout
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	tokenLimits := limitsOf(opts.TokenCacheBytes, opts.TokenCacheSize, DefaultTokenCacheBytes)
	e.cache = newExpiringCache[*verifiedToken](tokenLimits)
	e.tokenCacheBytes = tokenLimits.bytes
	e.decisions = limitsOf(opts.DecisionCacheBytes, opts.DecisionCacheSize, DefaultDecisionCacheBytes)
	if len(opts.Tokens.Issuers) > 0 {
		topts := opts.Tokens
		if topts.Now == nil {
			topts.Now = e.now
		}
		if e.verifier, err = token.NewVerifier(topts); err != nil {
			return nil, fmt.Errorf("authz: tokens: %w", err)
		}
	}
	return e, nil
}

// printHook adapts Options.Print to OPA's print hook; nil for nil.
func printHook(f func(ctx context.Context, location, message string)) opaprint.Hook {
	if f == nil {
		return nil
	}
	return printFunc(f)
}

type printFunc func(ctx context.Context, location, message string)

func (f printFunc) Print(pc opaprint.Context, msg string) error {
	loc := ""
	if pc.Location != nil {
		loc = fmt.Sprintf("%s:%d", pc.Location.File, pc.Location.Row)
	}
	f(pc.Context, loc, msg)
	return nil
}

// limitsOf reads a cache's options: bytes (zero means def) and entries
// (zero means no bound in entries); either negative disables the cache.
func limitsOf(bytes, entries, def int) cacheLimits {
	switch {
	case bytes < 0 || entries < 0:
		return cacheLimits{}
	case bytes == 0:
		bytes = def
	}
	return cacheLimits{bytes: bytes, entries: entries}
}

// Load parses, compiles and type-checks s (the input schema and the policy
// contract's types), runs its tests when Options.RequireTests is set,
// prepares its decision query, and only then makes it the current snapshot. On error (wrapping ErrCompile,
// usually a *CompileError with file:row:col problems) the previous snapshot
// keeps serving. Loads are serialised; decisions continue throughout. An
// Engine not built with New refuses every snapshot.
func (e *Engine) Load(ctx context.Context, s *bundles.Snapshot) error {
	if s == nil {
		return fmt.Errorf("%w: nil snapshot", ErrCompile)
	}
	if e == nil || e.now == nil {
		return fmt.Errorf("%w: the Engine was not built with authz.New", ErrCompile)
	}
	e.loadMu.Lock()
	defer e.loadMu.Unlock()
	start := e.now()
	cp, err := prepare(ctx, s, e.entry, e.evaluator, e.decisions, e.noNetwork)
	if err == nil && e.tests {
		err = requireTests(ctx, s, e.entry, e.noNetwork)
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	e.status.LastAttempt = start
	if err != nil {
		if !errors.Is(err, ErrCompile) {
			err = fmt.Errorf("%w: %w", ErrCompile, err)
		}
		e.status.LoadFailures++
		e.status.LastError = err.Error()
		e.status.LastErrorAt = start
		e.status.LastErrorRevision = s.Revision
		var ce *CompileError
		if errors.As(err, &ce) {
			e.status.LastErrorProblems = ce.Problems
		} else {
			e.status.LastErrorProblems = nil
		}
		// Not logged here: the caller has the error (a source's Recorder
		// logs it once per distinct failure, as "policy reload failed").
		return err
	}
	e.current.Store(cp)
	e.status.Loads++
	e.status.Ready = true
	e.status.Revision = s.Revision
	e.status.Origin = s.Origin
	e.status.LoadedAt = start
	e.status.DecisionCache = cp.cacheNote
	e.status.Evaluator = cp.evaluator
	e.status.LastError, e.status.LastErrorProblems = "", nil
	e.status.LastErrorAt, e.status.LastErrorRevision = time.Time{}, ""
	e.log.LogAttrs(ctx, slog.LevelInfo, "policy loaded",
		slog.String("revision", s.Revision), slog.String("origin", s.Origin),
		slog.Int("modules", len(s.Modules)), slog.String("evaluator", cp.evaluator), slog.String("decision_cache", cp.cacheNote),
		slog.Duration("took", e.now().Sub(start)))
	return nil
}

// Status describes the engine's policy state.
type Status struct {
	// Ready is true once a snapshot has loaded.
	Ready bool `json:"ready"`
	// Revision and Origin name the snapshot now serving.
	Revision string    `json:"revision,omitempty"`
	Origin   string    `json:"origin,omitempty"`
	LoadedAt time.Time `json:"loaded_at,omitzero"`
	// LastAttempt is when Load last ran, successful or not.
	LastAttempt time.Time `json:"last_attempt,omitzero"`
	// LastError is the most recent load failure, cleared by a later success.
	LastError         string            `json:"last_error,omitempty"`
	LastErrorProblems []bundles.Problem `json:"last_error_problems,omitempty"`
	LastErrorAt       time.Time         `json:"last_error_at,omitzero"`
	LastErrorRevision string            `json:"last_error_revision,omitempty"`
	// DecisionCache says how decisions of the serving snapshot are cached:
	// "on: keyed on input.action.name, input.subject.claims.roles" (the
	// input values the policy reads), "on: keyed on the request: the
	// policy reads all of input.subject.claims (authz.rego)" (the
	// credentials, action and resource), or "off: the policy reads
	// input.context (authz.rego)", "off: disabled".
	DecisionCache string `json:"decision_cache,omitempty"`
	// Evaluator says which evaluator serves the snapshot: "compiled
	// (planned in 1.2ms)", or "topdown: " and why ("configured", or what
	// the compiled evaluator does not support).
	Evaluator string `json:"evaluator,omitempty"`
	// EvaluatorFallbacks counts evaluations the compiled evaluator left to
	// topdown since New: an evaluation error (which topdown then reports,
	// or not), or a data lookup only OPA's store resolves.
	EvaluatorFallbacks uint64 `json:"evaluator_fallbacks"`
	// HeapStops counts evaluations stopped since New because the heap
	// passed Options.EvalHeapLimit while they ran.
	HeapStops uint64 `json:"heap_stops"`
	// Caches are the verified-token cache and the serving snapshot's
	// decision cache: what they hold now and how lookups went since New.
	Caches Caches `json:"caches"`
	// Loads and LoadFailures count Load calls since New.
	Loads        uint64 `json:"loads"`
	LoadFailures uint64 `json:"load_failures"`
}

// Caches describes the engine's two caches.
type Caches struct {
	Token    CacheStats `json:"token"`
	Decision CacheStats `json:"decision"`
}

// CacheStats describes one cache. Entries and Bytes (estimated memory,
// the measure the cache is bounded by) are what it holds now; Hits and
// Misses count lookups since the engine started (for the decision cache,
// across snapshots, and only of requests it could answer).
type CacheStats struct {
	Entries  int    `json:"entries"`
	Bytes    int    `json:"bytes"`
	MaxBytes int    `json:"max_bytes"`
	Hits     uint64 `json:"hits"`
	Misses   uint64 `json:"misses"`
}

// Status returns a copy of the engine's policy state. Safe for concurrent use.
func (e *Engine) Status() Status {
	if e == nil {
		return Status{}
	}
	caches := Caches{
		Token:    CacheStats{MaxBytes: e.tokenCacheBytes, Hits: e.tokenHits.Load(), Misses: e.tokenMisses.Load()},
		Decision: CacheStats{Hits: e.decisionHits.Load(), Misses: e.decisionMisses.Load()},
	}
	caches.Token.Entries, caches.Token.Bytes = e.cache.stats()
	// Under mu, which Load holds while it swaps the snapshot and its
	// status: the decision cache described is the serving snapshot's.
	e.mu.Lock()
	defer e.mu.Unlock()
	if cp := e.current.Load(); cp != nil && cp.decisions != nil {
		caches.Decision.Entries, caches.Decision.Bytes = cp.decisions.stats()
		caches.Decision.MaxBytes = e.decisions.bytes
	}
	st := e.status
	st.Caches = caches
	st.EvaluatorFallbacks = e.fallbacks.Load()
	st.HeapStops = e.heapStops.Load()
	st.LastErrorProblems = append([]bundles.Problem(nil), st.LastErrorProblems...)
	return st
}

// ForgetKey drops every cached verification made with the given issuer's
// key, so tokens signed by a key that left its issuer's set stop being
// accepted at once. Key managers call it on rotation; it is safe for
// concurrent use. For several keys, call ForgetKeys once.
func (e *Engine) ForgetKey(issuer, keyID string) {
	e.ForgetKeys(issuer, []string{keyID})
}

// ForgetKeys is ForgetKey for several keys of one issuer (such as the keys
// a refreshed key set no longer holds, its OnKeysRemoved): one pass over
// the verified-token cache whatever their number. A pass for each key cost
// as many passes as keys left: a key set of a megabyte holds thousands, and
// 9,000 passes over a cache of 30,000 tokens kept a core busy for 40 s,
// locking each cache shard in turn. It is safe for concurrent use.
func (e *Engine) ForgetKeys(issuer string, keyIDs []string) {
	if e == nil || len(keyIDs) == 0 {
		return
	}
	gone := make(map[string]bool, len(keyIDs))
	for _, id := range keyIDs {
		gone[id] = true
	}
	e.forgets.Add(1)
	e.cache.deleteFunc(func(vt *verifiedToken) bool { return vt.issuer == issuer && gone[vt.keyID] })
}
