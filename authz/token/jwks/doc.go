// Package jwks serves an issuer's verification keys from a remote JSON Web
// Key Set: a jwks_url, or the jwks_uri of the issuer's OpenID Connect
// discovery document. A Manager is a token.KeySet; plug it into
// token.Issuer.Keys and run it.
//
// The rules it keeps (Verdict's "Token rules"):
//
//   - Cached. Lookup reads the current key set through an atomic pointer; a
//     known kid never waits on the network, however slow the provider is.
//   - Refreshed in the background. Run fetches the set at start and then
//     again when the provider's Cache-Control max-age (or Expires) says it
//     is due, kept within Options.MinRefresh and Options.MaxRefresh.
//     Conditional requests (If-None-Match) make an unchanged set cheap.
//   - Refreshed on an unknown kid, rate-limited and de-duplicated: all the
//     lookups that miss while a refresh is under way share it; a new
//     refresh starts only when the limiter (Options.UnknownKIDInterval,
//     Options.UnknownKIDBurst) allows, and a kid that a completed refresh
//     did not find is remembered for Options.NegativeTTL, so a flood of
//     random kids reaches the provider at the configured rate at most. The
//     lookup that waits for such a refresh waits at most
//     Options.MissTimeout; that is the only time a decision waits on a fetch.
//   - Kept when the key server is down. A failed refresh (network, status,
//     size, a document that is not a key set) changes nothing: the last
//     good keys keep serving, up to
//     Options.MaxStale after the provider last confirmed them; then
//     Lookup fails, and Fresh (token.FreshnessChecker) says so to a cache
//     of verified tokens without fetching anything. With
//     Options.PersistDir the last good set is written to disk and read at
//     start, so a cold start survives a provider outage.
//   - Revoked when the provider drops them. A key set that holds no usable
//     key ({"keys": []}, encryption keys only) is the provider's answer,
//     not an outage: the keys in service are revoked (and the persisted
//     set replaced), and every token of the issuer is refused until a set
//     with a usable key comes. The refresh still counts as failed.
//
// Keys are parsed with token.ParseJWKSLenient: one bad entry (a private or
// symmetric key, a weak or malformed key) is skipped and logged, and the
// issuer's other keys keep working. An entry without alg is bound to every
// algorithm of its key type that the issuer allows (token.Key.Algorithm
// empty); the Verifier enforces the issuer's allowlist and the key type.
//
// When a refresh drops a key (or changes the key behind a kid), the Manager
// calls Options.OnKeysRemoved after the new set is in place, so that tokens
// verified by the removed key can be forgotten at once (serve wires it to
// authz.Engine.ForgetKeys).
//
// Why not jwkset's HTTP storage or keyfunc: they refresh on a fixed
// interval and start their refresh goroutine in the constructor, and they
// neither persist the last good set, read Cache-Control, nor report removed
// keys. The parsing is still jwkset's, behind token.ParseJWKSLenient.
//
// The HTTP exchange (conditional GET, size and time bounds, redacted
// errors, the client that refuses https-to-http redirects), the backoff
// and the atomic file write are internal/httpfetch, internal/backoff and
// internal/atomicfile, shared with the remote bundle poller.
//
// Lifecycle: New validates options and starts nothing. Run blocks, owns
// every fetch, and returns only after all its work has stopped. Ready,
// Fresh, Status and Lookup are safe for concurrent use at any time.
package jwks
