package config_test

import (
	"strings"
	"testing"

	"github.com/verdict-pdp/verdict/server/config"
)

func TestParseTracing(t *testing.T) {
	c := mustParse(t, "tracing: {endpoint: http://collector:4318, sample_ratio: 0.1, service_name: verdict-eu}\n", "v.yaml")
	if tr := c.Tracing; tr == nil || tr.Endpoint != "http://collector:4318" || tr.SampleRatio == nil ||
		*tr.SampleRatio != 0.1 || tr.ServiceName != "verdict-eu" {
		t.Fatalf("tracing = %+v", c.Tracing)
	}

	// An empty block is tracing with the environment's settings; no block
	// is none (unless the environment names a collector: cmd's rule).
	c, err := config.Parse([]byte("tracing: {}\n"), "v.yaml")
	if err != nil || c.Tracing == nil || c.Tracing.SampleRatio != nil || c.Tracing.TracesURL() != "" {
		t.Errorf("tracing: {} = %+v, %v", c.Tracing, err)
	}
	c, err = config.Parse([]byte("addr: 127.0.0.1:8181\n"), "v.yaml")
	if err != nil || c.Tracing != nil {
		t.Errorf("no block: %+v, %v", c.Tracing, err)
	}
}

// TestTracesURL: the endpoint is a base URL, as OTEL_EXPORTER_OTLP_ENDPOINT
// is; a full traces URL is kept.
func TestTracesURL(t *testing.T) {
	for endpoint, want := range map[string]string{
		"http://collector:4318":                 "http://collector:4318/v1/traces",
		"http://collector:4318/":                "http://collector:4318/v1/traces",
		"https://otlp.example.com/tenant-a":     "https://otlp.example.com/tenant-a/v1/traces",
		"https://otlp.example.com/x/v1/traces":  "https://otlp.example.com/x/v1/traces",
		"http://[::1]:4318":                     "http://[::1]:4318/v1/traces",
		"http://127.0.0.1:4318/otlp/v1/traces/": "http://127.0.0.1:4318/otlp/v1/traces",
	} {
		if got := (&config.Tracing{Endpoint: endpoint}).TracesURL(); got != want {
			t.Errorf("TracesURL(%q) = %q, want %q", endpoint, got, want)
		}
	}
}

func TestParseTracingErrors(t *testing.T) {
	tests := []invalidCase{
		{name: "grpc endpoint", data: "tracing:\n  endpoint: grpc://collector:4317\n",
			want: []string{`v.yaml:2: tracing.endpoint: "grpc://collector:4317": want an http or https URL`}},
		{name: "no scheme", data: "tracing:\n  endpoint: collector:4318\n",
			want: []string{`v.yaml:2: tracing.endpoint:`}},
		{name: "credentials in the URL", data: "tracing:\n  endpoint: https://user:pw@collector\n",
			want: []string{`v.yaml:2: tracing.endpoint: must not carry user info`}},
		// A query or fragment can hold a credential: the error names the
		// URL without it, as the logs do.
		{name: "query", data: "tracing:\n  endpoint: http://collector:4318?api_key=s3cr3t\n",
			want: []string{`v.yaml:2: tracing.endpoint: "http://collector:4318" must not have a query`}},
		{name: "fragment", data: "tracing:\n  endpoint: http://collector:4318/#s3cr3t\n",
			want: []string{`v.yaml:2: tracing.endpoint: "http://collector:4318/" must not have a fragment`}},
		{name: "ratio over 1", data: "tracing:\n  sample_ratio: 10\n",
			want: []string{`v.yaml:2: tracing.sample_ratio: must be between 0 and 1, not 10`}},
		{name: "negative ratio", data: "tracing:\n  sample_ratio: -0.5\n",
			want: []string{`v.yaml:2: tracing.sample_ratio: must be between 0 and 1`}},
		{name: "not a number", data: "tracing:\n  sample_ratio: all\n",
			want: []string{`v.yaml:2:`}},
		{name: "empty block", data: "tracing:\n",
			want: []string{`v.yaml:1: tracing: the block is empty: write tracing: {}`}},
		{name: "unknown key", data: "tracing:\n  exporter: zipkin\n",
			want: []string{`v.yaml:2: unknown key "exporter"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := parseInvalid(t, tc.data, tc.want...); strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("the error shows a secret: %v", err)
			}
		})
	}
}
