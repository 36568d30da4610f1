package authz

import (
	"context"
	"errors"

	"github.com/open-policy-agent/opa/v1/topdown"
)

// Error categories. Every error returned by Decide is a *Refusal of exactly
// one of them (wrapping, for token failures, the token package's cause
// sentinel as well).
var (
	// ErrToken: the bearer token was present but invalid. The decision's
	// reason starts with "token:".
	ErrToken = errors.New("token rejected")
	// ErrCaller: the caller's credential was present but invalid. The
	// decision's reason starts with "caller:".
	ErrCaller = errors.New("caller rejected")
	// ErrInvalidRequest: the request itself is malformed (no action, bad path).
	ErrInvalidRequest = errors.New("invalid request")
	// ErrNotReady: no policy snapshot has been loaded yet.
	ErrNotReady = errors.New("no policy loaded")
	// ErrPolicy: evaluation failed, timed out, or the policy produced a
	// result outside the policy contract.
	ErrPolicy = errors.New("policy evaluation failed")
	// ErrCompile is wrapped by Load errors: the snapshot did not parse,
	// compile or type-check, and the previous snapshot keeps serving.
	ErrCompile = errors.New("policy compile failed")
)

// InterruptedDetail is the detail of an ErrPolicy refusal whose evaluation
// was cut short (its context timed out or was cancelled, the client gone):
// not an answer of the policy's, which a shadow or a replay has nothing
// to compare with.
const InterruptedDetail = "evaluation timed out or was cancelled"

// cutShort is the refusal of an evaluation that failed with err because
// ctx is done, or nil. Only an evaluation that says it was cancelled was
// cut short: a policy error met before the cancellation was noticed stays
// that error, so that a client going away cannot turn it into one that
// shadow and replay leave out.
func cutShort(ctx context.Context, err error) *Refusal {
	if ctx.Err() == nil || !topdown.IsCancel(err) {
		return nil
	}
	return &Refusal{Category: ErrPolicy, Detail: InterruptedDetail, Cause: ctx.Err()}
}
