package server

import (
	"net/http"
	"net/netip"
	"strings"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/internal/httpreq"
)

// checkPath is the forward-auth route; Envoy appends the original path.
const checkPath = "/v1/check"

// Forward-auth request headers.
const (
	headerForwardedMethod = "X-Forwarded-Method" // Traefik, Caddy
	headerForwardedURI    = "X-Forwarded-Uri"    // Traefik, Caddy
	headerOriginalMethod  = "X-Original-Method"  // nginx auth_request
	headerOriginalURI     = "X-Original-Uri"     // nginx auth_request
)

// handleCheck answers /v1/check, forward-auth, for any method. The question
// comes from headers: the bearer token from Authorization; the method and
// path from X-Forwarded-Method/-Uri, else X-Original-Method/-URI, else the
// request's own; the action name from the configured action header; the caller
// from a trusted proxy's forwarded certificate, else the mTLS peer. The
// answer is 200 with the policy's headers set, 401 with WWW-Authenticate:
// Bearer when the token is invalid (or missing, and the request denied),
// 403 for any other deny, and 400/500/503 on errors; the body is the short
// decision JSON (or the error shape). Policy headers are set on 200 only,
// and request headers are never copied to the response.
func (s *Server) handleCheck(w http.ResponseWriter, r *http.Request) {
	release, err := s.admit(r.Context(), apiCheck)
	if err != nil {
		s.fail(w, err)
		return
	}
	slot := heldSlot{release: release}
	defer slot.giveBack()
	h := r.Header
	req := authz.Request{
		RemoteAddr: s.clientAddr(r),
		RequestID:  authz.RequestIDFromHeader(r.Header),
	}
	var early error
	req.Action, early = s.checkAction(r)
	var d authz.Decision
	tok, err := authz.BearerToken(h)
	if early != nil {
		d, err = s.reject(r.Context(), apiCheck, &req, early)
	} else if err != nil {
		d, err = s.reject(r.Context(), apiCheck, &req, authz.RefuseWith(authz.ErrToken, err))
	} else {
		req.Token = tok
		var reject error
		if req.Caller, reject = s.forwardedCaller(r); reject != nil {
			d, err = s.reject(r.Context(), apiCheck, &req, reject)
		} else {
			d, err = s.decideWith(r.Context(), s.engine, apiCheck, &req, func(d authz.Decision) error {
				return refuseShadowedHeader(h, d.Headers)
			})
		}
	}
	slot.giveBack()
	anonymous := len(h.Values("Authorization")) == 0
	status, code := answer(forwardAuth, d, err, anonymous)
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", authz.WWWAuthenticate(err))
	}
	w.Header().Set("X-Verdict-Decision-Id", d.ID)
	if code != "" {
		s.writeError(w, status, code, errorMessage(err), d.ID)
		return
	}
	if status == http.StatusOK {
		// Only a 2xx carries the policy's headers (validated by the engine
		// as HTTP header names and values).
		wh := w.Header()
		for k, v := range d.Headers {
			wh.Set(k, v)
		}
		// The decision's own ID is Verdict's to say, not the policy's.
		wh.Set("X-Verdict-Decision-Id", d.ID)
	}
	s.writeDecision(w, status, &d, false)
}

// checkAction reads the protected request's action from the forward-auth
// headers. The proxy sets them, but a proxy also relays whatever the client
// sent, so nothing here is taken on trust. The method and URI come from ONE
// header family, whole: X-Forwarded-Method/-Uri (Traefik, Caddy) or
// X-Original-Method/-URI (nginx). A proxy sets one family, so a header of
// the other family came from the client: both families in one request is a
// 400, as is a family with only one of its two headers (the missing half
// would be the client's, or the subrequest's own GET) and a header
// repeated. A method-override header (X-HTTP-Method-Override and kin) is a
// 400 too: an upstream that honours it would run another method than the
// one decided. With neither family the request itself is the question
// (Envoy's HTTP ext_authz sends the original method to /v1/check + the
// original path); a family sent to /v1/check/<path> is a 400, since Envoy
// sets neither family: the client did, to have another request decided
// than the one Envoy asks about. The action name header is read only when
// the operator configured one (Options.ActionHeader), promising the proxy
// overwrites it.
func (s *Server) checkAction(r *http.Request) (authz.Action, error) {
	h := r.Header
	if err := refuseOverride(h); err != nil {
		return authz.Action{}, err
	}
	if err := refuseVerdictSpelling(h); err != nil {
		return authz.Action{}, err
	}
	var vals [4]string
	var present [4]bool
	for i, name := range [...]string{headerForwardedMethod, headerForwardedURI, headerOriginalMethod, headerOriginalURI} {
		v := h.Values(name)
		if len(v) > 1 {
			return authz.Action{}, authz.Refusef(authz.ErrInvalidRequest, "header %s appears more than once", name)
		}
		if len(v) == 1 {
			vals[i], present[i] = v[0], true
		}
	}
	forwarded, original := present[0] || present[1], present[2] || present[3]
	own := httpreq.Target(r)
	rest, envoy := strings.CutPrefix(own, checkPath+"/")
	var a authz.Action
	switch {
	case envoy && (forwarded || original):
		return authz.Action{}, authz.Refusef(authz.ErrInvalidRequest, "X-Forwarded-Method/-Uri or X-Original-Method/-URI came with a request to %s/<path>, "+
			"which is the question itself (Envoy's HTTP ext_authz), so the client sent them; a proxy that sets them asks %s", checkPath, checkPath)
	case forwarded && original:
		return authz.Action{}, authz.Refusef(authz.ErrInvalidRequest, "both X-Forwarded-Method/-Uri and X-Original-Method/-URI were sent; "+
			"a proxy sets one family, so the other came from the client")
	case forwarded:
		if !present[0] || !present[1] || vals[0] == "" || vals[1] == "" {
			return authz.Action{}, authz.Refusef(authz.ErrInvalidRequest, "the proxy must send both X-Forwarded-Method and X-Forwarded-Uri")
		}
		a.Method, a.Path = vals[0], vals[1]
	case original:
		if !present[2] || !present[3] || vals[2] == "" || vals[3] == "" {
			return authz.Action{}, authz.Refusef(authz.ErrInvalidRequest, "the proxy must send both X-Original-Method and X-Original-URI")
		}
		a.Method, a.Path = vals[2], vals[3]
	case envoy:
		a.Method, a.Path = r.Method, "/"+rest
	default:
		a.Method, a.Path = r.Method, own
	}
	var err error
	if a.Name, err = s.actionName(h); err != nil {
		return authz.Action{}, err
	}
	return a, nil
}

// refuseOverride refuses a request carrying a method- or
// path-override header (httpreq.Override).
func refuseOverride(h http.Header) error {
	if name := httpreq.Override(h); name != "" {
		return authz.Refusef(authz.ErrInvalidRequest, "%s", httpreq.OverrideRefused(name))
	}
	return nil
}

// refuseVerdictSpelling refuses a request carrying a header that is an
// x-verdict-* name with a byte other than a letter, a digit or '-' in it
// (X_Verdict_Roles, X-Verdict-User_Id, X.Verdict.Roles): a CGI-style
// upstream (PHP-FPM, Rack, WSGI) reads '_' as '-', PHP reads '.' as '_'
// too, and lighttpd writes every other byte as '_', so it reaches the
// upstream as Verdict's own x-verdict-roles; a forward-auth answer cannot
// remove a header from the upstream request, and a proxy's copy of the
// policy's header replaces only the '-' spelling. Verdict never writes
// such a name, so it came from the client. (nginx drops names with '_'
// or '.' before they get here; Caddy and Traefik pass them on.)
func refuseVerdictSpelling(h http.Header) error {
	for k := range h {
		if isVerdictHeader(k) && strings.ContainsFunc(k, notNameRune) {
			return authz.Refusef(authz.ErrInvalidRequest, "header %s is refused: an x-verdict- name written with a separator other than '-' reaches an upstream as Verdict's own header", k)
		}
	}
	return nil
}

// refuseShadowedHeader refuses a request carrying another spelling of a
// header the policy set (X_User_Id or X.User.Id beside its x-user-id: one
// name to httpreq.SameName): the proxy's copy of the policy's header
// replaces only that spelling, a CGI-style upstream reads the client's as
// the same variable, and a forward-auth answer cannot remove it.
// (x-verdict-* names are refused whatever the policy sets, by
// refuseVerdictSpelling.)
func refuseShadowedHeader(h http.Header, set map[string]string) error {
	for k := range h {
		for name := range set {
			// The policy's own spelling, in any case, the proxy's copy
			// replaces.
			if !strings.EqualFold(k, name) && httpreq.SameName(k, name) {
				return authz.Refusef(authz.ErrInvalidRequest, "header %s is refused: a CGI-style upstream reads it as %s, "+
					"which the policy sets and the proxy copies only as it is spelled", k, name)
			}
		}
	}
	return nil
}

// notNameRune reports whether r is not an ASCII letter, digit or '-'.
func notNameRune(r rune) bool {
	return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-')
}

// actionName reads the action's name from the configured action header
// (Options.ActionHeader): "" when none is configured or sent, a refusal
// when the header is repeated.
func (s *Server) actionName(h http.Header) (string, error) {
	if s.actionHeader == "" {
		return "", nil
	}
	names := h[s.actionHeader]
	if len(names) > 1 {
		return "", authz.Refusef(authz.ErrInvalidRequest, "header %s appears more than once", s.actionHeader)
	}
	if len(names) == 1 {
		return names[0], nil
	}
	return "", nil
}

// clientAddr is the protected request's client address, for
// input.context.remote_addr, read only from the header the operator named
// (Options.ClientAddrHeader) and only from a trusted proxy: the peer of a
// forward-auth request is the proxy, and a proxy relays the client's own
// headers, so an unnamed header is never believed. X-Forwarded-For gives the
// rightmost address that is not itself a trusted proxy (a chain of trusted
// proxies only names no client); any other header holds one address.
// Anything malformed names no client.
func (s *Server) clientAddr(r *http.Request) string {
	if s.clientHeader == "" || !s.trustedPeer(r.RemoteAddr) {
		return ""
	}
	values := r.Header.Values(s.clientHeader)
	if s.clientHeader != "X-Forwarded-For" {
		if len(values) != 1 {
			return ""
		}
		a, err := netip.ParseAddr(strings.TrimSpace(values[0]))
		if err != nil {
			return ""
		}
		return a.Unmap().String()
	}
	for i := len(values) - 1; i >= 0; i-- {
		parts := strings.Split(values[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
			if err != nil {
				return "" // a malformed chain names no client
			}
			if !s.trustedAddr(a) {
				return a.Unmap().String()
			}
		}
	}
	return ""
}
