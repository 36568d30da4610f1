package server

import (
	"errors"
	"io"
	"net/http"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/token"
	"github.com/verdict-pdp/verdict/internal/httpreq"
)

// decodeBody reads the request body into a pooled buffer, takes a decision
// slot for a (see admission), and decodes the body with a pooled reader
// (decode must not keep data), then gives both back. It returns the
// function that gives the slot back, which the caller calls once it has
// answered. A body over Limits.MaxBodyBytes is an error that answer maps to
// 413; no slot freeing in time, one it maps to 503 overloaded.
func (s *Server) decodeBody(w http.ResponseWriter, r *http.Request, a api, decode func(jr *jsonReader, data []byte) error) (release func(), err error) {
	bp, data, err := s.readBody(w, r)
	if err != nil {
		return nil, err
	}
	slot, err := s.admit(r.Context(), a)
	if err != nil {
		s.putBuf(bp, data)
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
	err = decode(jr, data)
	s.readers.put(jr)
	s.putBuf(bp, data)
	if err != nil {
		return nil, err
	}
	handed = true
	return slot, nil
}

// readBody reads the request body into a pooled buffer, refusing more than
// Limits.MaxBodyBytes with an error that answer maps to 413. The caller
// returns the buffer with putBuf.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) (*[]byte, []byte, error) {
	limit := s.limits.MaxBodyBytes
	if r.ContentLength > limit {
		return nil, nil, frontErr(errTooLarge, "the body is over %d bytes", limit)
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
				return nil, nil, frontErr(errTooLarge, "the body is over %d bytes", limit)
			}
			return nil, nil, badBody("reading body: %v", err)
		}
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
