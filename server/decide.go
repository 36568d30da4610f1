package server

import (
	"errors"
	"io"
	"net/http"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/token"
	"github.com/verdict-pdp/verdict/internal/httpreq"
)

// decodeBody reads the request body into a pooled buffer (reserving its
// bytes of the body budget), takes a decision slot for a (see admission),
// and decodes the body with a pooled reader (decode must not keep data),
// then gives the buffer and the bytes back. It returns the function that
// gives the slot back, which the caller calls once it has answered. A body
// over Limits.MaxBodyBytes is an error that answer maps to 413; no budget
// or slot freeing in time, one it maps to 503 overloaded.
func (s *Server) decodeBody(w http.ResponseWriter, r *http.Request, a api, decode func(jr *jsonReader, data []byte) error) (release func(), err error) {
	body, err := s.readBody(w, r)
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

// requestBody is a body read by readBody: its bytes, the pooled buffer
// they are in, and the bytes of the body budget reserved for them.
type requestBody struct {
	buf      *[]byte
	data     []byte
	reserved int64
}

// readBody reads the request body into a pooled buffer, refusing more than
// Limits.MaxBodyBytes with an error that answer maps to 413. Before it
// reads more bytes it reserves them, bodyChunk at a time (never past a
// declared Content-Length or the limit), from the body budget (see
// admission); bytes not free in time are errOverloaded. The caller gives
// the body back with putBody.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) (requestBody, error) {
	limit := s.limits.MaxBodyBytes
	if r.ContentLength > limit {
		return requestBody{}, frontErr(errTooLarge, "the body is over %d bytes", limit)
	}
	rd := http.MaxBytesReader(w, r.Body, limit)
	var body requestBody
	for {
		b := body.data
		if int64(len(b)) == body.reserved {
			next := min(bodyChunk, limit-int64(len(b)))
			if r.ContentLength >= 0 {
				// Read no further than declared: the server's reader
				// stops there, and what was declared is all read.
				if next = min(next, r.ContentLength-int64(len(b))); next <= 0 {
					return body, nil
				}
			}
			if next > 0 {
				if err := s.admission.reserveBody(r.Context(), next, body.reserved == 0); err != nil {
					s.putBody(body)
					return requestBody{}, err
				}
				body.reserved += next
			}
		}
		if body.buf == nil {
			// Only now, with bytes reserved: a body waiting for them
			// holds no buffer. A pooled buffer larger than what is
			// reserved (one that held a large body or answer) counts
			// whole, or a buffer of the reserved size is made instead:
			// the budget bounds memory held, not bytes read (within
			// the doubling of a buffer that grows).
			body.buf = s.bufs.Get().(*[]byte)
			b = (*body.buf)[:0]
			if extra := int64(cap(b)) - body.reserved; extra > 0 {
				if s.admission.bodies.Take(extra) {
					body.reserved += extra
				} else {
					s.bufs.Put(body.buf)
					fresh := make([]byte, 0, body.reserved)
					body.buf, b = &fresh, fresh
				}
			}
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		end := min(int64(cap(b)), body.reserved)
		if end == int64(len(b)) {
			// At the limit, unreserved: a byte more is the end, or over
			// the limit (MaxBytesReader then returns none of it).
			end++
		}
		n, err := rd.Read(b[len(b):end])
		body.data = b[:len(b)+n]
		if errors.Is(err, io.EOF) {
			return body, nil
		}
		if err != nil {
			s.putBody(body)
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return requestBody{}, frontErr(errTooLarge, "the body is over %d bytes", limit)
			}
			return requestBody{}, badBody("reading body: %v", err)
		}
	}
}

// putBody gives back a body's buffer and its bytes of the body budget.
func (s *Server) putBody(body requestBody) {
	if body.buf != nil {
		s.putBuf(body.buf, body.data)
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
	defer release()
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
	case in.Caller == nil || (in.Caller.Token == "" && in.Caller.Certificate == ""):
		req.Caller = authz.CallerFromTLS(r.TLS)
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
	return false, authz.Refusef(authz.ErrInvalidRequest, "explain=%q: want true or false", truncate(v, 16))
}
