package authz

import (
	"context"
	"errors"
	"testing"

	"github.com/open-policy-agent/opa/v1/topdown"
)

// TestCutShortOnlyWhenCancelled: an evaluation is cut short only when it
// reports the cancellation itself; a policy error (a conflict) returned
// while the context happens to be done keeps its own reason. Labelling
// every failure under a done context "timed out or was cancelled" let a
// client that hung up hide real policy errors from shadow and replay.
func TestCutShortOnlyWhenCancelled(t *testing.T) {
	done, cancel := context.WithCancel(t.Context())
	cancel()
	conflict := &topdown.Error{Code: topdown.ConflictErr, Message: "complete rules must not produce multiple outputs"}
	cancelled := &topdown.Error{Code: topdown.CancelErr, Message: "caller cancelled query execution"}
	for _, tc := range []struct {
		name string
		ctx  context.Context
		err  error
		want bool
	}{
		{"a conflict, the client gone", done, conflict, false},
		{"cancelled, the client gone", done, cancelled, true},
		{"cancelled, the context live", t.Context(), cancelled, false},
		{"another error", done, errors.New("boom"), false},
	} {
		r := cutShort(tc.ctx, tc.err)
		if (r != nil) != tc.want || r != nil && (r.Detail != InterruptedDetail || !errors.Is(r, ErrPolicy)) {
			t.Errorf("%s: %v, want cut short %v", tc.name, r, tc.want)
		}
	}
}
