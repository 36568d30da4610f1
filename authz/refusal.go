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
//
// The zero Refusal is a policy failure with no detail: its methods never
// panic, and it denies as every error does.
type Refusal struct {
	// Category is the kind of refusal: ErrToken, ErrCaller,
	// ErrInvalidRequest, ErrNotReady or ErrPolicy. Nil is taken as
	// ErrPolicy (a refusal nobody categorised is a failure).
	Category error
	// Detail says what exactly: a token.Reason name for a refused token
	// ("expired"), else a short sentence ("the proxy must send both
	// X-Original-Method and X-Original-URI"). Empty means the category's
	// message.
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
// says "expired", never the token), else err's message. A nil err gives a
// Refusal of category with no detail and no cause.
func RefuseWith(category error, err error) *Refusal {
	if err == nil {
		return &Refusal{Category: category}
	}
	if errors.Is(err, token.ErrInvalid) {
		return &Refusal{Category: category, Detail: token.Reason(err), Cause: err}
	}
	return &Refusal{Category: category, Detail: err.Error(), Cause: err}
}

// Error is "category: detail", with the cause in parentheses when there is
// one.
func (r *Refusal) Error() string {
	r = r.orZero()
	msg := r.category().Error()
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
	r = r.orZero()
	if r.Cause == nil {
		return []error{r.category()}
	}
	return []error{r.category(), r.Cause}
}

// orZero is r, or the zero Refusal for a nil r: a nil *Refusal held in an
// error (a function returning *Refusal, nil, as an error) reads as a
// refusal of ErrPolicy rather than panicking.
func (r *Refusal) orZero() *Refusal {
	if r == nil {
		return &Refusal{}
	}
	return r
}

// category is r.Category, ErrPolicy when nil.
func (r *Refusal) category() error {
	if r == nil || r.Category == nil {
		return ErrPolicy
	}
	return r.Category
}

// Code is the reason's code, by category: "token", "caller",
// "invalid_request", "not_ready" or "policy_error".
func (r *Refusal) Code() string { return categoryCode(r.orZero().Category) }

// Reason is the deny reason a decision carries: "code: detail", such as
// "token: expired" or "caller: forwarded certificate header from an
// untrusted peer"; with no detail, "code: " and the category's message
// ("policy_error: policy evaluation failed").
func (r *Refusal) Reason() string {
	r = r.orZero()
	if r.Detail == "" {
		return r.Code() + ": " + r.category().Error()
	}
	return r.Code() + ": " + r.Detail
}

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
// categorised is a failure, and denies). For a nil err it returns "": no
// error means no refusal, and a decision the policy denied carries the
// policy's own reasons (Decision.Reasons, possibly none).
func ReasonFor(err error) string {
	if err == nil {
		return ""
	}
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
// every refusal has the same shape. Deny(nil) denies too, with the reason
// "denied" (no error says why), so that a denied decision always has a
// reason.
func Deny(err error) Decision {
	if err == nil {
		return Decision{ID: rand.Text(), Reasons: []string{"denied"}}
	}
	return Decision{ID: rand.Text(), Reasons: []string{ReasonFor(err)}}
}
