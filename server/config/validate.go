package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/verdict-pdp/verdict/authz/token"
	"github.com/verdict-pdp/verdict/server/decisionlog"
)

// clientHeader reports whether the HTTP client sets a request header
// itself, so that configuring it would be ignored or break requests.
func clientHeader(name string) bool {
	switch http.CanonicalHeaderKey(name) {
	case "Host", "Content-Length", "Transfer-Encoding", "Connection", "If-None-Match", "Accept-Encoding", "Te", "Upgrade":
		return true
	}
	return false
}

// validate checks the decoded values, naming the key and its line.
func (c *Config) validate(root *yaml.Node) error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s:%d: %s: %s", ErrInvalid, c.File, lineOf(root, key), key, fmt.Sprintf(format, args...)))
	}
	if c.TLS != nil {
		if c.TLS.CertFile == "" || c.TLS.KeyFile == "" {
			bad("tls", "cert_file and key_file are both required")
		}
		switch c.TLS.ClientAuth {
		case "", "request", "require":
		default:
			bad("tls.client_auth", "must be request or require, not %q", c.TLS.ClientAuth)
		}
		if c.TLS.ClientAuth != "" && c.TLS.ClientCAFile == "" {
			bad("tls.client_ca_file", "required when client_auth is set")
		}
		if c.TLS.ClientAuth == "" && c.TLS.ClientCAFile != "" {
			bad("tls.client_auth", "required with client_ca_file (request or require): without it, no client certificate is asked for")
		}
	}
	if c.DiagnosticAddr != "" {
		if _, port, err := net.SplitHostPort(c.DiagnosticAddr); err != nil {
			bad("diagnostic_addr", "want HOST:PORT: %v", err)
		} else if c.DiagnosticAddr == c.Addr && port != "0" {
			bad("diagnostic_addr", "must differ from addr")
		}
	}
	sources := 0
	for _, s := range []string{c.Policy.Dir, c.Policy.BundleFile, c.Policy.BundleURL} {
		if s != "" {
			sources++
		}
	}
	if c.Policy.VerificationAlgorithm != "" && c.Policy.VerificationKeyFile == "" {
		bad("policy.verification_algorithm", "needs verification_key_file: without a key, bundles are not verified")
	}
	if c.Policy.VerificationKeyFile != "" && c.Policy.Dir != "" {
		bad("policy.verification_key_file", "verifies bundles, and policy.dir is a directory, which carries no signature: serve a signed bundle (bundle_file or bundle_url), or drop the key")
	}
	if sources > 1 {
		bad("policy", "set at most one of dir, bundle_file and bundle_url")
	}
	if c.Policy.PollInterval < 0 {
		bad("policy.poll_interval", "must not be negative")
	}
	if c.Policy.MaxAge < 0 {
		bad("policy.max_age", "must not be negative")
	}
	if c.Policy.MaxUnpackedBytes < 0 {
		bad("policy.max_unpacked_bytes", "must not be negative")
	}
	if c.Policy.MaxFiles < 0 {
		bad("policy.max_files", "must not be negative")
	}
	switch c.Policy.Evaluator {
	case "", "auto", "compiled", "topdown": // authz.ParseEvaluator's names
	default:
		bad("policy.evaluator", "must be auto, compiled or topdown, got %q", c.Policy.Evaluator)
	}
	if c.Policy.BundleURL == "" && (c.Policy.MaxAge != 0 || c.Policy.PersistDir != "") {
		bad("policy", "persist_dir and max_age apply only to bundle_url")
	}
	if c.Policy.PollInterval != 0 && c.Policy.BundleURL == "" && (c.Policy.Shadow == nil || c.Policy.Shadow.BundleURL == "") {
		bad("policy.poll_interval", "applies only to bundle_url (the policy's or the shadow's)")
	}
	if len(c.Policy.BundleHeaders) > 0 && c.Policy.BundleURL == "" && (c.Policy.Shadow == nil || c.Policy.Shadow.BundleURL == "") {
		bad("policy.bundle_headers", "applies only to bundle_url (the policy's or the shadow's)")
	}
	checkHeaders(bad, "policy.bundle_headers", c.Policy.BundleHeaders)
	if sh := c.Policy.Shadow; sh != nil {
		n := 0
		for _, s := range []string{sh.Dir, sh.BundleFile, sh.BundleURL} {
			if s != "" {
				n++
			}
		}
		if n != 1 {
			bad("policy.shadow", "set exactly one of dir, bundle_file and bundle_url")
		}
		if sh.Sample != nil && !(*sh.Sample > 0 && *sh.Sample <= 1) {
			bad("policy.shadow.sample", "must be more than 0 and at most 1 (remove shadow to turn it off)")
		}
		if sh.Queue < 0 || sh.Queue > maxQueueRecords {
			bad("policy.shadow.queue", "must be between 0 and %d", maxQueueRecords)
		}
		if sh.MaxQueueBytes < 0 {
			bad("policy.shadow.max_queue_bytes", "must not be negative")
		}
	}
	if c.Tokens.Leeway < 0 || c.Tokens.Leeway > token.MaxLeeway {
		bad("tokens.leeway", "must be between 0 and %s", token.MaxLeeway)
	}
	if c.Tokens.MaxBytes < 0 {
		bad("tokens.max_bytes", "must not be negative")
	}
	for i, is := range c.Tokens.Issuers {
		key := "tokens.issuers[" + strconv.Itoa(i) + "]"
		if is.Issuer == "" {
			bad(key+".issuer", "required")
		}
		if len(is.Audiences) == 0 {
			bad(key+".audiences", "at least one audience is required")
		}
		if len(is.Algorithms) == 0 {
			bad(key+".algorithms", "at least one algorithm is required")
		}
		for j, a := range is.Algorithms {
			if err := token.CheckAlgorithm(a); err != nil {
				bad(key+".algorithms["+strconv.Itoa(j)+"]", "%v", err)
			}
		}
		n := 0
		for _, set := range []bool{is.JWKSFile != "", is.JWKSURL != "", is.Discovery,
			is.PublicKeyFile != "", is.HMACSecretFile != "", is.HMACSecretEnv != ""} {
			if set {
				n++
			}
		}
		if n != 1 {
			bad(key, "set exactly one of jwks_file, jwks_url, discovery, public_key_file, hmac_secret_file, hmac_secret_env")
		}
		if is.MaxLifetime < 0 {
			bad(key+".max_lifetime", "must not be negative")
		}
		if is.MaxLifetime > 0 && is.ExpOptional {
			bad(key+".max_lifetime", "needs exp, so it cannot be set with exp_optional")
		}
		remote := is.JWKSURL != "" || is.Discovery
		if !remote && (is.CAFile != "" || is.MinRefresh != 0 || is.MaxRefresh != 0 || is.MaxStale != 0) {
			bad(key, "ca_file, min_refresh, max_refresh and max_stale apply only to jwks_url and discovery")
		}
		for _, d := range []struct {
			name string
			v    time.Duration
		}{{"min_refresh", is.MinRefresh}, {"max_refresh", is.MaxRefresh}, {"max_stale", is.MaxStale}} {
			if d.v < 0 {
				bad(key+"."+d.name, "must not be negative")
			}
		}
	}
	for i, p := range c.Callers.TrustedProxies {
		if _, err := parsePrefix(p); err != nil {
			bad("callers.trusted_proxies["+strconv.Itoa(i)+"]", "%v", err)
		}
	}
	if len(c.Callers.TrustedProxies) > 0 && c.Callers.TrustBundleFile == "" {
		bad("callers.trust_bundle_file", "required when trusted_proxies is set: forwarded certificates must chain to it")
	}
	for _, h := range []struct{ key, v string }{
		{"callers.xfcc_header", c.Callers.XFCCHeader},
		{"callers.escaped_cert_header", c.Callers.EscapedCertHeader},
	} {
		switch {
		case h.v == "":
		case !validHeaderName(h.v):
			bad(h.key, "%q is not a valid header name", h.v)
		case len(c.Callers.TrustedProxies) == 0:
			bad(h.key, "forwarded certificates are believed only from trusted_proxies, and none is set")
		}
	}
	switch h := c.ForwardAuth.ClientAddrHeader; {
	case h == "":
	case !validHeaderName(h):
		bad("forward_auth.client_addr_header", "%q is not a valid header name", h)
	case len(c.Callers.TrustedProxies) == 0:
		bad("forward_auth.client_addr_header", "the client address is believed only from trusted_proxies, and none is set")
	}
	if h := c.ForwardAuth.ActionHeader; h != "" && !validHeaderName(h) {
		bad("forward_auth.action_header", "%q is not a valid header name", h)
	}
	if c.Callers.XFCCHeader != "" && strings.EqualFold(c.Callers.XFCCHeader, c.Callers.EscapedCertHeader) {
		bad("callers.escaped_cert_header", "must differ from xfcc_header")
	}
	for i, a := range c.Callers.TokenAudiences {
		if a == "" {
			bad("callers.token_audiences["+strconv.Itoa(i)+"]", "must not be empty")
		}
		for j, is := range c.Tokens.Issuers {
			if slices.Contains(is.Audiences, a) {
				bad("callers.token_audiences["+strconv.Itoa(i)+"]",
					"%q is also an audience of tokens.issuers[%d]: every user token for it would prove a service", a, j)
			}
		}
	}
	if e := c.ExtAuthz; e != nil {
		if e.GRPCAddr == "" {
			bad("ext_authz.grpc_addr", "required when ext_authz is set")
		} else if _, _, err := net.SplitHostPort(e.GRPCAddr); err != nil {
			bad("ext_authz.grpc_addr", "%q is not host:port", e.GRPCAddr)
		}
		for i, p := range e.TrustedPeers {
			if _, err := parsePrefix(p); err != nil {
				bad("ext_authz.trusted_peers["+strconv.Itoa(i)+"]", "%v", err)
			}
		}
	}
	if a := c.AuthZEN; a != nil {
		for i, p := range a.TrustedPeers {
			if _, err := parsePrefix(p); err != nil {
				bad("authzen.trusted_peers["+strconv.Itoa(i)+"]", "%v", err)
			}
		}
		for i, id := range a.TrustedCallers {
			if id == "" {
				bad("authzen.trusted_callers["+strconv.Itoa(i)+"]", "must not be empty")
			}
		}
		if len(a.TrustedPeers) == 0 && len(a.TrustedCallers) == 0 {
			bad("authzen", "set trusted_peers or trusted_callers: AuthZEN clients assert the subject, so only listed clients may call")
		}
		if len(a.TrustedCallers) > 0 && (c.TLS == nil || c.TLS.ClientCAFile == "") {
			bad("authzen.trusted_callers", "needs tls.client_ca_file and client_auth: callers are named by verified client certificates")
		}
		if a.BaseURL != "" {
			if err := checkHTTPURL(a.BaseURL, false, " (https; http for development)"); err != nil {
				bad("authzen.base_url", "%v", err)
			}
		}
		if a.MaxEvaluations < 0 {
			bad("authzen.max_evaluations", "must not be negative")
		}
	} else if mappingValue(docRoot(root), "authzen") != nil {
		bad("authzen", "the block is empty: set trusted_peers or trusted_callers")
	}
	if tr := c.Tracing; tr != nil {
		if tr.Endpoint != "" {
			if err := checkHTTPURL(tr.Endpoint, false, " (OTLP/HTTP, port 4318 by convention)"); err != nil {
				bad("tracing.endpoint", "%v", err)
			}
		}
		if r := tr.SampleRatio; r != nil && !(*r >= 0 && *r <= 1) {
			bad("tracing.sample_ratio", "must be between 0 and 1, not %v", *r)
		}
	} else if mappingValue(docRoot(root), "tracing") != nil {
		bad("tracing", "the block is empty: write tracing: {} to trace with the OTEL_* environment's settings")
	}
	l := c.Limits
	if l.MaxBodyBytes < 0 || l.MaxJSONDepth < 0 || l.MaxHeaderBytes < 0 {
		bad("limits", "sizes must not be negative")
	}
	if l.MaxConcurrentDecisions < 0 {
		bad("limits.max_concurrent_decisions", "must not be negative (0 or left out: four per core, at least eight)")
	}
	if l.MaxConnections < 0 {
		bad("limits.max_connections", "must not be negative (0 or left out: 1024)")
	}
	if v := int64(l.MaxBodyBytesInFlight); v != 0 && (v < minCacheBytes || v < int64(l.MaxBodyBytes)) {
		bad("limits.max_body_bytes_in_flight", "must be at least 1MiB and limits.max_body_bytes, or left out for 64MiB")
	}
	// A cache keeps an entry only when it fits in a fifth of one of its 32
	// shards: below 1 MiB a token cache holds almost nothing.
	for _, c := range []struct {
		key string
		v   ByteSize
	}{{"limits.token_cache_bytes", l.TokenCacheBytes}, {"limits.decision_cache_bytes", l.DecisionCacheBytes}} {
		if c.v != 0 && c.v < minCacheBytes {
			bad(c.key, "must be at least 1MiB (an entry must fit in 1/160 of the cache), or left out for the default")
		}
	}
	if l.EvalHeapLimit != 0 && l.EvalHeapLimit < minCacheBytes {
		bad("limits.eval_heap_limit", "must be at least 1MiB, or left out for half the memory limit")
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"limits.read_header_timeout", l.ReadHeaderTimeout}, {"limits.read_timeout", l.ReadTimeout},
		{"limits.write_timeout", l.WriteTimeout}, {"limits.idle_timeout", l.IdleTimeout},
		{"limits.shutdown_timeout", l.ShutdownTimeout}, {"limits.eval_timeout", l.EvalTimeout},
	} {
		if d.v < 0 {
			bad(d.key, "must not be negative")
		}
	}
	for _, kw := range []struct{ key, v, words string }{
		{"decision_log", c.DecisionLog.Output, "off or stdout"},
		{"policy.persist_dir", c.Policy.PersistDir, "off"},
		{"tokens.jwks_persist_dir", c.Tokens.JWKSPersistDir, "off"},
	} {
		if lookalikeKeyword(kw.v) {
			bad(kw.key, "%q is taken for a file name: write %s in lower case (./%s for a file of that name)", kw.v, kw.words, kw.v)
		}
	}
	dl := c.DecisionLog
	for key, list := range map[string][]string{"decision_log.mask": dl.Mask, "decision_log.hash": dl.Hash} {
		for i, ptr := range list {
			if !strings.HasPrefix(ptr, "/input/") || len(ptr) == len("/input/") {
				bad(key+"["+strconv.Itoa(i)+"]", "%q: a pointer must address a field of the input (/input/subject/claims/email)", ptr)
			}
		}
	}
	if dl.MaxRecordBytes < 0 || dl.MaxRecordBytes > decisionlog.LargestRecordBytes {
		bad("decision_log.max_record_bytes", "must be between 0 and %dMiB (the longest line verdict replay reads)", decisionlog.LargestRecordBytes>>20)
	}
	if dl.MaxQueueRecords < 0 || dl.MaxQueueRecords > maxQueueRecords {
		bad("decision_log.max_queue_records", "must be between 0 and %d", maxQueueRecords)
	}
	if dl.MaxQueueBytes < 0 {
		bad("decision_log.max_queue_bytes", "must not be negative")
	}
	if !(dl.MaxRecordsPerSecond >= 0) || math.IsInf(dl.MaxRecordsPerSecond, 1) {
		bad("decision_log.max_records_per_second", "must be a number of 0 (no bound) or more")
	}
	switch {
	case dl.HashKeyFile != "" && dl.HashKeyEnv != "":
		bad("decision_log", "set one of hash_key_file and hash_key_env, not both")
	case (dl.HashKeyFile != "" || dl.HashKeyEnv != "") && len(dl.Hash) == 0:
		bad("decision_log", "a hash key without hash fields does nothing: list the fields in decision_log.hash")
	}
	if !dl.Enabled() && (len(dl.Mask) > 0 || len(dl.Hash) > 0 || dl.MaxRecordBytes != 0 || dl.HashKeyFile != "" || dl.HashKeyEnv != "" ||
		dl.MaxQueueRecords != 0 || dl.MaxQueueBytes != 0 || dl.MaxRecordsPerSecond != 0) {
		bad("decision_log", "mask, hash, hash_key_*, max_record_bytes, max_queue_* and max_records_per_second do nothing with output off and no upload")
	}
	c.checkUpload(bad)
	return errors.Join(errs...)
}

// checkHTTPURL checks a URL Verdict sends requests to or publishes: http
// or https, a host, no user info (credentials belong in headers, which are
// never logged; such a URL is not repeated in the error, since it holds
// them), no fragment, and no query unless query is true. hint ends the
// message about the scheme. An error names the URL by its scheme, host and
// path only: a query (?api_key=…, ?token=…) or a fragment can hold a
// credential, written there or taken from the environment, and logs name
// URLs the same way (httpfetch.Redact).
func checkHTTPURL(s string, query bool, hint string) error {
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("not a URL")
	}
	shown := (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
	if u.Opaque != "" && !strings.Contains(u.Opaque, "@") { // collector:4318
		shown = u.Scheme + ":" + u.Opaque
	}
	switch {
	case u.User != nil:
		return errors.New("must not carry user info: put credentials in headers")
	case u.Scheme != "https" && u.Scheme != "http":
		return fmt.Errorf("%q: want an http or https URL%s", shown, hint)
	case u.Host == "" || u.Opaque != "":
		return fmt.Errorf("%q has no host", shown)
	case u.Fragment != "" || strings.HasSuffix(s, "#"):
		return fmt.Errorf("%q must not have a fragment", shown)
	case !query && (u.RawQuery != "" || u.ForceQuery):
		return fmt.Errorf("%q must not have a query", shown)
	}
	return nil
}

// validHeaderName reports whether s is an HTTP token (RFC 9110).
func validHeaderName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return s != ""
}

// lookalikeKeyword reports whether a setting that takes a keyword or a
// path holds what its author surely meant as a keyword: off or stdout in
// another case, or a YAML word for false or nothing (false, no, none).
// Taken as a path, such a value writes decisions (claims included) to a
// file of that name, or keeps what was to be turned off.
func lookalikeKeyword(v string) bool {
	switch strings.ToLower(v) {
	case "off", "stdout":
		return v != "off" && v != "stdout"
	case "false", "no", "none", "n", "disabled":
		return true
	}
	return false
}
