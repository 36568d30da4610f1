package authz_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/bundles"
)

// TestEvaluatorChoice: which evaluator serves a snapshot, as configured and
// as the snapshot allows, and what Status says about it.
func TestEvaluatorChoice(t *testing.T) {
	simple := authztest.Policy(t, "simple", "package authz\n\nallow if input.action.name == \"read\"\n")
	// OPA's topdown hides data.system when a policy reads all of data; the
	// compiled evaluator refuses such a snapshot rather than differ.
	system := authztest.Snapshot(t, "system", map[string]string{"policy.rego": "package authz\n\nallow if input.action.name == \"read\"\n"},
		map[string]any{"system": map[string]any{"x": 1}})
	for _, tc := range []struct {
		name      string
		evaluator authz.Evaluator
		snap      string
		want      string // Status().Evaluator prefix; "" when Load must fail
	}{
		{"default is auto", "", "simple", "compiled (planned in "},
		{"auto", authz.EvaluatorAuto, "simple", "compiled (planned in "},
		{"compiled", authz.EvaluatorCompiled, "simple", "compiled (planned in "},
		{"topdown", authz.EvaluatorTopdown, "simple", "topdown: configured"},
		{"auto, unsupported", authz.EvaluatorAuto, "system", "topdown: compiled evaluation: unsupported base document with data.system"},
		{"topdown, unsupported", authz.EvaluatorTopdown, "system", "topdown: configured"},
		{"compiled, unsupported", authz.EvaluatorCompiled, "system", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := authz.New(authz.Options{Evaluator: tc.evaluator})
			if err != nil {
				t.Fatal(err)
			}
			snap := map[string]*bundles.Snapshot{"simple": simple, "system": system}[tc.snap]
			err = e.Load(t.Context(), snap)
			if tc.want == "" {
				if !errors.Is(err, authz.ErrCompile) || !strings.Contains(err.Error(), "data.system") || !strings.Contains(err.Error(), `"compiled"`) {
					t.Fatalf("Load = %v, want a compile error naming the evaluator and data.system", err)
				}
				if st := e.Status(); st.Ready || st.Evaluator != "" {
					t.Fatalf("status after a refused snapshot: %+v", st)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := e.Status().Evaluator; !strings.HasPrefix(got, tc.want) {
				t.Fatalf("Status().Evaluator = %q, want %q...", got, tc.want)
			}
			d, err := e.Decide(t.Context(), authz.Request{Action: authz.Action{Name: "read"}})
			if err != nil {
				t.Fatal(err)
			}
			if !d.Allow {
				t.Fatalf("denied: %v", d.Reasons)
			}
		})
	}
	if _, err := authz.New(authz.Options{Evaluator: "fast"}); err == nil || !strings.Contains(err.Error(), `unknown evaluator "fast"`) {
		t.Fatalf("New with an unknown evaluator: %v", err)
	}
	for in, want := range map[string]authz.Evaluator{"": authz.EvaluatorAuto, "auto": authz.EvaluatorAuto, "compiled": authz.EvaluatorCompiled, "topdown": authz.EvaluatorTopdown} {
		if got, err := authz.ParseEvaluator(in); err != nil || got != want {
			t.Errorf("ParseEvaluator(%q) = %q, %v", in, got, err)
		}
	}
}

// TestEvaluatorFallsBackToTopdown: an input the compiled evaluator cannot
// promise topdown's answer for (an evaluation error, a data lookup only
// OPA's store resolves) is evaluated by topdown, counted, and answered as
// topdown answers: an error still denies.
func TestEvaluatorFallsBackToTopdown(t *testing.T) {
	const policy = `package authz

# A conflict for input.action.name "both": an evaluation error.
level := 1 if input.action.name in {"one", "both"}

level := 2 if input.action.name == "both"

# data.users has the key "1": topdown's store finds data.users[1].
allow if data.users[count(input.action.name)].admin

allow if level == 1
`
	snap := authztest.Snapshot(t, "fallback", map[string]string{"policy.rego": policy},
		map[string]any{"users": map[string]any{"1": map[string]any{"admin": true}}})
	compiled := newEngine(t, authz.Options{Evaluator: authz.EvaluatorCompiled, DecisionCacheSize: -1}, snap)
	topdown := newEngine(t, authz.Options{Evaluator: authz.EvaluatorTopdown, DecisionCacheSize: -1}, snap)
	for _, tc := range []struct {
		action    string
		fallbacks uint64 // how many this request adds
		allow     bool
		err       bool
	}{
		{action: "one", allow: true},
		{action: "two"},
		{action: "both", fallbacks: 1, err: true},
		{action: "x", fallbacks: 1, allow: true},
	} {
		before := compiled.Status().EvaluatorFallbacks
		req := authz.Request{Action: authz.Action{Name: tc.action}}
		got, gotErr := compiled.Decide(t.Context(), req)
		want, wantErr := topdown.Decide(t.Context(), req)
		if got.Allow != tc.allow || (gotErr != nil) != tc.err {
			t.Errorf("%s: allow %v err %v, want allow %v, error %v", tc.action, got.Allow, gotErr, tc.allow, tc.err)
		}
		if got.Allow != want.Allow || (gotErr != nil) != (wantErr != nil) || strings.Join(got.Reasons, ",") != strings.Join(want.Reasons, ",") {
			t.Errorf("%s: compiled %+v (%v), topdown %+v (%v)", tc.action, got, gotErr, want, wantErr)
		}
		if n := compiled.Status().EvaluatorFallbacks - before; n != tc.fallbacks {
			t.Errorf("%s: %d fallbacks, want %d", tc.action, n, tc.fallbacks)
		}
	}
	if n := topdown.Status().EvaluatorFallbacks; n != 0 {
		t.Errorf("the topdown engine counted %d fallbacks", n)
	}
}

// TestEvaluatorPrints: print() reaches Options.Print from the compiled
// evaluator as from topdown, with the statement's location.
func TestEvaluatorPrints(t *testing.T) {
	const policy = "package authz\n\nallow if {\n\tprint(\"asked for\", input.action.name)\n\tinput.action.name == \"read\"\n}\n"
	for _, ev := range []authz.Evaluator{authz.EvaluatorCompiled, authz.EvaluatorTopdown} {
		t.Run(string(ev), func(t *testing.T) {
			var (
				mu    sync.Mutex
				lines []string
			)
			e := newEngine(t, authz.Options{Evaluator: ev, DecisionCacheSize: -1, Print: func(_ context.Context, loc, msg string) {
				mu.Lock()
				defer mu.Unlock()
				lines = append(lines, loc+" "+msg)
			}}, authztest.Policy(t, "print", policy))
			if d, err := e.Decide(t.Context(), authz.Request{Action: authz.Action{Name: "read"}}); err != nil || !d.Allow {
				t.Fatal(d, err)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(lines) != 1 || lines[0] != "policy.rego:4 asked for read" {
				t.Fatalf("printed %q", lines)
			}
		})
	}
}

// TestEvaluatorPanicFallsBack: a panic inside the compiled evaluator (here
// from the embedder's print hook, the first time only) is recovered,
// counted, and the input evaluated by topdown.
func TestEvaluatorPanicFallsBack(t *testing.T) {
	const policy = "package authz\n\nallow if {\n\tprint(\"x\")\n\tinput.action.name == \"read\"\n}\n"
	var calls atomic.Int32
	e := newEngine(t, authz.Options{Evaluator: authz.EvaluatorCompiled, DecisionCacheSize: -1, Print: func(context.Context, string, string) {
		if calls.Add(1) == 1 {
			panic("boom")
		}
	}}, authztest.Policy(t, "panic", policy))
	d, err := e.Decide(t.Context(), authz.Request{Action: authz.Action{Name: "read"}})
	if err != nil || !d.Allow {
		t.Fatalf("got %+v, %v; want topdown's allow", d, err)
	}
	if n := e.Status().EvaluatorFallbacks; n != 1 || calls.Load() != 2 {
		t.Fatalf("%d fallbacks, %d prints; want 1 and 2", n, calls.Load())
	}
}

// TestEvaluationPanicIsPolicyError: a built-in function of OPA that panics
// on an argument the request supplies (bits.lsh by a shift count of 1e18:
// "makeslice: len out of range") is a deny with a policy error from every
// evaluator, never a crash of the process; the panic is logged with its
// stack.
func TestEvaluationPanicIsPolicyError(t *testing.T) {
	const policy = "package authz\n\nallow if bits.lsh(1, input.resource.n) > 0\n"
	for _, ev := range []authz.Evaluator{authz.EvaluatorTopdown, authz.EvaluatorCompiled, authz.EvaluatorAuto} {
		t.Run(string(ev), func(t *testing.T) {
			var logs authztest.SyncBuffer
			e := newEngine(t, authz.Options{Evaluator: ev, DecisionCacheSize: -1,
				Logger: slog.New(slog.NewJSONHandler(&logs, nil))}, authztest.Policy(t, "panics", policy))
			d, err := e.Decide(t.Context(), authz.Request{Action: authz.Action{Name: "read"}, Resource: map[string]any{"n": 1e18}})
			if d.Allow || !errors.Is(err, authz.ErrPolicy) || !strings.Contains(err.Error(), "panicked") {
				t.Errorf("allow=%v (%v), want a deny with a policy error saying it panicked", d.Allow, err)
			}
			if !strings.Contains(logs.String(), `"msg":"policy evaluation panicked"`) || !strings.Contains(logs.String(), "bits.") {
				t.Errorf("logs do not show the panic with its stack:\n%s", logs.String())
			}
			// A shift the built-in can make is still answered.
			if d, err := e.Decide(t.Context(), authz.Request{Action: authz.Action{Name: "read"}, Resource: map[string]any{"n": 3}}); err != nil || !d.Allow {
				t.Errorf("n=3: allow=%v (%v), want true", d.Allow, err)
			}
		})
	}
}
