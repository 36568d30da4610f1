package authz

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/authz/token"
	"github.com/verdict-pdp/verdict/bundles"
)

// propertyPolicies are the policies the key soundness property runs on:
// every policy in testdata/readset (echo.rego among them) and the default
// policies.
func propertyPolicies(t *testing.T) map[string]*bundles.Snapshot {
	t.Helper()
	out := authztest.PolicyFiles(t, filepath.Join("testdata", "readset"))
	out["default"] = authztest.DefaultPolicies(t)
	return out
}

func pick[T any](r *rand.Rand, xs ...T) T { return xs[r.IntN(len(xs))] }

// randomClaims are a token's claims: a few values from small sets (so
// that requests often agree on what a policy reads) and per-token values
// that no policy under test should key on (jti, iat, exp).
func randomClaims(r *rand.Rand) map[string]any {
	c := map[string]any{
		"iss": "https://idp.test",
		"sub": pick(r, "alice", "bob"),
		"jti": fmt.Sprint(r.Uint64()),
		"iat": json.Number(fmt.Sprint(1_700_000_000 + r.IntN(1000))),
		"exp": json.Number(fmt.Sprint(1_800_000_000 + r.IntN(1000))),
	}
	switch r.IntN(4) {
	case 0:
	case 1:
		c["roles"] = []any{pick[any](r, "viewer", "admin")}
	case 2:
		c["roles"] = []any{"viewer", "admin"}
	default:
		c["roles"] = []any{pick[any](r, "editor", "admin"), "viewer"}
	}
	if r.IntN(2) == 0 {
		c["tenant"] = pick[any](r, "acme", "globex", 7)
	}
	if r.IntN(3) == 0 {
		c["role-x"] = pick[any](r, "admin", "none")
	}
	if r.IntN(3) == 0 {
		c["scope"] = pick[any](r, "orders.read", "orders.read orders.write")
	}
	return c
}

// randomAsked is who asks: an anonymous, token or asserted subject and an
// anonymous, service-token or mesh caller, built as decide builds them.
// A token's key stands for its claims, as a token's hash does.
func randomAsked(t *testing.T, r *rand.Rand) asked {
	t.Helper()
	verified := func(claims map[string]any, p purpose) *verifiedToken {
		vt, err := newVerifiedToken(&token.Verified{Issuer: "https://idp.test", Subject: fmt.Sprint(claims["sub"]), Claims: claims}, p, time.Unix(1_700_000_000, 0))
		if err != nil {
			t.Fatal(err)
		}
		return vt
	}
	identity := func(claims map[string]any) cacheKey {
		raw, err := json.Marshal(claims)
		if err != nil {
			t.Fatal(err)
		}
		return sha256.Sum256(raw)
	}
	a := asked{subject: anonymousSubject, caller: callerInput{term: anonymousCaller}}
	switch r.IntN(4) {
	case 0:
	case 1:
		subject, err := assertedSubject(&Subject{Type: "user", ID: pick(r, "alice", "bob"),
			Properties: map[string]any{"dept": pick[any](r, "sales", "eng"), "n": r.IntN(100)}})
		if err != nil {
			t.Fatal(err)
		}
		a.subject = subject
	default:
		claims := randomClaims(r)
		vt := verified(claims, forSubject)
		a.subject, a.subjectKey, a.subjectToken = vt.subject, identity(claims), vt
	}
	switch r.IntN(4) {
	case 0:
	case 1:
		a.caller = callerInput{term: meshCaller(pick(r, "spiffe://shop/payments", "spiffe://shop/orders", "orders"))}
		a.caller.key = sha256.Sum256([]byte(a.caller.term.String()))
	default:
		claims := randomClaims(r)
		claims["azp"] = pick(r, "payments", "orders")
		vt := verified(claims, forCaller)
		a.caller = callerInput{term: vt.caller, key: identity(claims), token: vt}
		a.caller.key[0] ^= 2
	}
	return a
}

// randomRequest is the action, resource and context of a request: values
// a policy may read from small sets, values none of them read at random.
func randomRequest(r *rand.Rand) Request {
	req := Request{
		Action: Action{
			Name:   pick(r, "", "orders:read", "catalog:read", "inventory:reserve"),
			Method: pick(r, "", "GET", "get", "DELETE", "pOst"),
			Path:   pick(r, "", "/orders/42", "/orders/17", "/orders/17/items", "/catalog/1", "/health/live", "/"),
		},
		RequestID:  fmt.Sprint(r.Uint64()),
		RemoteAddr: pick(r, "", "10.0.0.1"),
	}
	if r.IntN(5) == 0 {
		req.Action.Properties = map[string]any{"p": pick[any](r, 1, "x")}
	}
	if r.IntN(3) > 0 {
		req.Resource = map[string]any{"id": r.IntN(1000), "noise": fmt.Sprint(r.Uint64())}
		if r.IntN(2) == 0 {
			req.Resource["owner"] = pick[any](r, "alice", "bob", nil)
		}
		switch r.IntN(4) {
		case 0:
			req.Resource["meta"] = map[string]any{"owner": pick[any](r, "alice", "bob"), "at": r.IntN(100)}
		case 1:
			req.Resource["meta"] = pick[any](r, "alice", 3, []any{"owner"})
		}
		if r.IntN(2) == 0 {
			req.Resource["items"] = []any{map[string]any{"id": pick[any](r, 1, 2), "x": r.IntN(9)}}
		}
		if r.IntN(4) == 0 {
			req.Resource["orders"] = map[string]any{"read": pick[any](r, true, false, "yes")}
		}
	}
	if r.IntN(3) == 0 {
		req.Attributes = map[string]any{"tenant": pick[any](r, "a", "b"), "n": r.IntN(100)}
	}
	return req
}

// outcome is what a decision says, for comparing two decisions.
func outcome(d *Decision, err error) string {
	if err != nil {
		return "error: " + ReasonFor(err)
	}
	headers, _ := json.Marshal(d.Headers)
	return fmt.Sprintf("allow=%v reasons=%q headers=%s", d.Allow, d.Reasons, headers)
}

// TestDecisionKeySoundness is the property the decision cache rests on:
// two requests with the same key get the same answer when both are
// evaluated (no cache involved). Requests are random, varying values
// inside and outside what each policy reads; many share keys, and every
// pair that does must agree. It also checks that a key read from the
// action's fields equals the key read from the built input.action, and
// that a key from the memos of known tokens (or the plan's encoding of the
// anonymous subject and caller) equals the key from their values.
func TestDecisionKeySoundness(t *testing.T) {
	n := 3000
	if testing.Short() {
		n = 500
	}
	now := time.Unix(1_750_000_000, 0)
	for name, snap := range propertyPolicies(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e, err := New(Options{EvalTimeout: time.Minute}) // no timeouts on a busy machine
			if err != nil {
				t.Fatal(err)
			}
			if err := e.Load(t.Context(), snap); err != nil {
				t.Fatal(err)
			}
			cp := e.current.Load()
			if cp.keys.mode == keyOff {
				t.Skip(cp.cacheNote)
			}
			seed := uint64(time.Now().UnixNano())
			r := rand.New(rand.NewPCG(seed, 1))
			type first struct {
				outcome string
				input   string
			}
			seen := map[cacheKey]first{}
			shared := 0
			var asks []asked
			var reqs []Request
			for range n {
				a, req := randomAsked(t, r), randomRequest(r)
				if len(asks) > 0 && r.IntN(4) == 0 {
					// The same subject, caller, action and resource again,
					// at another time, with another request ID.
					i := r.IntN(len(asks))
					a, req.Action, req.Resource = asks[i], reqs[i].Action, reqs[i].Resource
				}
				asks, reqs = append(asks, a), append(reqs, req)
				action, err := actionTerm(req.Action)
				if err != nil {
					continue
				}
				resource, err := freeFormTerm("resource", req.Resource)
				if err != nil {
					t.Fatal(err)
				}
				attributes, err := freeFormTerm("attributes", req.Attributes)
				if err != nil {
					t.Fatal(err)
				}
				key := cp.keys.key(&a, &req.Action, action, resource)
				// The same values, with no token memo and no shared
				// anonymous value to shortcut the reads.
				plain := a
				plain.subjectToken, plain.caller.token = nil, nil
				plain.subject, plain.caller.term = a.subject.Copy(), a.caller.term.Copy()
				if k := cp.keys.key(&plain, &req.Action, action, resource); k != key {
					t.Fatalf("seed %d: the key from the tokens' memos (or the anonymous encoding) differs from the key from the values", seed)
				}
				if cp.keys.actionFromFields(&req.Action) {
					if k := cp.keys.key(&a, &req.Action, nil, resource); k != key {
						t.Fatalf("seed %d: the key from the action's fields differs from the key from input.action %v", seed, action)
					}
				}
				if len(req.Attributes) == 0 {
					attributes = nil
				}
				input := inputValue(a.subject, a.caller.term, action, resource, contextTerm(now, req.RequestID, req.RemoteAddr, attributes))
				var d Decision
				got := first{outcome(&d, e.evaluate(t.Context(), cp, input, now, nil, &d)), input.String()}
				if prev, ok := seen[key]; ok {
					shared++
					if prev.outcome != got.outcome {
						t.Fatalf("seed %d: one key (%s), two answers:\n%s\n  for %s\n%s\n  for %s",
							seed, cp.cacheNote, prev.outcome, prev.input, got.outcome, got.input)
					}
				} else {
					seen[key] = got
				}
			}
			if shared < n/10 {
				t.Errorf("only %d of %d requests shared a key (%d keys): the property was hardly exercised", shared, n, len(seen))
			}
		})
	}
}

// TestDecisionKeyEncodingIsInjective: values that differ, however alike
// (a string and a number with the same text, an absent value and null,
// nested and flat arrays, objects with swapped keys and values), encode
// differently; equal values encode equally whatever their construction
// order.
func TestDecisionKeyEncodingIsInjective(t *testing.T) {
	docs := []string{
		`"1"`, `1`, `1.0`, `null`, `true`, `false`, `""`, `[]`, `{}`, `[[]]`, `[null]`, `[""]`, `["", ""]`, `[["", ""]]`,
		`["a", "b"]`, `["b", "a"]`, `["ab"]`, `{"a": "b"}`, `{"b": "a"}`, `{"a": ["b"]}`, `{"a": "b", "c": "d"}`,
		`{"a": {"b": "c"}}`, `{"ab": "c"}`, `[{"a": 1}, {"a": 1}]`, `[{"a": 1}]`, `"\u0000"`, `[0]`, `[-0]`,
	}
	encodings := map[string]string{}
	for _, doc := range docs {
		var v any
		dec := json.NewDecoder(strings.NewReader(doc))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		term, err := freeFormTerm("x", map[string]any{"v": v})
		if err != nil {
			t.Fatal(err)
		}
		enc := string(appendCanonical(nil, term.Value))
		if other, ok := encodings[enc]; ok && other != doc {
			t.Errorf("%s and %s encode alike", other, doc)
		}
		encodings[enc] = doc
	}
	for enc, doc := range encodings {
		if enc[0] == tagAbsent {
			t.Errorf("%s encodes with the absent tag", doc)
		}
	}
	// Objects built in different orders encode alike.
	x, _ := freeFormTerm("x", map[string]any{"a": 1, "b": 2, "c": map[string]any{"d": 3, "e": 4}})
	y, _ := freeFormTerm("x", map[string]any{"c": map[string]any{"e": 4, "d": 3}, "b": 2, "a": 1})
	if string(appendCanonical(nil, x.Value)) != string(appendCanonical(nil, y.Value)) {
		t.Error("equal objects encode differently")
	}
}

var keySink cacheKey

// BenchmarkDecisionKey is the decision cache key of a typical request
// under the default policies (nine reads: the subject's id and roles, the
// caller, the action), as a cache hit computes it: no allocation, most of
// it SHA-256 (see BENCHMARKS.md).
func BenchmarkDecisionKey(b *testing.B) {
	s := authztest.DefaultPolicies(b)
	e, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	if err := e.Load(b.Context(), s); err != nil {
		b.Fatal(err)
	}
	cp := e.current.Load()
	vt, err := newVerifiedToken(&token.Verified{Issuer: "https://issuer.test", Subject: "alice", Claims: map[string]any{
		"iss": "https://issuer.test", "aud": "verdict-test", "sub": "alice", "jti": "bench-1",
		"iat": json.Number("1700000000"), "exp": json.Number("1800000000"), "roles": []any{"viewer"},
	}}, forSubject, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	a := asked{subject: vt.subject, caller: callerInput{term: anonymousCaller}}
	act := Action{Name: "orders:read"}
	if !cp.keys.actionFromFields(&act) {
		b.Fatal("the default policies' key needs input.action built")
	}
	b.ReportAllocs()
	for b.Loop() {
		keySink = cp.keys.key(&a, &act, nil, emptyResource)
	}
}
