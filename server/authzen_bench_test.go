package server

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

// The AuthZEN benchmarks ask the embedded default policies the question
// BenchmarkDecideHandlerEvaluated asks: may alice read catalog item 42?
// Both are allowed ("catalog:read is public"), and both are evaluated:
// /v1/decide answers a request with a resource from the policy, never from
// the decision cache, and AuthZEN requests (asserted subject, resource)
// always are. BenchmarkDecideHandler, whose request has no resource, is
// answered from the decision cache.

// authzenBench is a fixture whose AuthZEN endpoints trust httptest's peer.
func authzenBench(b *testing.B) *fixture {
	return benchFixture(b, fixtureOptions{mutate: func(o *Options) {
		o.AuthZEN = &AuthZEN{TrustedPeers: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}
	}})
}

// serveBench sends body to path and checks for a 200 with want in it.
func serveBench(b *testing.B, h http.Handler, path, body, want string) {
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != 200 || !strings.Contains(w.Body.String(), want) {
		b.Fatalf("%s: %d %s", path, w.Code, w.Body)
	}
}

const authzenSingleBody = `{"subject":{"type":"user","id":"alice"},"action":{"name":"catalog:read"},"resource":{"type":"catalog","id":"42"}}`

// BenchmarkDecideHandlerEvaluated is /v1/decide asking what
// BenchmarkAuthZENEvaluation asks, with a token (verification cache warm).
func BenchmarkDecideHandlerEvaluated(b *testing.B) {
	f := authzenBench(b)
	tok := f.mint(b, "alice", "viewer")
	body := `{"token":"` + tok + `","action":"catalog:read","resource":{"type":"catalog","id":"42"}}`
	h := f.srv.Handler()
	b.ReportAllocs()
	for b.Loop() {
		serveBench(b, h, "/v1/decide", body, `"allow":true`)
	}
}

// BenchmarkAuthZENEvaluation is one POST /access/v1/evaluation.
func BenchmarkAuthZENEvaluation(b *testing.B) {
	h := authzenBench(b).srv.Handler()
	b.ReportAllocs()
	for b.Loop() {
		serveBench(b, h, "/access/v1/evaluation", authzenSingleBody, `"decision":true`)
	}
}

// BenchmarkAuthZENBatch compares ten evaluations asked as one batch with
// the same ten asked one request at a time; one op is all ten.
func BenchmarkAuthZENBatch(b *testing.B) {
	const n = 10
	items := make([]string, n)
	singles := make([]string, n)
	for i := range n {
		res := fmt.Sprintf(`{"type":"catalog","id":"%d"}`, i)
		items[i] = `{"resource":` + res + `}`
		singles[i] = `{"subject":{"type":"user","id":"alice"},"action":{"name":"catalog:read"},"resource":` + res + `}`
	}
	batch := `{"subject":{"type":"user","id":"alice"},"action":{"name":"catalog:read"},"evaluations":[` + strings.Join(items, ",") + `]}`
	b.Run("batch_of_10", func(b *testing.B) {
		h := authzenBench(b).srv.Handler()
		b.ReportAllocs()
		for b.Loop() {
			serveBench(b, h, "/access/v1/evaluations", batch, `"decision":true`)
		}
	})
	b.Run("10_singles", func(b *testing.B) {
		h := authzenBench(b).srv.Handler()
		b.ReportAllocs()
		for b.Loop() {
			for _, body := range singles {
				serveBench(b, h, "/access/v1/evaluation", body, `"decision":true`)
			}
		}
	})
}
