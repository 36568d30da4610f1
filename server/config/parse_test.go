package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/server/config"
)

func TestParseDesignExample(t *testing.T) {
	data := `addr: 127.0.0.1:8181
tls: {cert_file: server.pem, key_file: server-key.pem,
      client_ca_file: ca.pem, client_auth: request}
policy:
  dir: ./policies
  entrypoint: authz
tokens:
  leeway: 30s
  max_bytes: 8192
  issuers:
    - issuer: https://idp.example.com
      audiences: [orders-api]
      algorithms: [RS256, ES256]
      jwks_file: keys/jwks.json
callers:
  trusted_proxies: [127.0.0.1/32]
  trust_bundle_file: ca.pem
decision_log: stdout
`
	c := mustParse(t, data, "/etc/verdict/verdict.yaml")
	if c.Addr != "127.0.0.1:8181" || c.TLS.ClientAuth != "request" || c.Tokens.Leeway != 30*time.Second ||
		c.Tokens.Issuers[0].Algorithms[1] != "ES256" || c.Callers.TrustedProxies[0] != "127.0.0.1/32" {
		t.Errorf("parsed %+v", c)
	}
	if got := c.Path(c.Policy.Dir); got != "/etc/verdict/policies" {
		t.Errorf("relative path resolved to %q", got)
	}
	if got := c.Path("/abs/ca.pem"); got != "/abs/ca.pem" {
		t.Errorf("absolute path changed to %q", got)
	}
}

// TestParseTrustKeys reads the keys that say whom Verdict believes, and
// their defaults: no forwarded-certificate header and no caller audience
// unless configured.
func TestParseTrustKeys(t *testing.T) {
	c := mustParse(t, "callers:\n  trusted_proxies: [10.0.0.1]\n  trust_bundle_file: ca.pem\n", "v.yaml")
	if c.Callers.XFCCHeader != "" || c.Callers.EscapedCertHeader != "" || len(c.Callers.TokenAudiences) != 0 || c.Policy.RequireTests {
		t.Errorf("defaults: %+v %+v", c.Callers, c.Policy)
	}
	c = mustParse(t, `policy:
  require_tests: true
  max_unpacked_bytes: 1048576
  max_files: 50
callers:
  trusted_proxies: [10.0.0.1]
  trust_bundle_file: ca.pem
  escaped_cert_header: X-SSL-Client-Cert
  token_audiences: [verdict-callers]
`, "v.yaml")
	if c.Callers.EscapedCertHeader != "X-SSL-Client-Cert" || c.Callers.TokenAudiences[0] != "verdict-callers" ||
		!c.Policy.RequireTests || c.Policy.MaxUnpackedBytes != 1<<20 || c.Policy.MaxFiles != 50 {
		t.Errorf("parsed %+v %+v", c.Callers, c.Policy)
	}
}

func TestParseErrorsNameFileLineAndKey(t *testing.T) {
	tests := []invalidCase{
		{"unknown top-level key", "adr: x\n", []string{`v.yaml:1: unknown key "adr"`}},
		{"unknown nested key", "policy:\n  dir: p\n  entrypiont: authz\n", []string{`v.yaml:3: unknown key "entrypiont"`}},
		{"wrong type", "tokens:\n  max_bytes: lots\n", []string{"v.yaml:2:"}},
		{"bad duration", "tokens:\n  leeway: forever\n", []string{"v.yaml:2:"}},
		{"syntax", "policy: [\n", []string{"v.yaml:"}},
		{"two policy sources", "policy:\n  dir: p\n  bundle_file: b.tar.gz\n", []string{"v.yaml:1: policy: set at most one"}},
		{"issuer without audiences or keys", "tokens:\n  issuers:\n    - issuer: https://x\n      algorithms: [RS256]\n",
			[]string{"v.yaml:3: tokens.issuers[0].audiences: at least one audience", "v.yaml:3: tokens.issuers[0]: set exactly one of"}},
		{"two key sources", "tokens:\n  issuers:\n    - issuer: https://x\n      audiences: [a]\n      algorithms: [RS256]\n      jwks_file: a\n      public_key_file: b\n",
			[]string{"tokens.issuers[0]: set exactly one of"}},
		{"bad client_auth", "tls:\n  cert_file: a\n  key_file: b\n  client_ca_file: c\n  client_auth: maybe\n",
			[]string{`v.yaml:5: tls.client_auth: must be request or require, not "maybe"`}},
		{"leeway too large", "tokens:\n  leeway: 1h\n", []string{"v.yaml:2: tokens.leeway"}},
		{"certificate header without trusted proxies", "callers:\n  escaped_cert_header: X-SSL-Client-Cert\n",
			[]string{"v.yaml:2: callers.escaped_cert_header: forwarded certificates are believed only from trusted_proxies"}},
		{"the same certificate header twice", "callers:\n  trusted_proxies: [10.0.0.1]\n  trust_bundle_file: ca.pem\n  xfcc_header: X-Cert\n  escaped_cert_header: x-cert\n",
			[]string{"v.yaml:5: callers.escaped_cert_header: must differ from xfcc_header"}},
		{"a caller audience that is also an issuer audience", "tokens:\n  issuers:\n    - {issuer: https://x, audiences: [api], algorithms: [RS256], jwks_file: k}\ncallers:\n  token_audiences: [api]\n",
			[]string{`callers.token_audiences[0]: "api" is also an audience of tokens.issuers[0]`}},
		{"client address header without trusted proxies", "forward_auth:\n  client_addr_header: X-Forwarded-For\n",
			[]string{"v.yaml:2: forward_auth.client_addr_header: the client address is believed only from trusted_proxies"}},
		{"empty caller audience", "callers:\n  token_audiences: [\"\"]\n", []string{"callers.token_audiences[0]: must not be empty"}},
		{"negative bundle size", "policy:\n  max_unpacked_bytes: -1\n", []string{"v.yaml:2: policy.max_unpacked_bytes: want a size"}},
		{"negative file count", "policy:\n  max_files: -2\n", []string{"v.yaml:2: policy.max_files"}},
		{"shadow without a source", "policy:\n  dir: p\n  shadow:\n    sample: 0.5\n", []string{"v.yaml:3: policy.shadow: set exactly one of"}},
		{"shadow with two sources", "policy:\n  shadow: {dir: a, bundle_url: https://b.test/b.tar.gz}\n", []string{"policy.shadow: set exactly one of"}},
		{"shadow sample zero", "policy:\n  shadow:\n    dir: c\n    sample: 0\n", []string{"v.yaml:4: policy.shadow.sample: must be more than 0"}},
		{"shadow sample above one", "policy:\n  shadow:\n    dir: c\n    sample: 1.5\n", []string{"v.yaml:4: policy.shadow.sample"}},
		{"bundle headers without bundle_url", "policy:\n  dir: p\n  bundle_headers: {X-Key: a}\n", []string{"v.yaml:3: policy.bundle_headers: applies only to bundle_url"}},
		{"bundle header the client sets", "policy:\n  bundle_url: https://b.test/b.tar.gz\n  bundle_headers:\n    host: evil.test\n", []string{"policy.bundle_headers.host: set by the HTTP client itself"}},
		{"bundle header with a line break", "policy:\n  bundle_url: https://b.test/b.tar.gz\n  bundle_headers:\n    X-Key: \"s3cret\\r\\nX-Evil: 1\"\n", []string{"policy.bundle_headers.X-Key: the value has a control character"}},
		{"bundle header twice, in two cases", "policy:\n  bundle_url: https://b.test/b.tar.gz\n  bundle_headers:\n    Authorization: a\n    authorization: b\n",
			[]string{"policy.bundle_headers.authorization: the same header as Authorization"}},
		{"bundle header file without file", "policy:\n  bundle_url: https://b.test/b.tar.gz\n  bundle_headers:\n    X-Key: {prefix: a}\n", []string{"v.yaml:4: file is required"}},
		{"bundle header unknown key", "policy:\n  bundle_url: https://b.test/b.tar.gz\n  bundle_headers:\n    X-Key: {file: k, prefx: a}\n", []string{`v.yaml:4: unknown key "prefx"`}},
		{"diagnostic addr without a port", "diagnostic_addr: localhost\n", []string{"v.yaml:1: diagnostic_addr: want HOST:PORT"}},
		{"diagnostic addr is addr", "addr: 127.0.0.1:8181\ndiagnostic_addr: 127.0.0.1:8181\n", []string{"v.yaml:2: diagnostic_addr: must differ from addr"}},
		{"poll interval with no bundle_url", "policy:\n  dir: p\n  poll_interval: 5s\n", []string{"v.yaml:3: policy.poll_interval: applies only to bundle_url"}},
		{"cache too small to hold a token", "limits:\n  token_cache_bytes: 64KiB\n", []string{"v.yaml:2: limits.token_cache_bytes: must be at least 1MiB"}},
		{"cache size that is not a size", "limits:\n  token_cache_bytes: lots\n", []string{"v.yaml:2: limits.token_cache_bytes"}},
		{"heap limit too small", "limits:\n  eval_heap_limit: 512KiB\n", []string{"v.yaml:2: limits.eval_heap_limit: must be at least 1MiB"}},
		{"unknown evaluator", "policy:\n  evaluator: wasm\n", []string{`v.yaml:2: policy.evaluator: must be auto, compiled or topdown, got "wasm"`}},

		// Settings an operator believes made Verdict safer, and did not.
		{"a second document", "---\n---\naddr: 127.0.0.1:0\ntls: {cert_file: a, key_file: b}\n", []string{"a second YAML document"}},
		{"TLS in a second document", "addr: 127.0.0.1:0\n---\ntls: {cert_file: a, key_file: b}\n", []string{"v.yaml:2: a second YAML document"}},
		{"a signing algorithm without a key", "policy:\n  bundle_file: b.tar.gz\n  verification_algorithm: RS256\n",
			[]string{"v.yaml:3: policy.verification_algorithm: needs verification_key_file"}},
		{"a verification key with a directory", "policy:\n  dir: policies\n  verification_key_file: k.pem\n",
			[]string{"v.yaml:3: policy.verification_key_file: verifies bundles, and policy.dir is a directory"}},
		{"a client CA without client_auth", "tls:\n  cert_file: a\n  key_file: b\n  client_ca_file: c\n",
			[]string{"tls.client_auth: required with client_ca_file"}},
		{"decision log off written otherwise", "decision_log: Off\n", []string{`v.yaml:1: decision_log: "Off" is taken for a file name`}},
		{"decision log false", "decision_log: false\n", []string{`decision_log: "false" is taken for a file name`}},
		{"decision log output none", "decision_log:\n  output: none\n", []string{`decision_log: "none" is taken for a file name`}},
		{"persist dir OFF", "policy:\n  bundle_url: https://b.test/b.tar.gz\n  persist_dir: OFF\n", []string{`policy.persist_dir: "OFF" is taken`}},
		{"key set persist dir no", "tokens:\n  jwks_persist_dir: no\n", []string{`tokens.jwks_persist_dir: "no" is taken`}},
		{"every address a trusted proxy", "callers:\n  trusted_proxies: [0.0.0.0/0]\n  trust_bundle_file: ca.pem\n  xfcc_header: X-Cert\n",
			[]string{`"0.0.0.0/0" trusts every address`}},
		{"every IPv6 address a trusted peer", "ext_authz: {grpc_addr: 127.0.0.1:9191, trusted_peers: [\"::/0\"]}\n", []string{`"::/0" trusts every address`}},
		{"algorithm none", "tokens:\n  issuers:\n    - issuer: x\n      audiences: [a]\n      algorithms: [ES256, none]\n      jwks_file: k.json\n",
			[]string{`tokens.issuers[0].algorithms[1]`, `"none" is never allowed`}},
		{"algorithm misspelt", "tokens:\n  issuers:\n    - issuer: x\n      audiences: [a]\n      algorithms: [es256]\n      jwks_file: k.json\n",
			[]string{`tokens.issuers[0].algorithms[0]`, `"es256" is not a supported algorithm (one of ES256, ES384,`}},
		{"a prefix with host bits", "authzen: {trusted_peers: [10.1.2.3/8]}\n", []string{`"10.1.2.3/8" has bits set past its length: write 10.0.0.0/8`}},
	}
	parseInvalidCases(t, tests)
}

func TestParseShadow(t *testing.T) {
	c := mustParse(t, "policy:\n  dir: p\n  poll_interval: 30s\n  shadow:\n    bundle_url: https://b.test/candidate.tar.gz\n    sample: 0.1\n    queue: 64\n    max_queue_bytes: 8MiB\n", "v.yaml")
	sh := c.Policy.Shadow
	if sh == nil || sh.BundleURL != "https://b.test/candidate.tar.gz" || sh.Sample == nil || *sh.Sample != 0.1 || sh.Queue != 64 || sh.MaxQueueBytes != 8<<20 {
		t.Errorf("parsed %+v", sh)
	}
	if _, err := config.Parse([]byte("policy:\n  dir: p\n  shadow:\n    dir: q\n    max_queue_bytes: -1\n"), "v.yaml"); err == nil || !strings.Contains(err.Error(), "policy.shadow.max_queue_bytes") {
		t.Errorf("negative max_queue_bytes: %v", err)
	}
	if _, err := config.Parse([]byte("policy:\n  dir: p\n  shadow:\n    dir: q\n    queue: 100000000000\n"), "v.yaml"); err == nil || !strings.Contains(err.Error(), "policy.shadow.queue: must be between 0 and 100000") {
		t.Errorf("huge queue: %v", err)
	}
}

func TestEmptyFileIsZeroConfig(t *testing.T) {
	c, err := config.Parse(nil, "empty.yaml")
	if err != nil || c.Addr != "" || len(c.Tokens.Issuers) != 0 {
		t.Fatalf("empty file: %+v, %v", c, err)
	}
}

func TestRemotePolicyKeys(t *testing.T) {
	c := mustParse(t, "policy:\n  bundle_url: https://bundles.test/authz.tar.gz\n  poll_interval: 10s\n  max_age: 5m\n  persist_dir: cache\n  verification_key_file: k.pem\n  verification_algorithm: ES256\n", "/etc/v.yaml")
	if c.Policy.MaxAge != 5*time.Minute || c.Policy.PersistDir != "cache" || c.Policy.VerificationAlgorithm != "ES256" {
		t.Errorf("policy = %+v", c.Policy)
	}
	_, err := config.Parse([]byte("policy:\n  dir: p\n  max_age: 5m\n"), "v.yaml")
	if err == nil || !strings.Contains(err.Error(), "apply only to bundle_url") {
		t.Errorf("max_age with a directory: %v", err)
	}
}

// TestDecisionLogForms: decision_log is a target or an object; the
// object's keys are checked like every other.
func TestDecisionLogForms(t *testing.T) {
	c, err := config.Parse([]byte("decision_log: off\n"), "v.yaml")
	if err != nil || c.DecisionLog.Output != "off" {
		t.Fatalf("string form: %+v, %v", c.DecisionLog, err)
	}
	c, err = config.Parse([]byte("decision_log:\n  output: decisions.jsonl\n  mask: [/input/subject/claims/email]\n  hash: [/input/subject/id]\n  max_record_bytes: 32768\n  max_queue_records: 100\n  max_queue_bytes: 2MiB\n  max_records_per_second: 2.5\n"), "v.yaml")
	if err != nil || c.DecisionLog.Output != "decisions.jsonl" || c.DecisionLog.Mask[0] != "/input/subject/claims/email" ||
		c.DecisionLog.Hash[0] != "/input/subject/id" || c.DecisionLog.MaxRecordBytes != 32768 ||
		c.DecisionLog.MaxQueueRecords != 100 || c.DecisionLog.MaxQueueBytes != 2<<20 || c.DecisionLog.MaxRecordsPerSecond != 2.5 {
		t.Fatalf("object form: %+v, %v", c.DecisionLog, err)
	}
	for data, want := range map[string]string{
		"decision_log:\n  output: stdout\n  masks: [/input/x]\n":               `v.yaml:3: unknown key "masks"`,
		"decision_log:\n  mask: [/subject/claims/email]\n":                     "decision_log.mask[0]",
		"decision_log:\n  output: off\n  mask: [/input/x]\n":                   "do nothing with output off",
		"decision_log:\n  output: stdout\n  max_record_bytes: -1\n":            "decision_log.max_record_bytes",
		"decision_log:\n  output: stdout\n  max_queue_records: -1\n":           "decision_log.max_queue_records",
		"decision_log:\n  output: stdout\n  max_queue_records: 100000000000\n": "decision_log.max_queue_records: must be between 0 and 100000",
		"decision_log:\n  output: stdout\n  max_queue_bytes: -1\n":             "decision_log.max_queue_bytes",
		"decision_log:\n  output: off\n  max_queue_bytes: 1MiB\n":              "do nothing with output off",
		"decision_log:\n  output: stdout\n  max_records_per_second: -1\n":      "decision_log.max_records_per_second",
		"decision_log:\n  output: stdout\n  max_records_per_second: .nan\n":    "decision_log.max_records_per_second",
		"decision_log:\n  output: stdout\n  max_records_per_second: .inf\n":    "decision_log.max_records_per_second",
		"decision_log:\n  output: stdout\n  max_records_per_second: many\n":    "max_records_per_second",
		"decision_log:\n  output: off\n  max_records_per_second: 10\n":         "do nothing with output off",
		"decision_log: [stdout]\n":                                             "decision_log",
	} {
		if _, err := config.Parse([]byte(data), "v.yaml"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error containing %q", data, err, want)
		}
	}
}
