package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/internal/httpreq"
)

// ExtAuthzOptions configures Envoy's external authorization service,
// envoy.service.auth.v3.Authorization/Check over gRPC, for Envoy, Istio
// (CUSTOM action) and Envoy Gateway. The zero value serves none.
type ExtAuthzOptions struct {
	// Addr is the gRPC listen address, for example "127.0.0.1:9191". Empty,
	// the default, serves no gRPC listener. With Options.TLS set, the gRPC
	// listener uses the same TLS (and client-certificate) configuration.
	Addr string
	// TrustedPeers are the addresses of the Envoy proxies whose word about
	// the protected request's peer is believed: attributes.source.principal
	// (the identity Envoy verified, input.caller with method "mesh") and
	// attributes.source.address (input.context.remote_addr). From any other
	// gRPC peer both are ignored, never refused: the caller is anonymous.
	// None, the default, means no peer is trusted.
	TrustedPeers []netip.Prefix
}

// ExtAuthzService is the gRPC service name of Envoy's external
// authorization API; the health service reports it too.
const ExtAuthzService = "envoy.service.auth.v3.Authorization"

// Answer headers of the ext_authz service.
const (
	headerDecisionID      = "x-verdict-decision-id"
	headerContentType     = "content-type"
	headerCacheControl    = "cache-control"
	headerWWWAuthenticate = "www-authenticate"
	headerRequestID       = "X-Request-Id"
)

// healthPollInterval is how often the gRPC health service re-reads
// readiness for its Watch streams (a Check reads it every time).
const healthPollInterval = time.Second

// extHeaderNames are the request headers the ext_authz front reads: the
// configured action header, Authorization, X-Request-Id and the override
// headers, by lowercase name, each with the http.Header key it is kept
// under.
type extHeaderNames struct {
	canon map[string]string // lowercase name → canonical name
}

// extAuthzHeaders returns the names the front reads, the configured action
// header included.
func extAuthzHeaders(actionHeader string) extHeaderNames {
	n := extHeaderNames{canon: map[string]string{}}
	add := func(name string) {
		c := http.CanonicalHeaderKey(name)
		n.canon[strings.ToLower(c)] = c
	}
	add("Authorization")
	add(headerRequestID)
	for _, o := range httpreq.OverrideHeaders() {
		add(o)
	}
	if actionHeader != "" {
		add(actionHeader)
	}
	return n
}

// key returns the http.Header key the front keeps request header name
// under, or "" when it does not read it. Names are compared without
// regard to case, and an override header's also with any of its '-'
// written as '_', '.' or any other byte but a letter or digit
// (httpreq.IsOverride: a CGI-style upstream reads X-Http_Method-Override
// as HTTP_X_HTTP_METHOD_OVERRIDE, PHP X.Http.Method.Override too, as
// /v1/check refuses them); such a spelling is kept under its own
// canonical form, so that a refusal names it as sent.
func (n extHeaderNames) key(name string) string {
	lower := strings.ToLower(name) // Envoy's names are lowercase: no copy
	if c, ok := n.canon[lower]; ok {
		return c
	}
	if httpreq.IsOverride(name) {
		return http.CanonicalHeaderKey(name)
	}
	return ""
}

// extAuthz is the Authorization service; it answers through its Server's
// decision pipeline.
type extAuthz struct {
	authv3.UnimplementedAuthorizationServer
	s    *Server
	hdrs sync.Pool // http.Header, see extHeaders
}

var _ authv3.AuthorizationServer = (*extAuthz)(nil)

// Check answers one ext_authz question. It always answers with a
// CheckResponse and a nil error, so that Envoy's failure_mode_allow, which
// lets requests through when the authorization service fails, never
// applies to a decision Verdict made, errors included: those are denied
// responses with a non-OK status (see extAuthzResponse). A panic is
// recovered into such an answer (500, INTERNAL).
func (x *extAuthz) Check(ctx context.Context, in *authv3.CheckRequest) (resp *authv3.CheckResponse, err error) {
	s := x.s
	defer func() {
		if p := recover(); p != nil {
			s.log.LogAttrs(ctx, slog.LevelError, "ext_authz check panicked",
				slog.String("panic", fmt.Sprint(p)), slog.String("stack", string(debug.Stack())))
			perr := authz.Refusef(authz.ErrPolicy, "internal error")
			d := authz.Deny(perr)
			resp, err = s.extAuthzResponse(&d, perr, false), nil
		}
	}()
	if s.tracer != nil {
		ctx = continueTraceGRPC(ctx)
	}
	if perr := s.grpcPeerStillTrusted(ctx); perr != nil {
		ferr := frontErr(errForbidden, "%s", status.Convert(perr).Message())
		d := authz.Deny(ferr)
		return s.extAuthzResponse(&d, ferr, false), nil
	}
	// The slot was taken before the message was decoded, when the call
	// came through extAuthzFront.
	release := takeCallSlot(ctx)
	if release == nil {
		var aerr error
		if release, aerr = s.admit(ctx, apiExtAuthz); aerr != nil {
			d := authz.Deny(aerr)
			return s.extAuthzResponse(&d, aerr, false), nil
		}
	}
	defer release()
	h, _ := x.hdrs.Get().(http.Header)
	if h == nil {
		h = make(http.Header, len(s.extNames.canon))
	}
	defer x.putHeaders(h)
	d, anonymous, derr := s.extAuthzDecide(ctx, in, h)
	resp = s.extAuthzResponse(&d, derr, anonymous)
	if ok := resp.GetOkResponse(); ok != nil {
		ok.HeadersToRemove = clientVerdictHeaders(in.GetAttributes().GetRequest().GetHttp(), ok.GetHeaders())
	}
	return resp, nil
}

// clientVerdictHeaders returns the request's x-verdict-* headers that the
// answer does not set: the client sent them, and an upstream reads
// x-verdict-* as the policy's word (a policy that sets no x-verdict-roles
// would otherwise let a client's own through). A name is one of them
// however the separators of its prefix are written (x_verdict_roles,
// x-verdict_roles, x.verdict.roles): Envoy forwards names with '_' and '.',
// a CGI-style upstream reads '_' as '-' (HTTP_X_VERDICT_ROLES), and PHP
// reads '.' as '_' too. So is another spelling of any header the answer
// sets (x_user_id when the policy sets x-user-id): Envoy overwrites only
// the answer's spelling, and a CGI-style upstream reads both as one. Each
// is named as the client spelled it, lowercase, since Envoy removes a
// header by its exact name; one the answer sets is left out only when
// spelled as the answer does.
func clientVerdictHeaders(hr *authv3.AttributeContext_HttpRequest, set []*corev3.HeaderValueOption) []string {
	var names []string
	add := func(k string) {
		k = strings.ToLower(k)
		remove := isVerdictHeader(k)
		for _, o := range set {
			key := o.GetHeader().GetKey()
			if strings.EqualFold(key, k) {
				return
			}
			remove = remove || httpreq.SameName(k, key)
		}
		if remove {
			names = append(names, k)
		}
	}
	if hm := hr.GetHeaderMap(); hm != nil {
		for _, kv := range hm.GetHeaders() {
			add(kv.GetKey())
		}
	}
	for k := range hr.GetHeaders() {
		add(k)
	}
	// Sorted, then each once: a client may send thousands of names.
	slices.Sort(names)
	return slices.Compact(names)
}

// verdictHeaderPrefix starts the names of the headers an upstream reads as
// Verdict's (the policy's, x-verdict-decision-id).
const verdictHeaderPrefix = "x-verdict-"

// isVerdictHeader reports whether the header name starts with
// verdictHeaderPrefix as a CGI-style upstream reads it
// (httpreq.NameHasPrefix): x_verdict_roles and x.verdict.roles reach a
// PHP upstream as HTTP_X_VERDICT_ROLES.
func isVerdictHeader(name string) bool { return httpreq.NameHasPrefix(name, verdictHeaderPrefix) }

// putHeaders empties h for the next Check, keeping its slices (up to a
// bound) under the names the front reads as Verdict spells them, and
// pools it. A client's own spelling of an override header
// (x.http.method.override, one of tens of thousands) is dropped: kept, a
// pooled map would gather every spelling clients sent, and each Check
// would walk them all.
func (x *extAuthz) putHeaders(h http.Header) {
	for k, v := range h {
		if cap(v) > 8 || strings.ContainsFunc(k, notNameRune) {
			delete(h, k)
			continue
		}
		clear(v)
		h[k] = v[:0]
	}
	x.hdrs.Put(h)
}

// extAuthzDecide turns a CheckRequest into a Request and decides it, under
// the rules of /v1/check: method and path from attributes.request.http (the
// path normalised, and refused, by the engine as for /v1/check), the bearer
// token from its authorization header (authz.BearerToken: a malformed one
// is a token refusal, never anonymous), the action name from the configured
// action header only, method-override headers refused. The query string
// stays out of input.action.path; it, the host and Envoy's
// context_extensions go to input.context.attributes as "query", "host" and
// "context_extensions". The caller (attributes.source.principal, method
// "mesh") and the client address (attributes.source.address) are read only
// from a trusted peer. The bool reports that no authorization header came
// (anonymous).
func (s *Server) extAuthzDecide(ctx context.Context, in *authv3.CheckRequest, h http.Header) (authz.Decision, bool, error) {
	attrs := in.GetAttributes()
	hr := attrs.GetRequest().GetHttp()
	s.extHeaders(hr, h)
	if len(h[headerRequestID]) == 0 && hr.GetId() != "" {
		h[headerRequestID] = append(h[headerRequestID], hr.GetId())
	}
	req := authz.Request{RequestID: authz.RequestIDFromHeader(h)}
	var early error
	req.Action, req.Attributes, early = s.extAuthzAction(hr, h, attrs.GetContextExtensions())
	if s.extTrustedPeer(ctx) {
		src := attrs.GetSource()
		req.Caller.Principal = src.GetPrincipal()
		if a, err := netip.ParseAddr(src.GetAddress().GetSocketAddress().GetAddress()); err == nil {
			req.RemoteAddr = a.Unmap().String()
		}
	}
	anonymous := len(h["Authorization"]) == 0
	tok, terr := authz.BearerToken(h)
	var d authz.Decision
	var err error
	switch {
	case early != nil:
		d, err = s.reject(ctx, apiExtAuthz, &req, early)
	case terr != nil:
		d, err = s.reject(ctx, apiExtAuthz, &req, authz.RefuseWith(authz.ErrToken, terr))
	default:
		req.Token = tok
		d, err = s.decide(ctx, apiExtAuthz, &req)
	}
	return d, anonymous, err
}

// extAuthzAction reads the action and the context attributes. The path is
// the request target as Envoy received it, undecoded; the engine normalises
// it and refuses what upstreams would read differently (dot segments, ';',
// encoded '/', …), exactly as for /v1/check.
func (s *Server) extAuthzAction(hr *authv3.AttributeContext_HttpRequest, h http.Header, ext map[string]string) (authz.Action, map[string]any, error) {
	if hr == nil {
		return authz.Action{}, nil, authz.Refusef(authz.ErrInvalidRequest, "attributes.request.http is required")
	}
	if err := refuseOverride(h); err != nil {
		return authz.Action{}, nil, err
	}
	path, query, _ := strings.Cut(hr.GetPath(), "?")
	if query == "" {
		query = hr.GetQuery() // always empty from Envoy, which keeps the query in path
	}
	if hr.GetMethod() == "" || path == "" {
		return authz.Action{}, nil, authz.Refusef(authz.ErrInvalidRequest, "attributes.request.http must carry a method and a path")
	}
	// The engine drops the query from the path, refusing one that names a
	// _method, as it does for /v1/check's URIs.
	a := authz.Action{Method: hr.GetMethod(), Path: path}
	if query != "" {
		a.Path += "?" + query
	}
	var err error
	if a.Name, err = s.actionName(h); err != nil {
		return authz.Action{}, nil, err
	}
	var attrs map[string]any
	add := func(k string, v any) {
		if attrs == nil {
			attrs = make(map[string]any, 3)
		}
		attrs[k] = v
	}
	if host := hr.GetHost(); host != "" {
		add("host", host)
	}
	if query != "" {
		add("query", query)
	}
	if len(ext) > 0 {
		m := make(map[string]any, len(ext))
		for k, v := range ext {
			m[k] = v
		}
		add("context_extensions", m)
	}
	return a, attrs, nil
}

// extHeaders copies the request headers the front reads (extAuthzHeaders)
// into h, which holds no values (a name may be present with none), so that
// the helpers /v1/check uses read them the same way; they all count values
// rather than test for names. Envoy sends either a map, lowercase names
// with repeated headers joined by ',' (then a repeated Authorization is
// malformed), or, with encode_raw_headers, a list that keeps each
// repetition (then it is "more than one").
func (s *Server) extHeaders(hr *authv3.AttributeContext_HttpRequest, h http.Header) {
	if hm := hr.GetHeaderMap(); hm != nil {
		for _, kv := range hm.GetHeaders() {
			if k := s.extNames.key(kv.GetKey()); k != "" {
				v := kv.GetValue()
				if v == "" {
					v = string(kv.GetRawValue())
				}
				h[k] = append(h[k], v)
			}
		}
		return
	}
	for name, v := range hr.GetHeaders() {
		if k := s.extNames.key(name); k != "" {
			h[k] = append(h[k], v)
		}
	}
}

// extTrustedPeer reports whether the gRPC peer is in
// ExtAuthzOptions.TrustedPeers.
func (s *Server) extTrustedPeer(ctx context.Context) bool {
	if len(s.extTrusted) == 0 {
		return false
	}
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return false
	}
	var a netip.Addr
	if tcp, ok := p.Addr.(*net.TCPAddr); ok {
		a, _ = netip.AddrFromSlice(tcp.IP)
	} else if ap, err := netip.ParseAddrPort(p.Addr.String()); err == nil {
		a = ap.Addr()
	}
	// A zone (a link-local peer's interface) is no part of a prefix; both
	// forms of the peer's address read the same.
	return a.IsValid() && addrIn(s.extTrusted, a.WithZone(""))
}

// extAuthzResponse is the one place where an outcome becomes a
// CheckResponse. Its HTTP status is answer's, as for /v1/check, and its
// gRPC status follows from it:
//
//	200 allow            OK                 policy headers + x-verdict-decision-id added upstream (overwriting)
//	401, 403 deny        PERMISSION_DENIED  decision JSON; 401 carries WWW-Authenticate
//	400 invalid request  INVALID_ARGUMENT   error JSON (invalid_request)
//	413 message too big  RESOURCE_EXHAUSTED error JSON (too_large)
//	503 no policy        UNAVAILABLE        error JSON (not_ready)
//	500 policy error     INTERNAL           error JSON (policy_error)
//
// Every answer but allow is a denied_response, which Envoy sends to the
// client as it is whatever failure_mode_allow says; the status is never OK
// on an error path. Every answer carries x-verdict-decision-id.
//
// Every string of a CheckResponse must be UTF-8, or it does not encode and
// the call ends with grpc-go's INTERNAL error, which failure_mode_allow
// lets through; a policy's reasons may not be (urlquery.decode of a
// client's %FF). The status message is made UTF-8 (the body's JSON is);
// the engine refuses a header value that is not (a policy error).
func (s *Server) extAuthzResponse(d *authz.Decision, err error, anonymous bool) *authv3.CheckResponse {
	status, code := answer(forwardAuth, *d, err, anonymous)
	if status == http.StatusOK {
		// The policy's headers, in name order, then the decision ID.
		var keysArr [8]string
		keys := keysArr[:0]
		for k := range d.Headers {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		hs := newHeaderOptions(len(keys) + 1)
		for _, k := range keys {
			hs.add(strings.ToLower(k), d.Headers[k])
		}
		hs.add(headerDecisionID, d.ID)
		return &authv3.CheckResponse{
			Status:       &rpcstatus.Status{Code: int32(codes.OK)},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{Headers: hs.list}},
		}
	}
	bp := s.bufs.Get().(*[]byte)
	var b []byte
	if code != "" {
		b = appendError((*bp)[:0], code, errorMessage(err), d.ID)
	} else {
		b = d.AppendJSON((*bp)[:0], false)
	}
	body := string(append(b, '\n'))
	s.putBuf(bp, b)
	hs := newHeaderOptions(4)
	hs.add(headerContentType, "application/json")
	hs.add(headerCacheControl, "no-store")
	hs.add(headerDecisionID, d.ID)
	if status == http.StatusUnauthorized {
		hs.add(headerWWWAuthenticate, authz.WWWAuthenticate(err))
	}
	msg := ""
	if len(d.Reasons) > 0 {
		msg = strings.ToValidUTF8(d.Reasons[0], "\uFFFD")
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(grpcCode(status)), Message: msg},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(status)},
			Headers: hs.list,
			Body:    body,
		}},
	}
}

// grpcCode is the CheckResponse status for an answer's HTTP status.
func grpcCode(status int) codes.Code {
	switch status {
	case http.StatusOK:
		return codes.OK
	case http.StatusUnauthorized, http.StatusForbidden:
		return codes.PermissionDenied
	case http.StatusBadRequest:
		return codes.InvalidArgument
	case http.StatusRequestEntityTooLarge:
		return codes.ResourceExhausted
	case http.StatusServiceUnavailable:
		return codes.Unavailable
	default:
		return codes.Internal
	}
}

// headerOptions builds an answer's headers, each one that overwrites a
// header of the same name (or is added). append_action is what current
// Envoy reads; Envoy releases from before it read only the deprecated
// append flag, whose absence also means overwrite, so the answer means the
// same to both. The messages are allocated together, three allocations
// for the list.
type headerOptions struct {
	list []*corev3.HeaderValueOption
	opts []corev3.HeaderValueOption
	vals []corev3.HeaderValue
}

func newHeaderOptions(n int) headerOptions {
	return headerOptions{list: make([]*corev3.HeaderValueOption, 0, n),
		opts: make([]corev3.HeaderValueOption, n), vals: make([]corev3.HeaderValue, n)}
}

func (h *headerOptions) add(key, value string) {
	i := len(h.list)
	v, o := &h.vals[i], &h.opts[i]
	v.Key, v.Value = key, value
	o.Header, o.AppendAction = v, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
	h.list = append(h.list, o)
}
