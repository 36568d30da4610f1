package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/verdict-pdp/verdict/authz"
)

// decideBody is the /v1/decide request body. Unknown fields, at the top
// level and inside caller, action and context, are refused; resource and
// context.attributes are free-form objects.
type decideBody struct {
	Token    string         `json:"token"`
	Caller   *callerBody    `json:"caller"`
	Action   actionField    `json:"action"`
	Resource map[string]any `json:"resource"`
	Context  *contextBody   `json:"context"`
}

type callerBody struct {
	Token       string `json:"token"`
	Certificate string `json:"certificate"`
}

type contextBody struct {
	RequestID  string         `json:"request_id"`
	RemoteAddr string         `json:"remote_addr"`
	Attributes map[string]any `json:"attributes"`
}

// actionField is an action given as a string (its name) or as an object
// {name, method, path}.
type actionField struct{ authz.Action }

type actionObject struct {
	Name   string `json:"name"`
	Method string `json:"method"`
	Path   string `json:"path"`
}

// UnmarshalJSON accepts a string, an object or null.
func (a *actionField) UnmarshalJSON(b []byte) error {
	switch b[0] {
	case '"':
		if len(b) >= 2 && bytes.IndexByte(b[1:len(b)-1], '\\') < 0 && bytes.IndexByte(b[1:len(b)-1], '"') < 0 {
			a.Name = string(b[1 : len(b)-1]) // no escapes: the common case
			return nil
		}
		return json.Unmarshal(b, &a.Name)
	case '{':
		var o actionObject
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&o); err != nil {
			return fmt.Errorf("action: %s", jsonMessage(err))
		}
		a.Action = authz.Action(o)
		return nil
	case 'n':
		return nil
	}
	return errors.New("action: must be a string or an object {name, method, path}")
}

// decodeError is a body that is not an acceptable decide request.
type decodeError struct{ msg string }

func (e *decodeError) Error() string { return errBadRequest.Error() + ": " + e.msg }
func (e *decodeError) Unwrap() error { return errBadRequest }

func badBody(format string, args ...any) error {
	return &decodeError{msg: fmt.Sprintf(format, args...)}
}

// decodeDecideBody strictly decodes a /v1/decide body into out: valid UTF-8,
// nesting no deeper than maxDepth, exactly one JSON object, no unknown
// fields (names match exactly, case included), no member repeated, every
// field of its type. Errors wrap errBadRequest.
func decodeDecideBody(data []byte, maxDepth int, out *decideBody) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return badBody("empty body: want a JSON object")
	}
	if !utf8.Valid(data) {
		return badBody("body is not valid UTF-8")
	}
	if err := checkDepth(data, maxDepth); err != nil {
		return err
	}
	if err := checkKeys(data); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(out); err != nil {
		return badBody("%s", jsonMessage(err))
	}
	if len(bytes.TrimSpace(data[dec.InputOffset():])) != 0 {
		return badBody("unexpected data after the JSON object")
	}
	if out.Caller != nil && out.Caller.Token != "" && out.Caller.Certificate != "" {
		return badBody("caller: give a token or a certificate, not both")
	}
	return nil
}

// jsonMessage turns encoding/json's errors into short messages that name
// the field but never echo the input's values.
func jsonMessage(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("malformed JSON at byte %d", se.Offset)
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			return fmt.Sprintf("want a JSON object, got %s", te.Value)
		}
		return fmt.Sprintf("field %q: wrong type (%s)", truncate(field, 64), te.Value)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "malformed JSON: unexpected end of body"
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	if strings.HasPrefix(msg, "unknown field ") {
		return "unknown field " + truncate(strings.TrimPrefix(msg, "unknown field "), 66)
	}
	return truncate(msg, 200)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// checkDepth refuses JSON nested deeper than max ({} at the top is 1), with
// one pass over the bytes that skips strings. It does not validate the JSON;
// the decoder does.
func checkDepth(data []byte, max int) error {
	depth := 0
	for i := 0; i < len(data); i++ {
		switch data[i] {
		case '"':
			// Skip the string: find its closing quote, minding escapes.
			for i++; i < len(data); i++ {
				j := bytes.IndexAny(data[i:], `"\`)
				if j < 0 {
					return nil // unterminated: the decoder reports it
				}
				i += j
				if data[i] == '"' {
					break
				}
				i++ // skip the escaped byte
			}
		case '{', '[':
			depth++
			if depth > max {
				return badBody("JSON nested deeper than %d levels", max)
			}
		case '}', ']':
			depth--
		}
	}
	return nil
}

// readBody reads the request body into a pooled buffer, refusing more than
// Limits.MaxBodyBytes with an error that answer maps to 413. The caller
// returns the buffer with putBuf.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) (*[]byte, []byte, error) {
	limit := s.limits.MaxBodyBytes
	if r.ContentLength > limit {
		return nil, nil, fmt.Errorf("%w: over %d bytes", errTooLarge, limit)
	}
	body := http.MaxBytesReader(w, r.Body, limit)
	bp := s.bufs.Get().(*[]byte)
	b := (*bp)[:0]
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := body.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if errors.Is(err, io.EOF) {
			return bp, b, nil
		}
		if err != nil {
			s.putBuf(bp, b)
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return nil, nil, fmt.Errorf("%w: over %d bytes", errTooLarge, limit)
			}
			return nil, nil, badBody("reading body: %v", err)
		}
	}
}

// handleDecide answers POST /v1/decide.
func (s *Server) handleDecide(w http.ResponseWriter, r *http.Request) {
	bp, data, err := s.readBody(w, r)
	if err != nil {
		s.fail(w, err)
		return
	}
	var in decideBody
	err = decodeDecideBody(data, s.limits.MaxJSONDepth, &in)
	s.putBuf(bp, data)
	if err != nil {
		s.fail(w, err)
		return
	}
	req := authz.Request{
		Token:    in.Token,
		Action:   in.Action.Action,
		Resource: in.Resource,
	}
	if in.Context != nil {
		// The protected request's client is whatever the enforcement point
		// says: the peer of this request is the enforcement point itself.
		req.RequestID, req.Attributes, req.RemoteAddr = in.Context.RequestID, in.Context.Attributes, in.Context.RemoteAddr
	}
	if req.RequestID == "" {
		req.RequestID = headerRequestID(r)
	}

	var d authz.Decision
	switch {
	case in.Caller == nil || (in.Caller.Token == "" && in.Caller.Certificate == ""):
		req.Caller = authz.CallerFromTLS(r.TLS)
		d, err = s.decide(r, &req)
	case in.Caller.Token != "":
		req.Caller.Token = in.Caller.Token
		d, err = s.decide(r, &req)
	default:
		var reject error
		req.Caller, reject = s.assertedCaller(r, []byte(in.Caller.Certificate))
		if reject != nil {
			d, err = s.reject(r, &req, reject)
		} else {
			d, err = s.decide(r, &req)
		}
	}
	status, code := answer(decideAPI, d, err, req.Token == "")
	if code != "" {
		s.writeError(w, status, code, errorMessage(d, err), d.ID)
		return
	}
	s.writeDecision(w, status, &d, true)
}

// fail answers a request that failed before any decision.
func (s *Server) fail(w http.ResponseWriter, err error) {
	status, code := answer(decideAPI, authz.Decision{}, err, true)
	s.writeError(w, status, code, errorMessage(authz.Decision{}, err), "")
}

// maxRequestIDLen bounds a client-supplied X-Request-Id.
const maxRequestIDLen = 128

// headerRequestID returns X-Request-Id when it is short and printable ASCII.
func headerRequestID(r *http.Request) string {
	id := r.Header.Get("X-Request-Id")
	if id == "" || len(id) > maxRequestIDLen {
		return ""
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return ""
		}
	}
	return id
}
