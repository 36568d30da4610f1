package server

import (
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/verdict-pdp/verdict/authz/token"
)

// apiMetrics are one api's decision counters and latency, created up front.
type apiMetrics struct {
	allow, deny, errored prometheus.Counter
	duration             prometheus.Observer
}

// newAPIMetrics returns a's decision series.
func (m *metrics) newAPIMetrics(a api) *apiMetrics {
	return &apiMetrics{
		allow:    m.decisions.WithLabelValues(string(a), "allow"),
		deny:     m.decisions.WithLabelValues(string(a), "deny"),
		errored:  m.decisions.WithLabelValues(string(a), "error"),
		duration: m.decisionDuration.WithLabelValues(string(a)),
	}
}

// forAPI returns a's decision series: made up front for a served
// interface, and on first use for another (its handler called directly, as
// by an embedder or a test).
func (m *metrics) forAPI(a api) *apiMetrics {
	l := m.byAPI[a]
	l.once.Do(func() { l.m = m.newAPIMetrics(a) })
	return l.m
}

// lazyAPIMetrics is one interface's decision series, made once.
type lazyAPIMetrics struct {
	once sync.Once
	m    *apiMetrics
}

// metrics are the server's Prometheus metrics, in its own registry.
type metrics struct {
	reg   *prometheus.Registry
	byAPI map[api]*lazyAPIMetrics // every interface's; the map is read-only after newMetrics
	// decisions and decisionDuration are the vectors byAPI's series come
	// from, for an interface used without being served (forAPI).
	decisions        *prometheus.CounterVec
	decisionDuration *prometheus.HistogramVec
	tokens           map[string]prometheus.Counter // read-only after newMetrics

	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec
	// shed counts requests answered 503 overloaded, by interface.
	shed *prometheus.CounterVec
}

func newMetrics(reg *prometheus.Registry, s *Server) (*metrics, error) {
	if reg == nil {
		reg = prometheus.NewRegistry()
		if err := reg.Register(collectors.NewGoCollector()); err != nil {
			return nil, err
		}
		if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
			return nil, err
		}
	}
	decisions := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "verdict_decisions_total",
		Help: "Decisions answered, by interface (decide, check, authzen, ext_authz) and result: allow, deny (including rejected credentials), or error (no policy, evaluation error, invalid request).",
	}, []string{"api", "result"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "verdict_decision_duration_seconds",
		Help:    "Time the engine took per decision (token verification and policy evaluation), by interface.",
		Buckets: []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
	}, []string{"api"})
	tokens := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "verdict_token_failures_total",
		Help: "Bearer and service tokens refused, by reason.",
	}, []string{"reason"})
	m := &metrics{
		reg:    reg,
		byAPI:  make(map[api]*lazyAPIMetrics, len(apis)),
		tokens: make(map[string]prometheus.Counter, len(token.Reasons())),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "verdict_http_requests_total",
			Help: "HTTP requests answered, by route and status code.",
		}, []string{"route", "code"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "verdict_http_request_duration_seconds",
			Help:    "HTTP request handling time, by route.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"route"}),
		shed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "verdict_decisions_shed_total",
			Help: "Requests answered 503 overloaded (no decision slot freed within a second: limits.max_concurrent_decisions; or no room for their body: limits.max_body_bytes_in_flight), by interface.",
		}, []string{"api"}),
	}
	// The series of the interfaces served exist from the start (at 0); an
	// interface that is off has none.
	m.decisions, m.decisionDuration = decisions, duration
	for _, a := range apis {
		m.byAPI[a] = &lazyAPIMetrics{}
		if a == apiAuthZEN && s.authzen == nil || a == apiExtAuthz && s.extAddr == "" {
			continue
		}
		m.forAPI(a)
	}
	for _, a := range apis {
		if a == apiAuthZEN && s.authzen == nil || a == apiExtAuthz && s.extAddr == "" {
			continue
		}
		m.shed.WithLabelValues(string(a)) // at 0 from the start
	}
	for _, r := range token.Reasons() { // the closed set of token.Reason's names
		m.tokens[r] = tokens.WithLabelValues(r)
	}
	reloads := func() (ok, failed uint64) {
		if s.source != nil {
			st := s.source.Status()
			return st.Reloads, st.ReloadErrors
		}
		st := s.engine.Status()
		return st.Loads, st.LoadFailures
	}
	if s.reloads != nil {
		if err := reg.Register(s.reloads.vec); err != nil {
			return nil, err
		}
	}
	if err := reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "verdict_build_info",
		Help: "Always 1; its labels say which build is running: version, revision (VCS commit) and goversion.",
		ConstLabels: prometheus.Labels{"version": s.build.Version, "revision": s.build.Revision,
			"goversion": s.build.GoVersion},
	}, func() float64 { return 1 })); err != nil {
		return nil, err
	}
	if sh := s.shadow; sh != nil {
		for o := range numShadowOutcomes {
			if err := reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name:        "verdict_shadow_decisions_total",
				Help:        "Decisions the shadow policy was sampled for, by outcome: same, allow_to_deny, deny_to_allow, error (the shadow failed), skipped (queue full, shadow not ready, shutdown, or the live decision cut short).",
				ConstLabels: prometheus.Labels{"outcome": o.String()},
			}, func() float64 { return float64(sh.Count(o)) })); err != nil {
				return nil, err
			}
		}
	}
	for _, c := range []prometheus.Collector{
		decisions, duration, tokens, m.shed, &keySetCollector{sets: s.keySets}, &credentialCollector{status: s.credentials}, m.httpRequests, m.httpDuration,
		&decisionLogCollector{dlog: s.dlog}, &cacheCollector{engine: s.engine},
		&policyCollector{engine: s.engine, source: s.source},
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "verdict_policy_reloads_total",
			Help: "Policy snapshots accepted (loaded and swapped in).",
		}, func() float64 { ok, _ := reloads(); return float64(ok) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "verdict_policy_reload_errors_total",
			Help: "Distinct policy reload failures (read, fetch, verify or compile; a retry that fails the same way is not counted again); the last good policy kept serving.",
		}, func() float64 { _, failed := reloads(); return float64(failed) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "verdict_http_connections_open",
			Help: "Connections open on the listen address (limits.max_connections bounds them).",
		}, listenerValue(&s.conns, (*limitListener).open)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "verdict_request_body_bytes_reserved",
			Help: "Bytes of request bodies being read or decoded now (limits.max_body_bytes_in_flight bounds them).",
		}, func() float64 { return float64(s.admission.bodies.Used()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "verdict_http_connections_idle_closed_total",
			Help: "Connections closed to make room for a new one at limits.max_connections: the oldest not yet served, else one whose requests all wait for their bodies, else the one idle longest.",
		}, listenerValue(&s.conns, (*limitListener).closedToMakeRoom)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "verdict_ext_authz_connections_open",
			Help: "Connections open on the ext_authz gRPC listener (limits.max_connections bounds them).",
		}, listenerValue(&s.extConns, (*limitListener).open)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "verdict_ext_authz_connections_closed_total",
			Help: "Connections of the ext_authz gRPC listener closed to make room for a new one at limits.max_connections: the oldest not yet served, else one whose calls all wait for their messages, else the one idle longest (a call sent on that one just then fails).",
		}, listenerValue(&s.extConns, (*limitListener).closedToMakeRoom)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "verdict_evaluator_fallbacks_total",
			Help: "Evaluations the compiled evaluator left to OPA's topdown evaluator (an evaluation error, which topdown then reports or not, or a data lookup only OPA's store resolves).",
		}, func() float64 { return float64(s.engine.Status().EvaluatorFallbacks) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "verdict_evaluations_heap_stopped_total",
			Help: "Evaluations stopped because the process's live heap passed limits.eval_heap_limit while they ran (their decisions are 500 policy_error).",
		}, func() float64 { return float64(s.engine.Status().HeapStops) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "verdict_policy_ready",
			Help: "1 once a policy snapshot is loaded.",
		}, func() float64 { return b2f(s.engine.Status().Ready) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "verdict_policy_last_reload_ok",
			Help: "1 when the last policy reload attempt succeeded (or none failed since the last success).",
		}, func() float64 {
			if s.source != nil {
				return b2f(s.source.Status().LastError == "")
			}
			return b2f(s.engine.Status().LastError == "")
		}),
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// tokenFailure counts a refused token; reason is one of token.Reasons().
func (m *metrics) tokenFailure(reason string) {
	c, ok := m.tokens[reason]
	if !ok {
		c = m.tokens["invalid"]
	}
	c.Inc()
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// instrument wraps h with the instrumentation every route shares: request
// count by route and status, handling time by route, a recovery that
// turns a panic into a 500 in the error shape (never a dead process), and,
// when the server traces, the request's W3C trace context in its context.
//
// The counters of expected, the statuses the route answers, are created up
// front, so that the hot path does no label lookup and a dashboard sees
// zeros rather than gaps; no series is made for a status the route cannot
// answer.
func (s *Server) instrument(route string, h http.HandlerFunc, expected []int) http.Handler {
	dur := s.metrics.httpDuration.WithLabelValues(route)
	codes := make(map[int]prometheus.Counter, len(expected))
	for _, c := range expected {
		codes[c] = s.metrics.httpRequests.WithLabelValues(route, strconv.Itoa(c))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		if s.tracer != nil {
			r = continueTrace(r)
		}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.LogAttrs(r.Context(), slog.LevelError, "handler panic",
					slog.String("route", route), slog.String("panic", fmt.Sprint(p)))
				if sw.code == 0 {
					s.writeError(sw, http.StatusInternalServerError, CodePolicyError, "internal error", "")
				}
			}
			code := sw.code
			if code == 0 {
				code = http.StatusOK
			}
			c, ok := codes[code]
			if !ok {
				c = s.metrics.httpRequests.WithLabelValues(route, strconv.Itoa(code))
			}
			c.Inc()
			dur.Observe(time.Since(start).Seconds())
		}()
		if !s.peerStillTrusted(sw, r) {
			return
		}
		h(sw, r)
	})
}

// statusWriter records the status a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush passes through to the underlying writer when it can flush.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// keySetCollector exports the remote key sets' Status at every scrape,
// labelled by issuer (a closed set: the configured issuers) and, for
// refreshes, by cause (schedule, unknown_kid).
type keySetCollector struct{ sets []KeySet }

var (
	jwksRefreshes = prometheus.NewDesc("verdict_jwks_refreshes_total",
		"Remote JWKS refreshes that reached the provider, by issuer and cause (schedule: first fetch, schedule and retries; unknown_kid: asked for by a token's unknown kid).",
		[]string{"issuer", "cause"}, nil)
	jwksRefreshErrors = prometheus.NewDesc("verdict_jwks_refresh_errors_total",
		"Remote JWKS refreshes that failed (the last good keys kept serving), by issuer and cause.",
		[]string{"issuer", "cause"}, nil)
	jwksRateLimited = prometheus.NewDesc("verdict_jwks_unknown_kid_rate_limited_total",
		"Unknown-kid lookups that did not refresh because the issuer's refresh rate limit was spent.",
		[]string{"issuer"}, nil)
	jwksAge = prometheus.NewDesc("verdict_jwks_key_set_age_seconds",
		"Time since the provider last confirmed the serving key set (absent before any).",
		[]string{"issuer"}, nil)
	jwksLastRefresh = prometheus.NewDesc("verdict_jwks_last_refresh_timestamp_seconds",
		"Unix time of the last successful refresh (absent before any).",
		[]string{"issuer"}, nil)
	jwksKeys = prometheus.NewDesc("verdict_jwks_keys",
		"Keys in the serving key set.",
		[]string{"issuer"}, nil)
	jwksReady = prometheus.NewDesc("verdict_jwks_ready",
		"1 when the issuer's key set is held and not stale.",
		[]string{"issuer"}, nil)
	jwksLastOK = prometheus.NewDesc("verdict_jwks_last_refresh_ok",
		"1 when the issuer's last refresh succeeded.",
		[]string{"issuer"}, nil)
)

func (c *keySetCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{jwksRefreshes, jwksRefreshErrors, jwksRateLimited, jwksAge,
		jwksLastRefresh, jwksKeys, jwksReady, jwksLastOK} {
		ch <- d
	}
}

func (c *keySetCollector) Collect(ch chan<- prometheus.Metric) {
	for _, ks := range c.sets {
		st := ks.Status()
		iss := st.Issuer
		ch <- prometheus.MustNewConstMetric(jwksRefreshes, prometheus.CounterValue, float64(st.Refreshes.Schedule), iss, "schedule")
		ch <- prometheus.MustNewConstMetric(jwksRefreshes, prometheus.CounterValue, float64(st.Refreshes.UnknownKID), iss, "unknown_kid")
		ch <- prometheus.MustNewConstMetric(jwksRefreshErrors, prometheus.CounterValue, float64(st.RefreshErrors.Schedule), iss, "schedule")
		ch <- prometheus.MustNewConstMetric(jwksRefreshErrors, prometheus.CounterValue, float64(st.RefreshErrors.UnknownKID), iss, "unknown_kid")
		ch <- prometheus.MustNewConstMetric(jwksRateLimited, prometheus.CounterValue, float64(st.RateLimited), iss)
		ch <- prometheus.MustNewConstMetric(jwksKeys, prometheus.GaugeValue, float64(len(st.KeyIDs)), iss)
		ch <- prometheus.MustNewConstMetric(jwksReady, prometheus.GaugeValue, b2f(st.Ready), iss)
		ch <- prometheus.MustNewConstMetric(jwksLastOK, prometheus.GaugeValue, b2f(st.LastError == ""), iss)
		if !st.ConfirmedAt.IsZero() {
			ch <- prometheus.MustNewConstMetric(jwksAge, prometheus.GaugeValue, st.Age.Seconds(), iss)
		}
		if !st.LastSuccess.IsZero() {
			ch <- prometheus.MustNewConstMetric(jwksLastRefresh, prometheus.GaugeValue, float64(st.LastSuccess.UnixNano())/1e9, iss)
		}
	}
}

// listenerValue reads a value of the listener l points to once Run serves
// it, 0 before.
func listenerValue(l *atomic.Pointer[limitListener], value func(*limitListener) int) func() float64 {
	return func() float64 {
		if ll := l.Load(); ll != nil {
			return float64(value(ll))
		}
		return 0
	}
}
