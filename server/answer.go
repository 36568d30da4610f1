package server

import (
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/server/decisionlog"
)

// Error codes of the JSON error shape
// {"allow": false, "error": {"code": …, "message": …}}.
const (
	CodeInvalidRequest   = "invalid_request"        // 400: malformed body or request
	CodeTooLarge         = "too_large"              // 413: body over Limits.MaxBodyBytes
	CodeUnsupportedMedia = "unsupported_media_type" // 415: body is not application/json
	CodeMethodNotAllowed = "method_not_allowed"     // 405
	CodeNotFound         = "not_found"              // 404
	CodeNotReady         = "not_ready"              // 503: no policy loaded
	CodePolicyError      = "policy_error"           // 500: evaluation failed
)

// Errors of the HTTP front itself, before any decision.
var (
	errBadRequest = errors.New("bad request")
	errTooLarge   = errors.New("request body too large")
	errMethod     = errors.New("method not allowed")
	errNotFound   = errors.New("not found")
)

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
	case errors.Is(err, errBadRequest), errors.Is(err, authz.ErrInvalidRequest):
		return http.StatusBadRequest, CodeInvalidRequest
	case errors.Is(err, errMethod):
		return http.StatusMethodNotAllowed, CodeMethodNotAllowed
	case errors.Is(err, errNotFound):
		return http.StatusNotFound, CodeNotFound
	case errors.Is(err, authz.ErrNotReady):
		return http.StatusServiceUnavailable, CodeNotReady
	default:
		return http.StatusInternalServerError, CodePolicyError
	}
}

// errorMessage is the message of the error shape: the front's own message,
// or the decision's reason when the engine decided.
func errorMessage(d authz.Decision, err error) string {
	msg := err.Error()
	if d.ID != "" && len(d.Reasons) > 0 {
		msg = d.Reasons[0]
	}
	// The error code already says which kind of error it is.
	for _, prefix := range []string{errBadRequest.Error() + ": ", errUnsupportedMediaType.Error() + ": ", "invalid_request: ", "policy_error: ", "not_ready: "} {
		msg = strings.TrimPrefix(msg, prefix)
	}
	return msg
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
	w.WriteHeader(status)
	_, _ = w.Write(b)
	s.putBuf(bp, b)
}

// writeDecision writes d as JSON with status.
func (s *Server) writeDecision(w http.ResponseWriter, status int, d *authz.Decision, headers bool) {
	bp := s.bufs.Get().(*[]byte)
	b := appendDecision((*bp)[:0], d, headers)
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
	b = decisionlog.AppendString(b, code)
	b = append(b, `,"message":`...)
	b = decisionlog.AppendString(b, message)
	b = append(b, '}')
	if decisionID != "" {
		b = append(b, `,"decision_id":`...)
		b = decisionlog.AppendString(b, decisionID)
	}
	return append(b, '}')
}

const maxMessageBytes = 512

// appendDecision appends d in the decision's JSON shape (as authz.Decision's
// JSON tags say): {"decision_id","allow","reasons","headers"?,"revision"?}.
// Headers are included only when headers is true and d allows; their keys
// are sorted.
func appendDecision(b []byte, d *authz.Decision, headers bool) []byte {
	b = append(b, `{"decision_id":`...)
	b = decisionlog.AppendString(b, d.ID)
	if d.Allow {
		b = append(b, `,"allow":true`...)
	} else {
		b = append(b, `,"allow":false`...)
	}
	b = append(b, `,"reasons":[`...)
	for i, r := range d.Reasons {
		if i > 0 {
			b = append(b, ',')
		}
		b = decisionlog.AppendString(b, r)
	}
	b = append(b, ']')
	if headers && d.Allow && len(d.Headers) > 0 {
		b = append(b, `,"headers":{`...)
		var keysArr [8]string
		keys := keysArr[:0]
		for k := range d.Headers {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = decisionlog.AppendString(b, k)
			b = append(b, ':')
			b = decisionlog.AppendString(b, d.Headers[k])
		}
		b = append(b, '}')
	}
	if d.Revision != "" {
		b = append(b, `,"revision":`...)
		b = decisionlog.AppendString(b, d.Revision)
	}
	return append(b, '}')
}

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
