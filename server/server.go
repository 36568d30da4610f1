package server

import (
	"cmp"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/verdict-pdp/verdict/internal/filewatch"
	"github.com/verdict-pdp/verdict/internal/oteltrace"
)

// Server is Verdict's HTTP front. Build it with New; it is safe for
// concurrent use. Run serves it until its context is done.
type Server struct {
	engine      Engine
	source      Source
	keySets     []KeySet
	credentials func() []filewatch.Status
	dlog        DecisionLog
	shadow      *Shadow // nil when none
	build       BuildInfo
	reloads     *ReloadObserver
	log         *slog.Logger
	now         func() time.Time
	limits      Limits
	// grace is how long Run waits for cut-off handlers (handlerGrace).
	grace time.Duration
	// watchLifetime is how long a health Watch lasts at most
	// (watchLifetime).
	watchLifetime time.Duration
	addr          string
	tls           *TLS
	metrics       *metrics
	handler       http.Handler

	trusted         []netip.Prefix
	trustBundleFunc func() *x509.CertPool
	xfccHeader      string
	escHeader       string
	actionHeader    string
	clientHeader    string
	explain         bool
	certs           *certCache
	admission       *admission                    // decision slots (Limits.MaxConcurrentDecisions)
	conns           atomic.Pointer[limitListener] // addr's, once Run serves it
	extConns        atomic.Pointer[limitListener] // the ext_authz listener's, once Run serves it
	tracer          trace.Tracer                  // nil when not tracing
	authzen         *authzenConfig                // nil when the AuthZEN endpoints are off

	diagAddr string // diagnostic listen address; "" for none
	diag     http.Handler

	extAddr    string         // ext_authz gRPC listen address; "" for none
	extTrusted []netip.Prefix // ext_authz peers whose source attributes are believed
	extNames   extHeaderNames // request headers the ext_authz front reads

	// httpErrors logs what the http.Servers report, httpErrorBurst lines
	// of a kind every httpErrorEvery (httpErrorInterval) at most.
	httpErrors     *httpErrorLog
	httpErrorEvery time.Duration

	bufs    sync.Pool // *[]byte, answers
	probes  sync.Pool // *[bodyProbe]byte, the first bytes of request bodies
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
	l, err := opts.Limits.withDefaults()
	if err != nil {
		return nil, err
	}

	s := &Server{
		grace:           handlerGrace,
		watchLifetime:   watchLifetime,
		httpErrorEvery:  httpErrorInterval,
		engine:          opts.Engine,
		source:          opts.Source,
		keySets:         slices.Clone(opts.KeySets),
		credentials:     opts.Credentials,
		dlog:            opts.DecisionLog,
		shadow:          opts.Shadow,
		build:           opts.Build,
		reloads:         opts.ReloadObserver,
		log:             opts.Logger,
		now:             opts.Now,
		limits:          l,
		addr:            cmp.Or(opts.Addr, DefaultAddr),
		diagAddr:        opts.DiagnosticAddr,
		tls:             opts.TLS,
		trusted:         make([]netip.Prefix, len(opts.TrustedProxies)),
		trustBundleFunc: opts.TrustBundle,
		explain:         opts.Explain,
		certs:           newCertCache(certCacheSize),
		admission:       newAdmission(l.MaxConcurrentDecisions, l.MaxBodyBytesInFlight),
		tracer:          oteltrace.Tracer(opts.TracerProvider, TracerName),
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
	s.httpErrors = &httpErrorLog{log: s.log}
	s.bufs.New = func() any { b := make([]byte, 0, 4096); return &b }
	s.probes.New = func() any { return new([bodyProbe]byte) }
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
