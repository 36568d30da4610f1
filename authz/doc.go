// Package authz is Verdict's decision engine: it verifies the bearer token,
// works out which service is calling, builds one input document, evaluates
// the current Rego policy snapshot and answers allow or deny, with reasons.
//
// An Engine is built once with New and shared by every goroutine. Policies
// reach it as bundles.Snapshot values through Load (the engine is a
// bundles.Sink), which parses, compiles and type-checks the whole set against
// the input document's JSON Schema off the hot path and swaps it in
// atomically; a snapshot that fails never replaces a working one. Each call
// to Decide reads the current snapshot once, so a decision is always
// evaluated against exactly one revision, which it names.
//
// Every error is a deny: Decide always returns a Decision with Allow false
// when it returns an error, and the error is a *Refusal of one of the
// categories ErrToken, ErrCaller, ErrInvalidRequest, ErrNotReady or
// ErrPolicy, so callers can map it to a status with errors.Is (HTTPStatus
// does) and read its code and detail without parsing a string. Deny builds
// the same decision for a request refused before it reaches the engine.
//
// Tracing is the embedder's choice: with Options.TracerProvider, Decide
// records its token verifications and its policy answer as OpenTelemetry
// spans (trace.go); the package imports OpenTelemetry's API only, never its
// SDK or an exporter, and without a provider it does no tracing work.
//
// The input document every policy sees as `input`:
//
//	subject   {authenticated, method: "token", id, issuer, claims}   (from the bearer token)
//	          {authenticated, method: "asserted", type, id, properties} (named by a trusted AuthZEN client)
//	caller    {authenticated, id, method, spiffe_id, certificate, claims}
//	          method: mtls | forwarded_cert | token | mesh | none
//	action    {name, method, path, segments, properties}
//	resource  free-form object ({} when none)
//	context   {time, request_id, remote_addr, attributes}
//
// Fields are absent when unknown, never null. See input.schema.json.
package authz
