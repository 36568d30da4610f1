package config_test

import (
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/server/config"
	"github.com/verdict-pdp/verdict/server/decisionlog"
)

// TestEveryByteKeyTakesUnits: every key that counts bytes takes a unit,
// as its siblings do.
func TestEveryByteKeyTakesUnits(t *testing.T) {
	c := mustParse(t, `tokens:
  max_bytes: 16KiB
policy:
  max_unpacked_bytes: 128MiB
decision_log:
  max_record_bytes: 64KiB
limits:
  max_body_bytes: 256KiB
  max_header_bytes: 32KiB
`, "v.yaml")
	if c.Tokens.MaxBytes != 16<<10 || c.Policy.MaxUnpackedBytes != 128<<20 || c.DecisionLog.MaxRecordBytes != 64<<10 ||
		c.Limits.MaxBodyBytes != 256<<10 || c.Limits.MaxHeaderBytes != 32<<10 {
		t.Errorf("tokens %+v, policy %+v, decision log %+v, limits %+v", c.Tokens, c.Policy, c.DecisionLog, c.Limits)
	}
}

func TestLimitsAndCallerHeaders(t *testing.T) {
	c := mustParse(t, `callers:
  trusted_proxies: [10.0.0.0/8, 127.0.0.1, "::1"]
  trust_bundle_file: ca.pem
  xfcc_header: X-Envoy-Client-Cert
  escaped_cert_header: X-Client-Cert
limits:
  max_body_bytes: 1024
  max_json_depth: 8
  shutdown_timeout: 3s
  token_cache_bytes: 32MiB
  decision_cache_bytes: 4194304
  max_concurrent_decisions: 16
  max_connections: 256
  max_body_bytes_in_flight: 16MiB
  eval_heap_limit: 128MiB
`, "/etc/verdict/verdict.yaml")
	if c.Limits.MaxBodyBytes != 1024 || c.Limits.MaxJSONDepth != 8 || c.Limits.ShutdownTimeout != 3*time.Second ||
		c.Limits.TokenCacheBytes != 32<<20 || c.Limits.DecisionCacheBytes != 4<<20 ||
		c.Limits.MaxConcurrentDecisions != 16 || c.Limits.MaxConnections != 256 || c.Limits.MaxBodyBytesInFlight != 16<<20 ||
		c.Limits.EvalHeapLimit != 128<<20 {
		t.Errorf("limits = %+v", c.Limits)
	}
	got, err := c.TrustedProxyPrefixes()
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("::1/128")}
	if len(got) != len(want) {
		t.Fatalf("prefixes = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("prefix %d = %v, want %v", i, got[i], want[i])
		}
	}
	if c.Callers.XFCCHeader != "X-Envoy-Client-Cert" || c.Callers.EscapedCertHeader != "X-Client-Cert" {
		t.Errorf("callers = %+v", c.Callers)
	}
}

func TestLimitsAndCallersErrors(t *testing.T) {
	tests := []invalidCase{
		{name: "bad proxy", data: "callers:\n  trust_bundle_file: ca.pem\n  trusted_proxies:\n    - 10.0.0.0/8\n    - nope\n",
			want: []string{"v.yaml:5: callers.trusted_proxies[1]"}},
		{name: "proxies without bundle", data: "callers:\n  trusted_proxies: [10.0.0.0/8]\n",
			want: []string{"v.yaml:1: callers.trust_bundle_file"}},
		{name: "bad header name", data: "callers:\n  xfcc_header: \"X Bad\"\n",
			want: []string{"v.yaml:2: callers.xfcc_header"}},
		{name: "negative limit", data: "limits:\n  read_timeout: -1s\n",
			want: []string{"v.yaml:2: limits.read_timeout"}},
		{name: "body budget below a body", data: "limits:\n  max_body_bytes: 4194304\n  max_body_bytes_in_flight: 2MiB\n",
			want: []string{"v.yaml:3: limits.max_body_bytes_in_flight: must be at least 1MiB and limits.max_body_bytes"}},
		{name: "body budget too small", data: "limits:\n  max_body_bytes_in_flight: 65536\n",
			want: []string{"v.yaml:2: limits.max_body_bytes_in_flight"}},
		{name: "unknown limit", data: "limits:\n  max_bodybytes: 1\n",
			want: []string{`v.yaml:2: unknown key "max_bodybytes"`}},
	}
	parseInvalidCases(t, tests)
}

// TestConcurrencyLimitsNotNegative: a negative decision or connection
// bound is an error naming its key.
func TestConcurrencyLimitsNotNegative(t *testing.T) {
	for key, want := range map[string]string{
		"max_concurrent_decisions": "limits.max_concurrent_decisions: must not be negative",
		"max_connections":          "limits.max_connections: must not be negative",
	} {
		_, err := config.Parse([]byte("limits:\n  "+key+": -1\n"), "v.yaml")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", key, err, want)
		}
	}
}

// TestRecordBytesWithinReplay: decision_log.max_record_bytes is at most
// what verdict replay reads in one line; a larger record could be written
// and never replayed.
func TestRecordBytesWithinReplay(t *testing.T) {
	if _, err := config.Parse([]byte("decision_log:\n  output: stdout\n  max_record_bytes: 4MiB\n"), "v.yaml"); err != nil {
		t.Errorf("4MiB refused: %v", err)
	}
	if _, err := config.Parse([]byte("decision_log:\n  output: stdout\n  max_record_bytes: 5MiB\n"), "v.yaml"); err == nil || !strings.Contains(err.Error(), "v.yaml:3: decision_log.max_record_bytes: must be between 0 and 4MiB") {
		t.Errorf("5MiB: %v, want refused", err)
	}
	if _, err := decisionlog.New(decisionlog.Options{Writer: io.Discard, MaxRecordBytes: decisionlog.LargestRecordBytes + 1}); !errors.Is(err, decisionlog.ErrOptions) {
		t.Errorf("decisionlog.New past the largest record: %v, want ErrOptions", err)
	}
}
