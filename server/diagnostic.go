package server

import (
	"context"
	"net"
	"net/http"
	"time"
)

// BuildInfo describes a Verdict binary.
type BuildInfo struct {
	// Version is the release ("v1.4.0"), or "dev".
	Version string `json:"version"`
	// Revision is the VCS commit it was built from, "-dirty" appended when
	// the tree had changes; empty when unknown.
	Revision string `json:"revision,omitempty"`
	// GoVersion is the Go release that built it.
	GoVersion string `json:"go_version"`
}

// diagnosticRoutes are the routes of the diagnostic listener: health,
// status and metrics, instrumented like the others.
func (s *Server) diagnosticRoutes() http.Handler {
	mux := http.NewServeMux()
	handle := func(pattern, route string, h http.HandlerFunc, codes ...int) {
		mux.Handle(pattern, s.instrument(route, h, codes))
	}
	s.operatorRoutes(handle, true)
	handle("/", "not_found", s.notFound, http.StatusNotFound)
	return mux
}

// operatorRoutes declares the routes for operators and probes with
// handle: health, and with status also /v1/status and /metrics.
func (s *Server) operatorRoutes(handle func(pattern, route string, h http.HandlerFunc, codes ...int), status bool) {
	const ok, unready, notAllowed = http.StatusOK, http.StatusServiceUnavailable, http.StatusMethodNotAllowed
	getOnly := s.methodNotAllowed(http.MethodGet, http.MethodHead)
	handle("GET /health/live", "health_live", s.handleLive, ok)
	handle("/health/live", "health_live", getOnly, notAllowed)
	handle("GET /health/ready", "health_ready", s.handleReady, ok, unready)
	handle("/health/ready", "health_ready", getOnly, notAllowed)
	if status {
		handle("GET /v1/status", "status", s.handleStatus, ok)
		handle("/v1/status", "status", getOnly, notAllowed)
		handle("GET /metrics", "metrics", s.metrics.handler().ServeHTTP, ok)
		handle("/metrics", "metrics", getOnly, notAllowed)
	}
}

// DiagnosticAddr returns the bound diagnostic address, or nil before Listen
// and when none is served.
func (s *Server) DiagnosticAddr() net.Addr { return s.bound(&s.dln) }

// diagRun is the diagnostic listener while it serves. Its zero value (no
// listener) never reports and stops at once.
type diagRun struct {
	hs     *http.Server
	served chan error // receives Serve's error when it fails
	done   chan struct{}
}

// runDiagnostics serves the diagnostic routes on ln (nil: none).
func (s *Server) runDiagnostics(ln net.Listener) *diagRun {
	r := &diagRun{}
	if ln == nil {
		return r
	}
	r.hs = s.httpServer(s.diag)
	r.served, r.done = make(chan error, 1), make(chan struct{})
	go func() {
		defer close(r.done)
		if err := r.hs.Serve(ln); err != http.ErrServerClosed {
			r.served <- err
		}
	}()
	return r
}

// stop closes the diagnostic listener once the decisions have drained:
// health and metrics stay answerable until then. Its requests are short,
// so it waits for them only briefly.
func (r *diagRun) stop() {
	if r.hs == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if r.hs.Shutdown(ctx) != nil {
		r.hs.Close()
	}
	<-r.done
}
