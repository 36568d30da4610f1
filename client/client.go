// Package client is the Go client for services that ask a Verdict server
// for decisions over HTTP (POST /v1/decide). It has no dependency on OPA or
// on the engine: it speaks the server's JSON, with types of its own that
// mirror the wire format.
//
// A Client is built once with New and shared: it is safe for concurrent
// use and reuses connections. Every error is a deny: when Decide returns an
// error, its Decision has Allow false and a reason saying why, so a caller
// that checks only Allow fails closed. Decide retries only what is safe to
// retry: a connection that failed before any answer, and a server that is
// not ready yet, overloaded, or without the keys of a token's issuer (503:
// an outage), or that turns the request away (429), within the call's
// deadline; a policy error, an invalid request or an unexpected answer (a
// 401, 403 or 404 from something in front of the server) is never
// retried. A retry waits at least as
// long as the server's Retry-After asks, and is not made when that wait
// would end past the deadline: the error comes back at once instead.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	jsonv2 "github.com/go-json-experiment/json"

	"github.com/verdict-pdp/verdict/internal/backoff"
	"github.com/verdict-pdp/verdict/internal/httpfetch"
)

// Defaults for Options fields left zero.
const (
	DefaultTimeout    = 2 * time.Second
	DefaultRetries    = 2
	DefaultRetryDelay = 50 * time.Millisecond
	// MaxAnswerBytes bounds an answer read from the server.
	MaxAnswerBytes = 1 << 20
)

// Errors of Decide. Each wraps the cause; a decision that came with one of
// them denies.
var (
	// ErrOptions is wrapped by New's errors about invalid options.
	ErrOptions = errors.New("client: invalid options")
	// ErrUnavailable: the server could not be reached, did not answer in
	// time, was not ready (503) or turned the request away (429) after
	// the retries.
	ErrUnavailable = errors.New("client: decision service unavailable")
	// ErrInvalidRequest: the server refused the request as malformed (400,
	// 413 or 415, what /v1/decide answers a body it refuses), or the
	// client could not build it.
	ErrInvalidRequest = errors.New("client: invalid request")
	// ErrPolicy: the server could not evaluate the policy (500, or another
	// 5xx than 503).
	ErrPolicy = errors.New("client: policy error")
	// ErrProtocol: the answer was not a decision the client understands: a
	// 200 not in the server's shape, a redirect, or a 4xx other than those
	// above (401 or 403 from a gateway refusing Options.Header's
	// credentials, 404 from a base URL with a wrong path, 405): a
	// configuration error, not the request's fault.
	ErrProtocol = errors.New("client: unexpected answer")
)

// Options configures a Client. Every zero value means the documented
// default; only URL is required.
type Options struct {
	// URL is the server's base URL, e.g. "http://127.0.0.1:8181" or
	// "https://pdp.example.com/verdict" (required): an http or https URL
	// with a host, and without a query or a fragment. The client asks
	// its path followed by /v1/decide (dot segments resolved).
	URL string
	// HTTPClient sends the requests; nil means a client of the Client's own
	// with pooled keep-alive connections. Its Timeout, if any, also applies.
	HTTPClient *http.Client
	// Timeout bounds one Decide call, retries included; a context with an
	// earlier deadline keeps it. Default 2 s.
	Timeout time.Duration
	// Retries is how many times a safe failure is retried (see the package
	// doc). Default 2; negative means none.
	Retries int
	// RetryDelay is the wait before the first retry, doubled for each
	// further one, each spread by up to ±20% so that clients turned away
	// together do not come back together; a longer Retry-After from the
	// server wins (spread by up to +20%). Default 50 ms.
	RetryDelay time.Duration
	// Header is added to every request (for example an Authorization
	// header for a proxy in front of the server). It is never logged.
	Header http.Header
}

// Request is one question, as POST /v1/decide takes it.
type Request struct {
	// Token is the subject's bearer token; empty means anonymous.
	Token string
	// Caller is the calling service's credential. The zero Caller sends
	// none, and the server then takes its mTLS peer, this service, as the
	// caller (anonymous over plain HTTP); Caller.Anonymous says there is no
	// caller at all.
	Caller Caller
	// Action is required: a name, or a method and path.
	Action Action
	// Resource is free-form; nil means none.
	Resource map[string]any
	// Context carries facts about the protected request.
	Context Context
}

// Caller is the calling service's credential: a service token, or a PEM
// certificate (its intermediates after it) that the server believes only
// from an address in its callers.trusted_proxies, and only when it chains
// to callers.trust_bundle_file (otherwise the decision denies with a
// "caller:" reason). At most one of Token, CertificatePEM and Anonymous may
// be set.
type Caller struct {
	Token          string
	CertificatePEM string
	// Anonymous says the request has no caller: the server is sent
	// "caller": {} and decides with input.caller.method "none", even when
	// the connection to it is mTLS. A service asking about requests it
	// received, not its own (as Middleware does), sets it so that its own
	// certificate is not taken for its clients'. False with no credential
	// sends no caller, and the server takes its mTLS peer as the caller.
	Anonymous bool
}

// Action is what the caller wants to do.
type Action struct {
	Name   string
	Method string
	Path   string
}

// Context carries facts about the protected request.
type Context struct {
	RequestID string
	// RemoteAddr is the client's IP address, with or without a port; the
	// policy sees the address alone. Anything else is refused
	// (ErrInvalidRequest).
	RemoteAddr string
	Attributes map[string]any
}

// Decision is the server's answer.
type Decision struct {
	ID       string            `json:"decision_id"`
	Allow    bool              `json:"allow"`
	Reasons  []string          `json:"reasons"`
	Headers  map[string]string `json:"headers,omitempty"`
	Revision string            `json:"revision,omitempty"`
}

// TokenRefused reports whether the decision denied because the subject's
// token was present but invalid (a reason starting "token:"): an HTTP front
// answers 401 then.
func (d Decision) TokenRefused() bool {
	return !d.Allow && len(d.Reasons) > 0 && strings.HasPrefix(d.Reasons[0], "token:")
}

// CallerRefused reports whether the decision denied because the caller's
// credential (a service token, or a forwarded certificate) was refused (a
// reason starting "caller:"): an HTTP front answers 403 then, as the
// engine's middleware does; asking for a bearer token would not help.
func (d Decision) CallerRefused() bool {
	return !d.Allow && len(d.Reasons) > 0 && strings.HasPrefix(d.Reasons[0], "caller:")
}

// Client asks a Verdict server for decisions. Build it with New; it is safe
// for concurrent use.
type Client struct {
	endpoint string
	http     *http.Client
	opts     Options
}

// New validates opts and returns a Client. It performs no I/O.
func New(opts Options) (*Client, error) {
	u, err := url.Parse(opts.URL)
	// The URL is shown unless it may hold a password (user:pass@host,
	// however garbled: with no scheme, url.Parse reads "user" as one).
	shown := opts.URL
	if strings.Contains(opts.URL, "@") {
		shown = "(not shown: it may hold a password)"
		if err == nil && u.User != nil && u.Host != "" {
			shown = u.Redacted()
		}
	}
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		hint := ""
		if !strings.Contains(opts.URL, "://") {
			hint = " (it has no scheme: write http:// or https:// before the host)"
		}
		return nil, fmt.Errorf("%w: URL %q must be an absolute http(s) URL%s", ErrOptions, shown, hint)
	}
	// url.Parse cut the URL at its first '#' and then at its first '?': any
	// of them starts a fragment or a query, even an empty one, after which
	// "/v1/decide" would not be the path.
	if strings.ContainsAny(opts.URL, "?#") {
		return nil, fmt.Errorf("%w: URL %q has a query or a fragment: give the server's base URL (scheme, host, and a path prefix if any); the client adds /v1/decide", ErrOptions, shown)
	}
	if opts.Timeout < 0 || opts.RetryDelay < 0 {
		return nil, fmt.Errorf("%w: negative timeout or retry delay", ErrOptions)
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	switch {
	case opts.Retries == 0:
		opts.Retries = DefaultRetries
	case opts.Retries < 0:
		opts.Retries = 0
	}
	if opts.RetryDelay == 0 {
		opts.RetryDelay = DefaultRetryDelay
	}
	// The extra headers, canonical and copied (the caller's map may change
	// later), without those the client sets itself.
	header := http.Header{}
	for k, vs := range opts.Header {
		for _, v := range vs {
			header.Add(k, v)
		}
	}
	for _, k := range []string{"Content-Type", "Accept", "Content-Length"} {
		header.Del(k)
	}
	opts.Header = header
	c := &Client{endpoint: u.JoinPath("v1", "decide").String(), opts: opts}
	if opts.HTTPClient != nil {
		cl := *opts.HTTPClient
		c.http = &cl
	} else {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 64 // a service asks often, from many goroutines
		c.http = &http.Client{Transport: t}
	}
	// A redirect is never followed: the decision would come from another
	// place, which would also get the tokens and the extra headers. A 3xx
	// is an unexpected answer (ErrProtocol), a deny.
	c.http.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return c, nil
}

// Decide asks the server. Every error is a deny: the returned Decision then
// has Allow false and one reason starting "client: ", and the error wraps
// ErrUnavailable, ErrInvalidRequest, ErrPolicy or ErrProtocol. A deny the
// policy decided (an invalid token included) is not an error.
func (c *Client) Decide(ctx context.Context, req Request) (Decision, error) {
	// The bound applies whatever the caller's deadline; an earlier one
	// stays.
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	if req.Caller.Anonymous && (req.Caller.Token != "" || req.Caller.CertificatePEM != "") {
		return deny(fmt.Errorf("%w: a caller is anonymous or has a credential, not both", ErrInvalidRequest))
	}
	body, err := json.Marshal(wireRequest(req))
	if err != nil {
		return deny(fmt.Errorf("%w: %w", ErrInvalidRequest, err))
	}
	delays := backoff.Exponential{Min: c.opts.RetryDelay, Max: c.opts.Timeout, Jitter: retryJitter}
	for attempt := 0; ; attempt++ {
		d, retryAfter, err := c.once(ctx, body)
		if err == nil || retryAfter < 0 || attempt >= c.opts.Retries {
			if err != nil {
				return deny(err)
			}
			return d, nil
		}
		// The server's Retry-After is spread too, only longer: clients it
		// turned away together would otherwise all come back together.
		wait := max(delays.Delay(attempt+1), backoff.Spread(retryAfter, 0, retryJitter))
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			// Waiting would only end in the deadline: say why now.
			return deny(fmt.Errorf("%w (no retry: the next would be after the deadline)", err))
		}
		if !backoff.Wait(ctx, wait, nil, nil) {
			return deny(fmt.Errorf("%w: %w (after %v)", ErrUnavailable, ctx.Err(), err))
		}
	}
}

// retryJitter spreads each retry's wait by up to ±20% (a Retry-After by
// up to +20%).
const retryJitter = 0.2

// once sends one request. retryAfter is negative when the failure is not
// safe to retry, else the least wait the server asked for before the next
// attempt (its Retry-After; 0 when it gave none).
func (c *Client) once(ctx context.Context, body []byte) (d Decision, retryAfter time.Duration, err error) {
	const noRetry = -1
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, bytes.NewReader(body))
	if err != nil {
		return d, noRetry, fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	for k, vs := range c.opts.Header { // canonical, see New
		hr.Header[k] = slices.Clone(vs)
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(hr)
	if err != nil {
		// Nothing was answered: deciding is a pure read, so asking again is
		// safe, unless the caller's context is done.
		retry := ctx.Err() == nil && retryable(err)
		err = fmt.Errorf("%w: %w", ErrUnavailable, redact(err))
		if !retry {
			return d, noRetry, err
		}
		return d, 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, MaxAnswerBytes+1))
	if err != nil {
		return d, noRetry, fmt.Errorf("%w: reading the answer: %w", ErrUnavailable, err)
	}
	if len(raw) > MaxAnswerBytes {
		return d, noRetry, fmt.Errorf("%w: answer over %d bytes", ErrProtocol, MaxAnswerBytes)
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		if d, err = readDecision(raw); err != nil {
			return Decision{}, noRetry, fmt.Errorf("%w: not a decision: %w", ErrProtocol, err)
		}
		return d, noRetry, nil
	case resp.StatusCode == http.StatusServiceUnavailable, resp.StatusCode == http.StatusTooManyRequests:
		after, _ := httpfetch.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
		return d, after, fmt.Errorf("%w: %s", ErrUnavailable, errorMessage(raw, resp.Status))
	case resp.StatusCode >= 500:
		return d, noRetry, fmt.Errorf("%w: %s", ErrPolicy, errorMessage(raw, resp.Status))
	case resp.StatusCode == http.StatusBadRequest, resp.StatusCode == http.StatusRequestEntityTooLarge,
		resp.StatusCode == http.StatusUnsupportedMediaType:
		// What /v1/decide answers a body it refuses.
		return d, noRetry, fmt.Errorf("%w: %s", ErrInvalidRequest, errorMessage(raw, resp.Status))
	}
	// A redirect, or another 4xx: not the server's answer to this request
	// (a gateway refusing Options.Header's credentials, a base URL with a
	// wrong path), so neither the request's fault nor worth a retry.
	return d, noRetry, fmt.Errorf("%w: %s", ErrProtocol, errorMessage(raw, resp.Status))
}

// readDecision reads a 200's body, which is a decision only in the
// server's own shape: one JSON object with a decision_id and an allow that
// is true or false, no name given twice, names matched exactly, nothing
// after it. Read as encoding/json reads, `"allow": false, "allow": true`
// was an allow, and so was `"Allow": true`. Names the client does not know
// are ignored, so that a newer server may add some.
func readDecision(raw []byte) (Decision, error) {
	var w struct {
		Decision
		Allow *bool `json:"allow"`
	}
	if err := jsonv2.Unmarshal(raw, &w); err != nil {
		return Decision{}, err
	}
	if w.ID == "" || w.Allow == nil {
		return Decision{}, errors.New("decision_id and allow are required")
	}
	d := w.Decision
	d.Allow = *w.Allow
	if d.Reasons == nil {
		d.Reasons = []string{}
	}
	if !d.Allow {
		d.Headers = nil
	}
	return d, nil
}

// retryable reports whether a transport error happened before the server
// could have answered: a refused or reset connection, not a timeout of the
// caller's own deadline.
func retryable(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return true
}

// redact drops the request URL from a transport error (a base URL may carry
// credentials), keeping its cause.
func redact(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

// errorMessage reads the server's error shape, or falls back to the status.
func errorMessage(raw []byte, status string) string {
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(raw, &e) == nil && e.Error.Code != "" {
		return e.Error.Code + ": " + e.Error.Message
	}
	return "status " + status
}

// deny is the decision that answers a failure: it denies, and says why
// (err's text starts "client: ", as every sentinel's does).
func deny(err error) (Decision, error) {
	return Decision{Reasons: []string{err.Error()}}, err
}

// errorCategory is the sentinel err wraps, as a reason fit to show the
// person whose request was denied: the cause (addresses, the server's
// message) is for the service's logs.
func errorCategory(err error) string {
	for _, e := range []error{ErrUnavailable, ErrInvalidRequest, ErrPolicy, ErrProtocol, ErrOptions} {
		if errors.Is(err, e) {
			return e.Error()
		}
	}
	return "client: error"
}

// wireRequest is the /v1/decide body for req.
func wireRequest(req Request) any {
	type caller struct {
		Token       string `json:"token,omitempty"`
		Certificate string `json:"certificate,omitempty"`
	}
	type action struct {
		Name   string `json:"name,omitempty"`
		Method string `json:"method,omitempty"`
		Path   string `json:"path,omitempty"`
	}
	type reqContext struct {
		RequestID  string         `json:"request_id,omitempty"`
		RemoteAddr string         `json:"remote_addr,omitempty"`
		Attributes map[string]any `json:"attributes,omitempty"`
	}
	type body struct {
		Token    string         `json:"token,omitempty"`
		Caller   *caller        `json:"caller,omitempty"`
		Action   action         `json:"action"`
		Resource map[string]any `json:"resource,omitempty"`
		Context  *reqContext    `json:"context,omitempty"`
	}
	b := body{Token: req.Token, Action: action(req.Action), Resource: req.Resource}
	if req.Caller != (Caller{}) { // Anonymous alone: "caller": {}
		b.Caller = &caller{Token: req.Caller.Token, Certificate: req.Caller.CertificatePEM}
	}
	if req.Context.RequestID != "" || req.Context.RemoteAddr != "" || len(req.Context.Attributes) > 0 {
		b.Context = &reqContext{req.Context.RequestID, req.Context.RemoteAddr, req.Context.Attributes}
	}
	return b
}
