package jwks

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/verdict-pdp/verdict/internal/httpfetch"
	"github.com/verdict-pdp/verdict/internal/printable"
)

// wellKnown is the OpenID Connect discovery path appended to the issuer.
const wellKnown = "/.well-known/openid-configuration"

// maxQuotedIssuer bounds the discovery document's issuer quoted in the
// error that refuses it.
const maxQuotedIssuer = 128

// response is one fetched document.
type response struct {
	body        []byte
	etag        string
	notModified bool
	lifetime    time.Duration // from Cache-Control or Expires
	hasLifetime bool
}

// keySetURL returns the key set URL: the configured one, the one
// discovered before, or a freshly discovered one.
func (m *Manager) keySetURL(ctx context.Context) (string, error) {
	m.mu.Lock()
	u := m.jwksURL
	m.mu.Unlock()
	if u != "" {
		return u, nil
	}
	u, err := m.discover(ctx)
	if err != nil {
		return "", err
	}
	m.mu.Lock()
	m.jwksURL, m.st.URL = u, httpfetch.Redact(u)
	m.mu.Unlock()
	return u, nil
}

// discover fetches the discovery document and returns its jwks_uri after
// checking that its issuer is exactly the configured one.
func (m *Manager) discover(ctx context.Context) (string, error) {
	res, err := m.fetch(ctx, strings.TrimSuffix(m.issuer, "/")+wellKnown, "")
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrDiscovery, err)
	}
	// Members by their exact names, as tokens and keys are read: a struct
	// would also take "Issuer" or "ISSUER" for issuer.
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(res.body, &doc); err != nil || doc == nil {
		return "", fmt.Errorf("%w: document is not a json object", ErrDiscovery)
	}
	var issuer, jwksURI *string
	for name, dst := range map[string]**string{"issuer": &issuer, "jwks_uri": &jwksURI} {
		if raw, ok := doc[name]; ok {
			if err := json.Unmarshal(raw, dst); err != nil {
				return "", fmt.Errorf("%w: %s is not a string", ErrDiscovery, name)
			}
		}
	}
	switch {
	case issuer == nil:
		return "", fmt.Errorf("%w: %w: document has no issuer", ErrDiscovery, ErrIssuerMismatch)
	case *issuer != m.issuer:
		// The provider's text, as long as the document: cut, since the
		// error is in every retry's log line and in Status.
		return "", fmt.Errorf("%w: %w: document names %q", ErrDiscovery, ErrIssuerMismatch, printable.Cut(*issuer, maxQuotedIssuer))
	case jwksURI == nil || *jwksURI == "":
		return "", fmt.Errorf("%w: document has no jwks_uri", ErrDiscovery)
	}
	if !httpfetch.ValidURL(*jwksURI) {
		return "", fmt.Errorf("%w: jwks_uri is not an absolute http(s) URL", ErrDiscovery)
	}
	if u, _ := url.Parse(*jwksURI); httpsURL(m.issuer) && u.Scheme != "https" {
		return "", fmt.Errorf("%w: jwks_uri of an https issuer must be https", ErrDiscovery)
	}
	m.log.Info("jwks discovered", slog.String("jwks_uri", httpfetch.Redact(*jwksURI)))
	return *jwksURI, nil
}

// fetch performs one GET (conditional when etag is set), bounded by
// Options.Timeout and Options.MaxBytes.
func (m *Manager) fetch(ctx context.Context, target, etag string) (response, error) {
	res, err := httpfetch.Get(ctx, m.client, httpfetch.Request{
		URL:      target,
		Header:   http.Header{"Accept": {"application/json, application/jwk-set+json"}},
		ETag:     etag,
		MaxBytes: m.opts.MaxBytes,
		Timeout:  m.opts.Timeout,
	})
	if err != nil {
		return response{}, fmt.Errorf("%w: %w", ErrFetch, err)
	}
	life, ok := lifetime(res.Header, m.now())
	return response{body: res.Body, etag: res.ETag, notModified: res.NotModified, lifetime: life, hasLifetime: ok}, nil
}

// lifetime reads how long a response stays fresh (RFC 9111): no-store or
// no-cache mean 0; max-age, less the Age header; else Expires less Date
// (or now), an invalid Expires meaning already expired. ok is false when
// the response says nothing.
func lifetime(h http.Header, now time.Time) (d time.Duration, ok bool) {
	maxAge := -1
	for _, line := range h.Values("Cache-Control") {
		for _, dir := range strings.Split(line, ",") {
			name, value, _ := strings.Cut(strings.TrimSpace(dir), "=")
			switch strings.ToLower(name) {
			case "no-store", "no-cache":
				return 0, true
			case "max-age":
				n, err := strconv.Atoi(strings.Trim(value, `"`))
				if err != nil || n < 0 {
					return 0, true
				}
				maxAge = n
			}
		}
	}
	if maxAge >= 0 {
		d = time.Duration(min(maxAge, 1<<31)) * time.Second
		if age, err := strconv.Atoi(h.Get("Age")); err == nil && age > 0 {
			d -= time.Duration(min(age, 1<<31)) * time.Second
		}
		return max(d, 0), true
	}
	if exp := h.Get("Expires"); exp != "" {
		t, err := http.ParseTime(exp)
		if err != nil {
			return 0, true
		}
		date := now
		if dt, err := http.ParseTime(h.Get("Date")); err == nil {
			date = dt
		}
		return max(t.Sub(date), 0), true
	}
	return 0, false
}
