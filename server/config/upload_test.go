package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/verdict-pdp/verdict/server/config"
)

func TestParseUpload(t *testing.T) {
	t.Setenv("VERDICT_TEST_TOKEN", "s3cr3t")
	c := mustParse(t, `decision_log:
  output: off
  mask: [/input/subject/claims/email]
  upload:
    url: https://collector:8443/verdict
    interval: 2s
    max_batch_records: 500
    max_batch_bytes: 1MiB
    max_buffer_records: 5000
    max_buffer_bytes: 8388608
    timeout: 3s
    max_attempts: 4
    ca_file: collector-ca.pem
    headers:
      Authorization: "Bearer ${VERDICT_TEST_TOKEN}"
      X-Token: {file: token, prefix: "Token "}
`, "/etc/verdict/v.yaml")
	want := &config.Upload{URL: "https://collector:8443/verdict", Interval: 2 * time.Second, MaxBatchRecords: 500,
		MaxBatchBytes: 1 << 20, MaxBufferRecords: 5000, MaxBufferBytes: 8 << 20, Timeout: 3 * time.Second,
		MaxAttempts: 4, CAFile: "collector-ca.pem", Headers: map[string]config.HeaderValue{
			"Authorization": {Value: "Bearer s3cr3t"}, "X-Token": {File: "token", Prefix: "Token "}}}
	if diff := cmp.Diff(want, c.DecisionLog.Upload); diff != "" {
		t.Errorf("upload (-want +got):\n%s", diff)
	}
	if !c.DecisionLog.Enabled() || c.DecisionLog.Output != "off" {
		t.Errorf("decision log %+v: want enabled (upload) with output off", c.DecisionLog)
	}
	for _, tc := range []struct {
		yaml string
		want bool
	}{
		{yaml: "decision_log: off\n", want: false},
		{yaml: "decision_log: stdout\n", want: true},
		{yaml: "{}\n", want: true},
		{yaml: "decision_log: {output: off, upload: {url: 'http://c/in'}}\n", want: true},
	} {
		c := mustParse(t, tc.yaml, "v.yaml")
		if got := c.DecisionLog.Enabled(); got != tc.want {
			t.Errorf("%q: Enabled() = %v, want %v", tc.yaml, got, tc.want)
		}
	}
}

func TestParseByteSizes(t *testing.T) {
	for in, want := range map[string]int{"1048576": 1 << 20, "512KiB": 512 << 10, "1MiB": 1 << 20, "2 MiB": 2 << 20,
		"1GiB": 1 << 30, "100B": 100} {
		c, err := config.Parse([]byte("decision_log:\n  max_record_bytes: 1\n  upload: {url: 'http://c/in', max_batch_bytes: "+in+", max_buffer_bytes: "+in+"}\n"), "v.yaml")
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if got := int(c.DecisionLog.Upload.MaxBufferBytes); got != want || int(c.DecisionLog.Upload.MaxBatchBytes) != want {
			t.Errorf("%s = %d, want %d", in, got, want)
		}
	}
}

func TestUploadErrors(t *testing.T) {
	t.Setenv("VERDICT_TEST_SECRET", "s3cr3t")
	tests := []struct {
		name, yaml string
		want       string
	}{
		{name: "unknown key", yaml: "decision_log:\n  upload:\n    url: http://c/in\n    intervall: 5s\n",
			want: `v.yaml:4: unknown key "intervall"`},
		{name: "not an object", yaml: "decision_log:\n  upload: http://c/in\n", want: "v.yaml:2: decision_log.upload: want an object"},
		{name: "no url", yaml: "decision_log:\n  upload: {interval: 5s}\n", want: "v.yaml:2: decision_log.upload.url: required"},
		{name: "not http", yaml: "decision_log:\n  upload: {url: 'ftp://c/in'}\n", want: "decision_log.upload.url: \"ftp://c/in\": want an http or https URL"},
		{name: "not http, with a credential in the query", yaml: "decision_log:\n  upload: {url: 'htps://c/in?token=${VERDICT_TEST_SECRET}'}\n",
			want: "decision_log.upload.url: \"htps://c/in\": want an http or https URL"},
		{name: "no host, with a credential in the query", yaml: "decision_log:\n  upload: {url: 'https:///in?token=${VERDICT_TEST_SECRET}'}\n",
			want: "decision_log.upload.url: \"https:///in\" has no host"},
		{name: "fragment, with a credential in the query", yaml: "decision_log:\n  upload: {url: 'https://c/in?token=${VERDICT_TEST_SECRET}#x'}\n",
			want: "decision_log.upload.url: \"https://c/in\" must not have a fragment"},
		{name: "user info", yaml: "decision_log:\n  upload: {url: 'https://u:${VERDICT_TEST_SECRET}@c/in'}\n", want: "must not carry user info"},
		{name: "a CA for a collector reached without TLS", yaml: "decision_log:\n  upload: {url: 'HTTP://c/in', ca_file: ca.pem}\n",
			want: "decision_log.upload.ca_file: set with an http:// url"},
		{name: "negative", yaml: "decision_log:\n  upload: {url: 'http://c/in', timeout: -1s}\n", want: "decision_log.upload.timeout: must not be negative"},
		{name: "bad size", yaml: "decision_log:\n  upload:\n    url: http://c/in\n    max_batch_bytes: 1MB\n",
			want: `v.yaml:4: decision_log.upload.max_batch_bytes: want a size such as 1048576, 512KiB or 1MiB, got "1MB"`},
		{name: "batch below the record cap", yaml: "decision_log:\n  max_record_bytes: 8192\n  upload:\n    url: http://c/in\n    max_batch_bytes: 4KiB\n",
			want: "v.yaml:5: decision_log.upload.max_batch_bytes: 4096 is below max_record_bytes (8192)"},
		{name: "batch below the default record cap", yaml: "decision_log:\n  upload: {url: 'http://c/in', max_batch_bytes: 1000}\n",
			want: "below max_record_bytes (65536)"},
		{name: "buffer below a batch", yaml: "decision_log:\n  upload: {url: 'http://c/in', max_buffer_records: 10}\n",
			want: "decision_log.upload.max_buffer_records: 10 is below max_batch_records (1000)"},
		{name: "buffer bytes below a batch", yaml: "decision_log:\n  upload: {url: 'http://c/in', max_batch_bytes: 32MiB}\n",
			want: "decision_log.upload.max_buffer_bytes: 16777216 is below max_batch_bytes (33554432)"},
		{name: "reserved header", yaml: "decision_log:\n  upload: {url: 'http://c/in', headers: {content-encoding: br}}\n",
			want: "decision_log.upload.headers.content-encoding: set by Verdict itself"},
		{name: "client header", yaml: "decision_log:\n  upload: {url: 'http://c/in', headers: {Host: x}}\n",
			want: "decision_log.upload.headers.Host: set by the HTTP client itself"},
		{name: "control character, never shown", yaml: "decision_log:\n  upload: {url: 'http://c/in', headers: {Authorization: \"Bearer ${VERDICT_TEST_SECRET}\\n\"}}\n",
			want: "decision_log.upload.headers.Authorization: the value has a control character"},
		{name: "unset variable", yaml: "decision_log:\n  upload: {url: 'http://c/in', headers: {Authorization: \"Bearer ${VERDICT_TEST_UNSET}\"}}\n",
			want: "VERDICT_TEST_UNSET"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := parseInvalid(t, tc.yaml, tc.want)
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("the error shows a secret: %v", err)
			}
		})
	}
}

// TestUploadKeepsMaskAndCap: mask, hash and max_record_bytes are for the
// upload too, so output off with an upload is not an error.
func TestUploadKeepsMaskAndCap(t *testing.T) {
	if _, err := config.Parse([]byte("decision_log:\n  output: off\n  max_record_bytes: 4096\n  mask: [/input/x]\n"), "v.yaml"); err == nil {
		t.Error("mask with output off and no upload accepted")
	}
	if _, err := config.Parse([]byte("decision_log:\n  output: off\n  max_record_bytes: 4096\n  mask: [/input/x]\n  upload: {url: 'http://c/in'}\n"), "v.yaml"); err != nil {
		t.Error(err)
	}
}
