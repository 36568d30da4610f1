package authz_test

import (
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/authz/token"
	"github.com/verdict-pdp/verdict/bundles"
)

// differential holds two engines on the same policy and issuer, the one
// under test and a reference, and the credentials requests draw from.
type differential struct {
	tested, reference *authz.Engine
	// names say what each engine is, for failures.
	testedName, referenceName string
	tokens                    []token.Raw
	certs                     []*x509.Certificate
}

// newDifferential pairs an engine with the default caches (the one under
// test) and one with the decision cache off.
func newDifferential(t testing.TB, snap *bundles.Snapshot) *differential {
	return newDifferentialOf(t, snap, "the cached engine", authz.Options{}, "the uncached one", authz.Options{DecisionCacheSize: -1})
}

// newDifferentialOf pairs an engine with tested's options and one with
// reference's, each completed with the differential issuer.
func newDifferentialOf(t testing.TB, snap *bundles.Snapshot, testedName string, tested authz.Options, referenceName string, reference authz.Options) *differential {
	t.Helper()
	is := differentialIssuer(t)
	dc := &differential{tokens: is.tokens, certs: is.certs, testedName: testedName, referenceName: referenceName}
	for _, x := range []struct {
		opts   authz.Options
		engine **authz.Engine
	}{{tested, &dc.tested}, {reference, &dc.reference}} {
		x.opts.Tokens = token.Options{Issuers: []token.Issuer{is.issuer.Config()}}
		// A long timeout: a shared machine running the race detector must
		// not turn an evaluation into a timeout on one engine only.
		x.opts.EvalTimeout = time.Minute
		*x.engine = newEngine(t, x.opts, snap)
	}
	return dc
}

type differentialCreds struct {
	issuer *authztest.Issuer
	tokens []token.Raw
	certs  []*x509.Certificate
}

var (
	differentialOnce  sync.Once
	differentialSaved *differentialCreds
)

// differentialIssuer mints, once per test binary, tokens whose claims come
// from small sets (so that many agree on what a policy reads) with a
// unique jti, and a few caller certificates.
func differentialIssuer(t testing.TB) *differentialCreds {
	differentialOnce.Do(func() {
		is := authztest.NewIssuer(t, "HS256")
		c := &differentialCreds{issuer: is}
		r := rand.New(rand.NewPCG(1, 2))
		for i := range 300 {
			claims := map[string]any{"sub": []string{"alice", "bob", "carol"}[r.IntN(3)], "jti": fmt.Sprint(i)}
			switch r.IntN(4) {
			case 1:
				claims["roles"] = []string{"viewer"}
			case 2:
				claims["roles"] = []string{"viewer", "admin"}
			case 3:
				claims["roles"] = []string{"editor"}
			}
			if r.IntN(2) == 0 {
				claims["tenant"] = []any{"acme", "globex", 7}[r.IntN(3)]
			}
			if r.IntN(3) == 0 {
				claims["role-x"] = "admin"
			}
			c.tokens = append(c.tokens, token.Raw(is.Mint(t, claims)))
		}
		ca := authztest.NewCA(t, "shop CA")
		for _, uri := range []string{"spiffe://shop/payments", "spiffe://shop/orders"} {
			c.certs = append(c.certs, ca.Issue(t, authztest.LeafOptions{CommonName: "svc", URIs: []string{uri}}).Cert)
		}
		differentialSaved = c
	})
	if differentialSaved == nil {
		t.Fatal("minting the differential tokens failed")
	}
	return differentialSaved
}

// request builds a request from choices: each byte picks one option.
func (dc *differential) request(choice func(n int) int) authz.Request {
	req := authz.Request{RequestID: fmt.Sprint(choice(1 << 16))}
	switch choice(5) {
	case 0:
	case 1:
		req.Subject = &authz.Subject{Type: "user", ID: []string{"alice", "bob"}[choice(2)],
			Properties: map[string]any{"dept": []string{"eng", "sales"}[choice(2)], "n": choice(50)}}
	case 2:
		req.Token = "not.a-token"
	default:
		req.Token = dc.tokens[choice(len(dc.tokens))]
	}
	switch choice(4) {
	case 1:
		req.Caller.Principal = []string{"spiffe://shop/payments", "orders"}[choice(2)]
	case 2:
		req.Caller.Certificate = dc.certs[choice(len(dc.certs))]
		req.Caller.Forwarded = choice(2) == 0
	}
	req.Action = authz.Action{
		Name:   []string{"", "", "orders:read", "catalog:read", "inventory:reserve", "health:read"}[choice(6)],
		Method: []string{"", "GET", "get", "POST", "DELETE", "TRACE"}[choice(6)],
		Path:   []string{"", "/orders/42", "/orders/17", "/catalog/1/x", "/health/live", "/", "/a/../b", "/inventory:reserve"}[choice(8)],
	}
	if choice(6) == 0 {
		req.Action.Properties = map[string]any{"p": choice(2)}
	}
	if choice(3) > 0 {
		req.Resource = map[string]any{"id": choice(100), "noise": choice(1 << 20)}
		switch choice(4) {
		case 0:
			req.Resource["meta"] = map[string]any{"owner": []string{"alice", "bob"}[choice(2)], "v": choice(9)}
		case 1:
			req.Resource["meta"] = []any{"alice", 3, nil}[choice(3)]
		}
		if choice(3) == 0 {
			req.Resource["owner"] = []any{"alice", "bob"}[choice(2)]
		}
	}
	if choice(4) == 0 {
		req.Attributes = map[string]any{"tenant": []string{"a", "b"}[choice(2)]}
	}
	req.RemoteAddr = []string{"", "10.0.0.1"}[choice(2)]
	return req
}

// check decides req on both engines and reports (as a test error) when
// their answers differ. Safe to call from any goroutine.
func (dc *differential) check(t *testing.T, req authz.Request) bool {
	t.Helper()
	got, gotErr := dc.tested.Decide(t.Context(), req)
	want, wantErr := dc.reference.Decide(t.Context(), req)
	if g, w := differentialOutcome(got, gotErr), differentialOutcome(want, wantErr); g != w {
		t.Errorf("%s answered\n%s\n%s\n%s\nfor %s", dc.testedName, g, dc.referenceName, w, describe(req))
		return false
	}
	return true
}

// describe shows a request without its certificate's bytes.
func describe(req authz.Request) string {
	cert := ""
	if c := req.Caller.Certificate; c != nil {
		cert = fmt.Sprint(c.URIs)
	}
	req.Caller.Certificate = nil
	raw, _ := json.Marshal(req)
	return fmt.Sprintf("%s, caller certificate %q", raw, cert)
}

func differentialOutcome(d authz.Decision, err error) string {
	headers, _ := json.Marshal(d.Headers)
	return fmt.Sprintf("allow=%v err=%v reasons=%q headers=%s", d.Allow, err != nil, d.Reasons, headers)
}

// differentialPolicies are the policies both engines run: the default
// policies and every policy in testdata/readset (echo.rego among them).
func differentialPolicies(t testing.TB) map[string]*bundles.Snapshot {
	t.Helper()
	out := authztest.PolicyFiles(t, filepath.Join("testdata", "readset"))
	out["default"] = authztest.DefaultPolicies(t)
	return out
}

// TestDecisionCacheDifferential: for random sequences of requests, decided
// from several goroutines at once, the engine with its decision cache
// answers exactly what the engine without one answers, on every policy
// under test. Run with -race.
func TestDecisionCacheDifferential(t *testing.T) {
	runDifferential(t, newDifferential)
}

// TestEvaluatorDifferential: the compiled evaluator answers what topdown
// answers, on the same requests and policies as
// TestDecisionCacheDifferential, both with the decision cache off (so
// that every request is evaluated).
func TestEvaluatorDifferential(t *testing.T) {
	runDifferential(t, func(t testing.TB, snap *bundles.Snapshot) *differential {
		dc := newDifferentialOf(t, snap,
			"the compiled evaluator", authz.Options{Evaluator: authz.EvaluatorAuto, DecisionCacheSize: -1},
			"topdown", authz.Options{Evaluator: authz.EvaluatorTopdown, DecisionCacheSize: -1})
		// A policy calling http.send is left to topdown; every other one
		// here runs on the compiled evaluator.
		if ev := dc.tested.Status().Evaluator; !strings.HasPrefix(ev, "compiled") && !strings.Contains(ev, "http.send") {
			t.Fatalf("Status().Evaluator = %q, want compiled", ev)
		}
		return dc
	})
}

// runDifferential checks the engines newPair makes over random request
// sequences on every differential policy, from several goroutines at once.
func runDifferential(t *testing.T, newPair func(testing.TB, *bundles.Snapshot) *differential) {
	n := 1500
	if testing.Short() {
		n = 300
	}
	for name, snap := range differentialPolicies(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dc := newPair(t, snap)
			seed := uint64(time.Now().UnixNano())
			var wg sync.WaitGroup
			for g := range 4 {
				wg.Go(func() {
					r := rand.New(rand.NewPCG(seed, uint64(g)))
					for range n / 4 {
						if !dc.check(t, dc.request(r.IntN)) {
							return
						}
					}
				})
			}
			wg.Wait()
			if t.Failed() {
				t.Logf("seed %d", seed)
			}
		})
	}
}

// FuzzDecisionCacheAgrees: a sequence of requests, each chosen by the fuzz
// input, decided by the engine with its decision cache and by the engine
// without: the answers must be the same, on the default policies and on
// testdata/readset/echo.rego.
func FuzzDecisionCacheAgrees(f *testing.F) {
	f.Add([]byte{3, 0, 0, 2, 1, 0, 0, 0, 3, 0, 0, 2, 1, 0, 0, 0})
	f.Add([]byte{1, 1, 2, 0, 1, 3, 1, 2, 0, 1, 1, 2, 0, 1, 3, 1, 2, 1})
	f.Add([]byte("a sequence of choices, any bytes at all, repeated: a sequence of choices"))
	engines := map[string]*differential{
		"default": newDifferential(f, authztest.DefaultPolicies(f)),
		"echo":    newDifferential(f, readsetPolicy(f, "echo.rego")),
	}
	f.Fuzz(func(t *testing.T, choices []byte) {
		for _, dc := range engines {
			next := choices
			choice := func(n int) int {
				if len(next) == 0 {
					return 0
				}
				var b [8]byte
				copy(b[:], next[:min(len(next), 2)])
				next = next[min(len(next), 2):]
				return int(binary.LittleEndian.Uint64(b[:]) % uint64(n))
			}
			for len(next) > 0 {
				if !dc.check(t, dc.request(choice)) {
					return
				}
			}
		}
	})
}
