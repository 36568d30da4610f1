package server

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/token"
	"github.com/verdict-pdp/verdict/internal/jsonw"
)

// Error codes of the JSON error shape
// {"allow": false, "error": {"code": …, "message": …}}.
const (
	CodeInvalidRequest   = "invalid_request"        // 400: malformed body or request
	CodeTooLarge         = "too_large"              // 413: body over Limits.MaxBodyBytes
	CodeUnsupportedMedia = "unsupported_media_type" // 415: body is not application/json
	CodeForbidden        = "forbidden"              // 403: the client may not use this endpoint (AuthZEN)
	CodeMethodNotAllowed = "method_not_allowed"     // 405
	CodeNotFound         = "not_found"              // 404
	CodeNotReady         = "not_ready"              // 503: no policy loaded
	CodeKeysUnavailable  = "keys_unavailable"       // 503: a credential's issuer's keys are unavailable or stale
	CodeOverloaded       = "overloaded"             // 503: too many decisions at once; Retry-After: 1
	CodePolicyError      = "policy_error"           // 500: evaluation failed
)

// Errors of the HTTP front itself, about the HTTP request rather than the
// question it asks (a malformed question is an *authz.Refusal of category
// authz.ErrInvalidRequest).
var (
	errTooLarge             = errors.New("request body too large")
	errUnsupportedMediaType = errors.New("unsupported media type")
	errMethod               = errors.New("method not allowed")
	errForbidden            = errors.New("forbidden")
	errNotFound             = errors.New("not found")
)

// frontError is an error of the HTTP front: its kind (one of the errors
// above, which answer maps to a status) and a message for the client.
type frontError struct {
	kind error
	msg  string
}

func (e *frontError) Error() string { return e.msg }
func (e *frontError) Unwrap() error { return e.kind }

func frontErr(kind error, format string, args ...any) error {
	return &frontError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// endpoint says which answering convention applies.
type endpoint int

const (
	// decideAPI answers 200 with the decision for allow and deny.
	decideAPI endpoint = iota
	// forwardAuth answers with authz.HTTPStatus: 200, 401, 403.
	forwardAuth
)

// answer is the one place where an outcome becomes an HTTP status: the
// status, and the error code when the body is the error shape ("" when it
// is a decision). err is the error that came with d (from the engine or the
// front); anonymous reports that no bearer token was sent.
func answer(ep endpoint, d authz.Decision, err error, anonymous bool) (int, string) {
	var mbe *http.MaxBytesError
	switch {
	case errors.Is(err, token.ErrKeysUnavailable):
		// An outage, not a verdict on the credential: the token may be
		// good, and its holder should not be told to drop it (401).
		return http.StatusServiceUnavailable, CodeKeysUnavailable
	case err == nil, errors.Is(err, authz.ErrToken), errors.Is(err, authz.ErrCaller):
		// A decision: allow, deny, or a rejected credential (a deny).
		if ep == decideAPI {
			return http.StatusOK, ""
		}
		return authz.HTTPStatus(d, err, anonymous), ""
	case errors.As(err, &mbe), errors.Is(err, errTooLarge):
		return http.StatusRequestEntityTooLarge, CodeTooLarge
	case errors.Is(err, errUnsupportedMediaType):
		return http.StatusUnsupportedMediaType, CodeUnsupportedMedia
	case errors.Is(err, authz.ErrInvalidRequest):
		return http.StatusBadRequest, CodeInvalidRequest
	case errors.Is(err, errForbidden):
		return http.StatusForbidden, CodeForbidden
	case errors.Is(err, errMethod):
		return http.StatusMethodNotAllowed, CodeMethodNotAllowed
	case errors.Is(err, errNotFound):
		return http.StatusNotFound, CodeNotFound
	case errors.Is(err, authz.ErrNotReady):
		return http.StatusServiceUnavailable, CodeNotReady
	case errors.Is(err, errOverloaded):
		return http.StatusServiceUnavailable, CodeOverloaded
	default:
		return http.StatusInternalServerError, CodePolicyError
	}
}

// errorMessage is the message of the error shape; its code already says
// which kind of error it is, so a refusal gives only its detail.
func errorMessage(err error) string {
	var r *authz.Refusal
	if errors.As(err, &r) {
		if errors.Is(err, token.ErrKeysUnavailable) {
			// Its detail is only the code; which credential is the news.
			return "the keys of the " + r.Code() + "'s issuer are unavailable or older than its max_stale: it cannot be verified now"
		}
		return r.Detail
	}
	return err.Error()
}

// setJSONHeaders sets the headers of every JSON answer.
func setJSONHeaders(h http.Header) {
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
}

// writeError writes the error shape with status.
func (s *Server) writeError(w http.ResponseWriter, status int, code, message, decisionID string) {
	bp := s.bufs.Get().(*[]byte)
	b := appendError((*bp)[:0], code, message, decisionID)
	b = append(b, '\n')
	setJSONHeaders(w.Header())
	if code == CodeOverloaded {
		w.Header().Set("Retry-After", "1")
	}
	w.WriteHeader(status)
	_, _ = w.Write(b)
	s.putBuf(bp, b)
}

// writeDecision writes d as JSON with status.
func (s *Server) writeDecision(w http.ResponseWriter, status int, d *authz.Decision, headers bool) {
	bp := s.bufs.Get().(*[]byte)
	b := d.AppendJSON((*bp)[:0], headers)
	b = append(b, '\n')
	setJSONHeaders(w.Header())
	w.WriteHeader(status)
	_, _ = w.Write(b)
	s.putBuf(bp, b)
}

func (s *Server) putBuf(bp *[]byte, b []byte) {
	if cap(b) > 2*DefaultMaxBodyBytes {
		return // let an unusually large buffer go
	}
	*bp = b[:0]
	s.bufs.Put(bp)
}

// appendError appends {"allow":false,"error":{"code":…,"message":…},"decision_id":…}.
func appendError(b []byte, code, message, decisionID string) []byte {
	if len(message) > maxMessageBytes {
		message = message[:maxMessageBytes] + "…"
	}
	b = append(b, `{"allow":false,"error":{"code":`...)
	b = jsonw.AppendString(b, code)
	b = append(b, `,"message":`...)
	b = jsonw.AppendString(b, message)
	b = append(b, '}')
	if decisionID != "" {
		b = append(b, `,"decision_id":`...)
		b = jsonw.AppendString(b, decisionID)
	}
	return append(b, '}')
}

const maxMessageBytes = 512

// methodNotAllowed answers 405 in the error shape, with Allow.
func (s *Server) methodNotAllowed(allowed ...string) http.HandlerFunc {
	allow := strings.Join(allowed, ", ")
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		status, code := answer(decideAPI, authz.Decision{}, errMethod, true)
		s.writeError(w, status, code, "method "+r.Method+" is not allowed; use "+allow, "")
	}
}

// notFound answers 404 in the error shape.
func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	status, code := answer(decideAPI, authz.Decision{}, errNotFound, true)
	s.writeError(w, status, code, "no route for "+r.URL.EscapedPath(), "")
}
