package authz

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"
	"golang.org/x/net/http/httpguts"

	"github.com/verdict-pdp/verdict/authz/token"
	"github.com/verdict-pdp/verdict/bundles"
)

// Defaults for Options fields left zero.
const (
	DefaultEntrypoint     = "authz"
	DefaultEvalTimeout    = 500 * time.Millisecond
	DefaultTokenCacheSize = 16384
	// DefaultDecisionCacheSize is the decision cache bound per snapshot.
	DefaultDecisionCacheSize = 16384
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
	// TokenCacheSize bounds the verified-token cache (entries). Default
	// 16384; negative disables the cache.
	TokenCacheSize int
	// DecisionCacheSize bounds the per-snapshot decision cache (entries).
	// Default 16384; negative disables it. Decisions are cached only for a
	// policy whose answer cannot depend on anything but the request (see
	// Status.DecisionCache), and never for a request with a resource.
	DecisionCacheSize int
	// EvalTimeout bounds one policy evaluation. Default 500ms.
	EvalTimeout time.Duration
	// RequireTests makes Load run a snapshot's own Rego tests (RunTests)
	// after it compiles: a snapshot with a failing test, or with no tests,
	// is refused like one that does not compile.
	RequireTests bool
	// Now is the clock; nil means time.Now. Token checks use Tokens.Now,
	// which defaults to this clock.
	Now func() time.Time
	// Logger receives load events; nil discards them. Decisions are not
	// logged here (that is the decision log's job).
	Logger *slog.Logger
}

// Engine decides requests against the current policy snapshot. Build it with
// New; it is safe for concurrent use. Decide never blocks on Load: the
// compiled snapshot sits behind an atomic pointer, each decision reads it
// once, and Load compiles outside any lock shared with Decide.
type Engine struct {
	entry       string
	verifier    *token.Verifier
	cache       *expiringCache[*verifiedToken]
	decisions   int // decision cache size per snapshot; 0 disables
	evalTimeout time.Duration
	tests       bool // Options.RequireTests
	now         func() time.Time
	log         *slog.Logger

	current atomic.Pointer[compiled]
	// forgets counts ForgetKey calls: a verification that overlapped one is
	// not cached, since it may have used the key being forgotten.
	forgets atomic.Uint64

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
		tests:       opts.RequireTests,
		now:         opts.Now,
		log:         opts.Logger,
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
	e.cache = newExpiringCache[*verifiedToken](sizeOr(opts.TokenCacheSize, DefaultTokenCacheSize))
	e.decisions = sizeOr(opts.DecisionCacheSize, DefaultDecisionCacheSize)
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

// sizeOr reads a cache size option: zero means def, negative means none.
func sizeOr(n, def int) int {
	switch {
	case n == 0:
		return def
	case n < 0:
		return 0
	}
	return n
}

// Load parses, compiles and type-checks s (the input schema and the policy
// contract's types), runs its tests when Options.RequireTests is set,
// prepares its decision query, and only then makes it the current snapshot. On error (wrapping ErrCompile,
// usually a *CompileError with file:row:col problems) the previous snapshot
// keeps serving. Loads are serialised; decisions continue throughout.
func (e *Engine) Load(ctx context.Context, s *bundles.Snapshot) error {
	if s == nil {
		return fmt.Errorf("%w: nil snapshot", ErrCompile)
	}
	e.loadMu.Lock()
	defer e.loadMu.Unlock()
	start := e.now()
	cp, err := prepare(ctx, s, e.entry, start, e.decisions)
	if err == nil && e.tests {
		err = requireTests(ctx, s, e.entry)
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
		e.log.LogAttrs(ctx, slog.LevelError, "policy load failed",
			slog.String("revision", s.Revision), slog.String("origin", s.Origin),
			slog.String("error", err.Error()))
		return err
	}
	e.current.Store(cp)
	e.status.Loads++
	e.status.Ready = true
	e.status.Revision = s.Revision
	e.status.Origin = s.Origin
	e.status.LoadedAt = start
	e.status.DecisionCache = cp.cacheNote
	e.status.LastError, e.status.LastErrorProblems = "", nil
	e.status.LastErrorAt, e.status.LastErrorRevision = time.Time{}, ""
	e.log.LogAttrs(ctx, slog.LevelInfo, "policy loaded",
		slog.String("revision", s.Revision), slog.String("origin", s.Origin),
		slog.Int("modules", len(s.Modules)), slog.String("decision_cache", cp.cacheNote),
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
	// DecisionCache says whether decisions of the serving snapshot are
	// cached, and if not, why ("off: the policy reads input.context").
	DecisionCache string `json:"decision_cache,omitempty"`
	// Loads and LoadFailures count Load calls since New.
	Loads        uint64 `json:"loads"`
	LoadFailures uint64 `json:"load_failures"`
}

// Status returns a copy of the engine's policy state. Safe for concurrent use.
func (e *Engine) Status() Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.status
	st.LastErrorProblems = append([]bundles.Problem(nil), st.LastErrorProblems...)
	return st
}

// Request is one question for the engine: may this caller, acting for this
// subject, perform this action on this resource?
type Request struct {
	// Token is the subject's bearer token (compact JWT, without "Bearer ").
	// Empty means anonymous: input.subject.authenticated is false and the
	// policy decides.
	Token string
	// Caller is the calling service's credential; zero means none.
	Caller Caller
	// Action is required: a name, or a method and path.
	Action Action
	// Resource is free-form; nil means {}.
	Resource map[string]any
	// Attributes become input.context.attributes.
	Attributes map[string]any
	// RequestID becomes input.context.request_id; empty means the decision ID.
	RequestID string
	// RemoteAddr becomes input.context.remote_addr when set.
	RemoteAddr string
}

// Decision is the engine's answer. Allow is true only when the policy's
// allow rule was exactly true and nothing failed on the way. Its JSON form
// is AppendJSON's.
type Decision struct {
	ID       string            `json:"decision_id"`
	Allow    bool              `json:"allow"`
	Reasons  []string          `json:"reasons"`
	Headers  map[string]string `json:"headers,omitempty"`
	Revision string            `json:"revision,omitempty"`

	// SubjectID and CallerID identify who asked (for decision logs); empty
	// when anonymous or unknown.
	SubjectID string `json:"-"`
	CallerID  string `json:"-"`
	// Duration is how long Decide took.
	Duration time.Duration `json:"-"`
}

// Decide answers req against the current policy snapshot. It is safe for
// concurrent use.
//
// Every error is a deny: when Decide returns an error, the Decision still
// carries an ID, Allow false and a reason saying why, and the error is a
// *Refusal whose category is exactly one of ErrToken (present but invalid
// token; the policy is not evaluated), ErrCaller (invalid caller
// credential; not evaluated), ErrInvalidRequest, ErrNotReady or ErrPolicy
// (evaluation failed or timed out, or the result broke the policy
// contract). The decision's reason is the refusal's Reason.
//
// When the snapshot's policy can only depend on the request (see
// Status.DecisionCache), a request repeated with the same token, caller
// credential and action and no resource is answered from the snapshot's
// decision cache, with a fresh ID; everything else is evaluated.
func (e *Engine) Decide(ctx context.Context, req Request) (Decision, error) {
	start := e.now()
	d := Decision{ID: rand.Text()}
	err := e.decide(ctx, &req, start, &d)
	if err != nil {
		d.Allow = false
		d.Headers = nil
		d.Reasons = []string{ReasonFor(err)}
	} else if d.Reasons == nil {
		d.Reasons = []string{}
	}
	d.Duration = e.now().Sub(start)
	return d, err
}

func (e *Engine) decide(ctx context.Context, req *Request, now time.Time, d *Decision) error {
	cp := e.current.Load()
	if cp == nil {
		return Refusef(ErrNotReady, "no policy loaded")
	}
	d.Revision = cp.snapshot.Revision

	subject := anonymousSubject
	var subjectKey cacheKey
	var subjectContent *[32]byte // the subject token's signed content
	expires := now.Add(noExpTTL)
	// seenBefore is false for a token verified just now: its decision is not
	// cached, so that a flood of one-shot tokens does not fill the decision
	// cache (a token's answers are cached from its second use on).
	seenBefore := true
	if req.Token != "" {
		vt, key, hit, err := e.verify(ctx, req.Token, forSubject, now)
		if err != nil {
			return RefuseWith(ErrToken, err)
		}
		subject, d.SubjectID, subjectKey, seenBefore = vt.subject, vt.subjectID, key, hit
		subjectContent = &vt.content
		expires = earliest(expires, vt.expires)
	}

	caller, err := e.caller(ctx, &req.Caller, subjectContent, now)
	if err != nil {
		return err
	}
	d.CallerID = caller.id
	expires = earliest(expires, caller.expires)

	// A decision the snapshot has made before for the same subject, caller
	// and action is answered from its cache (see decisionKey).
	var key cacheKey
	cacheable := cp.decisions != nil && len(req.Resource) == 0
	if cacheable {
		key = decisionKey(&subjectKey, &caller.key, &req.Action)
		if cd, ok := cp.decisions.get(&key, now); ok {
			cd.fill(d)
			return nil
		}
	}

	action, err := actionTerm(req.Action)
	if err != nil {
		return err
	}
	resource, err := freeFormTerm("resource", req.Resource)
	if err != nil {
		return err
	}
	requestID := req.RequestID
	if requestID == "" {
		requestID = d.ID
	}
	context_, err := contextTerm(now, requestID, req.RemoteAddr, req.Attributes)
	if err != nil {
		return err
	}
	input := inputValue(subject, caller.term, action, resource, context_)
	if err := e.evaluate(ctx, cp, input, now, d); err != nil {
		return err
	}
	if cacheable && seenBefore {
		cp.decisions.put(&key, newCachedDecision(d), expires, now)
	}
	return nil
}

func earliest(a, b time.Time) time.Time {
	if !b.IsZero() && b.Before(a) {
		return b
	}
	return a
}

// purpose says what a token is verified for: a subject's bearer token
// (checked against its issuer's audiences) or a caller's service token
// (checked against the caller audiences instead). The two are cached apart,
// so a token verified for one purpose never passes for the other.
type purpose uint8

const (
	forSubject purpose = iota
	forCaller
)

// verify returns the verified token and its cache key, from the cache when
// it was verified before for the same purpose, has not expired, and its
// issuer's keys are still fresh (hit). A cached verification never outlives
// the keys that made it: stale or unavailable keys deny it as they deny a
// new token, and a removed key has already taken its entries with it
// (ForgetKey).
func (e *Engine) verify(ctx context.Context, raw string, p purpose, now time.Time) (*verifiedToken, cacheKey, bool, error) {
	key := cacheKey(sha256.Sum256([]byte(raw)))
	if p == forCaller {
		key[0] ^= 2
	}
	if e.verifier == nil {
		return nil, key, false, fmt.Errorf("%w: %w: no trusted issuers are configured", token.ErrInvalid, token.ErrBadIssuer)
	}
	if vt, ok := e.cache.get(&key, now); ok {
		if err := e.verifier.KeysFresh(vt.issuer); err != nil {
			return nil, key, false, err
		}
		return vt, key, true, nil
	}
	generation := e.forgets.Load()
	verify := e.verifier.Verify
	if p == forCaller {
		verify = e.verifier.VerifyCaller
	}
	v, err := verify(ctx, raw)
	if err != nil {
		return nil, key, false, err
	}
	vt, err := newVerifiedToken(v, now)
	if err != nil {
		return nil, key, false, err
	}
	if e.forgets.Load() == generation {
		e.cache.put(&key, vt, vt.expires, now)
	}
	return vt, key, false, nil
}

func newVerifiedToken(v *token.Verified, now time.Time) (*verifiedToken, error) {
	claims, err := ast.InterfaceToValue(v.Claims)
	if err != nil {
		return nil, fmt.Errorf("%w: %w: claims: %w", token.ErrInvalid, token.ErrMalformed, err)
	}
	claimsTerm := ast.NewTerm(claims)
	subject := ast.NewObjectWithCapacity(4)
	subject.Insert(keyAuthenticated, ast.InternedTerm(true))
	if v.Subject != "" {
		subject.Insert(keyID, ast.StringTerm(v.Subject))
	}
	subject.Insert(keyIssuer, ast.StringTerm(v.Issuer))
	subject.Insert(keyClaims, claimsTerm)

	vt := &verifiedToken{
		subject:   ast.NewTerm(subject),
		subjectID: v.Subject,
		issuer:    v.Issuer,
		keyID:     v.KeyID,
		content:   v.Content,
		expires:   v.ExpiresAt,
	}
	if vt.expires.IsZero() {
		vt.expires = now.Add(noExpTTL)
	}
	if id := serviceID(v.Claims); id != "" {
		vt.callerID = id
		vt.caller = ast.NewTerm(ast.NewObject(
			ast.Item(keyAuthenticated, ast.InternedTerm(true)),
			ast.Item(keyID, ast.StringTerm(id)),
			ast.Item(keyMethod, ast.InternedTerm(CallerToken)),
			ast.Item(keyClaims, claimsTerm),
		))
	}
	return vt, nil
}

// callerInput is input.caller with what the decision cache needs to know
// about it.
type callerInput struct {
	term    *ast.Term
	id      string
	key     cacheKey  // identifies the credential; zero for none
	expires time.Time // when the credential stops being valid; zero for never
}

// caller builds input.caller from the request's caller credential.
// subjectContent is the signed content of the subject's verified token (nil
// when anonymous): a token proves one party, never both, and tokens are
// compared by what was signed, not by their bytes, since an ECDSA signature
// can be re-encoded into another valid one.
func (e *Engine) caller(ctx context.Context, c *Caller, subjectContent *[32]byte, now time.Time) (callerInput, error) {
	switch {
	case c.Certificate != nil && c.Token != "":
		return callerInput{}, Refusef(ErrCaller, "both a certificate and a token were given")
	case c.Certificate != nil:
		term, id, err := certificateCaller(c.Certificate, c.Forwarded)
		if err != nil {
			return callerInput{}, err
		}
		key := sha256.Sum256(c.Certificate.Raw)
		if c.Forwarded {
			key[0] ^= 1 // the same certificate forwarded is another method
		}
		return callerInput{term: term, id: id, key: key, expires: c.Certificate.NotAfter}, nil
	case c.Token != "":
		vt, key, _, err := e.verify(ctx, c.Token, forCaller, now)
		if err != nil {
			return callerInput{}, RefuseWith(ErrCaller, err)
		}
		if subjectContent != nil && vt.content == *subjectContent {
			return callerInput{}, Refusef(ErrCaller, "the subject's token cannot also prove the caller")
		}
		if vt.caller == nil {
			return callerInput{}, Refusef(ErrCaller, "service token names no service (no azp, client_id or sub)")
		}
		return callerInput{term: vt.caller, id: vt.callerID, key: key, expires: vt.expires}, nil
	}
	return callerInput{term: anonymousCaller}, nil
}

// evaluate runs the prepared query and reads the policy contract from it.
func (e *Engine) evaluate(ctx context.Context, cp *compiled, input ast.Value, now time.Time, d *Decision) error {
	ctx, cancel := context.WithTimeout(ctx, e.evalTimeout)
	defer cancel()
	// One cancel hook per evaluation instead of OPA's watcher goroutine.
	stopCancel := topdown.NewCancel()
	defer context.AfterFunc(ctx, stopCancel.Cancel)()
	rs, err := cp.query.Eval(ctx,
		rego.EvalParsedInput(input),
		rego.EvalTime(now),
		rego.EvalExternalCancel(stopCancel),
		rego.EvalMetrics(metrics.NoOp()),
		rego.EvalGenerateJSON(keepTerm),
	)
	if err != nil {
		if ctx.Err() != nil {
			return &Refusal{Category: ErrPolicy, Detail: "evaluation timed out or was cancelled", Cause: ctx.Err()}
		}
		return RefuseWith(ErrPolicy, err)
	}
	var result ast.Object
	if len(rs) > 0 && len(rs[0].Expressions) > 0 {
		if t, ok := rs[0].Expressions[0].Value.(*ast.Term); ok {
			result, _ = t.Value.(ast.Object)
		}
	}
	if result == nil {
		return Refusef(ErrPolicy, "the entry query returned no decision")
	}
	reasons, err := stringList(result.Get(keyReasons))
	if err != nil {
		return Refusef(ErrPolicy, "data.%s.reasons: %v", e.entry, err)
	}
	allowValue := result.Get(keyAllow)
	allow := allowValue != nil && allowValue.Value.Compare(ast.Boolean(true)) == 0
	if allow {
		headers, err := headerMap(result.Get(keyHeaders))
		if err != nil {
			return Refusef(ErrPolicy, "data.%s.headers: %v", e.entry, err)
		}
		d.Headers = headers
	}
	if !allow && len(reasons) == 0 {
		if _, undefined := allowValue.Value.(ast.Null); undefined {
			reasons = []string{"policy: allow is undefined"}
		} else {
			reasons = []string{"policy: allow is not true"}
		}
	}
	d.Allow, d.Reasons = allow, reasons
	return nil
}

// keepTerm hands OPA's result term back as it is, skipping the conversion
// to Go values that the engine would only undo.
func keepTerm(t *ast.Term, _ *rego.EvalContext) (any, error) { return t, nil }

var (
	keyAllow   = ast.InternedTerm("allow")
	keyReasons = ast.InternedTerm("reasons")
	keyHeaders = ast.InternedTerm("headers")
)

// stringList reads reasons: null (undefined), a set (sorted) or an array of
// strings.
func stringList(t *ast.Term) ([]string, error) {
	if t == nil {
		return nil, nil
	}
	var arr *ast.Array
	switch v := t.Value.(type) {
	case ast.Null:
		return nil, nil
	case ast.Set:
		arr = v.Sorted()
	case *ast.Array:
		arr = v
	default:
		return nil, fmt.Errorf("must be a set or array of strings, got %s", ast.ValueName(v))
	}
	out := make([]string, 0, arr.Len())
	for i := range arr.Len() {
		s, ok := arr.Elem(i).Value.(ast.String)
		if !ok {
			return nil, fmt.Errorf("must contain only strings, got %s", ast.ValueName(arr.Elem(i).Value))
		}
		out = append(out, string(s))
	}
	return out, nil
}

// headerMap reads the policy's headers, refusing names and values that are
// not valid HTTP (a value with CR or LF could inject headers downstream).
func headerMap(t *ast.Term) (map[string]string, error) {
	if t == nil {
		return nil, nil
	}
	if _, ok := t.Value.(ast.Null); ok {
		return nil, nil
	}
	obj, ok := t.Value.(ast.Object)
	if !ok {
		return nil, fmt.Errorf("must be an object of strings, got %s", ast.ValueName(t.Value))
	}
	out := make(map[string]string, obj.Len())
	err := obj.Iter(func(k, v *ast.Term) error {
		name, ok := k.Value.(ast.String)
		if !ok {
			return fmt.Errorf("header names must be strings, got %s", ast.ValueName(k.Value))
		}
		value, ok := v.Value.(ast.String)
		if !ok {
			return fmt.Errorf("%q must be a string, got %s", string(name), ast.ValueName(v.Value))
		}
		if !httpguts.ValidHeaderFieldName(string(name)) {
			return fmt.Errorf("%q is not a valid header name", string(name))
		}
		if !httpguts.ValidHeaderFieldValue(string(value)) {
			return fmt.Errorf("%q has a value that is not a valid header value", string(name))
		}
		out[string(name)] = string(value)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ForgetKey drops every cached verification made with the given issuer's
// key, so tokens signed by a key that left its issuer's set stop being
// accepted at once. Key managers call it on rotation; it is safe for
// concurrent use.
func (e *Engine) ForgetKey(issuer, keyID string) {
	e.forgets.Add(1)
	e.cache.deleteFunc(func(vt *verifiedToken) bool { return vt.issuer == issuer && vt.keyID == keyID })
}
