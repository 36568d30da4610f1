package client

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/verdict-pdp/verdict/internal/httpreq"
)

// MiddlewareOptions configures Client.Middleware. The zero value asks about
// the request's method and path, with no action name and no resource.
type MiddlewareOptions struct {
	// Action maps a request to its action; nil means method and path only.
	// The method and path are filled in when the returned Action lacks them.
	Action func(r *http.Request) Action
	// Resource returns the resource the request touches; nil means none.
	Resource func(r *http.Request) map[string]any
	// Deny writes the answer for a request that may not go ahead; nil
	// writes the decision as JSON with the status Status gives, and
	// WWW-Authenticate: Bearer on 401.
	Deny func(w http.ResponseWriter, r *http.Request, d Decision, err error)
}

type decisionContextKey struct{}

// DecisionFromContext returns the allow decision that Middleware attached to
// the request's context.
func DecisionFromContext(ctx context.Context) (Decision, bool) {
	d, ok := ctx.Value(decisionContextKey{}).(Decision)
	return d, ok
}

// Middleware returns net/http middleware that asks the server about every
// request before it reaches next, as the engine's own middleware does in
// process: the bearer token from Authorization (a malformed header is
// refused, never taken as anonymous), the method and the request target
// (path and query, so that the server refuses a _method parameter) as the
// action, a method-override header refused (ErrInvalidRequest),
// X-Request-Id when it is short and printable, and the address of the
// request's RemoteAddr (without its port) as input.context.remote_addr.
//
// The caller is the request's own client, never this service: the client
// certificate the request's TLS handshake verified, sent as
// Caller.CertificatePEM (with its chain's intermediates), else
// Caller.Anonymous. The server believes a certificate in the body only from
// its callers.trusted_proxies, chaining to callers.trust_bundle_file: list
// this service's address there for its mTLS clients to be recognised
// (input.caller.method "forwarded_cert", where the engine's middleware says
// "mtls"); otherwise their requests are denied with a "caller:" reason.
//
// Allowed requests go on with the Decision in their context
// (DecisionFromContext); everything else — a deny, or any error reaching
// the server — is answered by opts.Deny and never reaches next.
func (c *Client) Middleware(opts MiddlewareOptions) func(http.Handler) http.Handler {
	deny := opts.Deny
	if deny == nil {
		deny = writeDeny
	}
	return httpreq.Middleware(decisionContextKey{}, func(r *http.Request) (Decision, bool, error) {
		tok, err := httpreq.BearerToken(r.Header)
		if err != nil {
			return Decision{Reasons: []string{"token: malformed"}}, false, &TokenError{err: err}
		}
		if name := httpreq.Override(r.Header); name != "" {
			return Decision{Reasons: []string{"invalid_request: override header refused"}}, false,
				fmt.Errorf("%w: %s", ErrInvalidRequest, httpreq.OverrideRefused(name))
		}
		if why := httpreq.Undecidable(r); why != "" {
			return Decision{Reasons: []string{"invalid_request: " + why}}, false, fmt.Errorf("%w: %s", ErrInvalidRequest, why)
		}
		// A listener's address that is not an IP address (a Unix socket's
		// "@") names no client: the server would refuse it.
		addr, _ := httpreq.ClientAddr(r.RemoteAddr)
		req := Request{Token: tok, Caller: peerCaller(r.TLS), Action: Action{Method: r.Method, Path: httpreq.Target(r)},
			Context: Context{RequestID: httpreq.RequestID(r.Header), RemoteAddr: addr}}
		req.Action, req.Resource = httpreq.Describe(r, req.Action, actionFields, opts.Action, opts.Resource)
		d, err := c.Decide(r.Context(), req)
		return d, d.Allow, err
	}, deny)
}

// peerCaller is the caller of a request this service received: the
// client certificate its TLS handshake verified, with the verified chain's
// intermediates after it (not its root, which the server has if it trusts
// it), or explicitly none. It is never left out: the server would then take
// its own mTLS peer, this service, for the caller.
func peerCaller(cs *tls.ConnectionState) Caller {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return Caller{Anonymous: true}
	}
	chain := cs.VerifiedChains[0]
	if len(chain) > 1 {
		chain = chain[:len(chain)-1]
	}
	var b strings.Builder
	for _, c := range chain {
		b.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
	}
	return Caller{CertificatePEM: b.String()}
}

// TokenError is a malformed Authorization header the middleware refused
// before asking the server.
type TokenError struct{ err error }

func (e *TokenError) Error() string { return "client: token: " + e.err.Error() }
func (e *TokenError) Unwrap() error { return e.err }

// Status is the status a denied or failed request is answered with: 403
// when the caller's credential was refused (CallerRefused), 401 when its
// token was refused (or missing, and the request denied), 403 for any
// other deny, 400 for an invalid request (ErrInvalidRequest: one the
// server refused with 400, 413 or 415), 503 when the decision service is
// unavailable (ErrUnavailable, a 503 or 429 included), 500 for a policy
// error and for an answer the client does not understand (ErrProtocol: a
// redirect, or another 4xx such as a gateway's 401 or 403 refusing this
// service's own credentials, or a 404 from a wrong base URL, which are not
// the end user's fault).
func Status(d Decision, err error, anonymous bool) int {
	var te *TokenError
	switch {
	case errors.As(err, &te):
		return http.StatusUnauthorized
	case errors.Is(err, ErrInvalidRequest):
		return http.StatusBadRequest
	case errors.Is(err, ErrUnavailable):
		return http.StatusServiceUnavailable
	case err != nil:
		return http.StatusInternalServerError
	case d.Allow:
		return http.StatusOK
	case d.CallerRefused():
		return http.StatusForbidden
	case d.TokenRefused(), anonymous:
		return http.StatusUnauthorized
	}
	return http.StatusForbidden
}

// actionFields points at the method and path of a, for httpreq.Describe.
func actionFields(a *Action) (method, path *string) { return &a.Method, &a.Path }

// writeDeny is the default deny answer: the decision as JSON.
func writeDeny(w http.ResponseWriter, r *http.Request, d Decision, err error) {
	status := Status(d, err, r.Header.Get("Authorization") == "")
	if status == http.StatusUnauthorized {
		var te *TokenError
		w.Header().Set("WWW-Authenticate", httpreq.WWWAuthenticate(errors.As(err, &te) || d.TokenRefused()))
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	reasons := d.Reasons
	var te *TokenError
	if err != nil && !errors.As(err, &te) {
		// The policy's reasons are for whoever asked; a failure's cause
		// (addresses, the server's own message) is not.
		reasons = []string{errorCategory(err)}
	}
	body := struct {
		Allow   bool     `json:"allow"`
		Reasons []string `json:"reasons"`
		ID      string   `json:"decision_id,omitempty"`
	}{Reasons: reasons, ID: d.ID}
	_ = json.NewEncoder(w).Encode(body)
}
