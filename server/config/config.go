// Package config reads Verdict's YAML configuration file. Unknown keys are
// errors; every error names the file, the line and the key. Relative paths
// in the file are relative to the file's directory.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
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
	Addr string `yaml:"addr"`
	// DiagnosticAddr, when set, serves health, status and metrics on a
	// plain-HTTP listener of their own; status and metrics leave addr.
	DiagnosticAddr string      `yaml:"diagnostic_addr"`
	TLS            *TLS        `yaml:"tls"`
	Policy         Policy      `yaml:"policy"`
	Tokens         Tokens      `yaml:"tokens"`
	Callers        Callers     `yaml:"callers"`
	DecisionLog    DecisionLog `yaml:"decision_log"`
	Limits         Limits      `yaml:"limits"`
	ForwardAuth    ForwardAuth `yaml:"forward_auth"`
	// Explain lets POST /v1/decide?explain=true explain decisions (off by
	// default: it shows the policy's inner workings).
	Explain bool `yaml:"explain"`
	// ExtAuthz, when present, serves Envoy's ext_authz API over gRPC.
	ExtAuthz *ExtAuthz `yaml:"ext_authz"`
	// AuthZEN, when present, serves the AuthZEN 1.0 endpoints.
	AuthZEN *AuthZEN `yaml:"authzen"`
	// Tracing, when present, exports OpenTelemetry traces over OTLP/HTTP.
	Tracing *Tracing `yaml:"tracing"`

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
	// Evaluator chooses how policies are evaluated: auto (the
	// default) uses the compiled evaluator for every snapshot it supports
	// and OPA's topdown for the rest; topdown always uses topdown; compiled
	// refuses to load a snapshot the compiled evaluator does not support.
	Evaluator string `yaml:"evaluator"`
	// RequireTests makes every snapshot's own Rego tests pass before it
	// replaces the serving one; a snapshot without tests is refused.
	RequireTests bool `yaml:"require_tests"`
	// MaxUnpackedBytes and MaxFiles bound a policy set (directory or
	// bundle, uncompressed) while it is read, before anything is trusted;
	// 0 means 128 MiB and 10,000 files. MaxUnpackedBytes also bounds what
	// parsing its data files would allocate, estimated from their bytes
	// before they are parsed (data JSON costs about 20 times its size, YAML
	// more): raise it for a large data.json. Both are passed on as the
	// fields of the same names in bundles.Limits.
	MaxUnpackedBytes ByteSize `yaml:"max_unpacked_bytes"`
	MaxFiles         int      `yaml:"max_files"`
	// Shadow, when present, is a candidate policy evaluated beside the
	// live one on a sampled share of decisions, never changing an answer.
	Shadow *Shadow `yaml:"shadow"`
	// BundleHeaders are sent with every bundle_url request (the shadow's
	// too), for bundle servers that need credentials. Their values are
	// never logged, and are not sent on a redirect to another host.
	BundleHeaders map[string]HeaderValue `yaml:"bundle_headers"`
}

// HeaderValue is a request header's value: a string (where ${NAME} reads
// an environment variable), or {file: PATH, prefix: "Bearer "}: the file's
// contents, trailing line break removed, read anew for every request (so a
// rotated secret is picked up), after prefix.
type HeaderValue struct {
	Value  string
	File   string
	Prefix string
}

// Shadow is a candidate policy: exactly one of Dir, BundleFile and
// BundleURL, watched or polled like the live policy's (same entrypoint,
// verification key, poll interval and size limits; a shadow bundle_url is
// not persisted).
type Shadow struct {
	Dir        string `yaml:"dir"`
	BundleFile string `yaml:"bundle_file"`
	BundleURL  string `yaml:"bundle_url"`
	// Sample is the share of decisions the candidate also answers, in
	// (0, 1]; omitted means 1 (every decision made by policy).
	Sample *float64 `yaml:"sample"`
	// Queue bounds the decisions waiting for the candidate; 0 means 1024.
	Queue int `yaml:"queue"`
	// MaxQueueBytes bounds their estimated memory; 0 means 32 MiB.
	MaxQueueBytes ByteSize `yaml:"max_queue_bytes"`
}

// Tokens configures bearer-token verification.
type Tokens struct {
	Leeway   time.Duration `yaml:"leeway"`
	MaxBytes ByteSize      `yaml:"max_bytes"`
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

// ExtAuthz configures Envoy's ext_authz service over gRPC
// (envoy.service.auth.v3.Authorization/Check).
type ExtAuthz struct {
	// GRPCAddr is the gRPC listen address (host:port); required when the
	// block is present. With tls set, the listener uses the same TLS.
	GRPCAddr string `yaml:"grpc_addr"`
	// TrustedPeers are the addresses (CIDR prefixes or single IPs) of the
	// Envoy proxies whose attributes.source.principal (the caller, method
	// mesh) and attributes.source.address (the client address) are
	// believed; from other peers both are ignored.
	TrustedPeers []string `yaml:"trusted_peers"`
}

// AuthZEN configures the AuthZEN 1.0 endpoints (/access/v1/evaluation,
// /access/v1/evaluations, /.well-known/authzen-configuration). Their
// clients assert the subject, so only the clients listed here may call the
// evaluation endpoints; at least one list must be set.
type AuthZEN struct {
	// TrustedPeers are the peer addresses (CIDR prefixes or single IPs) that
	// may call the evaluation endpoints.
	TrustedPeers []string `yaml:"trusted_peers"`
	// TrustedCallers are the identities of mTLS client certificates (SPIFFE
	// ID, else first DNS SAN, else CN, as input.caller.id names them) that
	// may call them; needs tls.client_ca_file.
	TrustedCallers []string `yaml:"trusted_callers"`
	// BaseURL is the PDP identifier in the metadata and the base of its
	// endpoint URLs (https://pdp.example.com); empty means built from each
	// request's Host and scheme.
	BaseURL string `yaml:"base_url"`
	// MaxEvaluations bounds the items of one batch; 0 means 100.
	MaxEvaluations int `yaml:"max_evaluations"`
}

// Tracing configures OpenTelemetry traces, exported over OTLP/HTTP
// (protobuf) to a collector. The block turns tracing on (so does
// OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT without
// it; OTEL_SDK_DISABLED=true turns it off). Each key set here wins over
// the standard environment variable for the same setting; what the block
// leaves out comes from the OTEL_* environment, then the defaults.
type Tracing struct {
	// Endpoint is the collector's OTLP/HTTP base URL
	// (http://collector:4318); /v1/traces is appended to its path unless
	// the path already ends with it. Empty means
	// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else OTEL_EXPORTER_OTLP_ENDPOINT,
	// else http://localhost:4318.
	Endpoint string `yaml:"endpoint"`
	// SampleRatio is the share, 0 to 1, of the traces that start at
	// Verdict (requests without a traceparent) that are sampled; a
	// caller's traceparent decides for its own trace. Omitted means
	// OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG, else 1.
	SampleRatio *float64 `yaml:"sample_ratio"`
	// ServiceName is the service.name of the spans. Empty means
	// OTEL_SERVICE_NAME (or service.name in OTEL_RESOURCE_ATTRIBUTES),
	// else "verdict".
	ServiceName string `yaml:"service_name"`
}

// TracesURL is the URL spans are sent to, from Endpoint ("" when
// Endpoint is empty): its path with /v1/traces appended, unless it ends
// with it already.
func (t *Tracing) TracesURL() string {
	if t == nil || t.Endpoint == "" {
		return ""
	}
	u, err := url.Parse(t.Endpoint)
	if err != nil {
		return t.Endpoint // validate refused it
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	if !strings.HasSuffix(u.Path, "/v1/traces") {
		u.Path += "/v1/traces"
	}
	return u.String()
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

// DecisionLog says where decision records go and what they hold. In the
// file it is either a target ("stdout", "off", a file path) or an object.
type DecisionLog struct {
	// Output is "stdout" (the default), "off", or a file path (appended to).
	Output string `yaml:"output"`
	// Mask lists JSON pointers (relative to the record, /input/...) of
	// input fields left out of every record; Hash those replaced by their
	// SHA-256.
	Mask []string `yaml:"mask"`
	Hash []string `yaml:"hash"`
	// HashKeyFile and HashKeyEnv name a secret (a file, or an environment
	// variable; a trailing line break is not part of it) of at least 32
	// bytes that makes Hash an HMAC-SHA256 under it: still the same for
	// the same value in every record, but not reversible by guessing
	// without the key. At most one; only with Hash.
	HashKeyFile string `yaml:"hash_key_file"`
	HashKeyEnv  string `yaml:"hash_key_env"`
	// MaxRecordBytes bounds one record; a larger one is written without its
	// input, and counted. 0 means 64 KiB.
	MaxRecordBytes ByteSize `yaml:"max_record_bytes"`
	// MaxQueueRecords and MaxQueueBytes bound the records waiting for the
	// writer (their number, and their estimated memory: an input holds
	// many times its request's size); past either, records are dropped as
	// buffer_full, never waited for. 0 means 4,096 and 64 MiB.
	MaxQueueRecords int      `yaml:"max_queue_records"`
	MaxQueueBytes   ByteSize `yaml:"max_queue_bytes"`
	// MaxRecordsPerSecond bounds how fast records are taken (bursts of one
	// second's worth); those over it are dropped as rate_limited. 0 means
	// no bound.
	MaxRecordsPerSecond float64 `yaml:"max_records_per_second"`
	// Upload, when present, also ships every record to an HTTP collector
	// (upload.go); with it, output may be off.
	Upload *Upload `yaml:"upload"`
}

// maxQueueRecords bounds decision_log.max_queue_records and
// policy.shadow.queue: each is a queue allocated whole at start, and a
// mistyped count must be a configuration error, not an out-of-memory crash.
const maxQueueRecords = 100_000

// minCacheBytes is the least limits.*_cache_bytes and
// max_body_bytes_in_flight accepted.
const minCacheBytes = 1 << 20

// Limits bounds what one request may cost. Zero values mean the server's
// defaults.
type Limits struct {
	MaxBodyBytes      ByteSize      `yaml:"max_body_bytes"`
	MaxJSONDepth      int           `yaml:"max_json_depth"`
	MaxHeaderBytes    ByteSize      `yaml:"max_header_bytes"`
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	ReadTimeout       time.Duration `yaml:"read_timeout"`
	WriteTimeout      time.Duration `yaml:"write_timeout"`
	IdleTimeout       time.Duration `yaml:"idle_timeout"`
	ShutdownTimeout   time.Duration `yaml:"shutdown_timeout"`
	EvalTimeout       time.Duration `yaml:"eval_timeout"`
	// MaxConcurrentDecisions and MaxConnections are server.Limits'; 0
	// means the server's defaults.
	MaxConcurrentDecisions int `yaml:"max_concurrent_decisions"`
	MaxConnections         int `yaml:"max_connections"`
	// MaxBodyBytesInFlight is server.Limits'; 0 means 64 MiB, and
	// anything else must be at least minCacheBytes and MaxBodyBytes.
	MaxBodyBytesInFlight ByteSize `yaml:"max_body_bytes_in_flight"`
	// TokenCacheBytes bounds the verified-token cache and
	// DecisionCacheBytes each policy snapshot's decision cache, in bytes of
	// estimated memory; 0 means authz's defaults (64 MiB and 16 MiB), and
	// anything else must be at least minCacheBytes.
	TokenCacheBytes    ByteSize `yaml:"token_cache_bytes"`
	DecisionCacheBytes ByteSize `yaml:"decision_cache_bytes"`
	// EvalHeapLimit is authz.Options.EvalHeapLimit; 0 means half the Go
	// runtime's soft memory limit when there is one (GOMEMLIMIT, or the
	// one serve derives from a container's limit), else none; anything
	// else must be at least minCacheBytes.
	EvalHeapLimit ByteSize `yaml:"eval_heap_limit"`
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
	// One document: a second one (files joined with ---, or a template
	// that starts with an empty one) would otherwise be left out silently,
	// and with it TLS, the policy or the issuers.
	for {
		var next yaml.Node
		err := dec.Decode(&next)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s", ErrInvalid, yamlError(file, err))
		}
		if len(next.Content) > 0 && next.Content[0].Tag != "!!null" {
			return nil, fmt.Errorf("%w: %s:%d: a second YAML document: the configuration is one document", ErrInvalid, file, next.Line)
		}
	}
	c := &Config{File: file}
	if root.Kind == 0 { // empty file
		return c, nil
	}
	// Unknown keys, on the file as written.
	strict := yaml.NewDecoder(bytes.NewReader(data))
	strict.KnownFields(true)
	if err := strict.Decode(&Config{}); err != nil {
		if unknown := unknownKeys(file, err); unknown != "" {
			return nil, fmt.Errorf("%w: %s", ErrInvalid, unknown)
		}
	}
	// Then the values, with ${NAME} expanded.
	fromEnv, err := expandEnv(file, &root, os.LookupEnv)
	if err != nil {
		return nil, err
	}
	if err := root.Decode(c); err != nil {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, valueErrors(file, err, &root, fromEnv))
	}
	if err := c.validate(&root); err != nil {
		return nil, err
	}
	return c, nil
}

// Path resolves a path from the file against the file's directory.
func (c *Config) Path(p string) string {
	if p == "" || filepath.IsAbs(p) || c.File == "" {
		return p
	}
	return filepath.Join(filepath.Dir(c.File), p)
}
