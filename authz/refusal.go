package authz

import (
	"crypto/rand"
	"errors"
	"fmt"
	"strings"

	"github.com/verdict-pdp/verdict/authz/token"
)

// Refusal is every error Decide returns: a request denied without the
// policy's say, or because evaluating it failed. It names its category (one
// of ErrToken, ErrCaller, ErrInvalidRequest, ErrNotReady, ErrPolicy, which
// errors.Is finds) and a detail, and renders the deny reason callers see
// from the two, so that nothing downstream parses or strips a formatted
// string. A Refusal is immutable.
type Refusal struct {
	// Category is the kind of refusal: ErrToken, ErrCaller,
	// ErrInvalidRequest, ErrNotReady or ErrPolicy.
	Category error
	// Detail says what exactly: a token.Reason name for a refused token
	// ("expired"), else a short sentence ("the proxy must send both
	// X-Original-Method and X-Original-URI").
	Detail string
	// Cause is the underlying error, when there is one (the token
	// verifier's, OPA's, a context's); nil otherwise.
	Cause error
}

// Refusef returns a Refusal of category with a formatted detail.
func Refusef(category error, format string, args ...any) *Refusal {
	return &Refusal{Category: category, Detail: fmt.Sprintf(format, args...)}
}

// RefuseWith returns a Refusal of category caused by err. The detail is the
// token.Reason name when err is a token verification error (a refused token
// says "expired", never the token), else err's message.
func RefuseWith(category error, err error) *Refusal {
	if errors.Is(err, token.ErrInvalid) {
		return &Refusal{Category: category, Detail: token.Reason(err), Cause: err}
	}
	return &Refusal{Category: category, Detail: err.Error(), Cause: err}
}

// Error is "category: detail", with the cause in parentheses when there is
// one.
func (r *Refusal) Error() string {
	msg := r.Category.Error()
	if r.Detail != "" && r.Detail != msg { // "no policy loaded", not twice
		msg += ": " + r.Detail
	}
	if r.Cause != nil && !strings.Contains(r.Detail, r.Cause.Error()) {
		msg += " (" + r.Cause.Error() + ")"
	}
	return msg
}

// Unwrap returns the category and the cause, so that errors.Is finds both
// (ErrToken and token.ErrExpired, say).
func (r *Refusal) Unwrap() []error {
	if r.Cause == nil {
		return []error{r.Category}
	}
	return []error{r.Category, r.Cause}
}

// Code is the reason's code, by category: "token", "caller",
// "invalid_request", "not_ready" or "policy_error".
func (r *Refusal) Code() string { return categoryCode(r.Category) }

// Reason is the deny reason a decision carries: "code: detail", such as
// "token: expired" or "caller: forwarded certificate header from an
// untrusted peer".
func (r *Refusal) Reason() string { return r.Code() + ": " + r.Detail }

func categoryCode(category error) string {
	switch category {
	case ErrToken:
		return "token"
	case ErrCaller:
		return "caller"
	case ErrInvalidRequest:
		return "invalid_request"
	case ErrNotReady:
		return "not_ready"
	}
	return "policy_error"
}

// ReasonFor returns the deny reason for err: the Refusal's reason, or, for
// any other error, "policy_error: " and its message (an error nobody
// categorised is a failure, and denies).
func ReasonFor(err error) string {
	var r *Refusal
	if errors.As(err, &r) {
		return r.Reason()
	}
	return "policy_error: " + err.Error()
}

// Deny returns the decision that answers err: a new decision ID, allow
// false and one reason (ReasonFor). Decide returns it with every error; an
// HTTP front answers it for a request it refuses before asking the engine
// (a malformed header, a caller credential it does not believe), so that
// every refusal has the same shape.
func Deny(err error) Decision {
	return Decision{ID: rand.Text(), Reasons: []string{ReasonFor(err)}}
}
