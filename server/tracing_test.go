package server

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/internal/otlptest"
)

// A traceparent as a proxy would send it (sampled), and its parts.
const (
	parentTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	parentSpanID  = "00f067aa0ba902b7"
	traceparent   = "00-" + parentTraceID + "-" + parentSpanID + "-01"
)

// otlpProvider is an SDK TracerProvider exporting over OTLP/HTTP to rcv,
// as cmd/verdict builds it.
func otlpProvider(t *testing.T, rcv *otlptest.Receiver) *sdktrace.TracerProvider {
	t.Helper()
	exp, err := otlptracehttp.New(t.Context(), otlptracehttp.WithEndpointURL(rcv.URL+otlptest.TracesPath))
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", "verdict-test"))))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	return tp
}

// TestTraceDecisionOverHTTP: a decision asked with a traceparent is a
// verdict.decide span in that trace, child of the caller's span, with the
// engine's verify and evaluate spans under it; its attributes name the
// decision, and the decision log names the trace.
func TestTraceDecisionOverHTTP(t *testing.T) {
	rcv := otlptest.Start(t)
	tp := otlpProvider(t, rcv)
	f := newFixture(t, fixtureOptions{tracer: tp})
	tok := f.mint(t, "alice", "viewer")

	w := f.do(t, http.MethodPost, "/v1/decide", jsonBody(t, map[string]any{"token": tok, "action": "orders:read"}),
		http.Header{"Traceparent": {traceparent}}, "")
	if w.Code != http.StatusOK {
		t.Fatalf("decide: %d %s", w.Code, w.Body)
	}
	answer := decodeAnswer(t, w.Body.Bytes())
	if err := tp.ForceFlush(t.Context()); err != nil {
		t.Fatal(err)
	}
	spans := rcv.Wait(t, 5*time.Second, func(s []otlptest.Span) bool { return len(s) >= 3 })

	decides := otlptest.Named(spans, SpanDecide)
	if len(decides) != 1 {
		t.Fatalf("want one %s span:\n%s", SpanDecide, otlptest.Describe(spans))
	}
	d := decides[0]
	if d.TraceID != parentTraceID || d.ParentSpanID != parentSpanID {
		t.Errorf("decide span in trace %s under %s, want %s under %s", d.TraceID, d.ParentSpanID, parentTraceID, parentSpanID)
	}
	if d.Kind != "SPAN_KIND_SERVER" || d.Service != "verdict-test" || d.Scope != TracerName {
		t.Errorf("decide span kind %s service %s scope %s", d.Kind, d.Service, d.Scope)
	}
	wantAttrs := map[string]any{
		"verdict.api":         "decide",
		"verdict.decision_id": answer["decision_id"],
		"verdict.allow":       true,
		"verdict.revision":    answer["revision"],
		"verdict.reason_code": "policy",
	}
	for k, v := range wantAttrs {
		if d.Attributes[k] != v {
			t.Errorf("decide span %s = %v, want %v", k, d.Attributes[k], v)
		}
	}
	var children []string
	for _, c := range otlptest.Children(spans, d) {
		children = append(children, c.Name)
	}
	if strings.Join(children, ",") != authz.SpanVerifyToken+","+authz.SpanEvaluate {
		t.Errorf("decide span's children = %v, want %s then %s:\n%s", children, authz.SpanVerifyToken, authz.SpanEvaluate, otlptest.Describe(spans))
	}
	for _, s := range spans {
		for k, v := range s.Attributes {
			if str, ok := v.(string); ok && (strings.Contains(str, tok) || strings.Contains(str, "alice")) {
				t.Errorf("span %s attribute %s carries the token or a claim: %q", s.Name, k, str)
			}
		}
	}

	recs := f.log.records()
	if len(recs) != 1 || recs[0].TraceID != parentTraceID || recs[0].DecisionID != answer["decision_id"] {
		t.Errorf("decision log: %+v, want trace_id %s", recs, parentTraceID)
	}
}

// TestTraceRejected: a decision the front refuses before the engine (here
// a malformed Authorization header on /v1/check) is a span too, in a trace
// of its own when the request carries none, and its record names it.
func TestTraceRejected(t *testing.T) {
	rcv := otlptest.Start(t)
	tp := otlpProvider(t, rcv)
	f := newFixture(t, fixtureOptions{tracer: tp})
	w := f.do(t, http.MethodGet, "/v1/check", "", http.Header{
		"Authorization": {"Basic YTpi"}, "X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/orders/1"},
	}, "")
	if w.Code != http.StatusUnauthorized {
		t.Fatalf("check: %d %s", w.Code, w.Body)
	}
	if err := tp.ForceFlush(t.Context()); err != nil {
		t.Fatal(err)
	}
	spans := rcv.Wait(t, 5*time.Second, func(s []otlptest.Span) bool { return len(s) >= 1 })
	if len(spans) != 1 || spans[0].Name != SpanDecide || spans[0].ParentSpanID != "" {
		t.Fatalf("want one root %s span:\n%s", SpanDecide, otlptest.Describe(spans))
	}
	s := spans[0]
	if s.Attributes["verdict.api"] != "check" || s.Attributes["verdict.reason_code"] != "token" ||
		s.Attributes["verdict.allow"] != false || s.Attributes["verdict.decision_id"] != w.Header().Get("X-Verdict-Decision-Id") {
		t.Errorf("span attributes %v", s.Attributes)
	}
	if recs := f.log.records(); len(recs) != 1 || recs[0].TraceID != s.TraceID {
		t.Errorf("decision log: %+v, want trace_id %s", recs, s.TraceID)
	}
}

// TestTraceNotSampled: a caller that did not sample its trace gets no span
// exported (the sampler follows the parent), and the log still names the
// trace, for correlation with the caller's logs.
func TestTraceNotSampled(t *testing.T) {
	rcv := otlptest.Start(t)
	tp := otlpProvider(t, rcv)
	f := newFixture(t, fixtureOptions{tracer: tp})
	w := f.do(t, http.MethodPost, "/v1/decide", `{"action":"catalog:read"}`,
		http.Header{"Traceparent": {"00-" + parentTraceID + "-" + parentSpanID + "-00"}}, "")
	if w.Code != http.StatusOK {
		t.Fatalf("decide: %d %s", w.Code, w.Body)
	}
	if err := tp.ForceFlush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := len(rcv.Spans()); n != 0 {
		t.Errorf("%d spans exported for an unsampled trace:\n%s", n, otlptest.Describe(rcv.Spans()))
	}
	if recs := f.log.records(); len(recs) != 1 || recs[0].TraceID != parentTraceID {
		t.Errorf("decision log: %+v, want trace_id %s", recs, parentTraceID)
	}
}

// TestTraceExtAuthz: on ext_authz the trace context comes from the gRPC
// metadata, where Envoy puts it.
func TestTraceExtAuthz(t *testing.T) {
	rcv := otlptest.Start(t)
	tp := otlpProvider(t, rcv)
	f := newFixture(t, fixtureOptions{tracer: tp, mutate: func(o *Options) { o.ExtAuthz.Addr = "127.0.0.1:0" }})
	_, stop := start(t, f.srv)
	defer stop()
	client := authv3.NewAuthorizationClient(dialExtAuthz(t, f.srv.ExtAuthzAddr().String(), insecure.NewCredentials()))
	ctx := metadata.AppendToOutgoingContext(t.Context(), "traceparent", traceparent)
	resp, err := client.Check(ctx, checkRequest("GET", "/catalog", nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := tp.ForceFlush(t.Context()); err != nil {
		t.Fatal(err)
	}
	spans := rcv.Wait(t, 5*time.Second, func(s []otlptest.Span) bool { return len(otlptest.Named(s, SpanDecide)) >= 1 })
	d := otlptest.Named(spans, SpanDecide)[0]
	id := readAnswer(t, resp).headers[headerDecisionID]
	if d.TraceID != parentTraceID || d.ParentSpanID != parentSpanID || d.Attributes["verdict.api"] != "ext_authz" ||
		d.Attributes["verdict.decision_id"] != id {
		t.Errorf("decide span (decision %s):\n%s", id, otlptest.Describe(spans))
	}
	if recs := f.log.records(); len(recs) != 1 || recs[0].TraceID != parentTraceID {
		t.Errorf("decision log: %+v, want trace_id %s", recs, parentTraceID)
	}
}

// TestTraceOffCostsNothing: without a TracerProvider, or with a no-op one,
// the front allocates the same per decision, traceparent or not, and logs
// no trace ID.
func TestTraceOffCostsNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts vary under the race detector")
	}
	allocs := func(tp trace.TracerProvider) (float64, *memLog) {
		log := &memLog{}
		s, err := New(Options{Engine: &stubEngine{d: authz.Decision{ID: "N2XZ7Q4HCFRVK3PDSLGQAYBW5M", Allow: true,
			Reasons: []string{"ok"}, Revision: "r"}}, TracerProvider: tp, DecisionLog: log})
		if err != nil {
			t.Fatal(err)
		}
		h := s.Handler()
		body := `{"action":"orders:read"}`
		rd := strings.NewReader(body)
		r := httptest.NewRequest(http.MethodPost, "/v1/decide", rd)
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Traceparent", traceparent)
		w := &discardWriter{h: http.Header{}}
		n := testing.AllocsPerRun(100, func() {
			rd.Reset(body)
			r.Body = io.NopCloser(rd)
			clear(w.h)
			h.ServeHTTP(w, r)
		})
		return n, log
	}
	off, log := allocs(nil)
	if got, _ := allocs(noop.NewTracerProvider()); got != off {
		t.Errorf("allocations per decision with a no-op TracerProvider = %v, want %v (as with none)", got, off)
	}
	for _, r := range log.records() {
		if r.TraceID != "" {
			t.Fatalf("trace_id %q logged while not tracing", r.TraceID)
		}
	}
	// A recording provider does cost: the test measures what it claims to.
	if on, _ := allocs(sdktrace.NewTracerProvider()); on <= off {
		t.Errorf("allocations per decision with an SDK TracerProvider = %v, want more than %v", on, off)
	}
	t.Logf("allocations per decision: %v without tracing", off)
}
