package server

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/verdict-pdp/verdict/authz"
)

// Forward-auth request headers.
const (
	headerForwardedMethod = "X-Forwarded-Method" // Traefik, Caddy
	headerForwardedURI    = "X-Forwarded-Uri"    // Traefik, Caddy
	headerOriginalMethod  = "X-Original-Method"  // nginx auth_request
	headerOriginalURI     = "X-Original-Uri"     // nginx auth_request
	headerVerdictAction   = "X-Verdict-Action"   // any proxy: the action's name
)

// handleCheck answers /v1/check, forward-auth, for any method. The question
// comes from headers: the bearer token from Authorization; the method and
// path from X-Forwarded-Method/-Uri, else X-Original-Method/-URI, else the
// request's own; the action name from X-Verdict-Action when set; the caller
// from a trusted proxy's forwarded certificate, else the mTLS peer. The
// answer is 200 with the policy's headers set, 401 with WWW-Authenticate:
// Bearer when the token is invalid (or missing, and the request denied),
// 403 for any other deny, and 400/500/503 on errors; the body is the short
// decision JSON (or the error shape). Policy headers are set on 200 only,
// and request headers are never copied to the response.
func (s *Server) handleCheck(w http.ResponseWriter, r *http.Request) {
	h := r.Header
	req := authz.Request{
		Action: authz.Action{
			Name:   h.Get(headerVerdictAction),
			Method: first(h.Get(headerForwardedMethod), h.Get(headerOriginalMethod), r.Method),
			Path:   first(h.Get(headerForwardedURI), h.Get(headerOriginalURI), r.URL.EscapedPath()),
		},
		RemoteAddr: r.RemoteAddr,
		RequestID:  headerRequestID(r),
	}
	var d authz.Decision
	tok, err := authz.BearerToken(h)
	if err != nil {
		d, err = s.reject(r, &req, fmt.Errorf("%w: %w", authz.ErrToken, err))
	} else {
		req.Token = tok
		var reject error
		if req.Caller, reject = s.forwardedCaller(r); reject != nil {
			d, err = s.reject(r, &req, reject)
		} else {
			d, err = s.decide(r, &req)
		}
	}
	anonymous := len(h.Values("Authorization")) == 0
	status, code := answer(forwardAuth, d, err, anonymous)
	if status == http.StatusUnauthorized {
		if errors.Is(err, authz.ErrToken) {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		} else {
			w.Header().Set("WWW-Authenticate", "Bearer")
		}
	}
	if code != "" {
		s.writeError(w, status, code, errorMessage(d, err), d.ID)
		return
	}
	if status == http.StatusOK {
		// Only a 2xx carries the policy's headers (validated by the engine
		// as HTTP header names and values).
		wh := w.Header()
		for k, v := range d.Headers {
			wh.Set(k, v)
		}
	}
	w.Header().Set("X-Verdict-Decision-Id", d.ID)
	s.writeDecision(w, status, &d, false)
}

// first returns the first non-empty string.
func first(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}
