package authz_test

// Benchmarks of the decision engine against the targets in BENCHMARKS.md:
//
//	go test -run '^$' -bench . -benchmem -count 6 ./authz
//
// Verdict's numbers use the default policy set (policies.FS()) with tokens
// carrying roles ["viewer"] and the action "orders:read" (an allow).
// BenchmarkOPA is the same job done by OPA's rego package the way its users
// do it: io.jwt.decode_verify inside the policy. BenchmarkFloor is the bare
// prepared evaluation the engine runs, on an input converted once.
// BenchmarkVerifyOnly is signature verification plus claim checks alone.

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/topdown/cache"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/authz/token"
	"github.com/verdict-pdp/verdict/bundles"
	"github.com/verdict-pdp/verdict/policies"
	"github.com/verdict-pdp/verdict/test/load/opabaseline"
)

// benchAlgs are the algorithms measured; RS256 is the headline.
var benchAlgs = []string{"RS256", "ES256", "EdDSA", "HS256"}

const (
	benchPoolSize = 1000
	benchAction   = "orders:read"
)

// benchPool is one issuer and benchPoolSize distinct tokens it minted, each
// with roles ["viewer"] and a unique jti. Pools are minted once per test
// binary and shared by every benchmark (and every -count repetition).
type benchPool struct {
	issuer *authztest.Issuer
	tokens []string
}

var (
	benchPoolsMu sync.Mutex
	benchPools   = map[string]*benchPool{}
)

func benchPoolFor(b *testing.B, alg string) *benchPool {
	b.Helper()
	benchPoolsMu.Lock()
	defer benchPoolsMu.Unlock()
	if p, ok := benchPools[alg]; ok {
		return p
	}
	p := &benchPool{issuer: authztest.NewIssuer(b, alg)}
	for i := range benchPoolSize {
		p.tokens = append(p.tokens, p.issuer.Mint(b, map[string]any{
			"roles": []string{"viewer"},
			"jti":   "bench-" + strconv.Itoa(i),
		}))
	}
	benchPools[alg] = p
	return p
}

var benchDefaultSnapshot = sync.OnceValues(func() (*bundles.Snapshot, error) {
	return bundles.ReadFS(policies.FS(), bundles.ReadOptions{Origin: "embedded"})
})

func benchSnapshot(b *testing.B) *bundles.Snapshot {
	b.Helper()
	s, err := benchDefaultSnapshot()
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// benchEngine builds an engine trusting p's issuer (when p is not nil) with the
// default policy set loaded. cacheSize sets the verified-token cache and
// decisionCache the decision cache (0 default, -1 off); ev the evaluator.
func benchEngine(b *testing.B, p *benchPool, cacheSize, decisionCache int, ev authz.Evaluator) *authz.Engine {
	b.Helper()
	opts := authz.Options{TokenCacheSize: cacheSize, DecisionCacheSize: decisionCache, EvalTimeout: benchTimeout, Evaluator: ev}
	if p != nil {
		opts.Tokens = token.Options{Issuers: []token.Issuer{p.issuer.Config()}}
	}
	e, err := authz.New(opts)
	if err != nil {
		b.Fatal(err)
	}
	if err := e.Load(context.Background(), benchSnapshot(b)); err != nil {
		b.Fatal(err)
	}
	return e
}

func benchMustAllow(b *testing.B, d authz.Decision, err error) {
	b.Helper()
	if err != nil || !d.Allow {
		b.Fatalf("want allow, got %+v, %v", d, err)
	}
}

// benchTimeout is the evaluation timeout used by the benchmarks, in the
// engine (Options.EvalTimeout) and the floor alike. Arming a timeout costs
// the same whatever its length; a long one keeps a benchmark from failing
// with "evaluation timed out" when the shared machine starves the process.
const benchTimeout = 10 * time.Second

// cpuMeter reports the process CPU time (user+system, all threads, so GC
// included) per iteration as "cpu-ns/op": on a shared, noisy machine it is
// less sensitive than ns/op to time spent waiting for a core.
type cpuMeter struct{ start time.Duration }

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startCPU() cpuMeter { return cpuMeter{start: processCPU()} }

func (m cpuMeter) report(b *testing.B) {
	if b.N > 0 {
		b.ReportMetric(float64(processCPU()-m.start)/float64(b.N), "cpu-ns/op")
	}
}

func BenchmarkDecide(b *testing.B) {
	ctx := context.Background()

	// Anonymous requests, answered from the decision cache (the default) and
	// evaluated every time (decision cache off), by the compiled evaluator
	// (the default) and by topdown.
	for _, variant := range []struct {
		name          string
		decisionCache int
		evaluator     authz.Evaluator
	}{{"anonymous", 0, ""}, {"anonymous_eval", -1, ""}, {"anonymous_eval_topdown", -1, authz.EvaluatorTopdown}} {
		b.Run(variant.name, func(b *testing.B) {
			e := benchEngine(b, nil, 0, variant.decisionCache, variant.evaluator)
			req := authz.Request{Action: authz.Action{Name: "catalog:read"}}
			d, err := e.Decide(ctx, req)
			benchMustAllow(b, d, err)
			b.ReportAllocs()
			b.ResetTimer()
			cpu := startCPU()
			for b.Loop() {
				if _, err := e.Decide(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
			cpu.report(b)
		})
	}

	// A pool of 1000 distinct tokens cycled round-robin, decided once before
	// the timer starts:
	//   cached_token    the engine's defaults: the verified-token cache and
	//                   the decision cache both hit (the same user repeating
	//                   the same action);
	//   verified_token  decision cache off: the token is found verified (by
	//                   its SHA-256) and the policy is evaluated every time;
	//   first_time      both caches off: every decision verifies the
	//                   signature and claims, converts the claims and
	//                   evaluates, exactly as for a never-seen token (the
	//                   cache inserts a real first-time decision also does
	//                   are not timed);
	//   verified_token_topdown, first_time_topdown
	//                   the same, evaluated by OPA's topdown instead of the
	//                   compiled evaluator;
	//   new_token_known_subject
	//                   verified-token cache off, decision cache on: every
	//                   decision verifies its token as a never-seen one
	//                   (signature, claims, conversion), and the token's
	//                   claims match a subject decided before (same sub and
	//                   roles, another jti): the decision cache, keyed on
	//                   what the policy reads, answers without evaluating.
	for _, variant := range []struct {
		name                      string
		tokenCache, decisionCache int
		evaluator                 authz.Evaluator
	}{
		{"cached_token", 0, 0, ""},
		{"verified_token", 0, -1, ""},
		{"verified_token_topdown", 0, -1, authz.EvaluatorTopdown},
		{"first_time", -1, -1, ""},
		{"first_time_topdown", -1, -1, authz.EvaluatorTopdown},
		{"new_token_known_subject", -1, 0, ""},
	} {
		b.Run(variant.name, func(b *testing.B) {
			for _, alg := range benchAlgs {
				b.Run(alg, func(b *testing.B) {
					p := benchPoolFor(b, alg)
					e := benchEngine(b, p, variant.tokenCache, variant.decisionCache, variant.evaluator)
					for range 2 { // a token's decisions are cached from its second use
						for _, t := range p.tokens {
							d, err := e.Decide(ctx, authz.Request{Token: token.Raw(t), Action: authz.Action{Name: benchAction}})
							benchMustAllow(b, d, err)
						}
					}
					b.ReportAllocs()
					b.ResetTimer()
					cpu := startCPU()
					i := 0
					for b.Loop() {
						req := authz.Request{Token: token.Raw(p.tokens[i%benchPoolSize]), Action: authz.Action{Name: benchAction}}
						if _, err := e.Decide(ctx, req); err != nil {
							b.Fatal(err)
						}
						i++
					}
					cpu.report(b)
				})
			}
		})
	}
}

// benchOPAKey returns the io.jwt.decode_verify constraint and the key the
// OPA baseline verifies the issuer's tokens with: the public key as a JWKS
// ("cert"), or for HS256 the raw secret ("secret").
func benchOPAKey(b *testing.B, iss *authztest.Issuer) (constraint, key string) {
	b.Helper()
	if secret, ok := iss.PublicKey().Public.([]byte); ok {
		return "secret", string(secret)
	}
	return "cert", string(authztest.JWKS(b, iss))
}

// BenchmarkOPA is (a): OPA's rego package verifying the token in policy,
// prepared once, input given as map[string]any, with an inter-query builtin
// value cache passed on every evaluation (a prepared query ignores the one
// given to rego.New). In "decode_verify" the cache has OPA's defaults: the
// parsed-key cache (io_jwt_keys) on, the verified-token cache (io_jwt) off.
// "decode_verify_jwt_cache" turns the io_jwt cache on as well; with the
// 1000-token pool cycled, every timed evaluation then hits it.
func BenchmarkOPA(b *testing.B) {
	variants := []struct {
		name     string
		jwtCache bool
	}{
		{"decode_verify", false},
		{"decode_verify_jwt_cache", true},
	}
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			for _, alg := range benchAlgs {
				b.Run(alg, func(b *testing.B) { benchOPA(b, alg, v.jwtCache) })
			}
		})
	}
}

func benchOPA(b *testing.B, alg string, jwtCache bool) {
	ctx := context.Background()
	p := benchPoolFor(b, alg)
	s := benchSnapshot(b)

	constraint, key := benchOPAKey(b, p.issuer)
	policy, err := opabaseline.Policy(opabaseline.Params{
		Constraint: constraint, Issuer: p.issuer.Name, Audience: p.issuer.Audience, Action: "input.action.name",
	})
	if err != nil {
		b.Fatal(err)
	}

	config, err := cache.ParseCachingConfig(nil)
	if err != nil {
		b.Fatal(err)
	}
	if jwtCache {
		entries := 10000
		config.InterQueryBuiltinValueCache.NamedCacheConfigs = map[string]*cache.NamedValueCacheConfig{
			"io_jwt": {MaxNumEntries: &entries},
		}
	}
	vc := cache.NewInterQueryValueCache(ctx, config)

	pq, err := rego.New(
		rego.Query("data.opa_authz.decision"),
		rego.Module("opa_authz.rego", policy),
		rego.Store(inmem.NewFromObject(opabaseline.Data(s.Data, key))),
		rego.InterQueryBuiltinValueCache(vc),
	).PrepareForEval(ctx)
	if err != nil {
		b.Fatal(err)
	}

	eval := func(tok string) bool {
		input := map[string]any{
			"token":    tok,
			"action":   map[string]any{"name": benchAction},
			"resource": map[string]any{},
			"context":  map[string]any{"request_id": "bench"},
		}
		rs, err := pq.Eval(ctx, rego.EvalInput(input), rego.EvalInterQueryBuiltinValueCache(vc))
		if err != nil {
			b.Fatal(err)
		}
		if len(rs) != 1 {
			b.Fatalf("want one result, got %v", rs)
		}
		d, _ := rs[0].Expressions[0].Value.(map[string]any)
		return d["allow"] == true
	}
	// Warm up over the whole pool (fills io_jwt when it is on) and check
	// the policy allows, as the default policy does.
	for _, t := range p.tokens {
		if !eval(t) {
			b.Fatalf("OPA policy denied a viewer token for %s", benchAction)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu := startCPU()
	i := 0
	for b.Loop() {
		eval(p.tokens[i%benchPoolSize])
		i++
	}
	cpu.report(b)
}

// benchFloorQuery compiles the default policy set exactly as the engine's
// Load does (authz.Compile: the entry module, the input schema) and prepares
// data.verdict_entrypoint.decision with the engine's prepare options.
func benchFloorQuery(b *testing.B) rego.PreparedEvalQuery {
	b.Helper()
	s := benchSnapshot(b)
	c, err := authz.Compile(s, authz.CompileOptions{})
	if err != nil {
		b.Fatal(err)
	}
	pq, err := rego.New(
		rego.ParsedQuery(ast.MustParseBody("data.verdict_entrypoint.decision")),
		rego.Compiler(c),
		rego.Store(inmem.NewFromObjectWithOpts(s.Data, inmem.OptRoundTripOnWrite(false), inmem.OptReturnASTValuesOnRead(true))),
		rego.StrictBuiltinErrors(true),
	).PrepareForEval(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	return pq
}

// benchFloorInput is the engine's input document for a viewer token deciding
// orders:read, converted to an OPA value once.
func benchFloorInput(b *testing.B, now time.Time) ast.Value {
	b.Helper()
	v, err := ast.InterfaceToValue(map[string]any{
		"subject": map[string]any{
			"authenticated": true,
			"id":            authztest.DefaultSubject,
			"issuer":        authztest.DefaultName,
			"claims": map[string]any{
				"iss":   authztest.DefaultName,
				"aud":   authztest.DefaultAudience,
				"sub":   authztest.DefaultSubject,
				"iat":   json.Number(strconv.FormatInt(now.Unix(), 10)),
				"exp":   json.Number(strconv.FormatInt(now.Add(time.Hour).Unix(), 10)),
				"jti":   "bench-0",
				"roles": []any{"viewer"},
			},
		},
		"caller":   map[string]any{"authenticated": false, "method": "none"},
		"action":   map[string]any{"name": benchAction},
		"resource": map[string]any{},
		"context": map[string]any{
			"time":       now.UTC().Format(time.RFC3339Nano),
			"request_id": "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567",
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	return v
}

// BenchmarkFloor is (b): the engine's prepared query alone, on an input
// converted once, evaluated the way engine.evaluate does (a per-evaluation
// timeout tied to a topdown.Cancel, no metrics, the result read as OPA
// terms).
func BenchmarkFloor(b *testing.B) {
	pq := benchFloorQuery(b)
	now := time.Now()
	input := benchFloorInput(b, now)
	noop := metrics.NoOp()
	rawResult := rego.EvalGenerateJSON(func(t *ast.Term, _ *rego.EvalContext) (any, error) { return t, nil })
	eval := func() []rego.Result {
		ctx, cancel := context.WithTimeout(context.Background(), benchTimeout)
		defer cancel()
		c := topdown.NewCancel()
		defer context.AfterFunc(ctx, c.Cancel)()
		rs, err := pq.Eval(ctx, rego.EvalParsedInput(input), rego.EvalTime(now),
			rego.EvalExternalCancel(c), rego.EvalMetrics(noop), rawResult)
		if err != nil {
			b.Fatal(err)
		}
		return rs
	}
	rs := eval()
	if t, ok := rs[0].Expressions[0].Value.(*ast.Term); !ok ||
		!t.Value.(ast.Object).Get(ast.StringTerm("allow")).Equal(ast.BooleanTerm(true)) {
		b.Fatalf("floor query did not allow: %v", rs)
	}
	b.Run("prepared_eval", func(b *testing.B) {
		b.ReportAllocs()
		cpu := startCPU()
		for b.Loop() {
			eval()
		}
		cpu.report(b)
	})
}

// BenchmarkVerifyOnly is token.Verifier.Verify alone (signature, iss, aud,
// exp/nbf/iat), cycling the same 1000-token pool.
func BenchmarkVerifyOnly(b *testing.B) {
	ctx := context.Background()
	for _, alg := range benchAlgs {
		b.Run(alg, func(b *testing.B) {
			p := benchPoolFor(b, alg)
			v, err := token.NewVerifier(token.Options{Issuers: []token.Issuer{p.issuer.Config()}})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := v.Verify(ctx, p.tokens[0]); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu := startCPU()
			i := 0
			for b.Loop() {
				if _, err := v.Verify(ctx, p.tokens[i%benchPoolSize]); err != nil {
					b.Fatal(err)
				}
				i++
			}
			cpu.report(b)
		})
	}
}
