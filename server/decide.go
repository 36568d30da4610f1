package server

import (
	"errors"
	"io"
	"net/http"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/token"
	"github.com/verdict-pdp/verdict/internal/httpreq"
	"github.com/verdict-pdp/verdict/internal/printable"
)

// decodeBody reads the request body (see readBody), takes a decision slot
// for a (see admission), and decodes the body with a pooled reader (decode
// must not keep data), then gives the body back. It returns the function
// that gives the slot back, which the caller calls once it has answered. A
// body over Limits.MaxBodyBytes is an error that answer maps to 413; no
// budget or slot freeing in time, one it maps to 503 overloaded.
func (s *Server) decodeBody(w http.ResponseWriter, r *http.Request, a api, decode func(jr *jsonReader, data []byte) error) (release func(), err error) {
	body, err := s.readBody(w, r, s.limits.MaxBodyBytes)
	if err != nil {
		if errors.Is(err, errOverloaded) {
			s.metrics.shed.WithLabelValues(string(a)).Inc()
		}
		return nil, err
	}
	defer s.putBody(body) // also when decode panics
	slot, err := s.admit(r.Context(), a)
	if err != nil {
		return nil, err
	}
	// The slot goes back here unless it is handed to the caller: also when
	// decode panics (the route's recover answers, and the slot would be
	// lost for good).
	handed := false
	defer func() {
		if !handed {
			slot()
		}
	}()
	jr := s.readers.get()
	err = decode(jr, body.data)
	s.readers.put(jr)
	if err != nil {
		return nil, err
	}
	handed = true
	return slot, nil
}

// requestBody is a body read by readBody: its bytes, the pooled probe
// they are in while they fit one, and the bytes of the body budget
// reserved for the buffer they are in once they do not.
type requestBody struct {
	probe    *[bodyProbe]byte
	data     []byte
	reserved int64
}

// readBody reads the request body, refusing more than limit bytes with an
// error that answer maps to 413. Its first bodyProbe bytes go into
// a pooled probe, outside the body budget; a longer body moves to a buffer
// that doubles as it fills, whose whole capacity is reserved from the
// budget (see admission), never past a declared Content-Length or the
// limit. A full buffer (or none, at the start) grows only once the next
// byte has arrived, read on its own: a body waiting for its client holds
// no room it has not used, and a body reserves less than twice the bytes it
// has sent. Bytes not free in time are errOverloaded. The caller gives the
// body back with putBody.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, limit int64) (requestBody, error) {
	if r.ContentLength > limit {
		return requestBody{}, frontErr(errTooLarge, "the body is over %d bytes", limit)
	}
	// want is the most bytes worth room: what was declared (the server's
	// reader stops there), or the limit. A body of unknown length read to
	// the limit reads a byte more on its own, to see it end there or go
	// over (MaxBytesReader then fails).
	want, known := limit, r.ContentLength >= 0
	if known {
		want = r.ContentLength
	}
	rd := http.MaxBytesReader(w, r.Body, limit)
	// While it waits for the client's bytes, the call is not deciding (see
	// limitListener): its connection is idle since the body's read began,
	// not since its latest byte, or a client sending a byte at a time
	// would always look idle for less long than one that is really idle.
	lc := connOf(r.Context())
	lc.callWaiting()
	defer lc.callResumed()
	var body requestBody
	var next [1]byte
	for !known || int64(len(body.data)) < want {
		b := body.data
		if len(b) == cap(b) {
			n, err := 0, error(nil)
			for n == 0 && err == nil {
				n, err = rd.Read(next[:]) // not io.ReadFull: rd would escape
			}
			if n == 0 {
				if errors.Is(err, io.EOF) {
					break
				}
				s.putBody(body)
				return requestBody{}, bodyReadErr(err, limit)
			}
			if int64(len(b)) >= want {
				// A byte past the limit that MaxBytesReader let by.
				s.putBody(body)
				return requestBody{}, frontErr(errTooLarge, "the body is over %d bytes", limit)
			}
			if b == nil {
				body.probe = s.probes.Get().(*[bodyProbe]byte)
				b = body.probe[:0:min(bodyProbe, want)]
			} else {
				size := min(2*int64(cap(b)), want)
				if err := s.admission.reserveBody(r.Context(), size-body.reserved, body.reserved == 0); err != nil {
					s.putBody(body)
					return requestBody{}, err
				}
				body.reserved = size
				b = append(make([]byte, 0, size), b...)
				if body.probe != nil {
					s.probes.Put(body.probe)
					body.probe = nil
				}
			}
			body.data = append(b, next[0])
			continue
		}
		n, err := rd.Read(b[len(b):cap(b)])
		body.data = b[:len(b)+n]
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			s.putBody(body)
			return requestBody{}, bodyReadErr(err, limit)
		}
	}
	return body, nil
}

// bodyReadErr is the error of a body that could not be read: over limit
// bytes (413) or broken off (400).
func bodyReadErr(err error, limit int64) error {
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return frontErr(errTooLarge, "the body is over %d bytes", limit)
	}
	return badBody("reading body: %v", err)
}

// putBody gives back a body's probe and its bytes of the body budget.
func (s *Server) putBody(body requestBody) {
	if body.probe != nil {
		s.probes.Put(body.probe)
	}
	if body.reserved > 0 {
		s.admission.bodies.Give(body.reserved)
	}
}

// handleDecide answers POST /v1/decide.
func (s *Server) handleDecide(w http.ResponseWriter, r *http.Request) {
	if err := checkJSONContentType(r.Header); err != nil {
		s.fail(w, err)
		return
	}
	explain, err := s.explainParam(r)
	if err != nil {
		s.fail(w, err)
		return
	}
	var in decideBody
	release, err := s.decodeBody(w, r, apiDecide, func(jr *jsonReader, data []byte) error {
		return jr.decodeDecide(data, s.limits.MaxJSONDepth, &in)
	})
	if err != nil {
		s.fail(w, err)
		return
	}
	slot := heldSlot{release: release}
	defer slot.giveBack()
	req := authz.Request{
		Token:    token.Raw(in.Token),
		Action:   in.Action,
		Resource: in.Resource,
		Explain:  explain,
	}
	if in.Context != nil {
		// The protected request's client is whatever the enforcement point
		// says: the peer of this request is the enforcement point itself.
		req.Attributes, req.RemoteAddr = in.Context.Attributes, in.Context.RemoteAddr
		// A request ID is held to the header's rule wherever it comes
		// from (it reaches logs and the input): another is dropped.
		if httpreq.ValidRequestID(in.Context.RequestID) {
			req.RequestID = in.Context.RequestID
		}
	}
	if req.RequestID == "" {
		req.RequestID = authz.RequestIDFromHeader(r.Header)
	}

	var d authz.Decision
	switch {
	case in.Caller == nil:
		// No caller member (or null): the service asking is the caller,
		// proven by its mTLS certificate if any.
		req.Caller = authz.CallerFromTLS(r.TLS)
		d, err = s.decide(r.Context(), apiDecide, &req)
	case in.Caller.Token == "" && in.Caller.Certificate == "":
		// A caller object with no credential ("caller": {}) says there is
		// none: the service asks for someone else (an end user), and its
		// own certificate is not theirs.
		d, err = s.decide(r.Context(), apiDecide, &req)
	case in.Caller.Token != "":
		req.Caller.Token = token.Raw(in.Caller.Token)
		d, err = s.decide(r.Context(), apiDecide, &req)
	default:
		var reject error
		req.Caller, reject = s.assertedCaller(r, []byte(in.Caller.Certificate))
		if reject != nil {
			d, err = s.reject(r.Context(), apiDecide, &req, reject)
		} else {
			d, err = s.decide(r.Context(), apiDecide, &req)
		}
	}
	slot.giveBack()
	status, code := answer(decideAPI, d, err, req.Token == "")
	if code != "" {
		s.writeError(w, status, code, errorMessage(err), d.ID)
		return
	}
	s.writeDecision(w, status, &d, true)
}

// fail answers a request that failed before any decision.
func (s *Server) fail(w http.ResponseWriter, err error) {
	status, code := answer(decideAPI, authz.Decision{}, err, true)
	s.writeError(w, status, code, errorMessage(err), "")
}

// explainParam reads ?explain=true: allowed only when Options.Explain is
// set (an explanation shows the policy's inner workings and costs a traced
// evaluation).
func (s *Server) explainParam(r *http.Request) (bool, error) {
	v := r.URL.Query().Get("explain")
	switch v {
	case "", "false", "0":
		return false, nil
	case "true", "1":
		if !s.explain {
			return false, authz.Refusef(authz.ErrInvalidRequest, "explain is not enabled on this server (explain: true in its configuration)")
		}
		return true, nil
	}
	return false, authz.Refusef(authz.ErrInvalidRequest, "explain=%q: want true or false", printable.Cut(v, 16))
}
