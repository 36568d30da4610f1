// Package server is Verdict's HTTP front: it decodes requests with strict
// limits, asks an authz.Engine for decisions, and answers them.
//
// Routes (see Server.routes):
//
//	POST /v1/decide     a JSON question, a JSON decision (200 for allow and deny)
//	*    /v1/check      forward-auth for nginx, Caddy, Traefik and Envoy
//	GET  /health/live   200 while the process runs
//	GET  /health/ready  200 once a policy snapshot is loaded (and fresh)
//	GET  /v1/status     policy revision, load time, last reload error
//	GET  /metrics       Prometheus metrics from the server's own registry
//
// With Options.AuthZEN, also the AuthZEN 1.0 API (authzen.go):
//
//	POST /access/v1/evaluation             one evaluation, asserted subject
//	POST /access/v1/evaluations            a batch, with defaults and semantics
//	GET  /.well-known/authzen-configuration  the PDP metadata
//
// With Options.ExtAuthz, also Envoy's ext_authz API over gRPC on a second
// listener (extauthz.go): envoy.service.auth.v3.Authorization/Check, which
// asks /v1/check's question from a CheckRequest and answers a CheckResponse
// (never a gRPC error), and the standard grpc.health.v1.Health service,
// SERVING exactly when /health/ready answers 200.
//
// Failure semantics: every error is a deny. /v1/decide answers 200 with the
// decision for allow and deny (an invalid token or caller credential is a
// deny), 400 invalid_request for a malformed body, 413 too_large over the
// body limit, 405 for another method, 503 not_ready before the first policy
// loads and 500 policy_error when evaluation fails; every non-200 body is
// {"allow": false, "error": {"code", "message"}} plus the decision_id when a
// decision was made. Statuses are chosen in one function, answer.
//
// Caller identity: a verified mTLS peer certificate is the caller of a
// /v1/decide request whose body has no caller member (absent or null); a
// caller object with no credential ("caller": {}) says there is no caller
// (anonymous, input.caller.method "none"), so that a service asking for its
// own end users is not taken for them. A certificate asserted by someone else — the PEM
// caller.certificate of a /v1/decide body, or a forwarded-certificate header
// on /v1/check (Envoy's X-Forwarded-Client-Cert, or nginx's URL-escaped PEM
// in X-SSL-Client-Cert) — is believed only when the connection comes from a
// trusted proxy address AND the certificate chains to the caller trust
// bundle for client authentication. Otherwise the request is denied with a
// reason starting "caller:" and the policy is not evaluated: on /v1/decide
// that is a 200 deny decision (like an invalid token), on /v1/check a 403.
//
// A Server is built with New, serves with Run, and is safe for concurrent
// use. Decisions are written to an optional decision log without ever
// blocking a request. With Options.TracerProvider every decision is also an
// OpenTelemetry span, continuing the request's W3C trace context
// (tracing.go), and its log record names the trace.
package server
