package server

import (
	"context"
	"errors"
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/token"
)

// Tracing. With Options.TracerProvider set, every decision — asked of the
// engine or refused by the front before it — is a span:
//
//	verdict.decide (kind server)
//	    verdict.api          decide, check, authzen or ext_authz
//	    verdict.decision_id  the decision's ID, as answered and logged
//	    verdict.allow        the answer
//	    verdict.revision     the policy snapshot that decided, when one did
//	    verdict.reason_code  policy (the policy answered), or the refusal's
//	                         code: token, caller, invalid_request, not_ready,
//	                         policy_error
//
// with the engine's spans (authz.SpanVerifyToken, authz.SpanEvaluate) as
// its children when the engine traces too. Its status is Error for
// not_ready and policy_error. It carries no token, claim, reason text or
// input value. The W3C trace context (traceparent, tracestate) of the
// incoming HTTP request, or of the gRPC metadata on ext_authz, is its
// parent, and the decision-log record names its trace (trace_id).

// SpanDecide is the name of a decision's span.
const SpanDecide = "verdict.decide"

// TracerName is the instrumentation scope of the server's spans.
const TracerName = "github.com/verdict-pdp/verdict/server"

// Attribute keys of the decision span (and authz.AttrRevision).
const (
	AttrAPI        = attribute.Key("verdict.api")
	AttrDecisionID = attribute.Key("verdict.decision_id")
	AttrAllow      = attribute.Key("verdict.allow")
	AttrReasonCode = attribute.Key("verdict.reason_code")
)

// traceContext is the propagator of incoming trace context: W3C Trace
// Context only.
var traceContext propagation.TraceContext

// apiAttrs are the verdict.api attributes, made once.
var apiAttrs = func() map[api]trace.SpanStartEventOption {
	m := make(map[api]trace.SpanStartEventOption, len(apis))
	for _, a := range apis {
		m[a] = trace.WithAttributes(AttrAPI.String(string(a)))
	}
	return m
}()

// continueTrace returns r with the trace context of its headers, when it
// carries a valid one; the server traces.
func continueTrace(r *http.Request) *http.Request {
	ctx := traceContext.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	if ctx == r.Context() {
		return r
	}
	return r.WithContext(ctx)
}

// continueTraceGRPC returns ctx with the trace context of the incoming
// gRPC metadata, when it carries a valid one; the server traces.
func continueTraceGRPC(ctx context.Context) context.Context {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return ctx
	}
	return traceContext.Extract(ctx, metadataCarrier(md))
}

// metadataCarrier reads and writes gRPC metadata for a propagator.
type metadataCarrier metadata.MD

func (c metadataCarrier) Get(key string) string {
	if v := metadata.MD(c).Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (c metadataCarrier) Set(key, value string) { metadata.MD(c).Set(key, value) }

func (c metadataCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// decideTraced is decide within a verdict.decide span; the server traces.
func (s *Server) decideTraced(ctx context.Context, dec decider, a api, req *authz.Request, vet func(authz.Decision) error) (authz.Decision, error) {
	ctx, span := s.tracer.Start(ctx, SpanDecide, trace.WithSpanKind(trace.SpanKindServer), apiAttrs[a])
	d, err := dec.Decide(ctx, *req)
	err = vetAllow(&d, err, vet)
	traceID := endDecide(span, &d, err)
	s.record(a, req, &d, err, traceID)
	return d, err
}

// traceRejected records the verdict.decide span of a decision the front
// refused without asking the engine, and returns its trace ID; "" when the
// server does not trace.
func (s *Server) traceRejected(ctx context.Context, a api, d *authz.Decision, err error) string {
	if s.tracer == nil {
		return ""
	}
	_, span := s.tracer.Start(ctx, SpanDecide, trace.WithSpanKind(trace.SpanKindServer), apiAttrs[a])
	return endDecide(span, d, err)
}

// endDecide sets the decision's attributes on its span, ends it, and
// returns its trace ID (32 hex digits) for the decision log.
func endDecide(span trace.Span, d *authz.Decision, err error) string {
	if span.IsRecording() {
		code := reasonCode(err)
		attrs := make([]attribute.KeyValue, 0, 4)
		attrs = append(attrs, AttrDecisionID.String(d.ID), AttrAllow.Bool(d.Allow), AttrReasonCode.String(code))
		if d.Revision != "" {
			attrs = append(attrs, authz.AttrRevision.String(d.Revision))
		}
		span.SetAttributes(attrs...)
		switch {
		case code == CodeNotReady || code == CodePolicyError:
			span.SetStatus(codes.Error, code)
		case errors.Is(err, token.ErrKeysUnavailable): // an outage, not a verdict on the token
			span.SetStatus(codes.Error, CodeKeysUnavailable)
		}
	}
	span.End()
	if sc := span.SpanContext(); sc.HasTraceID() {
		return sc.TraceID().String()
	}
	return ""
}

// reasonCode is the decision's verdict.reason_code: "policy" when the
// policy answered, else the refusal's code.
func reasonCode(err error) string {
	if err == nil {
		return "policy"
	}
	var r *authz.Refusal
	if errors.As(err, &r) {
		return r.Code()
	}
	return CodePolicyError
}
