package server

import (
	"net/http"
	"strings"
	"testing"

	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/server/decisionlog"
)

// TestDecisionLogMaskReachesEveryCopy: through the front, a masked or
// hashed field leaves no copy of its value in the record: a refused path
// is not quoted in the reasons or the error, an accepted one not kept in
// its segments, and a masked sub not kept in the subject's id.
func TestDecisionLogMaskReachesEveryCopy(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fields []string
		secret string
		send   func(t *testing.T, f *fixture)
	}{
		{"a path /v1/check refuses", []string{"/input/action/path"}, "alice@example.com", func(t *testing.T, f *fixture) {
			f.do(t, http.MethodGet, "/v1/check", "", http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/users/alice@example.com/records;x"}}, "")
		}},
		{"a path /v1/decide refuses", []string{"/input/action/path"}, "alice@example.com", func(t *testing.T, f *fixture) {
			f.do(t, http.MethodPost, "/v1/decide", `{"action":{"method":"GET","path":"/users/alice@example.com/../x"}}`, nil, "")
		}},
		{"a path decided", []string{"/input/action/path"}, "alice@example.com", func(t *testing.T, f *fixture) {
			f.do(t, http.MethodGet, "/v1/check", "", http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/users/alice@example.com/records"}}, "")
		}},
		{"a subject's sub", []string{"/input/subject/claims/sub"}, "alice-sub", func(t *testing.T, f *fixture) {
			f.do(t, http.MethodPost, "/v1/decide", `{"action":"catalog:read","token":"`+f.mint(t, "alice-sub", "viewer")+`"}`, nil, "")
		}},
	} {
		for _, shape := range []string{"mask", "hash"} {
			t.Run(tc.name+", "+shape, func(t *testing.T) {
				opts := decisionlog.Options{Mask: tc.fields}
				if shape == "hash" {
					opts = decisionlog.Options{Hash: tc.fields}
				}
				var file authztest.SyncBuffer
				opts.Writer = &file
				dl, err := decisionlog.New(opts)
				if err != nil {
					t.Fatal(err)
				}
				f := newFixture(t, fixtureOptions{keepInput: true, mutate: func(o *Options) { o.DecisionLog = dl }})
				stop := authztest.Start(t, dl.Run)
				tc.send(t, f)
				if err := stop(); err != nil {
					t.Fatal(err)
				}
				out := file.String()
				if !strings.Contains(out, `"decision_id"`) {
					t.Fatalf("no record: %q", out)
				}
				if strings.Contains(out, tc.secret) {
					t.Errorf("%s is in the record: %s", tc.secret, out)
				}
			})
		}
	}
}
