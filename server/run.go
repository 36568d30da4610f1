package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
)

// Listen binds the listen address now, so that the caller can learn it (Addr)
// before Run; Run calls it when it has not been called. It logs "listening"
// with the bound address and scheme (http or https), and then, when
// ext_authz is served, binds its address too (ExtAuthzAddr) and logs
// "listening" again with scheme grpc or grpcs. It returns the HTTP address.
func (s *Server) Listen() (net.Addr, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return s.ln.Addr(), nil
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	var gln, dln net.Listener
	if s.extAddr != "" {
		if gln, err = net.Listen("tcp", s.extAddr); err != nil {
			ln.Close()
			return nil, fmt.Errorf("server: ext_authz: %w", err)
		}
	}
	if s.diagAddr != "" {
		if dln, err = net.Listen("tcp", s.diagAddr); err != nil {
			ln.Close()
			if gln != nil {
				gln.Close()
			}
			return nil, fmt.Errorf("server: diagnostic_addr: %w", err)
		}
	}
	s.ln, s.gln, s.dln = ln, gln, dln
	httpScheme, grpcScheme := "http", "grpc"
	if s.tls != nil {
		httpScheme, grpcScheme = "https", "grpcs"
	}
	s.logListening(ln, slog.String("scheme", httpScheme))
	if gln != nil {
		s.logListening(gln, slog.String("scheme", grpcScheme))
	}
	if dln != nil {
		s.logListening(dln, slog.String("scheme", "http"), slog.String("serves", "diagnostics"))
	}
	return ln.Addr(), nil
}

// logListening logs that ln is bound, with attrs naming what it serves.
func (s *Server) logListening(ln net.Listener, attrs ...slog.Attr) {
	s.log.LogAttrs(context.Background(), slog.LevelInfo, "listening",
		append([]slog.Attr{slog.String("addr", ln.Addr().String())}, attrs...)...)
}

// ExtAuthzAddr returns the bound ext_authz gRPC address, or nil before
// Listen and when ext_authz is not served.
func (s *Server) ExtAuthzAddr() net.Addr { return s.bound(&s.gln) }

// Addr returns the bound address, or nil before Listen.
func (s *Server) Addr() net.Addr { return s.bound(&s.ln) }

// bound returns the address of the listener *ln, nil before Listen and
// when that listener is not served.
func (s *Server) bound(ln *net.Listener) net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if *ln == nil {
		return nil
	}
	return (*ln).Addr()
}

// Run serves until ctx is done, then shuts down gracefully: it stops
// accepting connections and waits up to Limits.ShutdownTimeout for in-flight
// requests to finish (their contexts are not cancelled by ctx), closing
// what is left after that. The ext_authz gRPC listener, when served, runs
// and stops beside the HTTP one: its health service turns NOT_SERVING,
// in-flight Checks finish within the same timeout (GracefulStop), and what
// is left is closed (Stop). It returns nil after a clean shutdown. Run may
// be called once.
func (s *Server) Run(ctx context.Context) error {
	if _, err := s.Listen(); err != nil {
		return err
	}
	s.mu.Lock()
	ln, gln, dln := s.ln, s.gln, s.dln
	s.mu.Unlock()
	hs := s.httpServer(s.handler)
	hs.TLSConfig = s.tls.Clone() // http.Server adds its ALPN protocols to the one it is given
	served := make(chan error, 1)
	go func() {
		if s.tls != nil {
			served <- hs.ServeTLS(ln, "", "")
		} else {
			served <- hs.Serve(ln)
		}
	}()
	ext := s.runExtAuthz(gln)
	diag := s.runDiagnostics(dln)
	defer diag.stop()
	select {
	case err := <-served:
		ext.stop(context.Background(), true)
		return fmt.Errorf("server: %w", err)
	case <-ext.done:
		hs.Close()
		<-served
		ext.stop(context.Background(), true)
		return fmt.Errorf("server: ext_authz: %w", ext.err)
	case err := <-diag.served:
		hs.Close()
		<-served
		ext.stop(context.Background(), true)
		return fmt.Errorf("server: diagnostic_addr: %w", err)
	case <-ctx.Done():
	}
	s.log.LogAttrs(context.WithoutCancel(ctx), slog.LevelInfo, "shutting down",
		slog.Duration("timeout", s.limits.ShutdownTimeout))
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.limits.ShutdownTimeout)
	defer cancel()
	extErr := make(chan error, 1)
	go func() { extErr <- ext.stop(sctx, false) }()
	err := hs.Shutdown(sctx)
	if err != nil {
		hs.Close()
		err = fmt.Errorf("server: shutdown: in-flight requests did not finish: %w", err)
	}
	if serr := <-served; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = fmt.Errorf("server: %w", serr)
	}
	if eerr := <-extErr; eerr != nil && err == nil {
		err = eerr
	}
	return err
}

// httpServer is an http.Server for h with the Limits' header size and
// timeouts, logging its errors as warnings.
func (s *Server) httpServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		MaxHeaderBytes:    s.limits.MaxHeaderBytes,
		ReadHeaderTimeout: s.limits.ReadHeaderTimeout,
		ReadTimeout:       s.limits.ReadTimeout,
		WriteTimeout:      s.limits.WriteTimeout,
		IdleTimeout:       s.limits.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
}
