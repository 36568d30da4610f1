package authz

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/verdict-pdp/verdict/authz/token"
	"github.com/verdict-pdp/verdict/internal/httpreq"
)

// Request is one question for the engine: may this caller, acting for this
// subject, perform this action on this resource?
type Request struct {
	// Token is the subject's bearer token (compact JWT, without "Bearer ").
	// Empty means anonymous: input.subject.authenticated is false and the
	// policy decides. As a token.Raw it prints and logs redacted, so a
	// logged Request never shows it.
	Token token.Raw
	// Subject, when set, is a subject asserted by a client the front trusts
	// to name it (an AuthZEN client): input.subject is {authenticated:
	// true, method: "asserted", type, id, properties}. The engine does not
	// check the assertion; the front that believed the client does. At most
	// one of Token and Subject may be set.
	Subject *Subject
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
	// RemoteAddr is the client's IP address, with or without a port
	// ("10.0.0.7", "10.0.0.7:51234", "[2001:db8::1]:443", as
	// http.Request.RemoteAddr has it). When set it becomes
	// input.context.remote_addr as the address alone, IPv4-mapped IPv6
	// written as IPv4 and without a zone ("10.0.0.7", "2001:db8::1"), so
	// that a policy sees one form from every front; anything else is
	// refused (ErrInvalidRequest).
	RemoteAddr string
	// Explain asks for Decision.Explanation: the rules that produced the
	// decision. It costs a traced evaluation (the decision cache is not
	// used), so it is for policy authors, not every request.
	Explain bool
}

// Subject is a subject asserted by a trusted client (AuthZEN's subject).
type Subject struct {
	// Type is the kind of subject, for example "user". Required.
	Type string
	// ID identifies the subject within its type. Required.
	ID string
	// Properties are free-form; nil means none.
	Properties map[string]any
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

	// Input is the input document the decision was made on, when the
	// engine keeps it (Options.KeepInput): what a decision log records so
	// that the decision can be replayed. It holds the verified claims,
	// never a raw token, and must not be modified.
	Input ast.Value `json:"-"`
	// Explanation, when the request asked for one, lists the rules that
	// took part in the decision, in the order they held, each with its
	// location and value (see Step).
	Explanation []Step `json:"explanation,omitempty"`

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
// Each snapshot caches its decisions keyed on the input values its policy
// reads (see Status.DecisionCache): a request that agrees with an earlier
// one on every one of them (say the same roles and action, from another
// token of the same subject) is answered from the cache, with a fresh ID,
// after its credentials are verified as always. A policy that reads the
// clock, the request's context or a nondeterministic builtin is evaluated
// every time, as is a request asking for an explanation.
//
// A request whose context has ended (cancelled, or past its deadline)
// before it is answered is never allowed: an allow, from the cache as
// much as from an evaluation, is then an ErrPolicy refusal with
// InterruptedDetail, as an evaluation cut short is.
//
// An Engine not built with New (the zero Engine, or a nil *Engine) has no
// policy: its decisions are ErrNotReady refusals, as an Engine's are
// before its first Load.
func (e *Engine) Decide(ctx context.Context, req Request) (Decision, error) {
	if e == nil {
		return notBuilt()
	}
	return e.decideOn(ctx, e.current.Load(), &req)
}

// decideOn is Decide on snapshot cp (nil: none loaded). e may be nil or
// the zero Engine (notBuilt).
func (e *Engine) decideOn(ctx context.Context, cp *compiled, req *Request) (Decision, error) {
	if e == nil || e.now == nil {
		return notBuilt()
	}
	start := e.now()
	d := Decision{ID: rand.Text()}
	err := e.decide(ctx, cp, req, start, &d)
	if err == nil && d.Allow && ctx.Err() != nil {
		// The caller's context ended before the answer: never an allow,
		// also when the decision cache held one (an evaluation under that
		// context is refused as cut short).
		err = &Refusal{Category: ErrPolicy, Detail: InterruptedDetail, Cause: ctx.Err()}
	}
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

func (e *Engine) decide(ctx context.Context, cp *compiled, req *Request, now time.Time, d *Decision) error {
	if cp == nil {
		return Refusef(ErrNotReady, "no policy loaded")
	}
	d.Revision = cp.snapshot.Revision

	a := asked{subject: anonymousSubject, expires: now.Add(noExpTTL)}
	var subjectContent *[32]byte // the subject token's signed content
	switch {
	case req.Subject != nil && req.Token != "":
		return Refusef(ErrInvalidRequest, "subject: give a token or an asserted subject, not both")
	case req.Subject != nil:
		t, err := assertedSubject(req.Subject)
		if err != nil {
			return err
		}
		a.subject, d.SubjectID = t, req.Subject.ID
	}
	if req.Token != "" {
		vt, key, _, err := e.verify(ctx, string(req.Token), forSubject, now)
		if err != nil {
			return RefuseWith(ErrToken, err)
		}
		a.subject, d.SubjectID, a.subjectKey, a.subjectToken = vt.subject, vt.subjectID, key, vt
		subjectContent = &vt.content
		a.expires = earliest(a.expires, vt.expires)
	}

	caller, err := e.caller(ctx, &req.Caller, subjectContent, now)
	if err != nil {
		return err
	}
	d.CallerID = caller.id
	a.caller = caller
	a.expires = earliest(a.expires, caller.expires)

	// The policy's answer, traced as verdict.evaluate when the engine traces.
	if e.tracer == nil {
		_, err := e.answer(ctx, cp, req, &a, now, d)
		return err
	}
	ctx, span := e.startEvaluate(ctx)
	cached, err := e.answer(ctx, cp, req, &a, now, d)
	endEvaluate(span, cp, cached, err)
	return err
}

// asked is what decide worked out before the policy answers: who asks, and
// what the decision cache needs to know about it.
type asked struct {
	subject    *ast.Term
	subjectKey cacheKey // identifies the subject's token; zero for none
	// subjectToken is the verified token subject was built from; nil for
	// none. Its decision key memo stands for subject's reads.
	subjectToken *verifiedToken
	caller       callerInput
	// expires is when the first credential stops being valid: no cached
	// decision outlives it.
	expires time.Time
}

// answer is the policy's answer to req from snapshot cp: from the
// snapshot's decision cache (cached) when it has decided a request that
// agrees on everything the policy reads, else evaluated.
//
// The key is computed from what an evaluation needs anyway: the subject
// and caller already built, input.action, and input.resource when the
// policy reads it; an evaluation after a miss reuses them. A resource or
// context attributes the engine cannot convert are refused on a hit as on
// a miss, so the cache never answers a request evaluation would refuse.
func (e *Engine) answer(ctx context.Context, cp *compiled, req *Request, a *asked, now time.Time, d *Decision) (cached bool, err error) {
	cacheable := cp.decisions != nil && !req.Explain
	var action, resource, attributes *ast.Term
	if !cacheable || !cp.keys.actionFromFields(&req.Action) {
		if action, err = actionTerm(req.Action); err != nil {
			return false, err
		}
	} else if err = req.Action.check(); err != nil {
		return false, err
	}
	if len(req.Resource) > 0 {
		if resource, err = freeFormTerm("resource", req.Resource); err != nil {
			return false, err
		}
	} else {
		resource = emptyResource
	}
	if len(req.Attributes) > 0 {
		if attributes, err = freeFormTerm("context.attributes", req.Attributes); err != nil {
			return false, err
		}
	}
	remoteAddr, ok := httpreq.ClientAddr(req.RemoteAddr)
	if !ok {
		return false, Refusef(ErrInvalidRequest, "context: remote_addr is not an IP address, with or without a port")
	}

	var key cacheKey
	if cacheable {
		key = cp.keys.key(a, &req.Action, action, resource)
		if cd, ok := cp.decisions.get(&key, now); ok {
			e.decisionHits.Add(1)
			cd.fill(d)
			if e.keepInput {
				if action == nil {
					if action, err = actionTerm(req.Action); err != nil {
						return true, err
					}
				}
				d.Input = inputValue(a.subject, a.caller.term, action, resource, e.contextOf(req, remoteAddr, now, attributes, d))
			}
			return true, nil
		}
		e.decisionMisses.Add(1)
	}
	if action == nil {
		if action, err = actionTerm(req.Action); err != nil {
			return false, err
		}
	}

	input := inputValue(a.subject, a.caller.term, action, resource, e.contextOf(req, remoteAddr, now, attributes, d))
	if e.keepInput {
		d.Input = input
	}
	var x *explainer
	if req.Explain {
		x = &explainer{elseRules: cp.elseRules}
		defer func() { d.Explanation = x.steps }()
	}
	if err := e.evaluate(ctx, cp, input, now, x, d); err != nil {
		return false, err
	}
	if cacheable {
		cd := newCachedDecision(d)
		cp.decisions.put(&key, cd, cd.size(), a.expires, now)
	}
	return false, nil
}

// contextOf builds input.context; remoteAddr is req.RemoteAddr as
// httpreq.ClientAddr writes it, and attributes the converted
// req.Attributes, nil when there are none.
func (e *Engine) contextOf(req *Request, remoteAddr string, now time.Time, attributes *ast.Term, d *Decision) *ast.Term {
	requestID := req.RequestID
	if requestID == "" {
		requestID = d.ID
	}
	return contextTerm(now, requestID, remoteAddr, attributes)
}

func earliest(a, b time.Time) time.Time {
	if !b.IsZero() && b.Before(a) {
		return b
	}
	return a
}

// callerInput is input.caller with what the decision cache needs to know
// about it.
type callerInput struct {
	term    *ast.Term
	id      string
	key     cacheKey  // identifies the credential; zero for none
	expires time.Time // when the credential stops being valid; zero for never
	// token is the verified service token term was built from; nil for
	// none. Its decision key memo stands for term's reads.
	token *verifiedToken
}

// caller builds input.caller from the request's caller credential.
// subjectContent is the signed content of the subject's verified token (nil
// when anonymous): a token proves one party, never both, and tokens are
// compared by what was signed, not by their bytes, since an ECDSA signature
// can be re-encoded into another valid one.
func (e *Engine) caller(ctx context.Context, c *Caller, subjectContent *[32]byte, now time.Time) (callerInput, error) {
	given := 0
	for _, set := range [...]bool{c.Certificate != nil, c.Token != "", c.Principal != ""} {
		if set {
			given++
		}
	}
	switch {
	case given > 1:
		return callerInput{}, Refusef(ErrCaller, "give one caller credential: a certificate, a token or a mesh principal")
	case c.Principal != "":
		key := sha256.Sum256([]byte("mesh\x00" + c.Principal))
		return callerInput{term: meshCaller(c.Principal), id: c.Principal, key: key}, nil
	case c.Certificate != nil:
		if len(c.Certificate.Raw) == 0 {
			// The decision cache keys a caller by its certificate's DER: one
			// built in code, without it, would share every other's key.
			return callerInput{}, Refusef(ErrCaller, "certificate without its DER encoding (Raw): parse it with x509.ParseCertificate")
		}
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
		vt, key, _, err := e.verify(ctx, string(c.Token), forCaller, now)
		if err != nil {
			return callerInput{}, RefuseWith(ErrCaller, err)
		}
		if subjectContent != nil && vt.content == *subjectContent {
			return callerInput{}, Refusef(ErrCaller, "the subject's token cannot also prove the caller")
		}
		if vt.caller == nil {
			return callerInput{}, Refusef(ErrCaller, "service token names no service (no azp, client_id or sub)")
		}
		return callerInput{term: vt.caller, id: vt.callerID, key: key, expires: vt.expires, token: vt}, nil
	}
	return callerInput{term: anonymousCaller}, nil
}

// InputOptions tunes EvaluateInput.
type InputOptions struct {
	// Explain asks for Decision.Explanation.
	Explain bool
	// Time is the clock the clock builtins see; zero means Options.Now.
	// A replay sets it to the recorded decision's time.
	Time time.Time
}

// EvaluateInput evaluates the current snapshot on a whole input document,
// as given: no token is verified, no caller credential checked and nothing
// is added, so the document says whatever its author wrote (a recorded
// decision's input, a case a policy author is exploring). It is for
// replaying and trying policies, never for answering a request. The clock
// builtins see opts.Time, else Options.Now. Errors are *Refusal values, as
// for Decide (an Engine not built with New refuses with ErrNotReady).
// Safe for concurrent use.
func (e *Engine) EvaluateInput(ctx context.Context, input any, opts InputOptions) (Decision, error) {
	if e == nil || e.now == nil {
		return notBuilt()
	}
	start := e.now()
	clock := start
	if !opts.Time.IsZero() {
		clock = opts.Time
	}
	d := Decision{ID: rand.Text()}
	err := func() error {
		cp := e.current.Load()
		if cp == nil {
			return Refusef(ErrNotReady, "no policy loaded")
		}
		d.Revision = cp.snapshot.Revision
		v, err := toValue(input)
		if err != nil {
			return &Refusal{Category: ErrInvalidRequest, Detail: "input: " + err.Error(), Cause: err}
		}
		if _, ok := v.(ast.Object); !ok {
			return Refusef(ErrInvalidRequest, "input: want an object, got %s", ast.ValueName(v))
		}
		var x *explainer
		if opts.Explain {
			x = &explainer{elseRules: cp.elseRules}
			defer func() { d.Explanation = x.steps }()
		}
		return e.evaluate(ctx, cp, v, clock, x, &d)
	}()
	if err != nil {
		d.Allow, d.Headers, d.Reasons = false, nil, []string{ReasonFor(err)}
	} else if d.Reasons == nil {
		d.Reasons = []string{}
	}
	d.Duration = e.now().Sub(start)
	return d, err
}

// notBuilt is the answer of an Engine not built with New (nil, or the zero
// Engine): it has no policy, so every decision is an ErrNotReady refusal.
func notBuilt() (Decision, error) {
	err := Refusef(ErrNotReady, "no policy loaded")
	return Deny(err), err
}
