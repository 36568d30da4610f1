package authz_test

import (
	"context"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"math/big"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/authz/token"
)

// leaf issues a certificate for cn with the given SANs (from a fresh CA:
// the engine trusts what TLS or the HTTP front verified, so only the names
// matter here).
func leaf(t *testing.T, cn string, dns []string, uris ...string) *x509.Certificate {
	t.Helper()
	return authztest.NewCA(t, "caller test ca").Issue(t, authztest.LeafOptions{CommonName: cn, DNSNames: dns, URIs: uris}).Cert
}

const echoCaller = `package authz

allow := true

headers := {"x-id": object.get(input.caller, "id", ""), "x-method": input.caller.method,
	"x-spiffe": object.get(input.caller, "spiffe_id", ""),
	"x-dns": concat(",", object.get(input.caller, ["certificate", "dns_names"], [])),
	"x-authenticated": sprintf("%v", [input.caller.authenticated])}
`

func TestCallerIdentity(t *testing.T) {
	is := authztest.NewIssuer(t, "ES256")
	e := newEngine(t, authz.Options{Tokens: token.Options{Issuers: []token.Issuer{is.Config()}, CallerAudiences: []string{callerAud}}},
		authztest.Policy(t, "r", echoCaller))
	svc := func(claims map[string]any) string {
		claims["aud"] = callerAud
		return is.Mint(t, claims)
	}
	spiffe := "spiffe://verdict.example/ns/shop/sa/payments"
	tests := []struct {
		name    string
		caller  authz.Caller
		want    map[string]string
		wantErr error
	}{
		{name: "none", caller: authz.Caller{},
			want: map[string]string{"x-id": "", "x-method": "none", "x-spiffe": "", "x-dns": "", "x-authenticated": "false"}},
		{name: "spiffe id wins", caller: authz.Caller{Certificate: leaf(t, "pay", []string{"pay.svc"}, "https://example.com/x", spiffe)},
			want: map[string]string{"x-id": spiffe, "x-method": "mtls", "x-spiffe": spiffe, "x-dns": "pay.svc", "x-authenticated": "true"}},
		{name: "dns san next", caller: authz.Caller{Certificate: leaf(t, "pay", []string{"pay.svc", "other.svc"}), Forwarded: true},
			want: map[string]string{"x-id": "pay.svc", "x-method": "forwarded_cert", "x-spiffe": "", "x-dns": "pay.svc,other.svc", "x-authenticated": "true"}},
		{name: "cn last", caller: authz.Caller{Certificate: leaf(t, "payments", nil)},
			want: map[string]string{"x-id": "payments", "x-method": "mtls", "x-spiffe": "", "x-dns": "", "x-authenticated": "true"}},
		{name: "service token azp", caller: authz.Caller{Token: token.Raw(svc(map[string]any{"azp": "payments", "client_id": "c", "sub": "s"}))},
			want: map[string]string{"x-id": "payments", "x-method": "token", "x-spiffe": "", "x-dns": "", "x-authenticated": "true"}},
		{name: "service token client_id", caller: authz.Caller{Token: token.Raw(svc(map[string]any{"client_id": "c", "sub": "s"}))},
			want: map[string]string{"x-id": "c", "x-method": "token", "x-spiffe": "", "x-dns": "", "x-authenticated": "true"}},
		{name: "service token sub", caller: authz.Caller{Token: token.Raw(svc(map[string]any{"sub": "s"}))},
			want: map[string]string{"x-id": "s", "x-method": "token", "x-spiffe": "", "x-dns": "", "x-authenticated": "true"}},
		{name: "service token names nobody", caller: authz.Caller{Token: token.Raw(svc(map[string]any{"sub": nil}))}, wantErr: authz.ErrCaller},
		{name: "invalid service token", caller: authz.Caller{Token: token.Raw(tamper(svc(map[string]any{})))}, wantErr: token.ErrBadSignature},
		{name: "a user's token is not a service token, whatever its azp", caller: authz.Caller{Token: token.Raw(is.Mint(t, map[string]any{"azp": "payments"}))},
			wantErr: token.ErrBadAudience},
		{name: "certificate without identity", caller: authz.Caller{Certificate: leaf(t, "", nil)}, wantErr: authz.ErrCaller},
		{name: "two spiffe ids", caller: authz.Caller{Certificate: leaf(t, "x", nil, spiffe, spiffe+"2")}, wantErr: authz.ErrCaller},
		{name: "certificate and token", caller: authz.Caller{Certificate: leaf(t, "x", nil), Token: token.Raw(is.Mint(t, nil))}, wantErr: authz.ErrCaller},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := e.Decide(t.Context(), authz.Request{Caller: tc.caller, Action: authz.Action{Name: "x"}})
			if tc.wantErr != nil {
				if d.Allow || !errors.Is(err, authz.ErrCaller) || !errors.Is(err, tc.wantErr) {
					t.Fatalf("got %+v, %v; want a caller deny wrapping %v", d, err, tc.wantErr)
				}
				if len(d.Reasons) != 1 || d.Reasons[0][:len("caller: ")] != "caller: " {
					t.Errorf("reasons = %q, want one starting caller:", d.Reasons)
				}
				return
			}
			if err != nil || !d.Allow {
				t.Fatalf("Decide: %+v, %v", d, err)
			}
			if diff := cmp.Diff(tc.want, d.Headers); diff != "" {
				t.Errorf("caller (-want +got):\n%s", diff)
			}
			if d.CallerID != tc.want["x-id"] {
				t.Errorf("CallerID = %q, want %q", d.CallerID, tc.want["x-id"])
			}
		})
	}
}

// callerAud is the audience the tests' caller tokens are issued for.
const callerAud = "verdict-callers"

// TestCallerTokensNeedCallerAudiences: with no caller audiences configured,
// every caller token is refused, even one the issuer minted for a service.
func TestCallerTokensNeedCallerAudiences(t *testing.T) {
	is := authztest.NewIssuer(t, "ES256")
	e := newEngine(t, authz.Options{Tokens: token.Options{Issuers: []token.Issuer{is.Config()}}}, authztest.Policy(t, "r", echoCaller))
	for _, aud := range []string{authztest.DefaultAudience, callerAud} {
		d, err := e.Decide(t.Context(), authz.Request{Caller: authz.Caller{Token: token.Raw(is.Mint(t, map[string]any{"azp": "payments", "aud": aud}))},
			Action: authz.Action{Name: "x"}})
		if d.Allow || !errors.Is(err, authz.ErrCaller) || len(d.Reasons) != 1 || d.Reasons[0] != "caller: no_caller_audiences" {
			t.Errorf("aud %s: %+v, %v; want a caller: no_caller_audiences deny (the configuration, not the token, is why)", aud, d, err)
		}
	}
}

// TestOneTokenNeverProvesBoth: the subject's token cannot prove the caller,
// even when it is sent again with its ECDSA signature re-encoded as
// (r, n−s), which verifies too and differs as a string.
func TestOneTokenNeverProvesBoth(t *testing.T) {
	is := authztest.NewIssuer(t, "ES256")
	e := newEngine(t, authz.Options{Tokens: token.Options{Issuers: []token.Issuer{is.Config()}, CallerAudiences: []string{callerAud}}},
		authztest.Policy(t, "r", echoCaller))
	both := is.Mint(t, map[string]any{"azp": "payments", "aud": []string{authztest.DefaultAudience, callerAud}})
	other := highS(t, both)
	if other == both {
		t.Fatal("re-encoding did not change the token")
	}
	for name, callerToken := range map[string]string{"same bytes": both, "re-encoded signature": other} {
		// Each form verifies on its own, as a subject and as a caller.
		for _, req := range []authz.Request{{Token: token.Raw(callerToken)}, {Caller: authz.Caller{Token: token.Raw(callerToken)}}} {
			req.Action = authz.Action{Name: "x"}
			if d, err := e.Decide(t.Context(), req); err != nil || !d.Allow {
				t.Fatalf("%s alone: %+v, %v; want it to verify", name, d, err)
			}
		}
		d, err := e.Decide(t.Context(), authz.Request{Token: token.Raw(both), Caller: authz.Caller{Token: token.Raw(callerToken)}, Action: authz.Action{Name: "x"}})
		if d.Allow || !errors.Is(err, authz.ErrCaller) || len(d.Reasons) != 1 || d.Reasons[0] != "caller: the subject's token cannot also prove the caller" {
			t.Errorf("%s as both: %+v, %v; want a caller deny", name, d, err)
		}
	}
}

// highS re-encodes an ES256 token's signature (r, s) as (r, n−s).
func highS(t *testing.T, tok string) string {
	t.Helper()
	i := strings.LastIndexByte(tok, '.')
	sig, err := base64.RawURLEncoding.DecodeString(tok[i+1:])
	if err != nil || len(sig) != 64 {
		t.Fatalf("not an ES256 signature: %v", err)
	}
	s := new(big.Int).SetBytes(sig[32:])
	s.Sub(elliptic.P256().Params().N, s)
	out := append(sig[:32:32], s.FillBytes(make([]byte, 32))...)
	return tok[:i+1] + base64.RawURLEncoding.EncodeToString(out)
}

func TestCallerFromTLS(t *testing.T) {
	cert := leaf(t, "svc", nil)
	if c := authz.CallerFromTLS(nil); c.Certificate != nil {
		t.Error("nil connection state gave a caller")
	}
	unverified := &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}
	if c := authz.CallerFromTLS(unverified); c.Certificate != nil {
		t.Error("a peer certificate the handshake did not verify was believed")
	}
	verified := &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}, VerifiedChains: [][]*x509.Certificate{{cert}}}
	if c := authz.CallerFromTLS(verified); c.Certificate != cert || c.Forwarded {
		t.Errorf("verified peer: got %+v", c)
	}
}

// staleableKeys is a KeySet whose keys can be made stale, as a remote key
// set's are when its provider has been down longer than max_stale.
type staleableKeys struct {
	token.StaticKeys
	stale atomic.Bool
}

var errStale = errors.New("keys are stale")

func (k *staleableKeys) Lookup(ctx context.Context, kid string) ([]token.Key, error) {
	if k.stale.Load() {
		return nil, errStale
	}
	return k.StaticKeys.Lookup(ctx, kid)
}

func (k *staleableKeys) Fresh() error {
	if k.stale.Load() {
		return errStale
	}
	return nil
}

// TestStaleKeysDenyCachedTokens: a token verified while its issuer's keys
// were fresh is denied once they go stale, whether the next decision would
// have come from the verified-token cache or the decision cache; and it is
// allowed again once the keys are confirmed.
func TestStaleKeysDenyCachedTokens(t *testing.T) {
	is := authztest.NewIssuer(t, "ES256")
	keys := &staleableKeys{StaticKeys: token.StaticKeys{is.PublicKey()}}
	cfg := is.Config()
	cfg.Keys = keys
	e := newEngine(t, authz.Options{Tokens: token.Options{Issuers: []token.Issuer{cfg}, CallerAudiences: []string{callerAud}}},
		authztest.Policy(t, "r", allowAll))
	user := is.Mint(t, nil)
	service := is.Mint(t, map[string]any{"azp": "payments", "aud": callerAud})
	for _, req := range []authz.Request{
		{Token: token.Raw(user), Action: authz.Action{Name: "x"}},
		{Caller: authz.Caller{Token: token.Raw(service)}, Action: authz.Action{Name: "x"}},
	} {
		for i := range 3 { // verified, then from the token cache, then from the decision cache
			if d, err := e.Decide(t.Context(), req); err != nil || !d.Allow {
				t.Fatalf("fresh keys, decision %d: %+v, %v", i, d, err)
			}
		}
		keys.stale.Store(true)
		d, err := e.Decide(t.Context(), req)
		if d.Allow || !errors.Is(err, token.ErrKeysUnavailable) || len(d.Reasons) != 1 || !strings.HasSuffix(d.Reasons[0], ": keys_unavailable") {
			t.Errorf("stale keys: %+v, %v; want a keys_unavailable deny", d, err)
		}
		keys.stale.Store(false)
		if d, err := e.Decide(t.Context(), req); err != nil || !d.Allow {
			t.Errorf("keys fresh again: %+v, %v", d, err)
		}
	}
}

// TestAssertedSubjectsAndMeshCallers: an asserted subject or a mesh
// principal reaches the policy as such, is never confused with another by
// the decision cache, and cannot be combined with another credential of
// the same party.
func TestAssertedSubjectsAndMeshCallers(t *testing.T) {
	is := authztest.NewIssuer(t, "ES256")
	e := newEngine(t, authz.Options{Tokens: token.Options{Issuers: []token.Issuer{is.Config()}}}, authztest.Policy(t, "r", `package authz

allow if {
	input.subject.method == "asserted"
	input.subject.id == "alice"
}

allow if {
	input.caller.method == "mesh"
	input.caller.spiffe_id == "spiffe://cluster.local/ns/shop/sa/payments"
}
`))
	decide := func(req authz.Request) (authz.Decision, error) {
		req.Action = authz.Action{Name: "x"}
		return e.Decide(t.Context(), req)
	}
	for range 3 { // repeated, so that a cached answer would be reused
		if d, err := decide(authz.Request{Subject: &authz.Subject{Type: "user", ID: "alice"}}); err != nil || !d.Allow || d.SubjectID != "alice" {
			t.Fatalf("asserted alice: %+v, %v", d, err)
		}
		if d, err := decide(authz.Request{Subject: &authz.Subject{Type: "user", ID: "mallory"}}); err != nil || d.Allow {
			t.Fatalf("asserted mallory: %+v, %v; want a deny", d, err)
		}
		if d, err := decide(authz.Request{Caller: authz.Caller{Principal: "spiffe://cluster.local/ns/shop/sa/payments"}}); err != nil || !d.Allow {
			t.Fatalf("mesh payments: %+v, %v", d, err)
		}
		if d, err := decide(authz.Request{Caller: authz.Caller{Principal: "spiffe://cluster.local/ns/shop/sa/other"}}); err != nil || d.Allow {
			t.Fatalf("mesh other: %+v, %v; want a deny", d, err)
		}
	}
	for _, tc := range []struct {
		req  authz.Request
		want error
	}{
		{authz.Request{Token: token.Raw(is.Mint(t, nil)), Subject: &authz.Subject{Type: "user", ID: "alice"}}, authz.ErrInvalidRequest},
		{authz.Request{Subject: &authz.Subject{Type: "user"}}, authz.ErrInvalidRequest},
		{authz.Request{Caller: authz.Caller{Principal: "p", Token: "t"}}, authz.ErrCaller},
		{authz.Request{Caller: authz.Caller{Principal: "p", Certificate: leaf(t, "x", nil)}}, authz.ErrCaller},
	} {
		if d, err := decide(tc.req); d.Allow || !errors.Is(err, tc.want) {
			t.Errorf("%+v: %+v, %v; want %v", tc.req, d, err, tc.want)
		}
	}
}
