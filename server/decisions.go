package server

import (
	"context"
	"errors"
	"time"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/token"
	"github.com/verdict-pdp/verdict/internal/printable"
	"github.com/verdict-pdp/verdict/server/decisionlog"
)

// api names the interface a decision was asked through, for metrics and
// the decision log. The set is closed.
type api string

const (
	apiDecide   api = "decide"    // POST /v1/decide
	apiCheck    api = "check"     // forward-auth, /v1/check
	apiAuthZEN  api = "authzen"   // AuthZEN /access/v1/evaluation(s)
	apiExtAuthz api = "ext_authz" // Envoy ext_authz over gRPC
)

// apis lists every api, for metrics created up front.
var apis = [...]api{apiDecide, apiCheck, apiAuthZEN, apiExtAuthz}

// decide asks the engine and records the outcome under a; when the
// server traces, within a verdict.decide span (decideTraced).
func (s *Server) decide(ctx context.Context, a api, req *authz.Request) (authz.Decision, error) {
	return s.decideWith(ctx, s.engine, a, req, nil)
}

// decider decides one request: the Engine, or a batch's pinned snapshot.
type decider interface {
	Decide(ctx context.Context, req authz.Request) (authz.Decision, error)
}

// pinner is an Engine that can decide a batch on one policy snapshot;
// *authz.Engine is one.
type pinner interface {
	Pin() *authz.Pinned
}

var _ pinner = (*authz.Engine)(nil)

// decideWith is decide, asking dec. vet, when not nil, may refuse what
// dec allowed, before it is recorded (see vetAllow).
func (s *Server) decideWith(ctx context.Context, dec decider, a api, req *authz.Request, vet func(authz.Decision) error) (authz.Decision, error) {
	if s.tracer != nil {
		return s.decideTraced(ctx, dec, a, req, vet)
	}
	d, err := dec.Decide(ctx, *req)
	err = vetAllow(&d, err, vet)
	s.record(a, req, &d, err, "")
	return d, err
}

// vetAllow asks vet about an allow d, and turns d into the deny of the
// refusal vet returns, if any: the decision keeps its ID, revision and
// duration, and is recorded as that refusal, without its input, as every
// refusal of the front is. The refusal rests on what the input does not
// hold (the request's headers): with it, the shadow and verdict replay
// would compare the policy's allow with the front's deny, a flip any
// client could add at will. It returns the decision's error.
func vetAllow(d *authz.Decision, err error, vet func(authz.Decision) error) error {
	if vet == nil || err != nil || !d.Allow {
		return err
	}
	if err = vet(*d); err != nil {
		deny := authz.Deny(err)
		d.Allow, d.Reasons, d.Headers, d.Input = false, deny.Reasons, nil, nil
	}
	return err
}

// reject records a deny decided by the front itself — a request or
// credential it would not believe — without evaluating policy. err is an
// *authz.Refusal; the decision is authz.Deny's, the same shape the engine
// gives. ctx is the request's, for its trace.
func (s *Server) reject(ctx context.Context, a api, req *authz.Request, err error) (authz.Decision, error) {
	d := authz.Deny(err)
	traceID := s.traceRejected(ctx, a, &d, err)
	s.record(a, req, &d, err, traceID)
	return d, err
}

// callerRejected is a caller credential the front refuses.
func callerRejected(format string, args ...any) error {
	return authz.Refusef(authz.ErrCaller, format, args...)
}

// record counts a decision in the metrics and hands it to the decision log.
// traceID names the decision's trace; "" when the server does not trace.
func (s *Server) record(a api, req *authz.Request, d *authz.Decision, err error, traceID string) {
	m := s.metrics.forAPI(a)
	switch {
	case err == nil && d.Allow:
		m.allow.Inc()
	case errors.Is(err, token.ErrKeysUnavailable):
		m.errored.Inc() // an outage, answered 503
	case err == nil, errors.Is(err, authz.ErrToken), errors.Is(err, authz.ErrCaller):
		m.deny.Inc()
	default:
		m.errored.Inc()
	}
	m.duration.Observe(d.Duration.Seconds())
	if errors.Is(err, token.ErrInvalid) {
		s.metrics.tokenFailure(token.Reason(err))
	}
	if s.dlog == nil && s.shadow == nil {
		return
	}
	rec := decisionlog.Record{
		DecisionID: d.ID,
		API:        string(a),
		TraceID:    traceID,
		Time:       s.now(),
		Allow:      d.Allow,
		Reasons:    d.Reasons,
		Revision:   d.Revision,
		SubjectID:  d.SubjectID,
		CallerID:   d.CallerID,
		Action:     logAction(req.Action),
		Latency:    d.Duration,
		Input:      d.Input,
	}
	if err != nil {
		_, rec.Error = answer(decideAPI, *d, err, true) // "" for a decision
	}
	// A decision made by policy, or failed in it (a deny the candidate may
	// turn into an allow), may go to the shadow, which logs it once the
	// candidate has answered; one refused before any policy ran has no
	// input to offer, and one cut short (timed out, its client gone, or
	// stopped by the heap limit: its input would allocate as much again)
	// no answer to compare.
	if s.shadow != nil && rec.Input != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, authz.ErrHeapLimit) {
			s.shadow.skip()
		} else if s.shadow.offer(rec) {
			return
		}
	}
	if s.dlog != nil {
		s.dlog.Log(rec)
	}
}

// certCacheSize bounds the verified forwarded-certificate cache.
const certCacheSize = 1024

// certCacheTTL is how long a verified forwarded certificate is remembered
// (never past its NotAfter).
const certCacheTTL = time.Minute

// maxLoggedField bounds each action field in a decision-log record: the
// headers they come from can be tens of KiB, and the log's buffer counts
// records.
const maxLoggedField = 1024

// logAction is the action as logged: the path cut at its query string
// (which can carry secrets such as ?code= or ?access_token=), fragment or
// path parameters (#access_token=, ;jsessionid=), and every field
// truncated to maxLoggedField bytes.
func logAction(a authz.Action) decisionlog.Action {
	a.Path = authz.PathLogPrefix(a.Path)
	return decisionlog.Action{
		Name:   printable.Cut(a.Name, maxLoggedField),
		Method: printable.Cut(a.Method, maxLoggedField),
		Path:   printable.Cut(a.Path, maxLoggedField),
	}
}
