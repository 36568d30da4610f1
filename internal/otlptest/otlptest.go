// Package otlptest is an in-process OpenTelemetry collector for tests: an
// HTTP server that accepts OTLP/HTTP protobuf trace exports (POST
// /v1/traces, gzip'd or not), as any collector does, and records the spans
// it receives so that a test can look for them.
package otlptest

import (
	"compress/gzip"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/protobuf/proto"
)

// TracesPath is where OTLP/HTTP exporters send spans.
const TracesPath = "/v1/traces"

// Span is one received span, simplified for tests.
type Span struct {
	// TraceID, SpanID and ParentSpanID are lowercase hex; ParentSpanID is
	// empty for a root span.
	TraceID, SpanID, ParentSpanID string
	Name                          string
	// Kind is the span kind's protobuf name (SPAN_KIND_SERVER, …).
	Kind string
	// Attributes holds the span's attributes as string, bool, int64 or
	// float64 values (others as their text).
	Attributes map[string]any
	// Status is the status code's protobuf name (STATUS_CODE_ERROR, …) and
	// StatusMessage its description.
	Status, StatusMessage string
	// Service is the resource's service.name; Scope the instrumentation
	// scope's name.
	Service, Scope string
}

// Receiver is a running in-process collector. It is safe for concurrent
// use.
type Receiver struct {
	// URL is the collector's base URL (http://127.0.0.1:PORT), the form of
	// OTEL_EXPORTER_OTLP_ENDPOINT: exporters append TracesPath.
	URL string

	mu       sync.Mutex
	spans    []Span
	requests int
	rejected []string // what was refused, for failure messages
}

// Start starts a Receiver; a cleanup stops it.
func Start(tb testing.TB) *Receiver {
	tb.Helper()
	r := &Receiver{}
	srv := httptest.NewServer(http.HandlerFunc(r.serve))
	tb.Cleanup(srv.Close)
	r.URL = srv.URL
	return r
}

// serve accepts one export request.
func (r *Receiver) serve(w http.ResponseWriter, req *http.Request) {
	reject := func(status int, format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		r.mu.Lock()
		r.rejected = append(r.rejected, msg)
		r.mu.Unlock()
		http.Error(w, msg, status)
	}
	if req.Method != http.MethodPost || req.URL.Path != TracesPath {
		reject(http.StatusNotFound, "%s %s: want POST %s", req.Method, req.URL.Path, TracesPath)
		return
	}
	if ct := req.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		reject(http.StatusUnsupportedMediaType, "content type %q: want application/x-protobuf", ct)
		return
	}
	var body io.Reader = req.Body
	if req.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(req.Body)
		if err != nil {
			reject(http.StatusBadRequest, "gzip: %v", err)
			return
		}
		defer zr.Close()
		body = zr
	}
	data, err := io.ReadAll(io.LimitReader(body, 64<<20))
	if err != nil {
		reject(http.StatusBadRequest, "reading: %v", err)
		return
	}
	var in collectortrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(data, &in); err != nil {
		reject(http.StatusBadRequest, "not an ExportTraceServiceRequest: %v", err)
		return
	}
	var got []Span
	for _, rs := range in.GetResourceSpans() {
		service := ""
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				service = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				sp := Span{
					TraceID:       hex.EncodeToString(s.GetTraceId()),
					SpanID:        hex.EncodeToString(s.GetSpanId()),
					ParentSpanID:  hex.EncodeToString(s.GetParentSpanId()),
					Name:          s.GetName(),
					Kind:          s.GetKind().String(),
					Attributes:    map[string]any{},
					Status:        s.GetStatus().GetCode().String(),
					StatusMessage: s.GetStatus().GetMessage(),
					Service:       service,
					Scope:         ss.GetScope().GetName(),
				}
				for _, kv := range s.GetAttributes() {
					sp.Attributes[kv.GetKey()] = value(kv.GetValue())
				}
				got = append(got, sp)
			}
		}
	}
	r.mu.Lock()
	r.spans = append(r.spans, got...)
	r.requests++
	r.mu.Unlock()
	out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

func value(v *commonpb.AnyValue) any {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_BoolValue:
		return x.BoolValue
	case *commonpb.AnyValue_IntValue:
		return x.IntValue
	case *commonpb.AnyValue_DoubleValue:
		return x.DoubleValue
	}
	return v.String()
}

// Spans returns the spans received so far, in arrival order.
func (r *Receiver) Spans() []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Span(nil), r.spans...)
}

// Requests returns how many export requests were accepted.
func (r *Receiver) Requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests
}

// Rejected returns what the receiver refused (wrong path, content type,
// body), one message per request.
func (r *Receiver) Rejected() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.rejected...)
}

// Wait polls until the spans received satisfy done, or fails the test
// after within, listing what did arrive.
func (r *Receiver) Wait(tb testing.TB, within time.Duration, done func([]Span) bool) []Span {
	tb.Helper()
	deadline := time.Now().Add(within)
	for {
		spans := r.Spans()
		if done(spans) {
			return spans
		}
		if time.Now().After(deadline) {
			tb.Fatalf("otlptest: spans not as expected within %v; received %d (refused: %q):\n%s",
				within, len(spans), r.Rejected(), Describe(spans))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Named returns the spans called name.
func Named(spans []Span, name string) []Span {
	var out []Span
	for _, s := range spans {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// Children returns the spans whose parent is parent.
func Children(spans []Span, parent Span) []Span {
	var out []Span
	for _, s := range spans {
		if s.TraceID == parent.TraceID && s.ParentSpanID == parent.SpanID {
			out = append(out, s)
		}
	}
	return out
}

// Describe lists spans one a line, for failure messages.
func Describe(spans []Span) string {
	var b strings.Builder
	for _, s := range spans {
		keys := make([]string, 0, len(s.Attributes))
		for k := range s.Attributes {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		fmt.Fprintf(&b, "  %s trace=%s span=%s parent=%s kind=%s status=%s service=%s",
			s.Name, s.TraceID, s.SpanID, s.ParentSpanID, s.Kind, s.Status, s.Service)
		for _, k := range keys {
			fmt.Fprintf(&b, " %s=%v", k, s.Attributes[k])
		}
		b.WriteByte('\n')
	}
	return b.String()
}
