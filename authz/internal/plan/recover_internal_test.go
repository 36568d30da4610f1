package plan

import (
	"errors"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

// TestPrepareRecoversPanics: a panic while planning (OPA's planner panics
// on a few policies its compiler accepts) is a refusal, never a crash: here
// a nil compiler makes the preparation panic.
func TestPrepareRecoversPanics(t *testing.T) {
	_, err := prepareRecovered(t.Context(), nil, ast.MustParseBody("x = 1"), ast.NewObject())
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "panicked") {
		t.Fatalf("err = %v, want a refusal saying the planner panicked", err)
	}
}
