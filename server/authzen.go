package server

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/internal/jsonw"
	"github.com/verdict-pdp/verdict/internal/printable"
)

// DefaultMaxEvaluations bounds the items of one AuthZEN batch when
// AuthZEN.MaxEvaluations is zero.
const DefaultMaxEvaluations = 100

// AuthZEN paths: the 1.0 text's default paths and its well-known URI.
const (
	authzenEvaluationPath  = "/access/v1/evaluation"
	authzenEvaluationsPath = "/access/v1/evaluations"
	authzenMetadataPath    = "/.well-known/authzen-configuration"
)

// AuthZEN configures the AuthZEN 1.0 endpoints (the OpenID Authorization
// API): POST /access/v1/evaluation, POST /access/v1/evaluations and GET
// /.well-known/authzen-configuration. Options.AuthZEN nil leaves them off
// (404).
//
// An AuthZEN request names its subject itself ({type, id, properties}):
// the subject is asserted, not proven, and policies see it as
// input.subject {authenticated: true, method: "asserted", ...}. So only
// the clients listed here may call the evaluation endpoints; any other
// gets 403 before its body is read. List enforcement points, never
// networks that end users can reach.
type AuthZEN struct {
	// TrustedPeers are the peer addresses (of the TCP connection itself;
	// no forwarding header is read) that may call the evaluation
	// endpoints.
	TrustedPeers []netip.Prefix
	// TrustedCallers are the caller ids (authz.CertificateID: the SPIFFE
	// ID, else the first DNS SAN, else the subject CN) of mTLS client
	// certificates that may call them. Only a certificate the TLS
	// handshake verified counts (Options.TLS with client CAs).
	TrustedCallers []string
	// BaseURL, when set, is the PDP's identifier in the metadata
	// (policy_decision_point), and the endpoints' URLs are built from it:
	// an absolute http or https URL without user info, query or fragment,
	// such as "https://pdp.example.com". Empty means they are built from
	// each metadata request's Host header and scheme: right for a client
	// that reaches Verdict directly, wrong behind a proxy that rewrites the
	// host or terminates TLS. Set it in production: the 1.0 text wants an
	// https identifier, which a PEP compares with the URL it fetched.
	BaseURL string
	// MaxEvaluations bounds the items of one batch; more is a 400.
	// Default 100. Limits.MaxBodyBytes bounds the body as on every route.
	MaxEvaluations int
}

// authzenConfig is AuthZEN validated.
type authzenConfig struct {
	peers    []netip.Prefix
	callers  map[string]struct{}
	baseURL  string // without a trailing slash; "" means from the request
	maxItems int
}

func newAuthZEN(o *AuthZEN) (*authzenConfig, error) {
	if o.MaxEvaluations < 0 {
		return nil, fmt.Errorf("%w: AuthZEN.MaxEvaluations is negative", ErrOptions)
	}
	c := &authzenConfig{
		peers:    make([]netip.Prefix, len(o.TrustedPeers)),
		callers:  make(map[string]struct{}, len(o.TrustedCallers)),
		maxItems: cmp.Or(o.MaxEvaluations, DefaultMaxEvaluations),
	}
	for i, p := range o.TrustedPeers {
		if !p.IsValid() {
			return nil, fmt.Errorf("%w: invalid AuthZEN trusted peer prefix %v", ErrOptions, p)
		}
		c.peers[i] = p.Masked()
	}
	for _, id := range o.TrustedCallers {
		if id == "" {
			return nil, fmt.Errorf("%w: empty AuthZEN trusted caller", ErrOptions)
		}
		c.callers[id] = struct{}{}
	}
	if o.BaseURL != "" {
		u, err := parseBaseURL(o.BaseURL)
		if err != nil {
			return nil, fmt.Errorf("%w: AuthZEN.BaseURL: %w", ErrOptions, err)
		}
		c.baseURL = u
	}
	return c, nil
}

// parseBaseURL checks an AuthZEN base URL (AuthZEN.BaseURL) and returns it
// without a trailing slash: an absolute http or https URL with a host, and
// no user info, query or fragment (the 1.0 text's rules for
// policy_decision_point, which wants https; http is for development).
func parseBaseURL(s string) (string, error) {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return "", errors.New("not a URL")
	case u.Scheme != "https" && u.Scheme != "http":
		return "", errors.New("want an https (or, for development, http) URL")
	case u.Host == "" || u.Opaque != "":
		return "", errors.New("the URL has no host")
	case u.User != nil:
		return "", errors.New("the URL must not carry user info")
	case strings.ContainsAny(s, "?#"):
		return "", errors.New("the URL must not have a query or fragment")
	}
	return strings.TrimRight(s, "/"), nil
}

// allows reports whether r comes from a client that may assert subjects:
// its peer address is in TrustedPeers, or peer, its verified mTLS
// certificate, names a TrustedCallers id.
func (c *authzenConfig) allows(r *http.Request, peer authz.Caller) bool {
	if peerIn(c.peers, r.RemoteAddr) {
		return true
	}
	if len(c.callers) > 0 {
		if cert := peer.Certificate; cert != nil {
			if id, _, err := authz.CertificateID(cert); err == nil {
				_, ok := c.callers[id]
				return ok
			}
		}
	}
	return false
}

// echoRequestID wraps an AuthZEN handler so that every answer carries the
// request's X-Request-ID, as the 1.0 text requires ("the PDP MUST include
// the same identifier in the response"). The value is echoed as received
// (net/http has already refused values that are not valid header values);
// it becomes input.context.request_id only when authz.RequestIDFromHeader
// accepts it.
func echoRequestID(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if id := r.Header.Get("X-Request-Id"); id != "" {
			w.Header().Set("X-Request-Id", id)
		}
		h(w, r)
	}
}

// handleAuthZENEvaluation answers POST /access/v1/evaluation.
func (s *Server) handleAuthZENEvaluation(w http.ResponseWriter, r *http.Request) {
	s.serveAuthZEN(w, r, false)
}

// handleAuthZENEvaluations answers POST /access/v1/evaluations.
func (s *Server) handleAuthZENEvaluations(w http.ResponseWriter, r *http.Request) {
	s.serveAuthZEN(w, r, true)
}

// serveAuthZEN answers an evaluation or a batch. Statuses (the 1.0 text's
// transport errors pertain to the whole payload): 403 for a client that may
// not assert subjects, 415, 413, 400 for a malformed body or a missing
// required member anywhere in it (nothing is evaluated then), 503 before a
// policy is loaded, 500 when a single evaluation fails. Otherwise 200 with
// the decision (allow or deny); in a batch, an item whose evaluation
// failed is a deny carrying the error in its context, as the text's
// examples show.
func (s *Server) serveAuthZEN(w http.ResponseWriter, r *http.Request, batch bool) {
	start := s.now() // the headers are read: the connection's write deadline runs from here
	peer := authz.CallerFromTLS(r.TLS)
	if !s.authzen.allows(r, peer) {
		s.fail(w, frontErr(errForbidden, "this client may not call the AuthZEN evaluation endpoints: "+
			"its address is not in authzen.trusted_peers and it presented no verified certificate named in authzen.trusted_callers"))
		return
	}
	if err := checkJSONContentType(r.Header); err != nil {
		s.fail(w, err)
		return
	}
	var in azBody
	release, err := s.decodeBody(w, r, apiAuthZEN, func(jr *jsonReader, data []byte) error {
		return jr.decodeAuthZEN(data, s.limits.MaxJSONDepth, s.authzen.maxItems, batch, &in)
	})
	if err != nil {
		s.fail(w, err)
		return
	}
	slot := heldSlot{release: release}
	defer slot.giveBack()
	// What every evaluation of this HTTP request shares: the enforcement
	// point that asks (its verified mTLS certificate is input.caller, as on
	// /v1/decide) and the request ID.
	base := authz.Request{Caller: peer, RequestID: authz.RequestIDFromHeader(r.Header)}
	if len(in.Evaluations) == 0 {
		// No evaluations array, or an empty one: one evaluation, answered
		// as /access/v1/evaluation answers it.
		s.authzenOne(w, r, &in, &base, &slot)
		return
	}
	reqs := make([]authz.Request, len(in.Evaluations))
	for i := range in.Evaluations {
		e, err := in.evaluation(i)
		if err != nil {
			s.fail(w, err)
			return
		}
		reqs[i] = e.request(&base)
	}
	s.authzenBatch(w, r, reqs, in.Semantic, &slot, start)
}

// request is the engine's request for e.
func (e *azEvaluation) request(base *authz.Request) authz.Request {
	req := *base
	req.Subject = e.Subject
	req.Action = authz.Action{Name: e.Action.Name, Properties: e.Action.Properties}
	req.Resource = e.Resource.document()
	req.Attributes = e.Context
	return req
}

// authzenOne answers a single evaluation, giving slot back once decided.
func (s *Server) authzenOne(w http.ResponseWriter, r *http.Request, in *azBody, base *authz.Request, slot *heldSlot) {
	e, err := in.evaluation(-1)
	if err != nil {
		s.fail(w, err)
		return
	}
	req := e.request(base)
	d, err := s.decide(r.Context(), apiAuthZEN, &req)
	slot.giveBack()
	status, code := answer(decideAPI, d, err, true)
	if code != "" {
		s.writeError(w, status, code, errorMessage(err), d.ID)
		return
	}
	bp := s.bufs.Get().(*[]byte)
	b := appendEvaluation((*bp)[:0], &d, nil)
	s.writeAnswer(w, bp, append(b, '\n'))
}

// authzenBatch evaluates reqs in order under sem, gives slot back, and answers
// {"evaluations": [...]}: one answer per evaluation made, in request
// order. A short-circuiting semantic stops after the deciding item (the
// first deny, failures included, for deny_on_first_deny; the first permit
// for permit_on_first_permit), and the items after it are left out of the
// answer, as in the 1.0 text's examples: the array is then shorter than
// the request's, and its last item is the one that decided.
//
// The whole batch gets limits.write_timeout from start (when the request's
// headers were read, as the connection's write deadline does): past it the
// client can no longer be answered, so the items left are not decided
// (each has its own limits.eval_timeout, and a batch of them could run far
// longer), and the request is answered with a policy error. The answer is
// bounded too (maxBatchAnswerBytes): a policy whose reasons quote the
// request would otherwise make a 64 KiB batch a 6 MB answer, held in memory
// until a client that need not read it does.
//
// An item the engine refuses (a value it cannot take, such as 1e400) is
// that item's error, as a failed evaluation is: the items before it were
// decided, and logged, and are answered.
func (s *Server) authzenBatch(w http.ResponseWriter, r *http.Request, reqs []authz.Request, sem azSemantic, slot *heldSlot, start time.Time) {
	ctx, cancel := context.WithDeadline(r.Context(), start.Add(s.limits.WriteTimeout))
	defer cancel()
	maxAnswer := maxBatchAnswerBytes(s.limits.MaxBodyBytes)
	bp := s.bufs.Get().(*[]byte)
	b := append((*bp)[:0], `{"evaluations":[`...)
	i := 0
	for d, err := range s.decideAll(ctx, apiAuthZEN, reqs) {
		if err := ctx.Err(); err != nil {
			s.putBuf(bp, b)
			if errors.Is(err, context.DeadlineExceeded) {
				s.fail(w, authz.Refusef(authz.ErrPolicy, "the batch ran past limits.write_timeout (%s) at its evaluation %d of %d",
					s.limits.WriteTimeout, i+1, len(reqs)))
			}
			return // else the client went away, or shutdown cut the request off: no one to answer
		}
		status, code := answer(decideAPI, d, err, true)
		if code == CodeNotReady {
			// About the whole payload, not this item: no policy.
			s.putBuf(bp, b)
			s.writeError(w, status, code, errorMessage(err), "")
			return
		}
		if i > 0 {
			b = append(b, ',')
		}
		i++
		var fail *itemError
		if code != "" {
			fail = &itemError{status: status, code: code, message: errorMessage(err)}
		}
		b = appendEvaluation(b, &d, fail)
		if len(b) > maxAnswer {
			s.putBuf(bp, b)
			s.fail(w, authz.Refusef(authz.ErrPolicy, "the batch's answer ran past %d bytes at its evaluation %d of %d "+
				"(do the policy's reasons quote the request?)", maxAnswer, i, len(reqs)))
			return
		}
		denied := err != nil || !d.Allow
		if sem == denyOnFirstDeny && denied || sem == permitOnFirstPermit && !denied {
			break
		}
	}
	slot.giveBack()
	s.writeAnswer(w, bp, append(b, "]}\n"...))
}

// maxBatchAnswerBytes bounds a batch's answer: sixteen times what its
// request may be, and at least 1 MiB (100 items of ordinary decisions take
// about 20 KB).
func maxBatchAnswerBytes(maxBody int64) int {
	return int(max(16*maxBody, 1<<20))
}

// decideAll decides reqs in order, recording each decision under a, and
// yields each as it is made; the caller stops it by breaking out. Once ctx
// is done it decides no more and yields ctx's error. When the
// engine can (pinner), every decision comes from the snapshot serving when
// the first was asked, even if a policy loads in the meantime.
func (s *Server) decideAll(ctx context.Context, a api, reqs []authz.Request) iter.Seq2[authz.Decision, error] {
	return func(yield func(authz.Decision, error) bool) {
		var dec decider = s.engine
		if p, ok := s.engine.(pinner); ok {
			dec = p.Pin()
		}
		for i := range reqs {
			if err := ctx.Err(); err != nil {
				yield(authz.Decision{}, err) // not decided: the batch is over
				return
			}
			d, err := s.decideWith(ctx, dec, a, &reqs[i], nil)
			if !yield(d, err) {
				return
			}
		}
	}
}

// itemError is a batch item's failed evaluation, as its context shows it.
type itemError struct {
	status  int
	code    string
	message string
}

// appendEvaluation appends one AuthZEN decision: {"decision": bool,
// "context": {"decision_id", "reasons", "revision"?, "error"?: {"status",
// "code", "message"}}}. The policy's headers are not part of it.
func appendEvaluation(b []byte, d *authz.Decision, fail *itemError) []byte {
	if d.Allow {
		b = append(b, `{"decision":true,"context":{"decision_id":`...)
	} else {
		b = append(b, `{"decision":false,"context":{"decision_id":`...)
	}
	b = jsonw.AppendString(b, d.ID)
	b = append(b, `,"reasons":[`...)
	for i, r := range d.Reasons {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsonw.AppendString(b, r)
	}
	b = append(b, ']')
	if d.Revision != "" {
		b = append(b, `,"revision":`...)
		b = jsonw.AppendString(b, d.Revision)
	}
	if fail != nil {
		b = append(b, `,"error":{"status":`...)
		b = strconv.AppendInt(b, int64(fail.status), 10)
		b = append(b, `,"code":`...)
		b = jsonw.AppendString(b, fail.code)
		b = append(b, `,"message":`...)
		b = jsonw.AppendString(b, printable.Cut(fail.message, maxMessageBytes))
		b = append(b, '}')
	}
	return append(b, "}}"...)
}

// writeAnswer writes a 200 JSON answer held in a pooled buffer and returns
// the buffer to the pool.
func (s *Server) writeAnswer(w http.ResponseWriter, bp *[]byte, b []byte) {
	setJSONHeaders(w.Header())
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
	s.putBuf(bp, b)
}

// authzenMetadata is the PDP metadata document (1.0, "Policy Decision
// Point Metadata"). Parameters without a value are omitted, as the text
// requires: this PDP has no search endpoints, capabilities or signed
// metadata.
type authzenMetadata struct {
	PolicyDecisionPoint       string `json:"policy_decision_point"`
	AccessEvaluationEndpoint  string `json:"access_evaluation_endpoint"`
	AccessEvaluationsEndpoint string `json:"access_evaluations_endpoint"`
}

// handleAuthZENMetadata answers GET /.well-known/authzen-configuration.
// Anyone may read it: it names endpoints, nothing about policy. With
// AuthZEN.BaseURL unset, the URLs are built from the request's Host and
// scheme (https when the connection is TLS; no X-Forwarded-* header is
// read): a client that sends another Host gets its own Host back, which
// misleads no one else, and the answer is never cached (no-store), so that
// no cache can hand one client's Host to another. With BaseURL set the
// answer is the same for everyone and may be cached for an hour.
func (s *Server) handleAuthZENMetadata(w http.ResponseWriter, r *http.Request) {
	base := s.authzen.baseURL
	if base == "" {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		u, err := url.Parse(scheme + "://" + r.Host)
		if r.Host == "" || err != nil || u.Host != r.Host || u.User != nil || u.Path != "" {
			s.fail(w, badBody("the Host header does not name a host; configure authzen.base_url"))
			return
		}
		base = scheme + "://" + r.Host
	}
	body, err := json.Marshal(authzenMetadata{
		PolicyDecisionPoint:       base,
		AccessEvaluationEndpoint:  base + authzenEvaluationPath,
		AccessEvaluationsEndpoint: base + authzenEvaluationsPath,
	})
	if err != nil {
		s.fail(w, err)
		return
	}
	setJSONHeaders(w.Header())
	if s.authzen.baseURL != "" {
		w.Header().Set("Cache-Control", "max-age=3600")
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(append(body, '\n'))
}
