package server

import (
	"cmp"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/token/jwks"
	"github.com/verdict-pdp/verdict/bundles"
	"github.com/verdict-pdp/verdict/internal/filewatch"
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
	DefaultMaxConnections    = 1024
	// MaxStreams is how many requests an HTTP/2 connection (gRPC calls on
	// the ext_authz listener included) carries at once (Go's and grpc's
	// default is 250).
	MaxStreams = 32
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
	// MaxConcurrentDecisions bounds the requests being decoded, decided
	// and answered at once, on every interface; one more waits up to a
	// second for a slot, then is answered 503 overloaded. Default
	// DefaultMaxConcurrentDecisions(): four per core, at least eight.
	MaxConcurrentDecisions int
	// MaxBodyBytesInFlight bounds the bytes of request bodies being read
	// and decoded at once, on every interface (ext_authz messages
	// included); a body reserves its
	// bytes as it reads them, and one that finds none free waits like a
	// decision (a body that has some already does not wait), then is
	// answered 503 overloaded. At least MaxBodyBytes.
	// Default DefaultMaxBodyBytesInFlight (64 MiB).
	MaxBodyBytesInFlight int64
	// MaxConnections bounds the connections each listener (Addr, and
	// ExtAuthzOptions.Addr) holds open; HTTP/2 connections carry at most
	// MaxStreams requests at once. At the bound the oldest connection
	// not yet served (its TLS handshake, HTTP/2 preface or first request's
	// headers not read yet) is closed to make room, else the connection
	// idle longest (a connection whose requests all wait for their client,
	// a body arriving or an answer not taken, or are health Watch streams
	// counts as idle, and one that never had a request answered goes
	// first); when every connection is deciding a request, a new one waits
	// to be accepted. The diagnostic listener is not bounded
	// (probes). Default 1024.
	MaxConnections int
}

// withDefaults refuses negative limits and gives every zero one its default.
func (l Limits) withDefaults() (Limits, error) {
	if l.MaxBodyBytes < 0 || l.MaxJSONDepth < 0 || l.MaxHeaderBytes < 0 || l.ReadHeaderTimeout < 0 ||
		l.ReadTimeout < 0 || l.WriteTimeout < 0 || l.IdleTimeout < 0 || l.ShutdownTimeout < 0 ||
		l.MaxConcurrentDecisions < 0 || l.MaxConnections < 0 || l.MaxBodyBytesInFlight < 0 {
		return l, fmt.Errorf("%w: negative limit", ErrOptions)
	}
	l.MaxBodyBytes = cmp.Or(l.MaxBodyBytes, DefaultMaxBodyBytes)
	l.MaxJSONDepth = cmp.Or(l.MaxJSONDepth, DefaultMaxJSONDepth)
	l.MaxHeaderBytes = cmp.Or(l.MaxHeaderBytes, DefaultMaxHeaderBytes)
	l.ReadHeaderTimeout = cmp.Or(l.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	l.ReadTimeout = cmp.Or(l.ReadTimeout, DefaultReadTimeout)
	l.WriteTimeout = cmp.Or(l.WriteTimeout, DefaultWriteTimeout)
	l.IdleTimeout = cmp.Or(l.IdleTimeout, DefaultIdleTimeout)
	l.ShutdownTimeout = cmp.Or(l.ShutdownTimeout, DefaultShutdownTimeout)
	l.MaxConcurrentDecisions = cmp.Or(l.MaxConcurrentDecisions, DefaultMaxConcurrentDecisions())
	l.MaxConnections = cmp.Or(l.MaxConnections, DefaultMaxConnections)
	l.MaxBodyBytesInFlight = cmp.Or(l.MaxBodyBytesInFlight, DefaultMaxBodyBytesInFlight)
	if l.MaxBodyBytesInFlight < l.MaxBodyBytes {
		return l, fmt.Errorf("%w: MaxBodyBytesInFlight (%d) is below MaxBodyBytes (%d): a body that large could never be read",
			ErrOptions, l.MaxBodyBytesInFlight, l.MaxBodyBytes)
	}
	return l, nil
}

// Options configures a Server. Every zero value means the documented
// default; only Engine is required.
type Options struct {
	// Engine answers decisions (required). One that can also pin a
	// snapshot (Pin() *authz.Pinned, as *authz.Engine can) decides every
	// item of an AuthZEN batch on one policy revision; a wrapper that hides
	// Pin decides each item on whatever serves at its turn.
	Engine Engine
	// Source, when set, is reported in /v1/status and metrics, and in
	// readiness when it has a Ready() error method.
	Source Source
	// KeySets are the remote issuers' key sets: the server is not ready
	// until each holds keys that are not stale, and reports them in
	// /v1/status and metrics. They are run elsewhere (cmd).
	KeySets []KeySet
	// Credentials, when set, reports the key, certificate and CA files kept
	// in service while serving (and reloaded elsewhere), for /v1/status and
	// metrics.
	Credentials func() []filewatch.Status
	// Addr is the listen address. Default "127.0.0.1:8181".
	Addr string
	// DiagnosticAddr, when set, is a second, plain-HTTP listener for
	// operators and probes: /health/live, /health/ready, /v1/status and
	// /metrics. Status and metrics are then served there only; health on
	// both (a kubelet probe cannot present a client certificate to an
	// mTLS-only Addr).
	DiagnosticAddr string
	// TLS, when set, serves HTTPS (and the ext_authz listener over TLS)
	// with the certificate and client CAs set on it last. With client certificates
	// verified by it, the mTLS peer is the caller of a /v1/decide request
	// whose body has no caller member ("caller": {} names none: anonymous;
	// on /v1/check the peer is the proxy, never the caller).
	TLS *TLS
	// TrustedProxies are the peer addresses whose forwarded caller
	// certificates are believed. None means none is.
	TrustedProxies []netip.Prefix
	// TrustBundle returns the CAs a forwarded caller certificate must chain
	// to (for client authentication) now; it is called for every forwarded
	// certificate, so that the bundle can be replaced while serving, and
	// a verification cached under one bundle is not believed under
	// another. Nil (or a nil pool) means forwarded certificates are
	// refused.
	TrustBundle func() *x509.CertPool
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
