package server

import (
	"context"
	"fmt"
	"io"

	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/server/decisionlog"
)

func BenchmarkDecodeDecideBody(b *testing.B) {
	body := []byte(`{"token":"eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhbGljZSJ9.c2ln","action":{"name":"orders:read","method":"GET","path":"/orders/42"},"resource":{"id":"42"},"context":{"request_id":"r-1"}}`)
	b.ReportAllocs()
	for b.Loop() {
		var in decideBody
		if err := newJSONReader().decodeDecide(body, DefaultMaxJSONDepth, &in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeWorstCase compares a body at the size limit made of
// distinct member names (quadratic under the earlier duplicate check) with
// a flat body of the same size: decoding is linear, so they cost the same
// order of time per byte.
func BenchmarkDecodeWorstCase(b *testing.B) {
	for _, bc := range []struct {
		name string
		body []byte
	}{{"many_keys", manyKeysBody(DefaultMaxBodyBytes)}, {"flat", flatBody(DefaultMaxBodyBytes)}} {
		b.Run(bc.name, func(b *testing.B) {
			var p jsonReaders
			b.SetBytes(int64(len(bc.body)))
			b.ReportAllocs()
			for b.Loop() {
				var in decideBody
				r := p.get()
				if err := r.decodeDecide(bc.body, DefaultMaxJSONDepth, &in); err != nil {
					b.Fatal(err)
				}
				p.put(r)
			}
		})
	}
}

// BenchmarkDecideHandler measures the HTTP front around a real decision
// (verified-token cache warm), without the network.
func BenchmarkDecideHandler(b *testing.B) {
	f := benchFixture(b, fixtureOptions{})
	tok := f.mint(b, "alice", "viewer")
	body := `{"token":"` + tok + `","action":"orders:read"}`
	h := f.srv.Handler()
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodPost, "/v1/decide", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != 200 {
			b.Fatal(w.Code)
		}
	}
}

// BenchmarkCheckHandler measures forward-auth around a real decision.
func BenchmarkCheckHandler(b *testing.B) {
	f := benchFixture(b, fixtureOptions{})
	tok := f.mint(b, "alice", "viewer")
	h := f.srv.Handler()
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodGet, "/v1/check", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		r.Header.Set("X-Forwarded-Method", "GET")
		r.Header.Set("X-Forwarded-Uri", "/orders/42")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != 200 {
			b.Fatal(w.Code)
		}
	}
}

// stubEngine answers a fixed allow, to measure the front alone.
type stubEngine struct{ d authz.Decision }

func (e *stubEngine) Decide(context.Context, authz.Request) (authz.Decision, error) { return e.d, nil }
func (e *stubEngine) Status() authz.Status                                          { return authz.Status{Ready: true} }

// discardingLog is a running decision log that writes to io.Discard, with
// a buffer no benchmark fills: the cost of logging without a disk's.
func discardingLog(b *testing.B) *decisionlog.Logger {
	b.Helper()
	l, err := decisionlog.New(decisionlog.Options{Writer: io.Discard, Buffer: 1 << 16})
	if err != nil {
		b.Fatal(err)
	}
	go l.Run(b.Context())
	return l
}

func stubServer(b *testing.B, dlog bool) *Server {
	opts := Options{Engine: &stubEngine{d: authz.Decision{ID: "N2XZ7Q4HCFRVK3PDSLGQAYBW5M", Allow: true,
		Reasons: []string{"role viewer grants orders:read"}, Revision: "sha256:9c445fc392d8f9d7",
		Headers: map[string]string{"x-verdict-subject": "alice", "x-verdict-action": "orders:read"}}}}
	if dlog {
		opts.DecisionLog = discardingLog(b)
	}
	s, err := New(opts)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkFrontDecide is the HTTP front's own cost per /v1/decide: decode,
// answer, metrics, decision log; the engine is a stub.
func BenchmarkFrontDecide(b *testing.B) {
	for _, dlog := range []bool{false, true} {
		b.Run(fmt.Sprintf("decision_log=%v", dlog), func(b *testing.B) {
			h := stubServer(b, dlog).Handler()
			body := `{"token":"eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhbGljZSJ9.c2ln","action":{"name":"orders:read","method":"GET","path":"/orders/42"}}`
			rd := strings.NewReader(body)
			r := httptest.NewRequest(http.MethodPost, "/v1/decide", rd)
			r.Header.Set("Content-Type", "application/json")
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				rd.Reset(body)
				r.Body = io.NopCloser(rd)
				clear(w.h)
				h.ServeHTTP(w, r)
			}
		})
	}
}

// BenchmarkFrontCheck is the front's own cost per /v1/check.
func BenchmarkFrontCheck(b *testing.B) {
	h := stubServer(b, false).Handler()
	r := httptest.NewRequest(http.MethodGet, "/v1/check", nil)
	r.Header.Set("Authorization", "Bearer eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhbGljZSJ9.c2ln")
	r.Header.Set("X-Forwarded-Method", "GET")
	r.Header.Set("X-Forwarded-Uri", "/orders/42")
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		h.ServeHTTP(w, r)
	}
}

type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }
