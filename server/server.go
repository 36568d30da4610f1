package server

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/token/jwks"
	"github.com/verdict-pdp/verdict/bundles"
	"github.com/verdict-pdp/verdict/internal/oteltrace"
	"github.com/verdict-pdp/verdict/server/decisionlog"
)

// Defaults for Options and Limits fields left zero.
const (
	DefaultAddr              = "127.0.0.1:8181"
	DefaultMaxBodyBytes      = 64 << 10
	DefaultMaxJSONDepth      = 32
	DefaultMaxHeaderBytes    = 64 << 10
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 10 * time.Second
	DefaultWriteTimeout      = 15 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultShutdownTimeout   = 10 * time.Second
)

// ErrOptions is wrapped by New's errors about invalid options.
var ErrOptions = errors.New("server: invalid options")

// Engine decides requests and reports its policy state; *authz.Engine is
// one. Implementations must be safe for concurrent use.
type Engine interface {
	Decide(ctx context.Context, req authz.Request) (authz.Decision, error)
	Status() authz.Status
}

var _ Engine = (*authz.Engine)(nil)

// Source reports a policy source's state for /v1/status and metrics; the
// sources of bundles/local and bundles/remote are Sources. A Source that
// also has a Ready() error method (remote.Poller) takes part in readiness.
type Source interface {
	Status() bundles.Status
}

// KeySet is an issuer's remote key set as the server reports it;
// *jwks.Manager is one. It takes part in readiness (Ready), /v1/status and
// the verdict_jwks_* metrics (Status). Safe for concurrent use.
type KeySet interface {
	Ready() error
	Status() jwks.Status
}

var _ KeySet = (*jwks.Manager)(nil)

// DecisionLog receives one record per decision. Log must not block;
// *decisionlog.Logger is one. A DecisionLog that also has a Stats()
// decisionlog.Stats method has its counters exported as
// verdict_decision_log_* (see decisionLogCollector); one with only
// Dropped() uint64 has them exported as drops for buffer_full, and one
// with Truncated() uint64 as verdict_decision_log_truncated_total. Records
// carry the decision's input document when the engine keeps it
// (authz.Options.KeepInput).
type DecisionLog interface {
	Log(r decisionlog.Record) bool
}

var _ DecisionLog = (*decisionlog.Logger)(nil)

// Limits bounds what one request may cost. Every zero value means the
// documented default; the engine's evaluation timeout is the engine's own
// (authz.Options.EvalTimeout).
type Limits struct {
	// MaxBodyBytes bounds a request body; larger bodies answer 413. Default
	// 64 KiB.
	MaxBodyBytes int64
	// MaxJSONDepth bounds the nesting of a /v1/decide body (the top-level
	// object is depth 1). Default 32.
	MaxJSONDepth int
	// MaxHeaderBytes bounds the request line and headers. Default 64 KiB.
	MaxHeaderBytes int
	// ReadHeaderTimeout, ReadTimeout, WriteTimeout and IdleTimeout are the
	// http.Server timeouts. Defaults 5 s, 10 s, 15 s and 120 s.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	// ShutdownTimeout bounds how long Run waits for in-flight requests after
	// its context is done. Default 10 s.
	ShutdownTimeout time.Duration
}

// Options configures a Server. Every zero value means the documented
// default; only Engine is required.
type Options struct {
	// Engine answers decisions (required).
	Engine Engine
	// Source, when set, is reported in /v1/status and metrics, and in
	// readiness when it has a Ready() error method.
	Source Source
	// KeySets are the remote issuers' key sets: the server is not ready
	// until each holds keys that are not stale, and reports them in
	// /v1/status and metrics. They are run elsewhere (cmd).
	KeySets []KeySet
	// Addr is the listen address. Default "127.0.0.1:8181".
	Addr string
	// DiagnosticAddr, when set, is a second, plain-HTTP listener for
	// operators and probes: /health/live, /health/ready, /v1/status and
	// /metrics. Status and metrics are then served there only; health on
	// both (a kubelet probe cannot present a client certificate to an
	// mTLS-only Addr).
	DiagnosticAddr string
	// TLS, when set, serves HTTPS; see TLSConfig. With client certificates
	// verified by it, the mTLS peer is the caller of a /v1/decide request
	// that names none (on /v1/check the peer is the proxy, never the
	// caller).
	TLS *tls.Config
	// TrustedProxies are the peer addresses whose forwarded caller
	// certificates are believed. None means none is.
	TrustedProxies []netip.Prefix
	// TrustBundle holds the CAs a forwarded caller certificate must chain
	// to (for client authentication). Nil means forwarded certificates are
	// always refused.
	TrustBundle *x509.CertPool
	// XFCCHeader names the header from which a trusted proxy's forwarded
	// client certificate is read in Envoy's x-forwarded-client-cert format
	// (conventionally "X-Forwarded-Client-Cert"). Empty, the default, means
	// none is read.
	//
	// Name only a header that every proxy in front of Verdict overwrites
	// or strips: proxies relay what clients send (nginx's auth_request
	// passes every client header on), and certificates are public, so a
	// header the proxy leaves alone lets any client claim to be any
	// service.
	XFCCHeader string
	// EscapedCertHeader names the header from which a trusted proxy's
	// forwarded client certificate is read as URL-escaped PEM (nginx's
	// $ssl_client_escaped_cert; conventionally "X-SSL-Client-Cert"). Empty,
	// the default, means none is read. The same warning as XFCCHeader's
	// applies.
	EscapedCertHeader string
	// ActionHeader names the header from which /v1/check reads the action's
	// name (conventionally "X-Verdict-Action"). Empty, the default, means
	// none is read and policies name the action from method and path: set
	// it only when every proxy in front of Verdict overwrites (or strips)
	// that header, since proxies relay what clients send.
	ActionHeader string
	// ClientAddrHeader names the header from which /v1/check reads the
	// protected request's client address (input.context.remote_addr), from
	// trusted proxies only: "X-Forwarded-For" (the rightmost address that is
	// not a trusted proxy) or a single-address header such as "X-Real-Ip".
	// Empty, the default, means none is read. Name only a header your proxy
	// overwrites (nginx: proxy_set_header X-Forwarded-For
	// $proxy_add_x_forwarded_for, or X-Real-IP $remote_addr).
	ClientAddrHeader string
	// ExtAuthz, when its Addr is set, serves Envoy's ext_authz API over gRPC
	// on a second listener, through the same decision pipeline (metrics
	// with api "ext_authz", decision log). See ExtAuthzOptions.
	ExtAuthz ExtAuthzOptions
	// AuthZEN, when set, serves the AuthZEN 1.0 endpoints; nil leaves them
	// off (404). See AuthZEN.
	AuthZEN *AuthZEN
	// Explain lets POST /v1/decide?explain=true add an explanation (the
	// rules that produced the decision) to the answer. Off by default: an
	// explanation shows the policy's inner workings and costs a traced
	// evaluation.
	Explain bool
	// DecisionLog receives every decision; nil logs none.
	DecisionLog DecisionLog
	// Shadow, when set, is offered every decision made by policy (the
	// engine must keep inputs: authz.Options.KeepInput); it logs the
	// records it takes. See NewShadow.
	Shadow *Shadow
	// ReloadObserver, when set, is the policy source's observer; the
	// server serves its reload-duration histogram on /metrics.
	ReloadObserver *ReloadObserver
	// Limits bounds request sizes and times.
	Limits Limits
	// Build describes the running binary, for verdict_build_info and
	// /v1/status; zero fields are left out of status.
	Build BuildInfo
	// Registry is where the server registers its metrics, which /metrics
	// serves; nil means a new registry of its own (never the global one),
	// with the Go and process collectors.
	Registry *prometheus.Registry
	// Logger receives server logs; nil discards them.
	Logger *slog.Logger
	// Now is the clock for decision-log times and certificate checks; nil
	// means time.Now.
	Now func() time.Time
	// TracerProvider, when set, makes every decision a span
	// (verdict.decide, see SpanDecide) whose parent is the W3C trace
	// context of the incoming request, and puts its trace ID in the
	// decision log. Give the engine the same provider for its child spans
	// (authz.Options.TracerProvider). Nil, or a no-op provider, traces
	// nothing and costs nothing.
	TracerProvider trace.TracerProvider
}

// Server is Verdict's HTTP front. Build it with New; it is safe for
// concurrent use. Run serves it until its context is done.
type Server struct {
	engine  Engine
	source  Source
	keySets []KeySet
	dlog    DecisionLog
	shadow  *Shadow // nil when none
	build   BuildInfo
	reloads *ReloadObserver
	log     *slog.Logger
	now     func() time.Time
	limits  Limits
	addr    string
	tls     *tls.Config
	metrics *metrics
	handler http.Handler

	trusted      []netip.Prefix
	trustBundle  *x509.CertPool
	xfccHeader   string
	escHeader    string
	actionHeader string
	clientHeader string
	explain      bool
	certs        *certCache
	tracer       trace.Tracer   // nil when not tracing
	authzen      *authzenConfig // nil when the AuthZEN endpoints are off

	diagAddr string // diagnostic listen address; "" for none
	diag     http.Handler

	extAddr    string         // ext_authz gRPC listen address; "" for none
	extTrusted []netip.Prefix // ext_authz peers whose source attributes are believed
	extNames   []extHeader    // request headers the ext_authz front reads

	bufs    sync.Pool // *[]byte, request bodies and answers
	readers jsonReaders

	mu  sync.Mutex
	ln  net.Listener
	gln net.Listener // ext_authz; nil when not served
	dln net.Listener // diagnostics; nil when not served
}

// New validates opts and builds a Server. It starts nothing and does not
// listen.
func New(opts Options) (*Server, error) {
	if opts.Engine == nil {
		return nil, fmt.Errorf("%w: Engine is required", ErrOptions)
	}
	l := opts.Limits
	if l.MaxBodyBytes < 0 || l.MaxJSONDepth < 0 || l.MaxHeaderBytes < 0 || l.ReadHeaderTimeout < 0 ||
		l.ReadTimeout < 0 || l.WriteTimeout < 0 || l.IdleTimeout < 0 || l.ShutdownTimeout < 0 {
		return nil, fmt.Errorf("%w: negative limit", ErrOptions)
	}
	l.MaxBodyBytes = cmp.Or(l.MaxBodyBytes, DefaultMaxBodyBytes)
	l.MaxJSONDepth = cmp.Or(l.MaxJSONDepth, DefaultMaxJSONDepth)
	l.MaxHeaderBytes = cmp.Or(l.MaxHeaderBytes, DefaultMaxHeaderBytes)
	l.ReadHeaderTimeout = cmp.Or(l.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	l.ReadTimeout = cmp.Or(l.ReadTimeout, DefaultReadTimeout)
	l.WriteTimeout = cmp.Or(l.WriteTimeout, DefaultWriteTimeout)
	l.IdleTimeout = cmp.Or(l.IdleTimeout, DefaultIdleTimeout)
	l.ShutdownTimeout = cmp.Or(l.ShutdownTimeout, DefaultShutdownTimeout)

	s := &Server{
		engine:      opts.Engine,
		source:      opts.Source,
		keySets:     slices.Clone(opts.KeySets),
		dlog:        opts.DecisionLog,
		shadow:      opts.Shadow,
		build:       opts.Build,
		reloads:     opts.ReloadObserver,
		log:         opts.Logger,
		now:         opts.Now,
		limits:      l,
		addr:        cmp.Or(opts.Addr, DefaultAddr),
		diagAddr:    opts.DiagnosticAddr,
		tls:         opts.TLS,
		trusted:     make([]netip.Prefix, len(opts.TrustedProxies)),
		trustBundle: opts.TrustBundle,
		explain:     opts.Explain,
		certs:       newCertCache(certCacheSize),
		tracer:      oteltrace.Tracer(opts.TracerProvider, TracerName),
	}
	if opts.XFCCHeader != "" {
		s.xfccHeader = http.CanonicalHeaderKey(opts.XFCCHeader)
	}
	if opts.EscapedCertHeader != "" {
		s.escHeader = http.CanonicalHeaderKey(opts.EscapedCertHeader)
	}
	if opts.ActionHeader != "" {
		s.actionHeader = http.CanonicalHeaderKey(opts.ActionHeader)
	}
	if opts.ClientAddrHeader != "" {
		s.clientHeader = http.CanonicalHeaderKey(opts.ClientAddrHeader)
	}
	for i, p := range opts.TrustedProxies {
		if !p.IsValid() {
			return nil, fmt.Errorf("%w: invalid trusted proxy prefix %v", ErrOptions, p)
		}
		s.trusted[i] = p.Masked()
	}
	s.extAddr = opts.ExtAuthz.Addr
	for _, p := range opts.ExtAuthz.TrustedPeers {
		if !p.IsValid() {
			return nil, fmt.Errorf("%w: invalid ext_authz trusted peer prefix %v", ErrOptions, p)
		}
		s.extTrusted = append(s.extTrusted, p.Masked())
	}
	s.extNames = extAuthzHeaders(s.actionHeader)
	if s.xfccHeader != "" && s.xfccHeader == s.escHeader {
		return nil, fmt.Errorf("%w: XFCCHeader and EscapedCertHeader must differ", ErrOptions)
	}
	if opts.AuthZEN != nil {
		var err error
		if s.authzen, err = newAuthZEN(opts.AuthZEN); err != nil {
			return nil, err
		}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.bufs.New = func() any { b := make([]byte, 0, 4096); return &b }
	m, err := newMetrics(opts.Registry, s)
	if err != nil {
		return nil, fmt.Errorf("server: metrics: %w", err)
	}
	s.metrics = m
	s.handler = s.routes()
	if s.diagAddr != "" {
		s.diag = s.diagnosticRoutes()
	}
	return s, nil
}

// routes is the one place where routes are declared. Every route is wrapped
// by the same instrumentation, labelled with a constant route name and the
// statuses it answers (their counters exist from the start; another status,
// a panic's 500 say, gets its counter when it first happens). Patterns
// without a method catch the other methods and answer 405 in the JSON error
// shape; "/" answers 404 in it.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	handle := func(pattern, route string, h http.HandlerFunc, codes ...int) {
		mux.Handle(pattern, s.instrument(route, h, codes))
	}
	const ok, bad, unauth, forbidden, tooLarge, media, fail, unready = 200, 400, 401, 403, 413, 415, 500, 503
	getOnly := s.methodNotAllowed(http.MethodGet, http.MethodHead)
	handle("POST /v1/decide", "decide", s.handleDecide, ok, bad, tooLarge, media, fail, unready)
	handle("/v1/decide", "decide", s.methodNotAllowed(http.MethodPost), http.StatusMethodNotAllowed)
	handle("/v1/check", "check", s.handleCheck, ok, bad, unauth, forbidden, fail, unready)
	handle("/v1/check/", "check", s.handleCheck, ok, bad, unauth, forbidden, fail, unready) // Envoy ext_authz: path_prefix + the original path
	// Status and metrics move to the diagnostic listener when there is one.
	s.operatorRoutes(handle, s.diagAddr == "")
	if s.authzen != nil {
		postOnly := echoRequestID(s.methodNotAllowed(http.MethodPost))
		handle("POST "+authzenEvaluationPath, "authzen_evaluation", echoRequestID(s.handleAuthZENEvaluation),
			ok, bad, forbidden, tooLarge, media, fail, unready)
		handle(authzenEvaluationPath, "authzen_evaluation", postOnly, http.StatusMethodNotAllowed)
		handle("POST "+authzenEvaluationsPath, "authzen_evaluations", echoRequestID(s.handleAuthZENEvaluations),
			ok, bad, forbidden, tooLarge, media, unready)
		handle(authzenEvaluationsPath, "authzen_evaluations", postOnly, http.StatusMethodNotAllowed)
		handle("GET "+authzenMetadataPath, "authzen_metadata", echoRequestID(s.handleAuthZENMetadata), ok, bad)
		handle(authzenMetadataPath, "authzen_metadata", echoRequestID(getOnly), http.StatusMethodNotAllowed)
	}
	handle("/", "not_found", s.notFound, http.StatusNotFound)
	return mux
}

// Handler returns the server's routes as one handler, instrumented, for
// tests and for embedding in another server. It does not apply the
// http.Server limits (header size, timeouts) that Run sets.
func (s *Server) Handler() http.Handler { return s.handler }

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
	scheme := "http"
	if s.tls != nil {
		scheme = "https"
	}
	s.log.LogAttrs(context.Background(), slog.LevelInfo, "listening",
		slog.String("addr", ln.Addr().String()), slog.String("scheme", scheme))
	if gln != nil {
		scheme := "grpc"
		if s.tls != nil {
			scheme = "grpcs"
		}
		s.log.LogAttrs(context.Background(), slog.LevelInfo, "listening",
			slog.String("addr", gln.Addr().String()), slog.String("scheme", scheme))
	}
	if dln != nil {
		s.log.LogAttrs(context.Background(), slog.LevelInfo, "listening",
			slog.String("addr", dln.Addr().String()), slog.String("scheme", "http"), slog.String("serves", "diagnostics"))
	}
	return ln.Addr(), nil
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
	hs := &http.Server{
		Handler:           s.handler,
		TLSConfig:         s.tls.Clone(), // http.Server adds its ALPN protocols to the one it is given
		MaxHeaderBytes:    s.limits.MaxHeaderBytes,
		ReadHeaderTimeout: s.limits.ReadHeaderTimeout,
		ReadTimeout:       s.limits.ReadTimeout,
		WriteTimeout:      s.limits.WriteTimeout,
		IdleTimeout:       s.limits.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
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
