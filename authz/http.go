package authz

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/verdict-pdp/verdict/authz/token"
	"github.com/verdict-pdp/verdict/internal/httpreq"
)

// BearerToken extracts the token from an Authorization header. No header
// means no token (anonymous) and no error. A header that is present but is
// not exactly one well-formed "Bearer <token>" is an error wrapping
// token.ErrInvalid and token.ErrMalformed: a credential the client tried to
// send is never silently dropped.
func BearerToken(h http.Header) (token.Raw, error) {
	tok, err := httpreq.BearerToken(h)
	if err != nil {
		return "", malformed(err.Error())
	}
	return token.Raw(tok), nil
}

func malformed(detail string) error {
	return fmt.Errorf("%w: %w: %s", token.ErrInvalid, token.ErrMalformed, detail)
}

// MaxRequestIDBytes bounds a client-supplied request ID.
const MaxRequestIDBytes = httpreq.MaxRequestIDBytes

// RequestIDFromHeader returns the request's X-Request-Id when it is
// present, at most MaxRequestIDBytes long and printable ASCII without
// spaces; otherwise "" (the decision ID then stands in). A request ID ends
// up in logs and in the input document, so anything else is dropped
// rather than escaped.
func RequestIDFromHeader(h http.Header) string { return httpreq.RequestID(h) }

// RequestFromHTTP builds a Request from an incoming HTTP request: the bearer
// token, the verified mTLS peer certificate as caller, the method and path as
// the action (without a name), the remote address, and the request ID
// (RequestIDFromHeader). The path is the request target as the client wrote
// it, query included, so that Decide refuses a _method parameter in it. An
// Authorization header that is not a well-formed bearer token is a *Refusal
// of category ErrToken; a method-override header (X-HTTP-Method-Override and
// kin), which an upstream handler could honour after the decision, one of
// category ErrInvalidRequest, as is X-Original-URL and kin, which override
// the path.
func RequestFromHTTP(r *http.Request) (Request, error) {
	req := Request{
		Caller:    CallerFromTLS(r.TLS),
		Action:    Action{Method: r.Method, Path: httpreq.Target(r)},
		RequestID: RequestIDFromHeader(r.Header),
	}
	// A listener's address that is not an IP address (a Unix socket's "@")
	// names no client.
	req.RemoteAddr, _ = httpreq.ClientAddr(r.RemoteAddr)
	if name := httpreq.Override(r.Header); name != "" {
		return req, Refusef(ErrInvalidRequest, "%s", httpreq.OverrideRefused(name))
	}
	if why := httpreq.Undecidable(r); why != "" {
		return req, Refusef(ErrInvalidRequest, "%s", why)
	}
	tok, err := BearerToken(r.Header)
	if err != nil {
		return req, RefuseWith(ErrToken, err)
	}
	req.Token = tok
	return req, nil
}

// WWWAuthenticate is the WWW-Authenticate value of a 401 answer (RFC 6750):
// `Bearer error="invalid_token"` when a token was presented and refused,
// plain `Bearer` when none was presented.
func WWWAuthenticate(err error) string {
	return httpreq.WWWAuthenticate(errors.Is(err, ErrToken))
}

// HTTPStatus maps a decision (or the error that came with it) to the status a
// forward-auth style answer uses: 200 allow; 401 when the token was invalid,
// or when there was none and the request was denied; 403 for any other deny
// (including an invalid caller credential); 400 malformed request; 503 no
// policy loaded, or the keys of a credential's issuer unavailable or stale
// (token.ErrKeysUnavailable: an outage, not a bad token); 500 evaluation
// error. anonymous reports that the request carried no bearer token.
func HTTPStatus(d Decision, err error, anonymous bool) int {
	switch {
	case errors.Is(err, token.ErrKeysUnavailable):
		return http.StatusServiceUnavailable
	case errors.Is(err, ErrToken):
		return http.StatusUnauthorized
	case errors.Is(err, ErrCaller):
		return http.StatusForbidden
	case errors.Is(err, ErrInvalidRequest):
		return http.StatusBadRequest
	case errors.Is(err, ErrNotReady):
		return http.StatusServiceUnavailable
	case err != nil:
		return http.StatusInternalServerError
	case d.Allow:
		return http.StatusOK
	case anonymous:
		return http.StatusUnauthorized
	default:
		return http.StatusForbidden
	}
}

// MiddlewareOptions configures Engine.Middleware. The zero value decides on
// the request's method and path with no action name and no resource.
type MiddlewareOptions struct {
	// Action maps a request to its action; nil means method and path only.
	// The method and path are filled in when the returned Action lacks them.
	Action func(r *http.Request) Action
	// Resource returns the resource the request touches; nil means none.
	Resource func(r *http.Request) map[string]any
	// Deny writes the answer for a denied request; nil writes the decision
	// as JSON with the status HTTPStatus gives, and WWW-Authenticate:
	// Bearer on 401. err is nil when the policy denied the request: then
	// d.Reasons holds the policy's reasons (Decide puts "policy: allow is
	// not true" when it gave none) and ReasonFor(err) is "". Otherwise err
	// is the *Refusal that denied it (a malformed Authorization header, a
	// method override, no policy loaded, an evaluation error) and
	// d.Reasons holds its one reason. Either way d.Reasons has at least
	// one reason, and HTTPStatus(d, err, anonymous) gives the status.
	Deny func(w http.ResponseWriter, r *http.Request, d Decision, err error)
}

type decisionContextKey struct{}

// DecisionFromContext returns the allow decision that Middleware attached to
// the request's context.
func DecisionFromContext(ctx context.Context) (Decision, bool) {
	d, ok := ctx.Value(decisionContextKey{}).(Decision)
	return d, ok
}

// Middleware returns net/http middleware that decides every request before
// it reaches next. Allowed requests go on with the Decision in their context
// (DecisionFromContext); everything else — deny or any error — is answered
// by opts.Deny and never reaches next. The middleware of an Engine not
// built with New (zero or nil) denies every request as not ready (503 with
// the default Deny).
func (e *Engine) Middleware(opts MiddlewareOptions) func(http.Handler) http.Handler {
	deny := opts.Deny
	if deny == nil {
		deny = writeDeny
	}
	return httpreq.Middleware(decisionContextKey{}, func(r *http.Request) (Decision, bool, error) {
		req, err := RequestFromHTTP(r)
		if err != nil {
			return Deny(err), false, err
		}
		req.Action, req.Resource = httpreq.Describe(r, req.Action, actionFields, opts.Action, opts.Resource)
		d, err := e.Decide(r.Context(), req)
		return d, d.Allow, err
	}, deny)
}

// actionFields points at the method and path of a, for httpreq.Describe.
func actionFields(a *Action) (method, path *string) { return &a.Method, &a.Path }

// writeDeny is the default deny answer: the decision as JSON.
func writeDeny(w http.ResponseWriter, r *http.Request, d Decision, err error) {
	anonymous := r.Header.Get("Authorization") == ""
	status := HTTPStatus(d, err, anonymous)
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", WWWAuthenticate(err))
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(d)
}
