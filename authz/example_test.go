package authz_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/devtoken"
	"github.com/verdict-pdp/verdict/authz/token"
	"github.com/verdict-pdp/verdict/bundles"
	"github.com/verdict-pdp/verdict/policies"
)

// Embedding the engine: trust an issuer, load the default policies, decide.
func Example() {
	ctx := context.Background()
	// A development issuer stands in for your identity provider here; in
	// production, configure token.Issuer with your issuer's keys.
	idp, _ := devtoken.Generate()
	engine, err := authz.New(authz.Options{
		Tokens: token.Options{Issuers: []token.Issuer{idp.TokenIssuer()}, Leeway: 30 * time.Second},
	})
	if err != nil {
		panic(err)
	}
	snap, err := bundles.ReadFS(policies.FS(), bundles.ReadOptions{Origin: "embedded"})
	if err != nil {
		panic(err)
	}
	if err := engine.Load(ctx, snap); err != nil {
		panic(err)
	}

	viewer, _ := idp.Mint("alice", map[string]any{"roles": []string{"viewer"}}, time.Hour, time.Now())
	for _, action := range []string{"orders:read", "orders:delete"} {
		d, err := engine.Decide(ctx, authz.Request{Token: token.Raw(viewer), Action: authz.Action{Name: action}})
		fmt.Println(action, d.Allow, d.Reasons, err)
	}
	// Output:
	// orders:read true [role viewer grants orders:read] <nil>
	// orders:delete false [no role grants orders:delete] <nil>
}

// Every error is a deny that says why.
func ExampleEngine_Decide_invalidToken() {
	idp, _ := devtoken.Generate()
	engine, _ := authz.New(authz.Options{Tokens: token.Options{Issuers: []token.Issuer{idp.TokenIssuer()}}})
	_ = engine.Load(context.Background(), mustDefaultPolicies())

	expired, _ := idp.Mint("alice", nil, time.Minute, time.Now().Add(-time.Hour))
	d, err := engine.Decide(context.Background(), authz.Request{Token: token.Raw(expired), Action: authz.Action{Name: "orders:read"}})
	fmt.Println(d.Allow, d.Reasons)
	fmt.Println(errors.Is(err, authz.ErrToken), errors.Is(err, token.ErrExpired))
	// Output:
	// false [token: expired]
	// true true
}

// The middleware decides every request before the handler runs; the
// handler finds the decision in the request's context.
func ExampleEngine_Middleware() {
	idp, _ := devtoken.Generate()
	engine, _ := authz.New(authz.Options{Tokens: token.Options{Issuers: []token.Issuer{idp.TokenIssuer()}}})
	_ = engine.Load(context.Background(), mustDefaultPolicies())

	orders := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d, _ := authz.DecisionFromContext(r.Context())
		fmt.Fprintf(w, "orders for %s", d.SubjectID)
	})
	// Without an Action function the default policy derives the action from
	// method and path: GET /orders/42 is orders:read.
	srv := httptest.NewServer(engine.Middleware(authz.MiddlewareOptions{})(orders))
	defer srv.Close()

	viewer, _ := idp.Mint("alice", map[string]any{"roles": []string{"viewer"}}, time.Hour, time.Now())
	for _, auth := range []string{"Bearer " + viewer, ""} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/orders/42", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			panic(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(strings.TrimSpace(resp.Status[:3] + " " + resp.Header.Get("WWW-Authenticate")))
		if resp.StatusCode == http.StatusOK {
			fmt.Println(string(body))
		}
	}
	// Output:
	// 200
	// orders for alice
	// 401 Bearer
}

// Compile type-checks policies against the input document's schema, so a
// typo is a load error with its location rather than a silent deny.
func ExampleCompile() {
	snap := &bundles.Snapshot{Modules: []bundles.Module{{
		Path: "authz/rbac.rego",
		Raw:  []byte("package authz\n\nallow if input.subjet.authenticated\n"),
	}}}
	_, err := authz.Compile(snap, authz.CompileOptions{})
	fmt.Println(err)
	// Output:
	// authz/rbac.rego:3:10: rego_type_error: undefined ref: input.subjet.authenticated
	// 	input.subjet.authenticated
	// 	      ^
	// 	      have: "subjet"
	// 	      want (one of): ["action" "caller" "context" "resource" "subject"]
}

func mustDefaultPolicies() *bundles.Snapshot {
	snap, err := bundles.ReadFS(policies.FS(), bundles.ReadOptions{Origin: "embedded"})
	if err != nil {
		panic(err)
	}
	return snap
}

// Embedding the engine in a service, as the README shows it (compiled, not
// run: it reads ./policies and keys/jwks.json).
func Example_embedding() {
	ctx := context.Background()
	jwks, err := os.ReadFile("keys/jwks.json")
	if err != nil {
		log.Fatal(err)
	}
	keys, err := token.ParseJWKS(jwks) // or token.ParsePublicKeyPEM, token.HMACKey
	if err != nil {
		log.Fatal(err)
	}
	engine, err := authz.New(authz.Options{
		Tokens: token.Options{
			Issuers: []token.Issuer{{
				Issuer:     "https://idp.example.com",
				Audiences:  []string{"orders-api"},
				Algorithms: []string{"RS256"},
				Keys:       token.StaticKeys(keys),
			}},
			Leeway: 30 * time.Second,
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	snap, err := bundles.ReadDir("./policies", bundles.ReadOptions{})
	if err != nil {
		log.Fatal(err)
	}
	if err := engine.Load(ctx, snap); err != nil { // file:line:col on a bad policy
		log.Fatal(err)
	}

	http.HandleFunc("GET /orders/{id}", func(w http.ResponseWriter, r *http.Request) {
		req, err := authz.RequestFromHTTP(r) // bearer token, mTLS caller, method and path
		d := authz.Deny(err)                 // a malformed Authorization header (never anonymous), a method override
		if err == nil {
			req.Action.Name = "orders:read"
			d, err = engine.Decide(r.Context(), req)
		}
		// Every error is a deny: d.Allow is false and d.Reasons says why
		// ("token: expired", "caller: ...", "policy_error: ..."); with no
		// error the policy denied, and d.Reasons holds its reasons.
		if !d.Allow {
			status := authz.HTTPStatus(d, err, req.Token == "")
			if status == http.StatusUnauthorized { // a 401 names its scheme (RFC 9110)
				w.Header().Set("WWW-Authenticate", authz.WWWAuthenticate(err))
			}
			http.Error(w, d.Reasons[0], status)
			return
		}
		fmt.Fprintf(w, "order %s for %s", r.PathValue("id"), d.SubjectID)
	})
}

// The same as middleware, which answers 401/403 itself (compiled, not run).
func Example_middleware() {
	var engine *authz.Engine // built and loaded as in Example_embedding
	var ordersHandler, adminHandler http.Handler
	mux := http.NewServeMux()

	mux.Handle("/orders/", engine.Middleware(authz.MiddlewareOptions{})(ordersHandler))
	// in the handler: d, _ := authz.DecisionFromContext(r.Context())

	// Answering denials yourself: err is nil when the policy denied (then
	// authz.ReasonFor(err) is ""); d.Reasons always has at least one reason.
	deny := func(w http.ResponseWriter, r *http.Request, d authz.Decision, err error) {
		status := authz.HTTPStatus(d, err, r.Header.Get("Authorization") == "")
		if status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", authz.WWWAuthenticate(err))
		}
		http.Error(w, d.Reasons[0], status)
	}
	mux.Handle("/admin/", engine.Middleware(authz.MiddlewareOptions{Deny: deny})(adminHandler))
}

// Tracing: give the engine an OpenTelemetry TracerProvider (yours, with
// the exporter you use); each decision's token verification and policy
// evaluation are spans under the span in Decide's context.
func ExampleOptions_tracerProvider() {
	spans := tracetest.NewSpanRecorder() // stands in for your exporter
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	idp, _ := devtoken.Generate()
	engine, err := authz.New(authz.Options{
		Tokens:         token.Options{Issuers: []token.Issuer{idp.TokenIssuer()}},
		TracerProvider: tp, // nil: no tracing, at no cost
	})
	if err != nil {
		panic(err)
	}
	_ = engine.Load(context.Background(), mustDefaultPolicies())

	ctx, span := tp.Tracer("orders").Start(context.Background(), "GET /orders/{id}")
	viewer, _ := idp.Mint("alice", map[string]any{"roles": []string{"viewer"}}, time.Hour, time.Now())
	d, _ := engine.Decide(ctx, authz.Request{Token: token.Raw(viewer), Action: authz.Action{Name: "orders:read"}})
	span.SetAttributes(attribute.String("verdict.decision_id", d.ID), attribute.Bool("verdict.allow", d.Allow))
	span.End()
	for _, s := range spans.Ended() {
		fmt.Println(s.Name())
	}
	// Output:
	// verdict.verify_token
	// verdict.evaluate
	// GET /orders/{id}
}
