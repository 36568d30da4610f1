package server

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/bundles"
	"github.com/verdict-pdp/verdict/policies"
)

// candidate is an engine on the default policies with viewers' rights
// changed (mutate edits data.roles.viewer), or, with module set, with that
// module added; not loaded when load is false.
func candidate(t *testing.T, viewer []any, module string, load bool) *authz.Engine {
	t.Helper()
	e, err := authz.New(authz.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !load {
		return e
	}
	snap, err := bundles.ReadFS(policies.FS(), bundles.ReadOptions{Origin: "candidate"})
	if err != nil {
		t.Fatal(err)
	}
	snap.Data = maps.Clone(snap.Data)
	roles := maps.Clone(snap.Data["roles"].(map[string]any))
	if viewer != nil {
		roles["viewer"] = viewer
	}
	snap.Data["roles"] = roles
	if module != "" {
		snap.Modules = append(slices.Clone(snap.Modules), bundles.Module{Path: "candidate.rego", Raw: []byte(module)})
	}
	snap.Revision = "candidate-" + bundles.ContentHash(snap)
	if err := e.Load(t.Context(), snap); err != nil {
		t.Fatal(err)
	}
	return e
}

// shadowFixture is a server on the default policies whose decisions a
// shadow on cand is offered.
func shadowFixture(t *testing.T, cand ShadowEngine, so ShadowOptions) (*fixture, *Shadow) {
	t.Helper()
	return shadowFixtureWith(t, cand, so, nil)
}

// shadowFixtureWith is shadowFixture whose live engine is wrap's of the
// fixture's, when wrap is not nil.
func shadowFixtureWith(t *testing.T, cand ShadowEngine, so ShadowOptions, wrap func(Engine) Engine) (*fixture, *Shadow) {
	t.Helper()
	var sh *Shadow
	f := newFixture(t, fixtureOptions{keepInput: true, mutate: func(o *Options) {
		if wrap != nil {
			o.Engine = wrap(o.Engine)
		}
		so.Engine = cand
		so.DecisionLog = o.DecisionLog
		var err error
		if sh, err = NewShadow(so); err != nil {
			t.Fatal(err)
		}
		o.Shadow = sh
	}})
	return f, sh
}

// runShadow runs sh until the test ends (or stop is called).
func runShadow(t *testing.T, sh *Shadow) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sh.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Shadow.Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func (f *fixture) decideAction(t *testing.T, tok, action string) map[string]any {
	t.Helper()
	w := f.do(t, http.MethodPost, "/v1/decide", jsonBody(t, map[string]any{"token": tok, "action": action}), nil, "")
	if w.Code != http.StatusOK {
		t.Fatalf("%s: %d %s", action, w.Code, w.Body)
	}
	return decodeAnswer(t, w.Body.Bytes())
}

// TestShadowComparesAndNeverChangesAnswers: a candidate that flips two of
// four actions is counted exactly, its answers attached to exactly the
// flipped records, every answer is the live policy's, and every decision
// is logged once.
func TestShadowComparesAndNeverChangesAnswers(t *testing.T) {
	// The candidate: viewers may delete orders but no longer read them.
	cand := candidate(t, []any{"orders:delete", "catalog:read"}, "", true)
	f, sh := shadowFixture(t, cand, ShadowOptions{Queue: 1000})
	stop := runShadow(t, sh)
	viewer := f.mint(t, "alice", "viewer")
	live := map[string]bool{"orders:read": true, "orders:delete": false, "catalog:read": true, "inventory:read": false}
	const rounds = 50
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range rounds {
				for action, want := range live {
					if got := f.decideAction(t, viewer, action)["allow"]; got != want {
						t.Errorf("%s: allow %v, want the live policy's %v", action, got, want)
					}
				}
			}
		})
	}
	wg.Wait()
	stop()

	n := uint64(4 * rounds)
	want := map[ShadowOutcome]uint64{ShadowSame: 2 * n, ShadowAllowToDeny: n, ShadowDenyToAllow: n}
	for o := range numShadowOutcomes {
		if got := sh.Count(o); got != want[o] {
			t.Errorf("%s: %d, want %d", o, got, want[o])
		}
	}
	recs := f.log.records()
	if len(recs) != int(4*n) {
		t.Fatalf("%d records logged, want %d", len(recs), 4*n)
	}
	for _, r := range recs {
		flipped := r.Action.Name == "orders:read" || r.Action.Name == "orders:delete"
		switch {
		case flipped && r.Shadow == nil:
			t.Fatalf("%s: flipped, but the record has no shadow answer", r.Action.Name)
		case !flipped && r.Shadow != nil:
			t.Fatalf("%s: did not flip, but the record has a shadow answer %+v", r.Action.Name, r.Shadow)
		case flipped && (r.Shadow.Allow == r.Allow || !strings.HasPrefix(r.Shadow.Revision, "candidate-") || r.Shadow.Error != ""):
			t.Fatalf("%s: shadow answer %+v beside live allow %v", r.Action.Name, r.Shadow, r.Allow)
		}
	}
	st := sh.Status()
	if !st.Ready || !strings.HasPrefix(st.Revision, "candidate-") || st.Outcomes["allow_to_deny"] != n || st.Sample != 1 {
		t.Errorf("status %+v", st)
	}
	body := f.do(t, http.MethodGet, "/v1/status", "", nil, "").Body.Bytes()
	shadow, _ := decodeAnswer(t, body)["shadow"].(map[string]any)
	if rev, _ := shadow["revision"].(string); rev != st.Revision {
		t.Errorf("/v1/status shadow revision %q, want %q:\n%s", rev, st.Revision, body)
	}
	metrics := scrape(t, f.srv)
	for o, v := range want {
		wantMetrics(t, metrics, fmt.Sprintf("verdict_shadow_decisions_total{outcome=%q} %d\n", o, v))
	}
}

// TestShadowBounded: a candidate that cannot keep up (nobody runs it here)
// never holds up a request; the decisions beyond its queue, in number or
// in the estimated memory of their inputs (which hold many times their
// request's size), are logged at once, unshadowed, and counted skipped;
// nothing is lost.
func TestShadowBounded(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opts   ShadowOptions
		queued int
	}{
		{"records", ShadowOptions{Queue: 3}, 3},
		{"memory", ShadowOptions{Queue: 100, MaxQueueBytes: 1}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, sh := shadowFixture(t, candidate(t, nil, "", true), tc.opts)
			viewer := f.mint(t, "alice", "viewer")
			for range 10 {
				f.decideAction(t, viewer, "orders:read")
			}
			if got := sh.Count(ShadowSkipped); got != uint64(10-tc.queued) {
				t.Errorf("skipped %d, want %d", got, 10-tc.queued)
			}
			if got := len(f.log.records()); got != 10-tc.queued {
				t.Errorf("%d records logged before the shadow ran, want the %d skipped", got, 10-tc.queued)
			}
			runShadow(t, sh)()
			if got := len(f.log.records()); got != 10 {
				t.Errorf("%d records logged, want 10", got)
			}
			if got := sh.Count(ShadowSame); got != uint64(tc.queued) {
				t.Errorf("same %d, want %d", got, tc.queued)
			}
		})
	}
}

// TestShadowOutcomes: a candidate not yet loaded is skipped, one that fails
// is an error with its code in the record, refused requests (no input) are
// never offered, and sampling takes about its share.
func TestShadowOutcomes(t *testing.T) {
	t.Run("not ready", func(t *testing.T) {
		f, sh := shadowFixture(t, candidate(t, nil, "", false), ShadowOptions{})
		stop := runShadow(t, sh)
		f.decideAction(t, f.mint(t, "alice", "viewer"), "orders:read")
		stop()
		if sh.Count(ShadowSkipped) != 1 || len(f.log.records()) != 1 || f.log.records()[0].Shadow != nil {
			t.Errorf("skipped %d, records %+v", sh.Count(ShadowSkipped), f.log.records())
		}
	})
	t.Run("candidate error", func(t *testing.T) {
		// A second value for headers on allow: a conflict, an evaluation
		// error in the candidate.
		broken := "package authz\n\nheaders := {\"x-conflict\": \"1\"} if input.action.name == \"orders:read\"\n"
		f, sh := shadowFixture(t, candidate(t, nil, broken, true), ShadowOptions{})
		stop := runShadow(t, sh)
		if got := f.decideAction(t, f.mint(t, "alice", "viewer"), "orders:read")["allow"]; got != true {
			t.Errorf("live answer %v, want true", got)
		}
		stop()
		recs := f.log.records()
		if sh.Count(ShadowError) != 1 || len(recs) != 1 || recs[0].Shadow == nil || recs[0].Shadow.Error != CodePolicyError || recs[0].Shadow.Allow {
			t.Errorf("errors %d, records %+v", sh.Count(ShadowError), recs)
		}
	})
	t.Run("refused before policy", func(t *testing.T) {
		f, sh := shadowFixture(t, candidate(t, nil, "", true), ShadowOptions{})
		stop := runShadow(t, sh)
		f.decideAction(t, "not-a-token", "orders:read")
		stop()
		var total uint64
		for o := range numShadowOutcomes {
			total += sh.Count(o)
		}
		if total != 0 || len(f.log.records()) != 1 {
			t.Errorf("%d shadowed, %d records; want 0 and 1", total, len(f.log.records()))
		}
	})
	t.Run("sample", func(t *testing.T) {
		f, sh := shadowFixture(t, candidate(t, nil, "", true), ShadowOptions{Sample: 0.25, Queue: 2000})
		stop := runShadow(t, sh)
		viewer := f.mint(t, "alice", "viewer")
		const n = 1000
		for range n {
			f.decideAction(t, viewer, "catalog:read")
		}
		stop()
		// Binomial(1000, 0.25): mean 250, sd 13.7; 150..350 is over 7 sd.
		if got := sh.Count(ShadowSame); got < 150 || got > 350 {
			t.Errorf("%d of %d shadowed at sample 0.25", got, n)
		}
		if len(f.log.records()) != n {
			t.Errorf("%d records, want %d", len(f.log.records()), n)
		}
	})
}

// TestShadowDrain: records still queued when Run is stopped are logged
// (evaluated while the drain lasts), never lost.
func TestShadowDrain(t *testing.T) {
	cand := candidate(t, []any{}, "", true)
	f, sh := shadowFixture(t, cand, ShadowOptions{Queue: 100, Drain: time.Nanosecond})
	viewer := f.mint(t, "alice", "viewer")
	for range 20 {
		f.decideAction(t, viewer, "orders:read")
	}
	runShadow(t, sh)() // stopped at once: the drain has already run out
	recs := f.log.records()
	if len(recs) != 20 {
		t.Fatalf("%d records, want 20", len(recs))
	}
	if got := sh.Count(ShadowSkipped) + sh.Count(ShadowAllowToDeny); got != 20 {
		t.Errorf("skipped+flipped = %d, want 20", got)
	}
}

// TestShadowAfterRun: a decision made after the shadow's Run returned (it
// outlived the server's shutdown) stayed in the queue, never logged nor
// counted. The shadow now declines it, counted skipped, and the server logs
// it unshadowed.
func TestShadowAfterRun(t *testing.T) {
	f, sh := shadowFixture(t, candidate(t, nil, "", true), ShadowOptions{})
	runShadow(t, sh)()
	f.decideAction(t, f.mint(t, "alice", "viewer"), "orders:read")
	if got := sh.Count(ShadowSkipped); got != 1 {
		t.Errorf("skipped %d, want 1", got)
	}
	if got := len(f.log.records()); got != 1 {
		t.Errorf("%d records logged, want the one decided after Run", got)
	}
	if st := sh.Status(); st.Queued != 0 {
		t.Errorf("%d decisions left in the queue", st.Queued)
	}
}

func TestNewShadowOptions(t *testing.T) {
	e := candidate(t, nil, "", false)
	for _, o := range []ShadowOptions{{}, {Engine: e, Sample: -0.1}, {Engine: e, Sample: 1.5}, {Engine: e, Queue: -1}, {Engine: e, Drain: -1}} {
		if _, err := NewShadow(o); err == nil {
			t.Errorf("NewShadow(%+v): no error", o)
		}
	}
}

// TestShadowLiveErrors: a live decision that failed in its policy (a deny,
// with its input) is shadowed too: the candidate allowing it is a
// deny_to_allow, the one thing a shadow is there to catch; failing as well
// is the same answer. Such decisions went to no counter at all.
func TestShadowLiveErrors(t *testing.T) {
	conflict := "package authz\n\nheaders := {\"x-conflict\": \"1\"} if input.action.name == \"orders:read\"\n"
	for _, tc := range []struct {
		name string
		cand *authz.Engine
		want ShadowOutcome
	}{
		{"candidate allows", candidate(t, nil, "", true), ShadowDenyToAllow},
		{"candidate fails too", candidate(t, nil, conflict, true), ShadowSame},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, sh := shadowFixture(t, tc.cand, ShadowOptions{})
			live, err := bundles.ReadFS(policies.FS(), bundles.ReadOptions{Origin: "live"})
			if err != nil {
				t.Fatal(err)
			}
			live.Modules = append(slices.Clone(live.Modules), bundles.Module{Path: "conflict.rego", Raw: []byte(conflict)})
			live.Revision = "live-conflict"
			if err := f.engine.Load(t.Context(), live); err != nil {
				t.Fatal(err)
			}
			stop := runShadow(t, sh)
			w := f.do(t, http.MethodPost, "/v1/decide", jsonBody(t, map[string]any{"token": f.mint(t, "alice", "viewer"), "action": "orders:read"}), nil, "")
			if w.Code != http.StatusInternalServerError {
				t.Fatalf("live answer %d %s, want a policy error", w.Code, w.Body)
			}
			stop()
			if got := sh.Count(tc.want); got != 1 {
				t.Errorf("%s: %d, want 1 (same %d, deny_to_allow %d, error %d)", tc.want, got,
					sh.Count(ShadowSame), sh.Count(ShadowDenyToAllow), sh.Count(ShadowError))
			}
			if recs := f.log.records(); len(recs) != 1 {
				t.Errorf("%d records, want the decision logged once", len(recs))
			}
		})
	}
}

// heapStoppedEngine answers every decision as the heap limit stopping
// its evaluation would: a deny with the engine's input, refused.
type heapStoppedEngine struct{ Engine }

func (e heapStoppedEngine) Decide(ctx context.Context, req authz.Request) (authz.Decision, error) {
	d, _ := e.Engine.Decide(ctx, req)
	r := &authz.Refusal{Category: authz.ErrPolicy, Detail: authz.HeapLimitDetail, Cause: authz.ErrHeapLimit}
	d.Allow, d.Reasons = false, []string{r.Reason()}
	return d, r
}

// TestShadowSkipsHeapStopped: a live decision the heap limit stopped is
// not offered to the shadow either: no answer of the policy's, and its
// input would allocate as much again in the candidate.
func TestShadowSkipsHeapStopped(t *testing.T) {
	f, sh := shadowFixtureWith(t, candidate(t, nil, "", true), ShadowOptions{}, func(e Engine) Engine { return heapStoppedEngine{e} })
	stop := runShadow(t, sh)
	body := jsonBody(t, map[string]any{"token": f.mint(t, "bob", "viewer"), "action": "orders:read"})
	r := httptest.NewRequest(http.MethodPost, "/v1/decide", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	f.srv.Handler().ServeHTTP(w, r)
	stop()
	if w.Code != http.StatusInternalServerError || sh.Count(ShadowSkipped) != 1 || sh.Count(ShadowSame)+sh.Count(ShadowDenyToAllow) != 0 || len(f.log.records()) != 1 {
		t.Errorf("answer %d %s, %d skipped, %d same, %d deny_to_allow, %d records; want a 500, counted skipped only, one record",
			w.Code, w.Body, sh.Count(ShadowSkipped), sh.Count(ShadowSame), sh.Count(ShadowDenyToAllow), len(f.log.records()))
	}
}

// TestShadowSkipsInterrupted: a live decision cut short (its client gone,
// or its evaluation timed out) is no answer of the policy's: not offered
// to the shadow, where it counted as deny_to_allow against the very same
// policy.
func TestShadowSkipsInterrupted(t *testing.T) {
	f, sh := shadowFixture(t, candidate(t, nil, "", true), ShadowOptions{})
	stop := runShadow(t, sh)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	body := jsonBody(t, map[string]any{"token": f.mint(t, "bob", "viewer"), "action": "orders:read"})
	r := httptest.NewRequestWithContext(ctx, http.MethodPost, "/v1/decide", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	f.srv.Handler().ServeHTTP(w, r)
	stop()
	var total uint64
	for o := range numShadowOutcomes {
		total += sh.Count(o)
	}
	if w.Code == http.StatusOK || total != 1 || sh.Count(ShadowSkipped) != 1 || len(f.log.records()) != 1 {
		t.Errorf("answer %d, %d counted (%d skipped), %d records; want a cut-short decision counted skipped only, one record",
			w.Code, total, sh.Count(ShadowSkipped), len(f.log.records()))
	}
}

// TestShadowNotOfferedRefusedAfterThePolicy: /v1/check refuses a request the
// policy allowed when it carries another spelling of a header the policy
// sets (X_User_Id beside x-user-id). That refusal is the front's, on
// request headers the candidate never sees: with its input, it went to the
// shadow and counted as deny_to_allow against the very same policy (and
// verdict replay reported it as a flip), as often as any client liked. It
// is recorded without its input, as every refusal of the front is, and not
// offered.
func TestShadowNotOfferedRefusedAfterThePolicy(t *testing.T) {
	policy := authztest.Policy(t, "", "package authz\n\nallow := true\n\nheaders := {\"x-user-id\": \"alice\"}\n")
	cand, err := authz.New(authz.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := cand.Load(t.Context(), policy); err != nil {
		t.Fatal(err)
	}
	f, sh := shadowFixture(t, cand, ShadowOptions{})
	if err := f.engine.Load(t.Context(), policy); err != nil {
		t.Fatal(err)
	}
	stop := runShadow(t, sh)
	w := f.do(t, http.MethodGet, "/v1/check", "", http.Header{"X-Verdict-Action": {"a:b"}, "X_user_id": {"root"}}, "")
	ok := f.do(t, http.MethodGet, "/v1/check", "", http.Header{"X-Verdict-Action": {"a:b"}}, "")
	stop()
	recs := f.log.records()
	if w.Code != http.StatusBadRequest || ok.Code != http.StatusOK || len(recs) != 2 {
		t.Fatalf("answers %d, %d and %d records; want a 400, a 200, two records", w.Code, ok.Code, len(recs))
	}
	if sh.Count(ShadowDenyToAllow) != 0 || sh.Count(ShadowSame) != 1 {
		t.Errorf("%d deny_to_allow, %d same; want only the allowed request compared, the same",
			sh.Count(ShadowDenyToAllow), sh.Count(ShadowSame))
	}
	for _, r := range recs {
		if !r.Allow && r.Input != nil {
			t.Errorf("the refusal was recorded with its input %v", r.Input)
		}
	}
}
