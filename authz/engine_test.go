package authz_test

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/authz/token"
	"github.com/verdict-pdp/verdict/bundles"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// allowAll allows everything it is asked: any deny it produces proves the
// engine refused the request before evaluating the policy.
const allowAll = `package authz

allow := true

reasons := {"policy evaluated"}
`

func newEngine(t testing.TB, opts authz.Options, snap *bundles.Snapshot) *authz.Engine {
	t.Helper()
	e, err := authz.New(opts)
	if err != nil {
		t.Fatalf("authz.New: %v", err)
	}
	if snap != nil {
		if err := e.Load(context.Background(), snap); err != nil {
			t.Fatalf("Load: %v", err)
		}
	}
	return e
}

func b64(v any) string {
	data, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(data)
}

// unsigned builds a token with the given header and claims and a literal
// signature part.
func unsigned(header, claims map[string]any, sig string) string {
	return b64(header) + "." + b64(claims) + "." + sig
}

func validClaims(is *authztest.Issuer) map[string]any {
	now := time.Now()
	return map[string]any{"iss": is.Name, "aud": is.Audience, "sub": "mallory",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
}

// TestTokenAttacksNeverReachPolicy runs every token rule and attack of the
// design against an engine whose policy allows everything: each must be
// denied with the right "token:" reason, so none was evaluated.
func TestTokenAttacksNeverReachPolicy(t *testing.T) {
	rsa := authztest.NewIssuer(t, "RS256")
	ed := authztest.NewIssuer(t, "EdDSA")
	attacker := authztest.NewIssuer(t, "EdDSA") // same names, a key nobody trusts
	engine := newEngine(t, authz.Options{Tokens: token.Options{
		Issuers: []token.Issuer{rsa.Config(), func() token.Issuer {
			c := ed.Config()
			c.Issuer = "https://other.test"
			return c
		}()},
		MaxBytes: 4096,
	}}, authztest.Policy(t, "allow-all", allowAll))

	rsaDER, err := x509.MarshalPKIXPublicKey(rsa.PublicKey().Public)
	if err != nil {
		t.Fatal(err)
	}
	// An HS256 token whose "secret" is the issuer's RSA public key: the
	// classic algorithm-confusion attack.
	confused := func(secret []byte) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims(validClaims(rsa)))
		tok.Header["kid"] = rsa.KeyID
		s, err := tok.SignedString(secret)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	attackerJWK := map[string]any{"kty": "OKP", "crv": "Ed25519",
		"x": base64.RawURLEncoding.EncodeToString(attacker.PublicKey().Public.(ed25519.PublicKey))}
	now := time.Now()

	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"alg none", unsigned(map[string]any{"alg": "none", "typ": "JWT"}, validClaims(rsa), ""), token.ErrDisallowedAlg},
		{"alg None", unsigned(map[string]any{"alg": "None"}, validClaims(rsa), ""), token.ErrDisallowedAlg},
		{"alg NONE with signature", unsigned(map[string]any{"alg": "NONE", "kid": rsa.KeyID}, validClaims(rsa), "c2ln"), token.ErrDisallowedAlg},
		{"rsa public key DER as hmac secret", confused(rsaDER), token.ErrDisallowedAlg},
		{"rsa public key PEM as hmac secret", confused([]byte(pemOf(t, rsaDER))), token.ErrDisallowedAlg},
		{"header jwk with attacker key and attacker kid", attacker.MintWithHeader(t,
			map[string]any{"jwk": attackerJWK, "kid": "attacker"}, map[string]any{"iss": "https://other.test"}), token.ErrUnknownKID},
		{"header jwk with attacker key and trusted kid", attacker.MintWithHeader(t,
			map[string]any{"jwk": attackerJWK, "kid": rsa.KeyID, "alg": "EdDSA"}, nil), token.ErrDisallowedAlg},
		{"header jku", attacker.MintWithHeader(t,
			map[string]any{"jku": "https://attacker.test/jwks.json", "kid": "attacker"}, map[string]any{"iss": "https://other.test"}), token.ErrUnknownKID},
		{"header x5u", attacker.MintWithHeader(t,
			map[string]any{"x5u": "https://attacker.test/cert.pem"}, map[string]any{"iss": "https://other.test"}), token.ErrBadSignature},
		{"header x5c", attacker.MintWithHeader(t,
			map[string]any{"x5c": []string{base64.StdEncoding.EncodeToString(rsaDER)}}, map[string]any{"iss": "https://other.test"}), token.ErrBadSignature},
		{"unknown kid", rsa.MintWithHeader(t, map[string]any{"kid": "nope"}, nil), token.ErrUnknownKID},
		{"kid of another issuer's key", rsa.MintWithHeader(t, map[string]any{"kid": ed.KeyID}, nil), token.ErrUnknownKID},
		{"expired", rsa.Mint(t, map[string]any{"exp": now.Add(-time.Minute).Unix()}), token.ErrExpired},
		{"not yet valid", rsa.Mint(t, map[string]any{"nbf": now.Add(time.Hour).Unix()}), token.ErrNotYetValid},
		{"issued in the future", rsa.Mint(t, map[string]any{"iat": now.Add(time.Hour).Unix()}), token.ErrNotYetValid},
		{"unknown issuer", rsa.Mint(t, map[string]any{"iss": "https://evil.test"}), token.ErrBadIssuer},
		{"issuer with trailing slash", rsa.Mint(t, map[string]any{"iss": rsa.Name + "/"}), token.ErrBadIssuer},
		{"wrong audience", rsa.Mint(t, map[string]any{"aud": "someone-else"}), token.ErrBadAudience},
		{"no audience", rsa.Mint(t, map[string]any{"aud": nil}), token.ErrBadAudience},
		{"missing exp", rsa.Mint(t, map[string]any{"exp": nil}), token.ErrMissingClaim},
		{"oversized", rsa.Mint(t, map[string]any{"pad": strings.Repeat("x", 5000)}), token.ErrTooLarge},
		{"oversized junk", strings.Repeat("A", 1<<20), token.ErrTooLarge},
		{"malformed two parts", "abc.def", token.ErrMalformed},
		{"malformed base64", "!!!.???.***", token.ErrMalformed},
		{"malformed json", base64.RawURLEncoding.EncodeToString([]byte("{")) + ".e30.", token.ErrMalformed},
		{"bad signature", tamper(rsa.Mint(t, nil)), token.ErrBadSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := engine.Decide(t.Context(), authz.Request{Token: token.Raw(tc.token), Action: authz.Action{Name: "orders:read"}})
			if d.Allow {
				t.Fatalf("allowed: %+v", d)
			}
			if !errors.Is(err, authz.ErrToken) || !errors.Is(err, token.ErrInvalid) || !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want ErrToken wrapping %v", err, tc.want)
			}
			want := []string{"token: " + tc.want.Error()}
			if diff := cmp.Diff(want, d.Reasons); diff != "" {
				t.Errorf("reasons (-want +got):\n%s", diff)
			}
			if d.ID == "" || d.Revision != "allow-all" {
				t.Errorf("decision lacks id or revision: %+v", d)
			}
		})
	}

	t.Run("valid token reaches policy", func(t *testing.T) {
		d, err := engine.Decide(t.Context(), authz.Request{Token: token.Raw(rsa.Mint(t, nil)), Action: authz.Action{Name: "orders:read"}})
		if err != nil || !d.Allow || d.SubjectID != authztest.DefaultSubject {
			t.Fatalf("got %+v, %v; want allow for alice", d, err)
		}
	})
}

func pemOf(t *testing.T, der []byte) string {
	t.Helper()
	return "-----BEGIN PUBLIC KEY-----\n" + base64.StdEncoding.EncodeToString(der) + "\n-----END PUBLIC KEY-----\n"
}

// tamper flips one character of the signature.
func tamper(tok string) string {
	i := strings.LastIndexByte(tok, '.') + 1
	c := byte('A')
	if tok[i] == 'A' {
		c = 'B'
	}
	return tok[:i] + string(c) + tok[i+1:]
}

func TestNoTrustedIssuers(t *testing.T) {
	is := authztest.NewIssuer(t, "EdDSA")
	e := newEngine(t, authz.Options{}, authztest.Policy(t, "r", allowAll))
	d, err := e.Decide(t.Context(), authz.Request{Token: token.Raw(is.Mint(t, nil)), Action: authz.Action{Name: "x"}})
	if d.Allow || !errors.Is(err, token.ErrBadIssuer) {
		t.Fatalf("got %+v, %v; want bad_issuer deny", d, err)
	}
	d, err = e.Decide(t.Context(), authz.Request{Action: authz.Action{Name: "x"}})
	if !d.Allow || err != nil {
		t.Fatalf("anonymous request: got %+v, %v; want the policy's allow", d, err)
	}
}

func TestNotReady(t *testing.T) {
	e := newEngine(t, authz.Options{}, nil)
	d, err := e.Decide(t.Context(), authz.Request{Action: authz.Action{Name: "x"}})
	if d.Allow || !errors.Is(err, authz.ErrNotReady) {
		t.Fatalf("got %+v, %v; want ErrNotReady deny", d, err)
	}
	if st := e.Status(); st.Ready {
		t.Fatalf("status ready before any load: %+v", st)
	}
}

// TestPolicyContract checks how allow, reasons and headers are read when a
// decision is made. Values whose type the checker cannot know (they come
// from the free-form resource here) are checked then; known wrong types are
// load errors (TestContractTypesAtLoad).
func TestPolicyContract(t *testing.T) {
	tests := []struct {
		name        string
		rego        string
		resource    map[string]any
		wantAllow   bool
		wantReasons []string
		wantHeaders map[string]string
		wantErr     error
	}{
		{name: "allow true", rego: "allow := true", wantAllow: true, wantReasons: []string{}},
		{name: "allow undefined", rego: "allow if input.action.name == \"never\"", wantReasons: []string{"policy: allow is undefined"}},
		{name: "allow false", rego: "default allow := false", wantReasons: []string{"policy: allow is not true"}},
		{name: "allow string true", rego: `allow := input.resource.v`, resource: map[string]any{"v": "true"},
			wantReasons: []string{"policy: allow is not true"}},
		{name: "allow 1", rego: `allow := input.resource.v`, resource: map[string]any{"v": 1}, wantReasons: []string{"policy: allow is not true"}},
		{name: "reasons set sorted", rego: "allow := false\nreasons := {\"b\", \"a\"}", wantReasons: []string{"a", "b"}},
		{name: "reasons array", rego: "allow := true\nreasons := [\"z\", \"y\"]", wantAllow: true, wantReasons: []string{"z", "y"}},
		{name: "reasons not strings", rego: "allow := true\nreasons := input.resource.r", resource: map[string]any{"r": []any{1}},
			wantErr: authz.ErrPolicy},
		{name: "reasons a string", rego: "allow := true\nreasons := input.resource.r", resource: map[string]any{"r": "no"},
			wantErr: authz.ErrPolicy},
		{name: "headers on allow", rego: "allow := true\nheaders := {\"x-user\": \"alice\"}", wantAllow: true,
			wantReasons: []string{}, wantHeaders: map[string]string{"x-user": "alice"}},
		{name: "headers dropped on deny", rego: "allow := false\nheaders := {\"x-user\": \"alice\"}",
			wantReasons: []string{"policy: allow is not true"}},
		{name: "header value injection", rego: "allow := true\nheaders := {\"x-user\": \"a\\r\\nx-admin: true\"}", wantErr: authz.ErrPolicy},
		{name: "header value not UTF-8", rego: "allow := true\nheaders := {\"x-tenant\": urlquery.decode(\"ok%FF\")}", wantErr: authz.ErrPolicy},
		{name: "header name invalid", rego: "allow := true\nheaders := {\"x user\": \"a\"}", wantErr: authz.ErrPolicy},
		// A framing header broke the forward-auth answer that carried it.
		{name: "header content-length", rego: "allow := true\nheaders := {\"content-length\": \"100\", \"x-ok\": \"1\"}", wantErr: authz.ErrPolicy},
		{name: "header Transfer-Encoding", rego: "allow := true\nheaders := {\"Transfer-Encoding\": \"chunked\"}", wantErr: authz.ErrPolicy},
		{name: "header connection", rego: "allow := true\nheaders := {\"connection\": \"close\"}", wantErr: authz.ErrPolicy},
		{name: "header Proxy-Authorization", rego: "allow := true\nheaders := {\"proxy-authorization\": \"x\"}", wantErr: authz.ErrPolicy},
		{name: "one header named twice", rego: "allow := true\nheaders := {\"x-user\": \"alice\", \"X-User\": \"admin\"}", wantErr: authz.ErrPolicy},
		{name: "header value not string", rego: "allow := true\nheaders := input.resource.h", resource: map[string]any{"h": map[string]any{"x-n": 1}},
			wantErr: authz.ErrPolicy},
		{name: "conflict at eval", rego: "allow := input.resource.v\nallow := true", resource: map[string]any{"v": false}, wantErr: authz.ErrPolicy},
		{name: "builtin error is a policy error", rego: "allow := 1 / to_number(input.action.name) > 0", wantErr: authz.ErrPolicy},
		{name: "builtin error never reaches not deny", rego: "deny if to_number(input.action.name) > 0\n\nallow if not deny", wantErr: authz.ErrPolicy},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, authz.Options{}, authztest.Policy(t, "r1", "package authz\n\n"+tc.rego+"\n"))
			d, err := e.Decide(t.Context(), authz.Request{Action: authz.Action{Name: "zero"}, Resource: tc.resource})
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || d.Allow {
					t.Fatalf("got %+v, %v; want deny with %v", d, err, tc.wantErr)
				}
				if len(d.Reasons) != 1 || !strings.HasPrefix(d.Reasons[0], "policy_error: ") {
					t.Errorf("reasons = %q, want one policy_error reason", d.Reasons)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decide: %v", err)
			}
			if d.Allow != tc.wantAllow {
				t.Errorf("allow = %v, want %v", d.Allow, tc.wantAllow)
			}
			if diff := cmp.Diff(tc.wantReasons, d.Reasons); diff != "" {
				t.Errorf("reasons (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantHeaders, d.Headers); diff != "" {
				t.Errorf("headers (-want +got):\n%s", diff)
			}
		})
	}
}

// slowPolicy takes seconds to evaluate, most of it inside one built-in
// function call (numbers.range).
const slowPolicy = `package authz

allow if {
	count([x | some x in numbers.range(1, 100000000); x % 7 == 0]) > 0
}
`

func TestEvalTimeoutDenies(t *testing.T) {
	for _, ev := range []authz.Evaluator{authz.EvaluatorCompiled, authz.EvaluatorTopdown} {
		t.Run(string(ev), func(t *testing.T) {
			e := newEngine(t, authz.Options{Evaluator: ev, EvalTimeout: 200 * time.Millisecond}, authztest.Policy(t, "slow", slowPolicy))
			d, err := e.Decide(t.Context(), authz.Request{Action: authz.Action{Name: "x"}})
			if d.Allow || !errors.Is(err, authz.ErrPolicy) || !strings.Contains(err.Error(), "timed out") {
				t.Fatalf("got %+v, %v; want a timed-out policy error", d, err)
			}
			// The compiled evaluator has half the time, then topdown the
			// rest, which here times out too.
			want := uint64(0)
			if ev == authz.EvaluatorCompiled {
				want = 1
			}
			if n := e.Status().EvaluatorFallbacks; n != want {
				t.Errorf("%d fallbacks, want %d", n, want)
			}
		})
	}
}

// TestCallerCancellationIsFinal: when the caller's context ends during an
// evaluation, the decision is a refusal at once — the compiled evaluator
// does not hand the rest of the evaluation time to topdown — including
// while a built-in function (numbers.range) is running.
func TestCallerCancellationIsFinal(t *testing.T) {
	for _, ev := range []authz.Evaluator{authz.EvaluatorCompiled, authz.EvaluatorTopdown} {
		t.Run(string(ev), func(t *testing.T) {
			e := newEngine(t, authz.Options{Evaluator: ev, EvalTimeout: time.Minute}, authztest.Policy(t, "slow", slowPolicy))
			ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
			defer cancel()
			start := time.Now()
			d, err := e.Decide(ctx, authz.Request{Action: authz.Action{Name: "x"}})
			// Not a speed measure: the half of the evaluation time the
			// compiled evaluator has is 30s; anything near it means the
			// cancellation was not seen.
			if took := time.Since(start); took > 15*time.Second {
				t.Errorf("Decide returned %v after the caller's cancellation", took)
			}
			if d.Allow || !errors.Is(err, authz.ErrPolicy) || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("got %+v, %v; want a cancelled policy error", d, err)
			}
			if n := e.Status().EvaluatorFallbacks; n != 0 {
				t.Errorf("%d fallbacks, want 0: the caller's cancellation is final", n)
			}
		})
	}
}

// TestEndedContextNeverAllows: a request whose context was cancelled, or
// whose deadline has passed, is not allowed, by Decide or a Pinned, also
// when the decision cache holds the allow: that hit answered true while a
// miss was refused as cut short, so the answer to a dead context hung on
// what the cache held. A deny from the cache stays the policy's deny.
func TestEndedContextNeverAllows(t *testing.T) {
	const rego = "package authz\n\nallow if input.action.name == \"read\"\n\nreasons contains \"not read\" if not allow\n"
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	past, cancelPast := context.WithDeadline(t.Context(), time.Now().Add(-time.Hour))
	defer cancelPast()
	for _, ev := range []authz.Evaluator{authz.EvaluatorCompiled, authz.EvaluatorTopdown} {
		e := newEngine(t, authz.Options{Evaluator: ev}, authztest.Policy(t, "r", rego))
		read := authz.Request{Action: authz.Action{Name: "read"}}
		write := authz.Request{Action: authz.Action{Name: "write"}}
		for range 2 { // the second use puts each in the main cache
			if d, err := e.Decide(t.Context(), read); !d.Allow || err != nil {
				t.Fatalf("%s: live read = %+v, %v; want allowed", ev, d, err)
			}
			if d, _ := e.Decide(t.Context(), write); d.Allow {
				t.Fatalf("%s: live write allowed", ev)
			}
		}
		for name, ctx := range map[string]context.Context{"cancelled": cancelled, "past deadline": past} {
			for how, decide := range map[string]func(context.Context, authz.Request) (authz.Decision, error){
				"Decide": e.Decide, "Pinned": e.Pin().Decide,
			} {
				d, err := decide(ctx, read)
				if d.Allow || !errors.Is(err, authz.ErrPolicy) || !errors.Is(err, ctx.Err()) ||
					len(d.Reasons) != 1 || !strings.Contains(d.Reasons[0], authz.InterruptedDetail) {
					t.Errorf("%s, %s, %s: read = %+v, %v; want a cut-short refusal", ev, name, how, d, err)
				}
				if d, err := decide(ctx, write); d.Allow || err != nil || len(d.Reasons) != 1 || d.Reasons[0] != "not read" {
					t.Errorf("%s, %s, %s: write = %+v, %v; want the policy's deny", ev, name, how, d, err)
				}
			}
		}
		if st := e.Status().Caches.Decision; st.Hits == 0 {
			t.Errorf("%s: no decision cache hits: the test did not reach the cache", ev)
		}
	}
}

// TestNoAnswerAfterTimeout: a built-in function that does not watch
// cancellation (graph.reachable_paths over a graph the request supplies,
// whose paths double with each layer) runs past limits.eval_timeout. The
// compiled evaluator, which looks at the cancel flag only every few steps,
// returned its late answer: an allow, where topdown stops at the deadline
// and denies. A late answer is now never taken: the decision is a timeout.
func TestNoAnswerAfterTimeout(t *testing.T) {
	const policy = "package authz\n\nallow if count(graph.reachable_paths(input.resource.g, [\"0\"])) > 0\n"
	g := map[string]any{}
	for i := range 14 {
		next := strconv.Itoa(i + 1)
		g[strconv.Itoa(i)] = []any{next, next}
	}
	for _, ev := range []authz.Evaluator{authz.EvaluatorCompiled, authz.EvaluatorTopdown} {
		t.Run(string(ev), func(t *testing.T) {
			// The built-in takes far longer than a millisecond: 2^14 paths.
			e := newEngine(t, authz.Options{Evaluator: ev, EvalTimeout: time.Millisecond, DecisionCacheSize: -1},
				authztest.Policy(t, "reachable", policy))
			d, err := e.Decide(t.Context(), authz.Request{Action: authz.Action{Name: "read"}, Resource: map[string]any{"g": g}})
			if d.Allow || !errors.Is(err, authz.ErrPolicy) || !strings.Contains(err.Error(), "timed out") {
				t.Errorf("allow=%v (%v), want a deny: the evaluation timed out", d.Allow, err)
			}
			// Within the time, the same policy answers.
			small := map[string]any{"0": []any{"1"}}
			e = newEngine(t, authz.Options{Evaluator: ev, DecisionCacheSize: -1}, authztest.Policy(t, "reachable", policy))
			if d, err := e.Decide(t.Context(), authz.Request{Action: authz.Action{Name: "read"}, Resource: map[string]any{"g": small}}); err != nil || !d.Allow {
				t.Errorf("small graph: allow=%v (%v), want true", d.Allow, err)
			}
		})
	}
}

// TestLoadKeepsLastGoodSnapshot: a broken snapshot never replaces a working
// one, and the status names the problem with file:row:col.
func TestLoadKeepsLastGoodSnapshot(t *testing.T) {
	e := newEngine(t, authz.Options{}, authztest.Policy(t, "good", allowAll))
	tests := []struct {
		name    string
		modules map[string]string
		want    bundles.Problem
	}{
		{
			name:    "syntax error",
			modules: map[string]string{"authz/p.rego": "package authz\n\nallow if {\n"},
			want:    bundles.Problem{File: "authz/p.rego", Line: 3, Col: 11, Code: "rego_parse_error"},
		},
		{
			name:    "typo in input field",
			modules: map[string]string{"authz/p.rego": "package authz\n\nallow if {\n\tinput.subjet.authenticated\n}\n"},
			want:    bundles.Problem{File: "authz/p.rego", Line: 4, Col: 2, Code: "rego_type_error"},
		},
		{
			name:    "typo in action field",
			modules: map[string]string{"authz/p.rego": "package authz\n\nallow if input.action.nmae == \"x\"\n"},
			want:    bundles.Problem{File: "authz/p.rego", Line: 3, Code: "rego_type_error"},
		},
		{
			name: "conflicting rules",
			modules: map[string]string{
				"a.rego": "package authz\n\nallow := true\n",
				"b.rego": "package authz\n\nallow contains \"x\"\n",
			},
			want: bundles.Problem{Code: "rego_type_error"},
		},
		{
			name:    "no entrypoint package",
			modules: map[string]string{"p.rego": "package other\n\nallow := true\n"},
			want:    bundles.Problem{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := e.Load(t.Context(), authztest.Snapshot(t, "bad-"+tc.name, tc.modules, nil))
			var ce *authz.CompileError
			if !errors.Is(err, authz.ErrCompile) || !errors.As(err, &ce) || len(ce.Problems) == 0 {
				t.Fatalf("Load err = %v, want a CompileError", err)
			}
			got := ce.Problems[0]
			if tc.want.File != "" && got.File != tc.want.File || tc.want.Line != 0 && got.Line != tc.want.Line ||
				tc.want.Col != 0 && got.Col != tc.want.Col || tc.want.Code != "" && got.Code != tc.want.Code {
				t.Errorf("problem = %+v, want %+v", got, tc.want)
			}
			d, err := e.Decide(t.Context(), authz.Request{Action: authz.Action{Name: "x"}})
			if err != nil || !d.Allow || d.Revision != "good" {
				t.Fatalf("after a bad load: %+v, %v; want the good snapshot still serving", d, err)
			}
			st := e.Status()
			if st.Revision != "good" || st.LastError == "" || st.LastErrorRevision != "bad-"+tc.name || len(st.LastErrorProblems) == 0 {
				t.Errorf("status = %+v", st)
			}
		})
	}
	if err := e.Load(t.Context(), authztest.Policy(t, "fixed", allowAll)); err != nil {
		t.Fatal(err)
	}
	if st := e.Status(); st.Revision != "fixed" || st.LastError != "" || st.Loads != 2 || st.LoadFailures != uint64(len(tests)) {
		t.Errorf("status after fix = %+v", st)
	}
}

func TestCompileErrorLocation(t *testing.T) {
	_, err := authz.Compile(authztest.Snapshot(t, "", map[string]string{
		"authz/rbac.rego": "package authz\n\nallow if {\n\tinput.subjet.id == \"x\"\n}\n",
	}, nil), authz.CompileOptions{})
	if err == nil || !strings.HasPrefix(err.Error(), "authz/rbac.rego:4:2: rego_type_error: undefined ref: input.subjet") {
		t.Fatalf("err = %v, want authz/rbac.rego:4:2: rego_type_error: undefined ref: input.subjet...", err)
	}
}

// TestConcurrentDecideDuringSwaps runs thousands of decisions while
// snapshots are swapped: each decision must succeed, name a revision, and
// carry that revision's own answer (never a mix of two snapshots).
func TestConcurrentDecideDuringSwaps(t *testing.T) {
	is := authztest.NewIssuer(t, "HS256")
	snap := func(n int) *bundles.Snapshot {
		return authztest.Snapshot(t, fmt.Sprintf("rev-%d", n), map[string]string{
			"authz/a.rego": fmt.Sprintf("package authz\n\nallow := input.subject.authenticated\n\nreasons := {%q}\n", fmt.Sprintf("rev-%d", n)),
			"authz/b.rego": "package authz\n\nheaders := {\"x-rev\": data.rev}\n",
		}, map[string]any{"rev": fmt.Sprintf("rev-%d", n)})
	}
	e := newEngine(t, authz.Options{Tokens: token.Options{Issuers: []token.Issuer{is.Config()}}}, snap(0))
	tokens := make([]string, 50)
	for i := range tokens {
		tokens[i] = is.Mint(t, map[string]any{"sub": fmt.Sprintf("user-%d", i)})
	}

	const workers, perWorker, swaps = 8, 500, 100
	var wg sync.WaitGroup
	var done atomic.Bool
	var decisions atomic.Int64
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				d, err := e.Decide(context.Background(), authz.Request{
					Token: token.Raw(tokens[(w*perWorker+i)%len(tokens)]), Action: authz.Action{Name: "x"}})
				decisions.Add(1)
				switch {
				case err != nil:
					errs <- fmt.Errorf("decision failed: %w", err)
					return
				case !d.Allow || len(d.Reasons) != 1 || d.Reasons[0] != d.Revision || d.Headers["x-rev"] != d.Revision:
					errs <- fmt.Errorf("decision mixes snapshots: %+v", d)
					return
				}
			}
		})
	}
	for n := 1; n <= swaps; n++ {
		if err := e.Load(t.Context(), snap(n)); err != nil {
			t.Fatal(err)
		}
	}
	done.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := decisions.Load(); got != workers*perWorker {
		t.Errorf("ran %d decisions, want %d", got, workers*perWorker)
	}
	if st := e.Status(); st.Revision != fmt.Sprintf("rev-%d", swaps) {
		t.Errorf("final revision %q", st.Revision)
	}
}

// TestCachedTokenExpires: a cached token stops working at its exp.
func TestCachedTokenExpires(t *testing.T) {
	is := authztest.NewIssuer(t, "ES256")
	var now atomic.Pointer[time.Time]
	start := time.Now()
	now.Store(&start)
	clock := func() time.Time { return *now.Load() }
	e := newEngine(t, authz.Options{Now: clock, Tokens: token.Options{Issuers: []token.Issuer{is.Config()}}},
		authztest.Policy(t, "r", allowAll))
	tok := is.Mint(t, map[string]any{"exp": start.Add(time.Minute).Unix()})
	for range 2 { // verify, then hit the cache
		if d, err := e.Decide(t.Context(), authz.Request{Token: token.Raw(tok), Action: authz.Action{Name: "x"}}); err != nil || !d.Allow {
			t.Fatalf("fresh token: %+v, %v", d, err)
		}
	}
	later := start.Add(2 * time.Minute)
	now.Store(&later)
	d, err := e.Decide(t.Context(), authz.Request{Token: token.Raw(tok), Action: authz.Action{Name: "x"}})
	if d.Allow || !errors.Is(err, token.ErrExpired) {
		t.Fatalf("after exp: %+v, %v; want token: expired", d, err)
	}
}

func TestInvalidRequest(t *testing.T) {
	e := newEngine(t, authz.Options{}, authztest.Policy(t, "r", allowAll))
	for _, req := range []authz.Request{
		{},
		{Action: authz.Action{Path: "/a/%zz"}},
		{Action: authz.Action{Path: "/a/..%2Fadmin"}},
		{Action: authz.Action{Name: "x"}, Resource: map[string]any{"bad": make(chan int)}},
	} {
		d, err := e.Decide(t.Context(), req)
		if d.Allow || !errors.Is(err, authz.ErrInvalidRequest) || !strings.HasPrefix(d.Reasons[0], "invalid_request: ") {
			t.Errorf("Decide(%+v) = %+v, %v; want invalid_request deny", req, d, err)
		}
	}
}

// TestInputDocument compares the input document policies see with golden
// files in testdata/input (refresh with go test -update).
func TestInputDocument(t *testing.T) {
	echo := `package authz

default allow := false

reasons := [json.marshal_with_options(input, {"pretty": true, "indent": "  "})]
`
	is := authztest.NewIssuer(t, "EdDSA")
	fixed := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	e := newEngine(t, authz.Options{Now: func() time.Time { return fixed },
		Tokens: token.Options{Issuers: []token.Issuer{is.Config()}, CallerAudiences: []string{"verdict-callers"}}}, authztest.Policy(t, "echo", echo))
	userToken := is.Mint(t, map[string]any{"sub": "alice", "roles": []string{"viewer"}, "big": json.Number("12345678901234567890"),
		"iat": fixed.Add(-time.Hour).Unix(), "exp": fixed.Add(time.Hour).Unix()})
	serviceToken := is.Mint(t, map[string]any{"sub": "svc-42", "azp": "payments", "client_id": "pay-client", "aud": "verdict-callers",
		"iat": fixed.Add(-time.Hour).Unix(), "exp": fixed.Add(time.Hour).Unix()})
	tests := []struct {
		name string
		req  authz.Request
	}{
		{"anonymous", authz.Request{Action: authz.Action{Name: "catalog:read"}, RequestID: "req-1"}},
		{"user with path", authz.Request{Token: token.Raw(userToken), RequestID: "req-2", RemoteAddr: "10.0.0.1:5555",
			Action:     authz.Action{Name: "orders:read", Method: "GET", Path: "/orders/43/%20x/?debug=1"},
			Resource:   map[string]any{"owner": "alice", "id": 43},
			Attributes: map[string]any{"tenant": "acme"}}},
		{"service token caller", authz.Request{Caller: authz.Caller{Token: token.Raw(serviceToken)}, RequestID: "req-3",
			Action: authz.Action{Name: "inventory:reserve"}}},
		{"asserted subject", authz.Request{RequestID: "req-4",
			Subject:  &authz.Subject{Type: "user", ID: "CiRmZDA2", Properties: map[string]any{"department": "ops"}},
			Action:   authz.Action{Name: "can_read_todos", Properties: map[string]any{"method": "GET"}},
			Resource: map[string]any{"type": "todo", "id": "todo-1"}, Attributes: map[string]any{"time": "late"}}},
		{"mesh caller", authz.Request{RequestID: "req-5", Caller: authz.Caller{Principal: "spiffe://cluster.local/ns/shop/sa/payments"},
			Action: authz.Action{Method: "POST", Path: "/inventory/reserve"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := e.Decide(t.Context(), tc.req)
			if err != nil || len(d.Reasons) != 1 {
				t.Fatalf("Decide: %+v, %v", d, err)
			}
			golden(t, filepath.Join("testdata", "input", strings.ReplaceAll(tc.name, " ", "_")+".json"), d.Reasons[0]+"\n")
		})
	}
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s (-want +got):\n%s", path, diff)
	}
}

func policySnapshot(tb testing.TB, rego string) *bundles.Snapshot {
	tb.Helper()
	return authztest.Policy(tb, "", rego)
}

func TestForgetKeyDropsCachedTokens(t *testing.T) {
	is := authztest.NewIssuer(t, "EdDSA")
	keys := &switchableKeys{}
	keys.set(token.StaticKeys{is.PublicKey()})
	cfg := is.Config()
	cfg.Keys = keys
	e := newEngine(t, authz.Options{Tokens: token.Options{Issuers: []token.Issuer{cfg}}}, authztest.Policy(t, "r", allowAll))
	tok := is.Mint(t, nil)
	if d, err := e.Decide(t.Context(), authz.Request{Token: token.Raw(tok), Action: authz.Action{Name: "x"}}); err != nil || !d.Allow {
		t.Fatalf("before rotation: %+v, %v", d, err)
	}
	keys.set(token.StaticKeys{}) // the key leaves the issuer's set
	if d, err := e.Decide(t.Context(), authz.Request{Token: token.Raw(tok), Action: authz.Action{Name: "x"}}); err != nil || !d.Allow {
		t.Fatalf("cached verification should still answer before ForgetKey: %+v, %v", d, err)
	}
	e.ForgetKey(is.Name, is.KeyID)
	if d, err := e.Decide(t.Context(), authz.Request{Token: token.Raw(tok), Action: authz.Action{Name: "x"}}); d.Allow || !errors.Is(err, token.ErrUnknownKID) {
		t.Fatalf("after ForgetKey: %+v, %v; want unknown_kid", d, err)
	}
}

// switchableKeys is a KeySet whose keys a test can replace.
type switchableKeys struct {
	keys atomic.Pointer[token.StaticKeys]
}

func (s *switchableKeys) set(k token.StaticKeys) { s.keys.Store(&k) }

func (s *switchableKeys) Lookup(ctx context.Context, kid string) ([]token.Key, error) {
	return s.keys.Load().Lookup(ctx, kid)
}

// TestPathSeenAsRouted: policies see the decoded, cleaned path that the
// upstream routes, so an encoded or dotted path cannot slip past a rule.
func TestPathSeenAsRouted(t *testing.T) {
	e := newEngine(t, authz.Options{}, authztest.Policy(t, "r", "package authz\n\nallow if not startswith(input.action.path, \"/admin\")\n"))
	for _, p := range []string{"/admin/users", "/%61dmin/users", "/admin/users/", "/admin/users?x=/public"} {
		d, err := e.Decide(t.Context(), authz.Request{Action: authz.Action{Method: "GET", Path: p}})
		if err != nil || d.Allow {
			t.Errorf("%s: %+v, %v; want deny", p, d, err)
		}
	}
	for _, p := range []string{"/catalog#/../admin", "/a/%2e%2e/admin", "/a%2Fb", "/public/../admin/users", "/public/./x", "//admin/users", "/admin//users"} {
		if d, err := e.Decide(t.Context(), authz.Request{Action: authz.Action{Method: "GET", Path: p}}); d.Allow || !errors.Is(err, authz.ErrInvalidRequest) {
			t.Errorf("%s: %+v, %v; want invalid_request", p, d, err)
		}
	}
}

func TestSubjectTokenCannotBeCaller(t *testing.T) {
	is := authztest.NewIssuer(t, "EdDSA")
	e := newEngine(t, authz.Options{Tokens: token.Options{Issuers: []token.Issuer{is.Config()}}}, authztest.Policy(t, "r", allowAll))
	tok := is.Mint(t, map[string]any{"azp": "payments"})
	d, err := e.Decide(t.Context(), authz.Request{Token: token.Raw(tok), Caller: authz.Caller{Token: token.Raw(tok)}, Action: authz.Action{Name: "x"}})
	if d.Allow || !errors.Is(err, authz.ErrCaller) {
		t.Fatalf("got %+v, %v; want a caller error", d, err)
	}
}

// TestStatusDescribesOneSnapshot: Status read while loads alternate a
// snapshot whose decisions are cached with one whose are not always
// describes one snapshot: its revision, how its decisions are cached and
// its decision cache's bound agree. The bound was read before the lock Load
// holds, so 81 of a few thousand reads mixed the two.
func TestStatusDescribesOneSnapshot(t *testing.T) {
	cached := authztest.Policy(t, "cached", "package authz\n\nallow if input.action.name == \"x\"\n")
	uncached := authztest.Policy(t, "uncached", "package authz\n\nallow if input.context.request_id == \"x\"\n")
	e := newEngine(t, authz.Options{}, cached)
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ctx.Err() == nil; i++ {
			s := cached
			if i%2 == 1 {
				s = uncached
			}
			if err := e.Load(ctx, s); err != nil && ctx.Err() == nil {
				t.Error(err)
				return
			}
		}
	}()
	reads := 0
	for ctx.Err() == nil {
		st := e.Status()
		on := strings.HasPrefix(st.DecisionCache, "on")
		if on != (st.Revision == "cached") || on != (st.Caches.Decision.MaxBytes > 0) {
			t.Fatalf("status mixes snapshots: revision %s, decision cache %q, bound %d", st.Revision, st.DecisionCache, st.Caches.Decision.MaxBytes)
		}
		reads++
	}
	<-done
	if reads < 10 {
		t.Errorf("only %d reads", reads)
	}
}
