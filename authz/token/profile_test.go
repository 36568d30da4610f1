package token_test

import (
	"context"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/authz/token"
)

// verifyCase is one token for a Verifier: want nil means accepted.
type verifyCase struct {
	name   string
	tok    string
	caller bool // VerifyCaller instead of Verify
	want   error
}

// runVerifyCases runs cases against v, checking every denial with checkDeny.
func runVerifyCases(t *testing.T, v *token.Verifier, cases []verifyCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			verify := v.Verify
			if tc.caller {
				verify = v.VerifyCaller
			}
			got, err := verify(t.Context(), tc.tok)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				if got == nil {
					t.Fatal("nil Verified without error")
				}
				return
			}
			checkDeny(t, tc.tok, got, err, tc.want)
		})
	}
}

func TestMaxLifetime(t *testing.T) {
	short := named(t, "ES256", "https://short.test", "")
	shortCfg := short.Config()
	shortCfg.MaxLifetime = time.Hour
	long := named(t, "ES256", "https://long.test", "") // no MaxLifetime
	v := newVerifier(t, token.Options{
		Issuers:         []token.Issuer{shortCfg, long.Config()},
		CallerAudiences: []string{authztest.DefaultAudience},
		Leeway:          30 * time.Second,
	})

	iat := testNow.Add(-time.Minute)
	lived := func(d time.Duration, extra map[string]any) map[string]any {
		c := claimsAt(short.Name, map[string]any{"iat": iat.Unix(), "exp": iat.Add(d).Unix()})
		for k, v := range extra {
			c[k] = v
		}
		return c
	}
	runVerifyCases(t, v, []verifyCase{
		{name: "at the limit", tok: short.Mint(t, lived(time.Hour, nil))},
		{name: "under the limit", tok: short.Mint(t, lived(5*time.Minute, nil))},
		{name: "one second over", tok: short.Mint(t, lived(time.Hour+time.Second, nil)), want: token.ErrLifetime},
		{name: "half a second over", tok: short.Mint(t, lived(0, map[string]any{"exp": json.Number(strconv.FormatInt(iat.Unix()+3600, 10) + ".5")})), want: token.ErrLifetime},
		{name: "100000 hours", tok: short.Mint(t, lived(100_000*time.Hour, nil)), want: token.ErrLifetime},
		{name: "exp far future", tok: short.Mint(t, lived(0, map[string]any{"exp": json.Number("1e15")})), want: token.ErrLifetime},
		{name: "iat long ago", tok: short.Mint(t, lived(0, map[string]any{"iat": 0, "exp": testNow.Add(time.Minute).Unix()})), want: token.ErrLifetime},
		{name: "no leeway on the lifetime", tok: short.Mint(t, lived(time.Hour+10*time.Second, nil)), want: token.ErrLifetime},
		{name: "missing iat", tok: short.Mint(t, lived(time.Hour, map[string]any{"iat": nil})), want: token.ErrMissingClaim},
		{name: "missing exp", tok: short.Mint(t, lived(time.Hour, map[string]any{"exp": nil})), want: token.ErrMissingClaim},
		{name: "missing iat beats expired", tok: short.Mint(t, lived(time.Hour, map[string]any{"iat": nil, "exp": testNow.Add(-time.Hour).Unix()})), want: token.ErrMissingClaim},
		{name: "missing iat beats bad audience", tok: short.Mint(t, lived(time.Hour, map[string]any{"iat": nil, "aud": "nobody"})), want: token.ErrMissingClaim},
		{name: "expired beats too long", tok: short.Mint(t, lived(0, map[string]any{"iat": 0, "exp": testNow.Add(-time.Hour).Unix()})), want: token.ErrExpired},
		{name: "iat null", tok: short.Mint(t, lived(time.Hour, map[string]any{"iat": json.RawMessage("null")})), want: token.ErrMalformed},
		{name: "iat a string", tok: short.Mint(t, lived(time.Hour, map[string]any{"iat": "yesterday"})), want: token.ErrMalformed},
		{name: "caller token too long", caller: true, tok: short.Mint(t, lived(2*time.Hour, nil)), want: token.ErrLifetime},
		{name: "caller token missing iat", caller: true, tok: short.Mint(t, lived(time.Hour, map[string]any{"iat": nil})), want: token.ErrMissingClaim},
		{name: "caller token at the limit", caller: true, tok: short.Mint(t, lived(time.Hour, nil))},
		{name: "other issuer: 100000 hours", tok: long.Mint(t, claimsAt(long.Name, map[string]any{"exp": iat.Add(100_000 * time.Hour).Unix()}))},
		{name: "other issuer: no iat", tok: long.Mint(t, claimsAt(long.Name, map[string]any{"iat": nil}))},
	})
}

func TestRequiredType(t *testing.T) {
	at := named(t, "ES256", "https://at.test", "")
	atCfg := at.Config()
	atCfg.RequiredType = "at+jwt"
	var lookups atomic.Int64
	keys := atCfg.Keys
	atCfg.Keys = keySetFunc(func(ctx context.Context, kid string) ([]token.Key, error) {
		lookups.Add(1)
		return keys.Lookup(ctx, kid)
	})
	full := named(t, "ES256", "https://full.test", "") // configured with the prefix
	fullCfg := full.Config()
	fullCfg.RequiredType = "Application/AT+JWT"
	// intro requires a type with an s and a k, which Unicode case folding
	// (strings.EqualFold), unlike media type comparison, would match with
	// U+017F (long s) and U+212A (Kelvin sign).
	intro := named(t, "ES256", "https://intro.test", "")
	introCfg := intro.Config()
	introCfg.RequiredType = "token-introspection+jwt"
	v := newVerifier(t, token.Options{Issuers: []token.Issuer{atCfg, fullCfg, introCfg}})

	withTyp := func(i *authztest.Issuer, typ any) string {
		return i.MintWithHeader(t, map[string]any{"typ": typ}, claimsAt(i.Name, nil))
	}
	runVerifyCases(t, v, []verifyCase{
		{name: "at+jwt", tok: withTyp(at, "at+jwt")},
		{name: "AT+JWT", tok: withTyp(at, "AT+JWT")},
		{name: "application/at+jwt", tok: withTyp(at, "application/at+jwt")},
		{name: "APPLICATION/At+Jwt", tok: withTyp(at, "APPLICATION/At+Jwt")},
		{name: "JWT", tok: withTyp(at, "JWT"), want: token.ErrBadType},
		{name: "application/jwt", tok: withTyp(at, "application/jwt"), want: token.ErrBadType},
		{name: "other top-level type", tok: withTyp(at, "text/at+jwt"), want: token.ErrBadType},
		{name: "double prefix", tok: withTyp(at, "application/application/at+jwt"), want: token.ErrBadType},
		{name: "trailing space", tok: withTyp(at, "at+jwt "), want: token.ErrBadType},
		{name: "empty typ", tok: withTyp(at, ""), want: token.ErrBadType},
		{name: "missing typ", tok: withTyp(at, nil), want: token.ErrBadType},
		{name: "typ a number", tok: withTyp(at, 7), want: token.ErrMalformed},
		{name: "typ an array", tok: withTyp(at, []string{"at+jwt"}), want: token.ErrMalformed},
		{name: "typ null", tok: withTyp(at, json.RawMessage("null")), want: token.ErrMalformed},
		{name: "prefixed config: at+jwt", tok: withTyp(full, "at+jwt")},
		{name: "prefixed config: application/at+jwt", tok: withTyp(full, "application/at+jwt")},
		{name: "prefixed config: JWT", tok: withTyp(full, "JWT"), want: token.ErrBadType},
		{name: "token-introspection+jwt", tok: withTyp(intro, "Token-Introspection+JWT")},
		{name: "long s is not s", tok: withTyp(intro, "token-intro\u017fpection+jwt"), want: token.ErrBadType},
		{name: "kelvin sign is not k", tok: withTyp(intro, "application/to\u212aen-introspection+jwt"), want: token.ErrBadType},
	})

	// A token of the wrong type is refused before its keys are looked up,
	// so it cannot make a remote KeySet refresh.
	lookups.Store(0)
	tok := at.MintWithHeader(t, map[string]any{"typ": "JWT", "kid": "unknown"}, claimsAt(at.Name, nil))
	if _, err := v.Verify(t.Context(), tok); !errors.Is(err, token.ErrBadType) {
		t.Fatalf("Verify = %v, want bad_type", err)
	}
	if n := lookups.Load(); n != 0 {
		t.Errorf("KeySet asked %d times for a token of the wrong type, want 0", n)
	}
}

func TestMissingKID(t *testing.T) {
	one := named(t, "ES256", "https://one.test", "k1")
	two := named(t, "ES256", "https://two.test", "k1")
	twoOther := named(t, "ES256", two.Name, "k2")
	twoCfg := two.Config()
	twoCfg.Keys = token.StaticKeys{two.PublicKey(), twoOther.PublicKey()}
	// remote: a KeySet other than StaticKeys that returns two keys for "".
	remote := named(t, "ES256", "https://remote.test", "r1")
	remoteOther := named(t, "ES256", remote.Name, "r2")
	remoteCfg := remote.Config()
	remoteCfg.Keys = keySetFunc(func(ctx context.Context, kid string) ([]token.Key, error) {
		return token.StaticKeys{remote.PublicKey(), remoteOther.PublicKey()}.Lookup(ctx, kid)
	})
	v := newVerifier(t, token.Options{Issuers: []token.Issuer{one.Config(), twoCfg, remoteCfg}})

	noKID := func(i *authztest.Issuer) string {
		return i.MintWithHeader(t, map[string]any{"kid": nil}, claimsAt(i.Name, nil))
	}
	runVerifyCases(t, v, []verifyCase{
		{name: "one key, no kid", tok: noKID(one)},
		{name: "one key, kid", tok: one.Mint(t, claimsAt(one.Name, nil))},
		{name: "two keys, no kid", tok: noKID(two), want: token.ErrMissingKID},
		{name: "two keys, no kid, second key", tok: noKID(twoOther), want: token.ErrMissingKID},
		{name: "two keys, empty kid", tok: two.MintWithHeader(t, map[string]any{"kid": ""}, claimsAt(two.Name, nil)), want: token.ErrMissingKID},
		{name: "two keys, kid", tok: two.Mint(t, claimsAt(two.Name, nil))},
		{name: "two keys, other kid", tok: twoOther.Mint(t, claimsAt(two.Name, nil))},
		{name: "remote two keys, no kid", tok: noKID(remote), want: token.ErrMissingKID},
		{name: "remote two keys, kid", tok: remoteOther.Mint(t, claimsAt(remote.Name, nil))},
	})
}

func TestVerifyCaller(t *testing.T) {
	const (
		callerAud = "verdict-callers"
		shared    = "shared" // both an issuer audience and a caller audience
	)
	es := named(t, "ES256", "https://es.test", "")
	esCfg := es.Config()
	esCfg.Audiences = []string{authztest.DefaultAudience, shared}
	opts := token.Options{
		Issuers:         []token.Issuer{esCfg},
		CallerAudiences: []string{callerAud, shared},
		Leeway:          30 * time.Second,
	}
	v := newVerifier(t, opts)
	aud := func(a any) string { return es.Mint(t, claimsAt(es.Name, map[string]any{"aud": a})) }
	callerTok := aud(callerAud)
	runVerifyCases(t, v, []verifyCase{
		{name: "caller audience", caller: true, tok: callerTok},
		{name: "caller audience among others", caller: true, tok: aud([]string{"x", callerAud})},
		{name: "caller and issuer audience", caller: true, tok: aud([]string{authztest.DefaultAudience, callerAud})},
		{name: "issuer audience refused for a caller", caller: true, tok: aud(authztest.DefaultAudience), want: token.ErrBadAudience},
		{name: "caller audience refused by Verify", tok: callerTok, want: token.ErrBadAudience},
		{name: "issuer audience accepted by Verify", tok: aud(authztest.DefaultAudience)},
		{name: "shared audience accepted by Verify", tok: aud(shared)},
		{name: "shared audience accepted by VerifyCaller", caller: true, tok: aud(shared)},
		{name: "caller: aud missing", caller: true, tok: aud(nil), want: token.ErrBadAudience},
		{name: "caller: aud case", caller: true, tok: aud("VERDICT-CALLERS"), want: token.ErrBadAudience},
		{name: "caller: expired", caller: true, tok: es.Mint(t, claimsAt(es.Name, map[string]any{"aud": callerAud, "exp": testNow.Add(-time.Hour).Unix()})), want: token.ErrExpired},
		{name: "caller: missing exp", caller: true, tok: es.Mint(t, claimsAt(es.Name, map[string]any{"aud": callerAud, "exp": nil})), want: token.ErrMissingClaim},
		{name: "caller: bad signature", caller: true, tok: tamperSig(t, callerTok), want: token.ErrBadSignature},
		{name: "caller: unknown issuer", caller: true, tok: es.Mint(t, claimsAt("https://nobody.test", map[string]any{"aud": callerAud})), want: token.ErrBadIssuer},
		{name: "caller: alg none", caller: true, tok: rawJWT(t, map[string]any{"alg": "none"}, claimsAt(es.Name, map[string]any{"aud": callerAud}), nil), want: token.ErrDisallowedAlg},
		{name: "caller: oversized", caller: true, tok: strings.Repeat("a", token.DefaultMaxBytes+1), want: token.ErrTooLarge},
	})

	t.Run("details name the audiences", func(t *testing.T) {
		_, err := v.VerifyCaller(t.Context(), aud(authztest.DefaultAudience))
		if !strings.Contains(err.Error(), "caller audiences") {
			t.Errorf("VerifyCaller error %q does not say the caller audiences were wanted", err)
		}
		_, err = v.Verify(t.Context(), callerTok)
		if !strings.Contains(err.Error(), "issuer's audiences") {
			t.Errorf("Verify error %q does not say the issuer's audiences were wanted", err)
		}
	})

	t.Run("same result as Verify otherwise", func(t *testing.T) {
		got, err := v.VerifyCaller(t.Context(), callerTok)
		if err != nil {
			t.Fatal(err)
		}
		both := aud([]string{authztest.DefaultAudience, callerAud})
		subj, err := v.Verify(t.Context(), both)
		if err != nil {
			t.Fatal(err)
		}
		if got.Issuer != subj.Issuer || got.Subject != subj.Subject || got.KeyID != subj.KeyID || !got.ExpiresAt.Equal(subj.ExpiresAt) {
			t.Errorf("VerifyCaller = %+v, Verify = %+v: want the same fields", got, subj)
		}
	})

	// Without caller audiences, every token is refused, however good.
	opts.CallerAudiences = nil
	none := newVerifier(t, opts)
	for _, tok := range []string{callerTok, aud(authztest.DefaultAudience), aud(shared), "", "not a token"} {
		got, err := none.VerifyCaller(t.Context(), tok)
		checkDeny(t, tok, got, err, token.ErrNoCallerAudiences)
		if err != nil && !strings.Contains(err.Error(), "no caller audiences are configured") {
			t.Errorf("error %q does not say no caller audiences are configured", err)
		}
	}
	if _, err := none.Verify(t.Context(), aud(shared)); err != nil {
		t.Errorf("Verify without caller audiences: %v", err)
	}
}

// TestContentMalleableSignature re-encodes an ES256 signature (r, s) as
// (r, n-s): both tokens verify (Go's ecdsa accepts a high s), their raw
// strings differ, and their Content is the same.
func TestContentMalleableSignature(t *testing.T) {
	es := named(t, "ES256", "https://es.test", "")
	v := newVerifier(t, token.Options{Issuers: []token.Issuer{es.Config()}})
	tok := es.Mint(t, claimsAt(es.Name, nil))

	i := strings.LastIndexByte(tok, '.')
	sig, err := base64.RawURLEncoding.DecodeString(tok[i+1:])
	if err != nil || len(sig) != 64 {
		t.Fatalf("ES256 signature: %d bytes, %v", len(sig), err)
	}
	n := elliptic.P256().Params().N
	s := new(big.Int).SetBytes(sig[32:])
	flipped := append(sig[:32:32], new(big.Int).Sub(n, s).FillBytes(make([]byte, 32))...)
	twin := tok[:i+1] + b64(flipped)
	if twin == tok {
		t.Fatal("re-encoded token equals the original")
	}

	a, err := v.Verify(t.Context(), tok)
	if err != nil {
		t.Fatalf("original: %v", err)
	}
	b, err := v.Verify(t.Context(), twin)
	if err != nil {
		t.Fatalf("re-encoded signature (r, n-s): %v", err)
	}
	if a.Content != b.Content {
		t.Errorf("Content differs: %x and %x", a.Content, b.Content)
	}
	if want := sha256.Sum256([]byte(tok[:i])); a.Content != want {
		t.Errorf("Content = %x, want SHA-256 of the signing input %x", a.Content, want)
	}
	other, err := v.Verify(t.Context(), es.Mint(t, claimsAt(es.Name, map[string]any{"sub": "bob"})))
	if err != nil {
		t.Fatal(err)
	}
	if other.Content == a.Content {
		t.Error("tokens with different claims have the same Content")
	}
}

// freshKeys is a KeySet that reports its freshness from an atomic.
type freshKeys struct {
	token.StaticKeys
	err atomic.Pointer[error]
}

func (f *freshKeys) Fresh() error {
	if p := f.err.Load(); p != nil {
		return *p
	}
	return nil
}

var _ token.FreshnessChecker = (*freshKeys)(nil)

func TestKeysFresh(t *testing.T) {
	static := named(t, "ES256", "https://static.test", "")
	remote := named(t, "ES256", "https://remote.test", "")
	remoteCfg := remote.Config()
	fk := &freshKeys{StaticKeys: token.StaticKeys{remote.PublicKey()}}
	remoteCfg.Keys = fk
	v := newVerifier(t, token.Options{Issuers: []token.Issuer{static.Config(), remoteCfg}})

	check := func(t *testing.T, issuer string, want error) {
		t.Helper()
		err := v.KeysFresh(issuer)
		switch {
		case want == nil && err != nil:
			t.Errorf("KeysFresh(%q) = %v, want nil", issuer, err)
		case want != nil && err == nil:
			t.Errorf("KeysFresh(%q) = nil, want %v", issuer, want)
		case want != nil:
			checkDeny(t, issuer, nil, err, want)
		}
	}
	check(t, static.Name, nil)
	check(t, remote.Name, nil)
	check(t, "https://nobody.test", token.ErrBadIssuer)
	check(t, "", token.ErrBadIssuer)

	stale := errors.New("keys last confirmed 2h ago")
	fk.err.Store(&stale)
	check(t, remote.Name, token.ErrKeysUnavailable)
	check(t, static.Name, nil)
	if err := v.KeysFresh(remote.Name); !strings.Contains(err.Error(), stale.Error()) {
		t.Errorf("KeysFresh = %q, want it to say why (%q)", err, stale)
	}
	fk.err.Store(nil)
	check(t, remote.Name, nil)
}

func TestKeysFreshDoesNotAllocate(t *testing.T) {
	static := named(t, "ES256", "https://static.test", "")
	remote := named(t, "ES256", "https://remote.test", "")
	remoteCfg := remote.Config()
	remoteCfg.Keys = &freshKeys{StaticKeys: token.StaticKeys{remote.PublicKey()}}
	v := newVerifier(t, token.Options{Issuers: []token.Issuer{static.Config(), remoteCfg}})
	for _, iss := range []string{static.Name, remote.Name} {
		if n := testing.AllocsPerRun(100, func() {
			if err := v.KeysFresh(iss); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("KeysFresh(%q) allocates %v times, want 0", iss, n)
		}
	}
}

// TestReasons checks that Reasons is Reason's closed set: every cause has
// a distinct name in it, a verification error wrapping a cause reports
// that name, and the set holds the newer causes too.
func TestReasons(t *testing.T) {
	got := token.Reasons()
	var want []string
	for _, c := range allCauses {
		want = append(want, c.Error())
		if r := token.Reason(errors.Join(token.ErrInvalid, c)); r != c.Error() {
			t.Errorf("Reason(%v) = %q, want %q", c, r, c.Error())
		}
	}
	want = append(want, "invalid")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Reasons (-want +got):\n%s", diff)
	}
	for _, name := range []string{"lifetime_too_long", "bad_type", "missing_kid"} {
		if !slices.Contains(got, name) {
			t.Errorf("Reasons lacks %q", name)
		}
	}
	seen := map[string]bool{}
	for _, r := range got {
		if seen[r] {
			t.Errorf("Reasons repeats %q", r)
		}
		seen[r] = true
	}
	got[0] = "changed"
	if token.Reasons()[0] == "changed" {
		t.Error("Reasons returns a shared slice")
	}
}
