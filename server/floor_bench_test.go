package server

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkCachedVersusEcho compares a cached /v1/decide (a viewer's token
// seen before, the same question: both the verified-token and the
// decision cache hit) with the least a JSON service does with the same
// body: net/http's handler decoding it with encoding/json into a map and
// encoding it back. Both are served from the handler, without the network
// (which costs both the same), so the ratio is an upper bound on the
// ratio of whole requests. verdict_cached_logged also writes the decision
// log (to a discarding writer), as a default deployment does.
func BenchmarkCachedVersusEcho(b *testing.B) {
	f := benchFixture(b, fixtureOptions{})
	tok := f.mint(b, "alice", "viewer")
	body := `{"token":"` + tok + `","action":"orders:read"}`
	logged := benchFixture(b, fixtureOptions{})
	logged.srv.dlog = discardingLog(b)
	loggedTok := logged.mint(b, "alice", "viewer")
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var v map[string]any
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, DefaultMaxBodyBytes)).Decode(&v); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	})
	for _, h := range []struct {
		name string
		h    http.Handler
		body string
	}{
		{"verdict_cached", f.srv.Handler(), body},
		{"verdict_cached_logged", logged.srv.Handler(), `{"token":"` + loggedTok + `","action":"orders:read"}`},
		{"echo", echo, body},
	} {
		b.Run(h.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r := httptest.NewRequest(http.MethodPost, "/v1/decide", strings.NewReader(h.body))
				r.Header.Set("Content-Type", "application/json")
				w := httptest.NewRecorder()
				h.h.ServeHTTP(w, r)
				if w.Code != http.StatusOK {
					b.Fatal(w.Code, w.Body)
				}
			}
		})
	}
}
