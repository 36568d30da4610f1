package authz

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/verdict-pdp/verdict/authz/token"
)

// Tracing. With Options.TracerProvider set, each Decide records the steps
// of a decision as OpenTelemetry spans, children of the span in Decide's
// context (the caller's span for the decision, such as the server's
// verdict.decide):
//
//	verdict.verify_token  one per token verified (the subject's, a caller's)
//	    verdict.token.purpose    "subject" or "caller"
//	    verdict.token.cache_hit  true when the verification was cached
//	    verdict.token.failure    the token.Reason of a refused token
//	verdict.evaluate      the policy's answer: evaluated, or from the
//	                      snapshot's decision cache
//	    verdict.decision_cache.hit  true when the answer was cached
//	    verdict.revision            the snapshot that answered
//
// A span never carries a token, a claim or an input value. Only the
// package's own API module (go.opentelemetry.io/otel/trace) is imported:
// the SDK and exporters are the embedder's choice.

// Names of the spans the engine records.
const (
	SpanVerifyToken = "verdict.verify_token"
	SpanEvaluate    = "verdict.evaluate"
)

// TracerName is the instrumentation scope of the engine's spans.
const TracerName = "github.com/verdict-pdp/verdict/authz"

// Attribute keys of the engine's spans.
const (
	AttrTokenPurpose     = attribute.Key("verdict.token.purpose")
	AttrTokenCacheHit    = attribute.Key("verdict.token.cache_hit")
	AttrTokenFailure     = attribute.Key("verdict.token.failure")
	AttrDecisionCacheHit = attribute.Key("verdict.decision_cache.hit")
	AttrRevision         = attribute.Key("verdict.revision")
)

// purposeOpts start a verdict.verify_token span, by purpose; made once.
var purposeOpts = [...]trace.SpanStartOption{
	forSubject: trace.WithAttributes(AttrTokenPurpose.String("subject")),
	forCaller:  trace.WithAttributes(AttrTokenPurpose.String("caller")),
}

// verify is verifyToken, traced as a verdict.verify_token span when the
// engine traces.
func (e *Engine) verify(ctx context.Context, raw string, p purpose, now time.Time) (*verifiedToken, cacheKey, bool, error) {
	if e.tracer == nil {
		return e.verifyToken(ctx, raw, p, now)
	}
	ctx, span := e.tracer.Start(ctx, SpanVerifyToken, purposeOpts[p])
	vt, key, hit, err := e.verifyToken(ctx, raw, p, now)
	if span.IsRecording() {
		if err != nil {
			span.SetAttributes(AttrTokenCacheHit.Bool(hit), AttrTokenFailure.String(token.Reason(err)))
		} else {
			span.SetAttributes(AttrTokenCacheHit.Bool(hit))
		}
	}
	span.End()
	return vt, key, hit, err
}

// startEvaluate starts the verdict.evaluate span; the engine traces.
func (e *Engine) startEvaluate(ctx context.Context) (context.Context, trace.Span) {
	return e.tracer.Start(ctx, SpanEvaluate)
}

// endEvaluate ends the verdict.evaluate span of an answer from snapshot cp.
// An evaluation that failed (ErrPolicy: an error, a timeout, a result
// outside the contract) sets the span's status to Error, described by a
// fixed text: OPA's messages can quote input values.
func endEvaluate(span trace.Span, cp *compiled, cached bool, err error) {
	if span.IsRecording() {
		span.SetAttributes(AttrRevision.String(cp.snapshot.Revision), AttrDecisionCacheHit.Bool(cached))
		if errors.Is(err, ErrPolicy) {
			var r *Refusal
			switch {
			case errors.As(err, &r) && (errors.Is(r.Cause, context.DeadlineExceeded) || errors.Is(r.Cause, context.Canceled)):
				span.SetStatus(codes.Error, InterruptedDetail)
			case errors.Is(err, ErrHeapLimit):
				span.SetStatus(codes.Error, HeapLimitDetail)
			default:
				span.SetStatus(codes.Error, "policy_error")
			}
		}
	}
	span.End()
}
