package authz_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/authz/token"
)

// rolesPolicy allows viewers to read; it reads only the request, so its
// decisions are cached.
const rolesPolicy = `package authz

default allow := false

allow if {
	"viewer" in input.subject.claims.roles
	input.action.name == "orders:read"
}
`

// tracedEngine is an engine tracing into a span recorder.
func tracedEngine(t *testing.T, is *authztest.Issuer, policy string) (*authz.Engine, *tracetest.SpanRecorder, trace.Tracer) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	e := newEngine(t, authz.Options{
		Tokens:         token.Options{Issuers: []token.Issuer{is.Config()}},
		TracerProvider: tp,
	}, authztest.Policy(t, "rev-1", policy))
	return e, rec, tp.Tracer("test")
}

// spanSummary is what a test checks of a recorded span.
type spanSummary struct {
	Name   string
	Parent string // the parent span's name, "" for another trace's or none
	Attrs  map[string]any
	Status codes.Code
}

func summarize(spans []sdktrace.ReadOnlySpan) []spanSummary {
	names := map[trace.SpanID]string{}
	for _, s := range spans {
		names[s.SpanContext().SpanID()] = s.Name()
	}
	out := make([]spanSummary, 0, len(spans))
	for _, s := range spans {
		sum := spanSummary{Name: s.Name(), Parent: names[s.Parent().SpanID()], Attrs: map[string]any{}, Status: s.Status().Code}
		for _, kv := range s.Attributes() {
			sum.Attrs[string(kv.Key)] = kv.Value.AsInterface()
		}
		out = append(out, sum)
	}
	return out
}

// TestTraceSpans: with a TracerProvider, each decision's token verification
// and policy answer are spans under the caller's span, saying whether each
// came from a cache; a refused token's span names the reason.
func TestTraceSpans(t *testing.T) {
	is := authztest.NewIssuer(t, "ES256")
	e, rec, tracer := tracedEngine(t, is, rolesPolicy)
	tok := is.Mint(t, map[string]any{"sub": "alice", "roles": []string{"viewer"}, "email": "alice@example.com"})
	req := authz.Request{Token: token.Raw(tok), Action: authz.Action{Name: "orders:read"}}

	decide := func(req authz.Request) {
		t.Helper()
		ctx, parent := tracer.Start(t.Context(), "parent")
		d, err := e.Decide(ctx, req)
		parent.End()
		if d.Allow != (err == nil) {
			t.Fatalf("Decide: %+v, %v", d, err)
		}
	}
	// First use: verified and evaluated (both cached on probation);
	// second and third: both answered from the caches.
	for range 3 {
		decide(req)
	}
	decide(authz.Request{Token: "not-a-token", Action: authz.Action{Name: "orders:read"}})

	verify := func(hit bool) spanSummary {
		return spanSummary{Name: authz.SpanVerifyToken, Parent: "parent", Attrs: map[string]any{
			"verdict.token.purpose": "subject", "verdict.token.cache_hit": hit}}
	}
	evaluate := func(hit bool) spanSummary {
		return spanSummary{Name: authz.SpanEvaluate, Parent: "parent", Attrs: map[string]any{
			"verdict.revision": "rev-1", "verdict.decision_cache.hit": hit}}
	}
	parent := spanSummary{Name: "parent", Attrs: map[string]any{}}
	refused := verify(false)
	refused.Attrs["verdict.token.failure"] = "malformed"
	want := []spanSummary{
		verify(false), evaluate(false), parent,
		verify(true), evaluate(true), parent,
		verify(true), evaluate(true), parent,
		refused, parent,
	}
	spans := rec.Ended()
	if diff := cmp.Diff(want, summarize(spans)); diff != "" {
		t.Errorf("spans (-want +got):\n%s", diff)
	}
	// Nothing secret or personal reaches a span.
	for _, s := range spans {
		for _, kv := range s.Attributes() {
			v := kv.Value.String()
			for _, secret := range []string{tok, "alice", "viewer", "orders:read"} {
				if strings.Contains(v, secret) {
					t.Errorf("span %s attribute %s = %q carries %q", s.Name(), kv.Key, v, secret)
				}
			}
		}
	}
}

// TestTraceEvaluateError: a failed evaluation marks its span as an error,
// with a fixed description (OPA's messages can quote input values).
func TestTraceEvaluateError(t *testing.T) {
	is := authztest.NewIssuer(t, "ES256")
	e, rec, _ := tracedEngine(t, is, `package authz

allow := true

reasons := ["r"] if input.resource.v == "boom"
reasons := ["s"] if input.resource.v == "boom"
`)
	_, err := e.Decide(t.Context(), authz.Request{Action: authz.Action{Name: "a"}, Resource: map[string]any{"v": "boom"}})
	if err == nil {
		t.Fatal("want a policy error")
	}
	spans := rec.Ended()
	if len(spans) != 1 || spans[0].Name() != authz.SpanEvaluate {
		t.Fatalf("spans: %v", summarize(spans))
	}
	if got := spans[0].Status(); got.Code != codes.Error || got.Description != "policy_error" {
		t.Errorf("status = %+v, want Error policy_error", got)
	}
}

// TestTraceOffCostsNothing: without a TracerProvider, or with a no-op one,
// a decision allocates exactly what it does without tracing at all.
func TestTraceOffCostsNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts vary under the race detector")
	}
	is := authztest.NewIssuer(t, "ES256")
	tok := is.Mint(t, map[string]any{"sub": "alice", "roles": []string{"viewer"}})
	req := authz.Request{Token: token.Raw(tok), Action: authz.Action{Name: "orders:read"}}
	allocs := func(tp trace.TracerProvider) float64 {
		e := newEngine(t, authz.Options{
			Tokens:         token.Options{Issuers: []token.Issuer{is.Config()}},
			TracerProvider: tp,
		}, authztest.Policy(t, "rev-1", rolesPolicy))
		ctx := context.Background()
		for range 2 { // cached from the second use on
			if d, err := e.Decide(ctx, req); err != nil || !d.Allow {
				t.Fatalf("Decide: %+v, %v", d, err)
			}
		}
		return testing.AllocsPerRun(200, func() {
			if _, err := e.Decide(ctx, req); err != nil {
				t.Fatal(err)
			}
		})
	}
	off := allocs(nil)
	if got := allocs(noop.NewTracerProvider()); got != off {
		t.Errorf("allocations with a no-op TracerProvider = %v, want %v (as with none)", got, off)
	}
	// A recording provider does cost: the test measures what it claims to.
	if on := allocs(sdktrace.NewTracerProvider()); on <= off {
		t.Errorf("allocations with an SDK TracerProvider = %v, want more than %v", on, off)
	}
}

// BenchmarkDecideTraced is a cached decision (the verified-token and
// decision caches both hit) without tracing, with a no-op provider, and
// with the SDK sampling every decision into a batch exporter that
// discards: what tracing adds to the hot path.
func BenchmarkDecideTraced(b *testing.B) {
	is := authztest.NewIssuer(b, "ES256")
	tok := is.Mint(b, map[string]any{"sub": "alice", "roles": []string{"viewer"}})
	req := authz.Request{Token: token.Raw(tok), Action: authz.Action{Name: "orders:read"}}
	sdk := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	b.Cleanup(func() { sdk.Shutdown(context.Background()) })
	for _, tc := range []struct {
		name string
		tp   trace.TracerProvider
	}{{"off", nil}, {"noop", noop.NewTracerProvider()}, {"sdk", sdk}} {
		b.Run(tc.name, func(b *testing.B) {
			e := newEngine(b, authz.Options{
				Tokens:         token.Options{Issuers: []token.Issuer{is.Config()}},
				TracerProvider: tc.tp,
			}, authztest.Policy(b, "rev-1", rolesPolicy))
			ctx := context.Background()
			for range 2 {
				if d, err := e.Decide(ctx, req); err != nil || !d.Allow {
					b.Fatalf("Decide: %+v, %v", d, err)
				}
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.Decide(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
