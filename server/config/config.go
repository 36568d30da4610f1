// Package config reads Verdict's YAML configuration file. Unknown keys are
// errors; every error names the file, the line and the key. Relative paths
// in the file are relative to the file's directory.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// ErrInvalid is wrapped by every configuration error.
var ErrInvalid = errors.New("invalid configuration")

// Config is the whole configuration file. The zero value is the zero-config
// demo's configuration: default address, no TLS, embedded policies, no
// issuers.
type Config struct {
	Addr        string      `yaml:"addr"`
	TLS         *TLS        `yaml:"tls"`
	Policy      Policy      `yaml:"policy"`
	Tokens      Tokens      `yaml:"tokens"`
	Callers     Callers     `yaml:"callers"`
	DecisionLog string      `yaml:"decision_log"`
	Limits      Limits      `yaml:"limits"`
	ForwardAuth ForwardAuth `yaml:"forward_auth"`

	// File is the path the configuration was read from ("" when built in
	// code); relative paths resolve against its directory.
	File string `yaml:"-"`
}

// TLS configures the listener. Omitted means plain HTTP.
type TLS struct {
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"`
	// ClientAuth is "request" or "require"; empty means no client
	// certificates are asked for.
	ClientAuth string `yaml:"client_auth"`
}

// Policy says where policies come from: exactly one of Dir, BundleFile,
// BundleURL, or none for the embedded default policies.
type Policy struct {
	Dir                 string        `yaml:"dir"`
	BundleFile          string        `yaml:"bundle_file"`
	BundleURL           string        `yaml:"bundle_url"`
	PollInterval        time.Duration `yaml:"poll_interval"`
	VerificationKeyFile string        `yaml:"verification_key_file"`
	// VerificationAlgorithm is the bundle signing algorithm (RS256 when
	// empty), as `opa build --signing-alg` names it.
	VerificationAlgorithm string `yaml:"verification_algorithm"`
	// PersistDir keeps the last good remote bundle so a restart works while
	// the bundle server is down; empty means verdict/bundles under the user
	// cache directory, "off" disables it.
	PersistDir string `yaml:"persist_dir"`
	// MaxAge, when set, makes the server not ready once the last successful
	// remote poll is older: for operators who prefer failing closed to
	// serving stale policy.
	MaxAge     time.Duration `yaml:"max_age"`
	Entrypoint string        `yaml:"entrypoint"`
	// RequireTests makes every snapshot's own Rego tests pass before it
	// replaces the serving one; a snapshot without tests is refused.
	RequireTests bool `yaml:"require_tests"`
	// MaxUnpackedBytes and MaxFiles bound a policy set (directory or
	// bundle, uncompressed) while it is read, before anything is trusted;
	// 0 means 128 MiB and 10,000 files. MaxUnpackedBytes also bounds what
	// parsing its data files would allocate, estimated from their bytes
	// before they are parsed (data JSON costs about 20 times its size, YAML
	// more): raise it for a large data.json.
	MaxUnpackedBytes int64 `yaml:"max_unpacked_bytes"`
	MaxFiles         int   `yaml:"max_files"`
}

// Tokens configures bearer-token verification.
type Tokens struct {
	Leeway   time.Duration `yaml:"leeway"`
	MaxBytes int           `yaml:"max_bytes"`
	Issuers  []Issuer      `yaml:"issuers"`
	// JWKSPersistDir keeps the last good key set of every jwks_url or
	// discovery issuer, so a restart works while a provider is down.
	// Empty means the user cache directory (verdict/jwks); "off" disables it.
	JWKSPersistDir string `yaml:"jwks_persist_dir"`
}

// Issuer is one trusted issuer and where its keys come from: exactly one of
// the key fields.
type Issuer struct {
	Issuer      string   `yaml:"issuer"`
	Audiences   []string `yaml:"audiences"`
	Algorithms  []string `yaml:"algorithms"`
	ExpOptional bool     `yaml:"exp_optional"`
	// MaxLifetime, when set, refuses tokens whose exp − iat exceeds it (iat
	// is then required); RequiredTyp, when set, is the JOSE typ the token
	// must carry (at+jwt for RFC 9068 access tokens).
	MaxLifetime    time.Duration `yaml:"max_lifetime"`
	RequiredTyp    string        `yaml:"required_typ"`
	JWKSFile       string        `yaml:"jwks_file"`
	JWKSURL        string        `yaml:"jwks_url"`
	Discovery      bool          `yaml:"discovery"`
	PublicKeyFile  string        `yaml:"public_key_file"`
	HMACSecretFile string        `yaml:"hmac_secret_file"`
	HMACSecretEnv  string        `yaml:"hmac_secret_env"`

	// For jwks_url and discovery only: CAFile is a PEM file of CAs trusted
	// instead of the system roots for the provider; MinRefresh and
	// MaxRefresh bound the provider's Cache-Control (default 1m and 1h);
	// MaxStale is how long the last good keys serve while the provider is
	// down (default 24h).
	CAFile     string        `yaml:"ca_file"`
	MinRefresh time.Duration `yaml:"min_refresh"`
	MaxRefresh time.Duration `yaml:"max_refresh"`
	MaxStale   time.Duration `yaml:"max_stale"`
}

// ForwardAuth configures /v1/check.
type ForwardAuth struct {
	// ActionHeader names a header the proxy sets to the action's name
	// (e.g. X-Verdict-Action). Empty means none is read: proxies relay
	// client headers, so set it only when the proxy overwrites it.
	ActionHeader string `yaml:"action_header"`
	// ClientAddrHeader names the header from which the protected request's
	// client address (input.context.remote_addr) is read, from trusted
	// proxies only: X-Forwarded-For (rightmost untrusted hop) or a
	// single-address header such as X-Real-Ip. Empty means none is read.
	ClientAddrHeader string `yaml:"client_addr_header"`
}

// Callers configures how calling services are identified.
type Callers struct {
	// TrustedProxies are the addresses (CIDR prefixes or single IPs) whose
	// forwarded caller certificates are believed.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// TrustBundleFile holds the PEM CA certificates a forwarded caller
	// certificate must chain to.
	TrustBundleFile string `yaml:"trust_bundle_file"`
	// XFCCHeader names the header from which a trusted proxy's forwarded
	// client certificate is read in Envoy's x-forwarded-client-cert format.
	// Empty (the default) means none is read. Name only a header every
	// proxy in front of Verdict overwrites: proxies relay client headers.
	XFCCHeader string `yaml:"xfcc_header"`
	// EscapedCertHeader names the header from which a trusted proxy's
	// forwarded client certificate is read as URL-escaped PEM (nginx's
	// $ssl_client_escaped_cert). Empty (the default) means none is read.
	EscapedCertHeader string `yaml:"escaped_cert_header"`
	// TokenAudiences are the audiences a service token (a caller's token)
	// must carry, one of them, checked instead of its issuer's audiences:
	// a token issued to a user never proves a service. Empty (the default)
	// means caller tokens are refused.
	TokenAudiences []string `yaml:"token_audiences"`
}

// Limits bounds what one request may cost. Zero values mean the server's
// defaults.
type Limits struct {
	MaxBodyBytes      int64         `yaml:"max_body_bytes"`
	MaxJSONDepth      int           `yaml:"max_json_depth"`
	MaxHeaderBytes    int           `yaml:"max_header_bytes"`
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	ReadTimeout       time.Duration `yaml:"read_timeout"`
	WriteTimeout      time.Duration `yaml:"write_timeout"`
	IdleTimeout       time.Duration `yaml:"idle_timeout"`
	ShutdownTimeout   time.Duration `yaml:"shutdown_timeout"`
	EvalTimeout       time.Duration `yaml:"eval_timeout"`
}

// Load reads and validates the configuration file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return Parse(data, path)
}

// Parse decodes and validates a configuration file's contents; file names it
// in errors and anchors relative paths.
func Parse(data []byte, file string) (*Config, error) {
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, yamlError(file, err))
	}
	c := &Config{File: file}
	if root.Kind == 0 { // empty file
		return c, nil
	}
	strict := yaml.NewDecoder(bytes.NewReader(data))
	strict.KnownFields(true)
	if err := strict.Decode(c); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, yamlError(file, err))
	}
	if err := c.validate(&root); err != nil {
		return nil, err
	}
	return c, nil
}

var yamlLine = regexp.MustCompile(`line (\d+): (.*)`)
var notFound = regexp.MustCompile(`field (\S+) not found in type (\S+)`)

// yamlError rewrites yaml.v3's messages as "file:line: message" lines.
func yamlError(file string, err error) string {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		lines := make([]string, 0, len(te.Errors))
		for _, e := range te.Errors {
			lines = append(lines, rewriteYAMLMessage(file, e))
		}
		return strings.Join(lines, "\n")
	}
	return rewriteYAMLMessage(file, strings.TrimPrefix(err.Error(), "yaml: "))
}

func rewriteYAMLMessage(file, msg string) string {
	m := yamlLine.FindStringSubmatch(msg)
	if m == nil {
		return file + ": " + msg
	}
	text := m[2]
	if nf := notFound.FindStringSubmatch(text); nf != nil {
		text = fmt.Sprintf("unknown key %q", nf[1])
	}
	return fmt.Sprintf("%s:%s: %s", file, m[1], text)
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
	}
	sources := 0
	for _, s := range []string{c.Policy.Dir, c.Policy.BundleFile, c.Policy.BundleURL} {
		if s != "" {
			sources++
		}
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
	if c.Policy.BundleURL == "" && (c.Policy.MaxAge != 0 || c.Policy.PersistDir != "" || c.Policy.PollInterval != 0) {
		bad("policy", "poll_interval, persist_dir and max_age apply only to bundle_url")
	}
	if c.Tokens.Leeway < 0 || c.Tokens.Leeway > 5*time.Minute {
		bad("tokens.leeway", "must be between 0 and 5m")
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
	l := c.Limits
	if l.MaxBodyBytes < 0 || l.MaxJSONDepth < 0 || l.MaxHeaderBytes < 0 {
		bad("limits", "sizes must not be negative")
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
	return errors.Join(errs...)
}

// TrustedProxyPrefixes returns callers.trusted_proxies as prefixes; a single
// IP becomes a one-address prefix.
func (c *Config) TrustedProxyPrefixes() ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(c.Callers.TrustedProxies))
	for i, p := range c.Callers.TrustedProxies {
		pf, err := parsePrefix(p)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: callers.trusted_proxies[%d]: %w", ErrInvalid, c.File, i, err)
		}
		out = append(out, pf)
	}
	return out, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR prefix or IP address", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR prefix or IP address", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
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

// Path resolves a path from the file against the file's directory.
func (c *Config) Path(p string) string {
	if p == "" || filepath.IsAbs(p) || c.File == "" {
		return p
	}
	return filepath.Join(filepath.Dir(c.File), p)
}

// lineOf finds the line of a dotted key path such as "tokens.issuers[0].aud"
// in the document, or the deepest line found on the way.
func lineOf(root *yaml.Node, key string) int {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, part := range strings.Split(key, ".") {
		name, idx := part, -1
		if i := strings.IndexByte(part, '['); i >= 0 {
			name = part[:i]
			idx, _ = strconv.Atoi(strings.TrimSuffix(part[i+1:], "]"))
		}
		next := mappingValue(n, name)
		if next == nil {
			return line
		}
		line = next.line
		n = next.value
		if idx >= 0 {
			if n.Kind != yaml.SequenceNode || idx >= len(n.Content) {
				return line
			}
			n = n.Content[idx]
			line = n.Line
		}
	}
	return line
}

type keyValue struct {
	line  int
	value *yaml.Node
}

func mappingValue(n *yaml.Node, name string) *keyValue {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == name {
			return &keyValue{line: n.Content[i].Line, value: n.Content[i+1]}
		}
	}
	return nil
}
