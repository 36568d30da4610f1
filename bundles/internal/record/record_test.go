package record_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/verdict-pdp/verdict/bundles"
	"github.com/verdict-pdp/verdict/bundles/internal/bundletest"
	"github.com/verdict-pdp/verdict/bundles/internal/record"
)

// Policy sources for the steps: two good ones and two the sink refuses.
var (
	good1   = bundletest.Policy("authz", 1)
	good2   = bundletest.Policy("authz", 2)
	broken  = "package authz\n\ndefault allow := false\ndefault allow := true\n"
	broken2 = "package authz\n\nallow if y > 1\n"
)

func snapshot(src string) *bundles.Snapshot {
	s := &bundles.Snapshot{Origin: "test", Modules: []bundles.Module{{Path: "authz.rego", Raw: []byte(src)}}, Data: map[string]any{}}
	s.Revision = bundles.ContentHash(s)
	return s
}

// step is one attempt by a source: exactly one field is set.
type step struct {
	deliver   string // a snapshot of this module source was read
	fail      string // the read (or fetch) failed with this error
	unchanged bool   // the server answered 304 Not Modified
}

const (
	readFailed   = "policy read failed"
	reloadFailed = "policy reload failed"
	reloaded     = "policy reloaded"
	recovered    = "policy recovered"
)

// TestTransitions drives a Recorder through sequences of attempts and
// checks what reached the sink, the log, the counters and the observer:
// repeats are silent, distinct failures count once each, and every return
// to a good state logs one recovery and clears the status (offering the
// good snapshot again when the sink's last answer was an error).
func TestTransitions(t *testing.T) {
	tests := []struct {
		name  string
		steps []step

		wantCalls    int64          // sink.Load calls
		wantLogs     map[string]int // count by message, for the four above
		wantErrors   uint64         // Status.ReloadErrors
		wantReloads  uint64         // Status.Reloads
		wantLastErr  bool           // Status.LastError set at the end
		wantObserved int            // ObserveReload calls
		// wantInfoRecovery: the recovery is logged at Info, since the sink
		// was not given a snapshot to log about; else at Debug.
		wantInfoRecovery bool
	}{
		{
			name:      "same read failure retried",
			steps:     []step{{deliver: good1}, {fail: "e1"}, {fail: "e1"}, {fail: "e1"}, {fail: "e1"}, {fail: "e1"}},
			wantCalls: 1, wantLogs: map[string]int{reloaded: 1, readFailed: 1},
			wantErrors: 1, wantReloads: 1, wantLastErr: true, wantObserved: 2,
		},
		{
			name:      "read failure, then the content the sink serves",
			steps:     []step{{deliver: good1}, {fail: "e1"}, {fail: "e1"}, {fail: "e1"}, {deliver: good1}},
			wantCalls: 1, wantLogs: map[string]int{reloaded: 1, readFailed: 1, recovered: 1},
			wantErrors: 1, wantReloads: 1, wantObserved: 2, wantInfoRecovery: true,
		},
		{
			name:      "refused content read again",
			steps:     []step{{deliver: good1}, {deliver: broken}, {deliver: broken}, {deliver: broken}, {deliver: broken}},
			wantCalls: 2, wantLogs: map[string]int{reloaded: 1, reloadFailed: 1},
			wantErrors: 1, wantReloads: 1, wantLastErr: true, wantObserved: 2,
		},
		{
			name:      "refused content reverted: the sink is given the good snapshot again",
			steps:     []step{{deliver: good1}, {deliver: broken}, {deliver: broken}, {deliver: good1}, {deliver: good1}},
			wantCalls: 3, wantLogs: map[string]int{reloaded: 1, reloadFailed: 1, recovered: 1},
			wantErrors: 1, wantReloads: 2, wantObserved: 3,
		},
		{
			name:      "refused content, then new good content",
			steps:     []step{{deliver: good1}, {deliver: broken}, {deliver: good2}},
			wantCalls: 3, wantLogs: map[string]int{reloaded: 2, reloadFailed: 1, recovered: 1},
			wantErrors: 1, wantReloads: 2, wantObserved: 3,
		},
		{
			name: "distinct failures count once each",
			steps: []step{{deliver: good1}, {fail: "e1"}, {fail: "e2"}, {fail: "e2"}, {fail: "e1"},
				{deliver: broken}, {deliver: broken2}, {deliver: broken2}},
			wantCalls: 3, wantLogs: map[string]int{reloaded: 1, readFailed: 3, reloadFailed: 2},
			wantErrors: 5, wantReloads: 1, wantLastErr: true, wantObserved: 6,
		},
		{
			name:      "refused, read failure, the refused content again",
			steps:     []step{{deliver: good1}, {deliver: broken}, {fail: "e1"}, {deliver: broken}},
			wantCalls: 2, wantLogs: map[string]int{reloaded: 1, reloadFailed: 2, readFailed: 1},
			wantErrors: 3, wantReloads: 1, wantLastErr: true, wantObserved: 4,
		},
		{
			name:      "not modified after a refusal: the sink is given the good snapshot again",
			steps:     []step{{deliver: good1}, {deliver: broken}, {unchanged: true}, {unchanged: true}},
			wantCalls: 3, wantLogs: map[string]int{reloaded: 1, reloadFailed: 1, recovered: 1},
			wantErrors: 1, wantReloads: 2, wantObserved: 3,
		},
		{
			name:      "not modified after a fetch failure",
			steps:     []step{{deliver: good1}, {fail: "e1"}, {fail: "e1"}, {unchanged: true}},
			wantCalls: 1, wantLogs: map[string]int{reloaded: 1, readFailed: 1, recovered: 1},
			wantErrors: 1, wantReloads: 1, wantObserved: 2, wantInfoRecovery: true,
		},
		{
			name:      "healthy and unchanged",
			steps:     []step{{deliver: good1}, {unchanged: true}, {deliver: good1}, {unchanged: true}},
			wantCalls: 1, wantLogs: map[string]int{reloaded: 1},
			wantReloads: 1, wantObserved: 1,
		},
		{
			name:      "first read fails, then recovers",
			steps:     []step{{fail: "e1"}, {fail: "e1"}, {deliver: good1}},
			wantCalls: 1, wantLogs: map[string]int{readFailed: 1, reloaded: 1, recovered: 1},
			wantErrors: 1, wantReloads: 1, wantObserved: 2,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var logs bundletest.Logs
			var observed atomic.Int64
			clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
			rec := record.New(record.Options{Origin: "test", Logger: logs.Logger(),
				Observer: bundles.ObserverFunc(func(string, time.Duration, error) { observed.Add(1) }),
				Now:      func() time.Time { return clock }})
			sink := bundletest.NewSink(16)
			for _, s := range tc.steps {
				clock = clock.Add(time.Second)
				switch {
				case s.deliver != "":
					_ = rec.Deliver(t.Context(), sink, snapshot(s.deliver), clock)
				case s.fail != "":
					rec.Failed(clock, slog.LevelError, readFailed, errors.New(s.fail))
				case s.unchanged:
					_ = rec.Unchanged(t.Context(), sink, clock)
				}
				if got := rec.Status().LastAttempt; !got.Equal(clock) {
					t.Errorf("LastAttempt = %s, want every attempt's start %s", got, clock)
				}
			}
			if got := sink.Calls(); got != tc.wantCalls {
				t.Errorf("sink calls = %d, want %d", got, tc.wantCalls)
			}
			gotLogs := map[string]int{}
			for _, msg := range []string{readFailed, reloadFailed, reloaded, recovered} {
				if n := logs.Count(msg); n > 0 {
					gotLogs[msg] = n
				}
			}
			if diff := cmp.Diff(tc.wantLogs, gotLogs); diff != "" {
				t.Errorf("log lines (-want +got):\n%s\nall: %q", diff, logs.Messages())
			}
			st := rec.Status()
			if st.ReloadErrors != tc.wantErrors || st.Reloads != tc.wantReloads {
				t.Errorf("ReloadErrors, Reloads = %d, %d; want %d, %d", st.ReloadErrors, st.Reloads, tc.wantErrors, tc.wantReloads)
			}
			if (st.LastError != "") != tc.wantLastErr {
				t.Errorf("LastError = %q, want set: %v", st.LastError, tc.wantLastErr)
			}
			if !tc.wantLastErr && (len(st.Errors) != 0 || !st.LastErrorAt.IsZero()) {
				t.Errorf("Errors, LastErrorAt = %v, %s after recovery, want none", st.Errors, st.LastErrorAt)
			}
			if got := int(observed.Load()); got != tc.wantObserved {
				t.Errorf("observed %d attempts, want %d (one per counted outcome)", got, tc.wantObserved)
			}
			if n := logs.Count(recovered); n > 0 {
				if v, _ := logs.Attr(recovered, "revision"); v.String() != st.Revision || st.Revision == "" {
					t.Errorf("recovered line names revision %q, status says %q", v, st.Revision)
				}
				if info := slices.Contains(logs.MessagesAt(slog.LevelInfo), recovered); info != tc.wantInfoRecovery {
					t.Errorf("recovery at Info: %v, want %v", info, tc.wantInfoRecovery)
				}
			}
			// A refusal names the refused revision; a failure before the
			// sink names none.
			wantRev := ""
			if last := tc.steps[len(tc.steps)-1]; tc.wantLastErr && last.deliver != "" {
				wantRev = snapshot(last.deliver).Revision
			}
			if st.LastErrorRevision != wantRev {
				t.Errorf("LastErrorRevision = %q, want %q", st.LastErrorRevision, wantRev)
			}
		})
	}
}

// TestRepeatKeepsFirstErrorTime: a repeated failure moves LastAttempt but
// not LastErrorAt, and the located problems stay.
func TestRepeatKeepsFirstErrorTime(t *testing.T) {
	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	rec := record.New(record.Options{Now: func() time.Time { return clock }})
	sink := bundletest.NewSink(4)
	bundletest.Must(t, rec.Deliver(t.Context(), sink, snapshot(good1), clock))
	clock = clock.Add(time.Second)
	first := clock
	_ = rec.Deliver(t.Context(), sink, snapshot(broken), clock)
	for range 3 {
		clock = clock.Add(time.Second)
		_ = rec.Deliver(t.Context(), sink, snapshot(broken), clock)
	}
	st := rec.Status()
	if !st.LastErrorAt.Equal(first) || !st.LastAttempt.Equal(clock) {
		t.Errorf("LastErrorAt, LastAttempt = %s, %s; want %s, %s", st.LastErrorAt, st.LastAttempt, first, clock)
	}
	if len(st.Errors) == 0 || st.Errors[0].File != "authz.rego" {
		t.Errorf("Errors = %+v, want the located problem", st.Errors)
	}
}

// TestShutdownIsNotAFailure: a sink error while the context is done is
// returned but neither recorded nor remembered.
func TestShutdownIsNotAFailure(t *testing.T) {
	var logs bundletest.Logs
	rec := record.New(record.Options{Logger: logs.Logger()})
	ctx, cancel := context.WithCancel(t.Context())
	calls := 0
	sink := bundles.SinkFunc(func(ctx context.Context, _ *bundles.Snapshot) error {
		calls++
		if calls == 1 {
			cancel()
			return ctx.Err()
		}
		return nil
	})
	if err := rec.Deliver(ctx, sink, snapshot(good1), time.Now()); !errors.Is(err, context.Canceled) {
		t.Fatalf("Deliver = %v, want context.Canceled", err)
	}
	if st := rec.Status(); st.ReloadErrors != 0 || st.LastError != "" || len(logs.Messages()) != 0 {
		t.Errorf("status %+v, logs %q; want nothing recorded", st, logs.Messages())
	}
	if err := rec.Deliver(t.Context(), sink, snapshot(good1), time.Now()); err != nil || calls != 2 {
		t.Errorf("Deliver after restart = %v with %d calls, want the sink asked again", err, calls)
	}
}

func TestInitialized(t *testing.T) {
	rec := record.New(record.Options{})
	select {
	case <-rec.Initialized():
		t.Fatal("initialized before MarkInitialized")
	default:
	}
	rec.MarkInitialized()
	rec.MarkInitialized()
	<-rec.Initialized()
}
