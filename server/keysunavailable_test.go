package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	grpccodes "google.golang.org/grpc/codes"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/authz/token"
)

// downKeys is a key set whose server cannot be reached.
type downKeys struct{}

func (downKeys) Lookup(context.Context, string) ([]token.Key, error) {
	return nil, errors.New("key server unreachable")
}

// TestKeysUnavailableIsAnOutage: a token (or caller token) whose issuer's
// keys cannot be had is answered 503 keys_unavailable on every front and
// counted as an error: the token may be good, and a 401 invalid_token
// would tell its holder to drop it.
func TestKeysUnavailableIsAnOutage(t *testing.T) {
	is := authztest.NewIssuer(t, "ES256")
	cfg := is.Config()
	cfg.Keys = downKeys{}
	const callerAud = "verdict-callers"
	e, err := authz.New(authz.Options{Tokens: token.Options{Issuers: []token.Issuer{cfg}, CallerAudiences: []string{callerAud}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Load(t.Context(), authztest.DefaultPolicies(t)); err != nil {
		t.Fatal(err)
	}
	spans := tracetest.NewSpanRecorder()
	f := newFixture(t, fixtureOptions{tracer: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)), mutate: func(o *Options) { o.Engine = e }})
	user := is.Mint(t, nil)
	service := is.Mint(t, map[string]any{"azp": "payments", "aud": callerAud})
	for _, tc := range []struct {
		name, method, target, body string
		header                     http.Header
		wantMessage                string
	}{
		{"decide, the subject's token", http.MethodPost, "/v1/decide", `{"action":"orders:read","token":"` + user + `"}`, nil, "the keys of the token's issuer"},
		{"decide, the caller's token", http.MethodPost, "/v1/decide", `{"action":"orders:read","caller":{"token":"` + service + `"}}`, nil, "the keys of the caller's issuer"},
		{"check", http.MethodGet, "/v1/check", "", http.Header{"Authorization": {"Bearer " + user},
			"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/orders/1"}}, "the keys of the token's issuer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := f.do(t, tc.method, tc.target, tc.body, tc.header, "")
			var body struct {
				Allow *bool `json:"allow"`
				Error struct{ Code, Message string }
			}
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatalf("%d %s: %v", w.Code, w.Body, err)
			}
			if w.Code != http.StatusServiceUnavailable || body.Allow == nil || *body.Allow || body.Error.Code != CodeKeysUnavailable ||
				!strings.Contains(body.Error.Message, tc.wantMessage) {
				t.Errorf("answer %d %s, want 503 keys_unavailable naming %q", w.Code, w.Body, tc.wantMessage)
			}
			if h := w.Header().Get("WWW-Authenticate"); h != "" {
				t.Errorf("WWW-Authenticate %q on an outage", h)
			}
		})
	}
	wantMetrics(t, scrape(t, f.srv),
		`verdict_decisions_total{api="decide",result="error"} 2`,
		`verdict_decisions_total{api="decide",result="deny"} 0`,
		`verdict_decisions_total{api="check",result="error"} 1`,
		`verdict_token_failures_total{reason="keys_unavailable"} 3`,
	)
	decided := 0
	for _, sp := range spans.Ended() {
		if sp.Name() != SpanDecide {
			continue
		}
		decided++
		if sp.Status().Code != codes.Error || sp.Status().Description != CodeKeysUnavailable {
			t.Errorf("span %s: status %+v, want Error keys_unavailable", sp.Name(), sp.Status())
		}
	}
	if decided != 3 {
		t.Errorf("%d %s spans, want 3", decided, SpanDecide)
	}
	// ext_authz: a denied response (UNAVAILABLE, 503), never a gRPC error,
	// so that Envoy's failure_mode_allow does not apply.
	x := newExtAuthzFixture(t, extAuthzOptions{mutate: func(o *Options) { o.Engine = e }})
	if a := x.check(t, checkRequest("GET", "/orders/1", map[string]string{"authorization": "Bearer " + user})); a.code != grpccodes.Unavailable || a.http != http.StatusServiceUnavailable {
		t.Errorf("ext_authz: %v/%d %s, want UNAVAILABLE/503", a.code, a.http, a.reasons())
	}
	if d := authz.Deny(token.ErrKeysUnavailable); authz.HTTPStatus(d, authz.RefuseWith(authz.ErrToken, token.ErrKeysUnavailable), false) != http.StatusServiceUnavailable {
		t.Error("HTTPStatus of keys_unavailable is not 503")
	}
}
