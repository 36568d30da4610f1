package local_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/bundles/internal/bundletest"
	"github.com/verdict-pdp/verdict/bundles/local"
)

// TestEngineDecidesThroughReloads drives the real engine from a watched
// directory: decisions run continuously while 100 saves are reloaded, every
// decision succeeds, and each carries the answer of the revision it names.
func TestEngineDecidesThroughReloads(t *testing.T) {
	dir := t.TempDir()
	save := func(n int) {
		t.Helper()
		policy := fmt.Sprintf("package authz\n\nallow := true\n\nreasons := {%q}\n", fmt.Sprintf("gen-%d", n))
		tmp := filepath.Join(dir, ".authz.rego.tmp")
		if err := os.WriteFile(tmp, []byte(policy), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "authz.rego")); err != nil { // save by rename
			t.Fatal(err)
		}
	}
	save(0)
	engine, err := authz.New(authz.Options{})
	if err != nil {
		t.Fatal(err)
	}
	src, err := local.NewDir(local.DirOptions{Dir: dir, Debounce: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	runErr := make(chan error, 1)
	go func() { runErr <- src.Run(ctx, engine) }()
	<-src.Initialized()

	var (
		stop      atomic.Bool
		wg        sync.WaitGroup
		seen      sync.Map // revision -> reason
		decisions atomic.Int64
		failures  = make(chan string, 16)
	)
	for range 4 {
		wg.Go(func() {
			for !stop.Load() {
				d, err := engine.Decide(context.Background(), authz.Request{Action: authz.Action{Name: "x"}})
				decisions.Add(1)
				if err != nil || !d.Allow || len(d.Reasons) != 1 {
					failures <- fmt.Sprintf("decision failed: %+v %v", d, err)
					return
				}
				if prev, loaded := seen.LoadOrStore(d.Revision, d.Reasons[0]); loaded && prev != d.Reasons[0] {
					failures <- fmt.Sprintf("revision %s answered both %v and %s", d.Revision, prev, d.Reasons[0])
					return
				}
			}
		})
	}
	want := map[string]string{} // revision -> reason, from the engine's status
	for n := 1; n <= 100; n++ {
		save(n)
		// A bound on liveness, not on speed: a lost change never takes
		// effect, a slow one does (the race detector and a loaded machine
		// slowed a reload past 5s once).
		deadline := time.Now().Add(30 * time.Second)
		for {
			d, err := engine.Decide(t.Context(), authz.Request{Action: authz.Action{Name: "x"}})
			if err == nil && d.Reasons[0] == fmt.Sprintf("gen-%d", n) {
				want[d.Revision] = d.Reasons[0]
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("save %d never took effect (status %+v)", n, engine.Status())
			}
			time.Sleep(time.Millisecond)
		}
	}
	stop.Store(true)
	wg.Wait()
	cancel()
	if err := <-runErr; err != nil {
		t.Fatalf("Run: %v", err)
	}
	close(failures)
	for f := range failures {
		t.Error(f)
	}
	seen.Range(func(rev, reason any) bool {
		if w, ok := want[rev.(string)]; ok && w != reason {
			t.Errorf("revision %s: decisions said %s, the snapshot says %s", rev, reason, w)
		}
		return true
	})
	if st := engine.Status(); st.Loads < 101 || st.LoadFailures != 0 {
		t.Errorf("status after 100 saves: %+v", st)
	}
	t.Logf("%d decisions across %d reloads", decisions.Load(), engine.Status().Loads)
}

// TestEngineStatusClearsAfterRevert is the broken-save story end to end,
// with the real engine as the sink: a save that does not compile is
// refused by the engine (its status shows the error) and logged once; the
// save undone, the source offers the good snapshot again, so that the
// engine's status clears as well as the source's, and logs one recovery.
// With the engine and the source logging to one place, as serve has them,
// each change is one line at Info (the recovery adds its own).
func TestEngineStatusClearsAfterRevert(t *testing.T) {
	const good = "package authz\n\nallow := true\n"
	dir := t.TempDir()
	p := filepath.Join(dir, "authz.rego")
	if err := os.WriteFile(p, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs bundletest.Logs
	engine, err := authz.New(authz.Options{Logger: logs.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	src, err := local.NewDir(local.DirOptions{Dir: dir, Debounce: 5 * time.Millisecond,
		RetryInterval: retry, Logger: logs.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	start(t, src, engine)
	revision := engine.Status().Revision
	if revision == "" {
		t.Fatalf("engine status = %+v, want the good policy loaded", engine.Status())
	}

	if err := os.WriteFile(p, []byte("package authz\n\ndefault allow := false\ndefault allow := true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	until(t, "the engine refuses the broken save", func() bool { return engine.Status().LastError != "" })
	// The source records the failure once the engine's Load has returned.
	until(t, "the source records the failure", func() bool { return src.Status().LastError != "" })
	if st := src.Status(); st.ReloadErrors != 1 {
		t.Errorf("source status = %+v, want the error counted once", st)
	}

	if err := os.WriteFile(p, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	until(t, "the engine's error clears", func() bool { return engine.Status().LastError == "" })
	until(t, "the source's error clears", func() bool { return src.Status().LastError == "" })
	if st := engine.Status(); st.Revision != revision || len(st.LastErrorProblems) != 0 {
		t.Errorf("engine status = %+v, want revision %s and no problems", st, revision)
	}
	for msg, want := range map[string]int{"policy reload failed": 1, "policy recovered": 1, "policy reloaded": 1} {
		if got := logs.Count(msg); got != want {
			t.Errorf("%q lines = %d, want %d (logs %q)", msg, got, want, logs.Messages())
		}
	}
	want := []string{"policy loaded", "policy reload failed", "policy loaded"}
	if got := logs.MessagesAt(slog.LevelInfo); !slices.Equal(got, want) {
		t.Errorf("log at Info: %q, want one line a change: %q", got, want)
	}
}

// until polls cond for up to 5 s.
func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
