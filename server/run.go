package server

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// handlerGrace bounds how long Run waits, after the shutdown timeout has
// cut in-flight requests off, for their handlers to return. Their contexts
// are cancelled then, and the engine stops evaluating at once, so they
// return within microseconds; the bound only keeps a handler that ignores
// its context from holding up the process's exit.
const handlerGrace = 5 * time.Second

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
// in-flight calls finish within the same timeout, and what is left is
// closed. Requests and calls cut off are cancelled, and
// Run returns only once their handlers have (so that every decision made
// reaches the decision log before it is closed). It returns nil after a
// clean shutdown. Run may be called once.
func (s *Server) Run(ctx context.Context) error {
	if _, err := s.Listen(); err != nil {
		return err
	}
	s.mu.Lock()
	ln, gln, dln := s.ln, s.gln, s.dln
	s.mu.Unlock()
	// The servers' error lines are bounded an interval at a time; the
	// last interval's count is logged as Run returns.
	stopErrors, errorsDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(errorsDone)
		s.httpErrors.run(stopErrors, s.httpErrorEvery)
	}()
	defer func() {
		close(stopErrors)
		<-errorsDone
	}()
	var handlers handlerCount
	hs := s.httpServer(handlers.track(reportCalls(s.handler)))
	// Beyond MaxConnections a new connection waits to be accepted: each
	// open one holds buffers, and its requests' bodies.
	limited := newLimitListener(ln, s.limits.MaxConnections)
	s.conns.Store(limited)
	hs.ConnState = limited.connState
	hs.ConnContext = limited.connContext
	if s.tls != nil {
		hs.TLSConfig = s.tls.config("h2", "http/1.1")
		hs.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
			return s.tls.connContext(limited.connContext(ctx, c))
		}
	}
	// Requests' contexts derive from base, which is cancelled when the
	// shutdown timeout cuts them off.
	base, cutOff := context.WithCancel(context.Background())
	defer cutOff()
	hs.BaseContext = func(net.Listener) context.Context { return base }
	served := make(chan error, 1)
	go func() {
		if s.tls != nil {
			served <- hs.ServeTLS(limited, "", "")
		} else {
			served <- hs.Serve(limited)
		}
	}()
	ext := s.runExtAuthz(gln)
	diag := s.runDiagnostics(dln)
	defer diag.stop()
	// closeHTTP cuts off what is left of the HTTP server's requests and
	// waits for their handlers.
	closeHTTP := func() {
		cutOff()
		hs.Close()
		if !handlers.wait(s.grace) {
			s.log.LogAttrs(context.WithoutCancel(ctx), slog.LevelError, "shutdown: request handlers still running after they were cut off",
				slog.Duration("waited", s.grace))
		}
	}
	select {
	case err := <-served:
		closeHTTP()
		ext.stop(context.Background(), true)
		return fmt.Errorf("server: %w", err)
	case <-ext.done:
		closeHTTP()
		<-served
		ext.stop(context.Background(), true)
		return fmt.Errorf("server: ext_authz: %w", ext.err)
	case err := <-diag.served:
		closeHTTP()
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
	// Shutdown does not wait for an HTTP/2 handler whose client reset its
	// stream: it may still be deciding.
	closeHTTP()
	if err != nil {
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

// handlerCount counts running request handlers, so that Run can wait for
// them. A WaitGroup does not do: a handler may start (Add from zero) while
// Run already waits, on a connection accepted just before Close.
type handlerCount struct {
	mu     sync.Mutex
	n      int
	drain  chan struct{} // closed when n reaches zero while wait waits
	closed bool          // set by wait: no handler starts after it
}

// track counts h's handlers. Once wait has been called, a request whose
// handler had not started yet (read just before its connection closed) is
// answered 503 instead: its decision could reach a decision log already
// closed.
func (c *handlerCount) track(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		c.n++
		c.mu.Unlock()
		defer func() {
			c.mu.Lock()
			if c.n--; c.n == 0 && c.drain != nil {
				close(c.drain)
				c.drain = nil
			}
			c.mu.Unlock()
		}()
		h.ServeHTTP(w, r)
	})
}

// wait lets no handler start any more, waits up to grace for none to be
// running, and reports whether none is. It is not for concurrent use.
func (c *handlerCount) wait(grace time.Duration) bool {
	c.mu.Lock()
	c.closed = true
	if c.n == 0 {
		c.mu.Unlock()
		return true
	}
	drain := make(chan struct{})
	c.drain = drain
	c.mu.Unlock()
	return closedWithin(drain, grace)
}

// closedWithin waits up to d for done to close, and reports whether it did.
func closedWithin(done <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// httpServer is an http.Server for h with the Limits' header size and
// timeouts, logging its errors (see httpErrorLog).
func (s *Server) httpServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		MaxHeaderBytes:    s.limits.MaxHeaderBytes,
		ReadHeaderTimeout: s.limits.ReadHeaderTimeout,
		ReadTimeout:       s.limits.ReadTimeout,
		WriteTimeout:      s.limits.WriteTimeout,
		IdleTimeout:       s.limits.IdleTimeout,
		ErrorLog:          log.New(s.httpErrors, "", 0),
		HTTP2: &http.HTTP2Config{MaxConcurrentStreams: MaxStreams,
			// What a client may send ahead of the handlers reading it: Go's
			// default, a megabyte a connection, would let bodies waiting for
			// the body budget pile up there instead.
			MaxReceiveBufferPerConnection: h2ReceiveWindow, MaxReceiveBufferPerStream: h2ReceiveWindow,
			// Frames of HTTP/2's least size: each connection keeps a
			// buffer of the largest it accepts (Go's default is 1 MiB).
			MaxReadFrameSize: 16 << 10},
	}
}

// h2ReceiveWindow is the HTTP/2 flow-control window of a connection and
// of each of its streams: HTTP/2's initial 64 KiB, the least Go allows.
const h2ReceiveWindow = 64 << 10

// httpErrorBurst and httpErrorInterval bound the lines the http.Servers'
// errors make: at most httpErrorBurst of each kind an interval as they
// come, then one line saying how many more there were. A client opening
// connections and sending anything but TLS fails a handshake each time.
const (
	httpErrorBurst    = 5
	httpErrorInterval = 10 * time.Second
)

// httpErrorLog turns what an http.Server logs into lines with a constant
// message: "tls handshake failed" (Info: a client's certificate or TLS
// version refused, a scanner; the remote address and the cause as
// attributes), "accept failed" (Error: the listener could not accept a
// connection, such as for want of file descriptors; no client can cause
// it, so clients' errors never crowd it out), and "http server error"
// (Warn) for the rest. Of each, at most httpErrorBurst lines an interval
// are logged; the rest are counted,
// and run logs their count at the interval's end (the same message, with
// "suppressed" and no remote or error). Safe for concurrent use; one
// serves every http.Server of a Server, so that the bound holds for them
// together.
type httpErrorLog struct {
	log *slog.Logger
	mu  sync.Mutex
	// kinds counts, for each of httpErrorKinds, the lines logged and
	// suppressed in the interval under way.
	kinds [3]struct{ logged, suppressed int }
}

// httpErrorKinds are the messages and levels of httpErrorLog.kinds.
var httpErrorKinds = [3]struct {
	msg   string
	level slog.Level
}{{"tls handshake failed", slog.LevelInfo}, {"http server error", slog.LevelWarn}, {"accept failed", slog.LevelError}}

func (l *httpErrorLog) Write(p []byte) (int, error) {
	line := strings.TrimSuffix(string(p), "\n")
	kind, attrs := 1, []slog.Attr{slog.String("error", line)}
	if rest, ok := strings.CutPrefix(line, "http: TLS handshake error from "); ok {
		remote, cause, _ := strings.Cut(rest, ": ")
		kind, attrs = 0, []slog.Attr{slog.String("remote", remote), slog.String("error", cause)}
	} else if strings.HasPrefix(line, "http: Accept error: ") {
		kind = 2
	}
	l.mu.Lock()
	k := &l.kinds[kind]
	if k.logged == httpErrorBurst {
		k.suppressed++
		l.mu.Unlock()
		return len(p), nil
	}
	k.logged++
	l.mu.Unlock()
	l.log.LogAttrs(context.Background(), httpErrorKinds[kind].level, httpErrorKinds[kind].msg, attrs...)
	return len(p), nil
}

// endInterval logs how many lines of each kind the interval under way
// suppressed, if any, and starts the next.
func (l *httpErrorLog) endInterval(every time.Duration) {
	l.mu.Lock()
	kinds := l.kinds
	l.kinds = [3]struct{ logged, suppressed int }{}
	l.mu.Unlock()
	for i, k := range kinds {
		if k.suppressed > 0 {
			l.log.LogAttrs(context.Background(), httpErrorKinds[i].level, httpErrorKinds[i].msg,
				slog.Int("suppressed", k.suppressed), slog.Duration("interval", every))
		}
	}
}

// run ends an interval every every, until stop is closed; then it ends
// the last one.
func (l *httpErrorLog) run(stop <-chan struct{}, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			l.endInterval(every)
		case <-stop:
			l.endInterval(every)
			return
		}
	}
}
