package config

import (
	"cmp"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
	"golang.org/x/net/http/httpguts"

	"github.com/verdict-pdp/verdict/server/decisionlog"
)

// Upload ships decision records to an HTTP collector (decision_log.upload):
// gzip'd JSON arrays POSTed in batches. Zero values mean the defaults of
// decisionlog.UploadOptions, which the README lists.
type Upload struct {
	// URL is the collector's http(s) URL (required).
	URL string `yaml:"url"`
	// Interval is the longest a record waits before its batch is sent
	// (5s); a full batch leaves at once.
	Interval time.Duration `yaml:"interval"`
	// MaxBatchRecords and MaxBatchBytes bound one batch (1000 records,
	// 1MiB of JSON before compression); MaxBatchBytes must be at least
	// max_record_bytes.
	MaxBatchRecords int      `yaml:"max_batch_records"`
	MaxBatchBytes   ByteSize `yaml:"max_batch_bytes"`
	// MaxBufferRecords and MaxBufferBytes bound what waits for the
	// collector (10000 records, 16MiB); beyond them records are dropped.
	MaxBufferRecords int      `yaml:"max_buffer_records"`
	MaxBufferBytes   ByteSize `yaml:"max_buffer_bytes"`
	// Timeout bounds one request (10s).
	Timeout time.Duration `yaml:"timeout"`
	// MaxAttempts is how many times a batch is sent before it is dropped
	// while the collector fails (10).
	MaxAttempts int `yaml:"max_attempts"`
	// Headers are sent with every request (Authorization, say); their
	// values are never logged.
	Headers map[string]HeaderValue `yaml:"headers"`
	// CAFile holds PEM CAs trusted for the collector instead of the system
	// roots.
	CAFile string `yaml:"ca_file"`
}

// uploadKeys are the keys of the decision_log.upload object.
var uploadKeys = []string{"url", "interval", "max_batch_records", "max_batch_bytes", "max_buffer_records",
	"max_buffer_bytes", "timeout", "max_attempts", "headers", "ca_file"}

// UnmarshalYAML reads decision_log.upload, an object whose keys are all
// known (the decision_log object is decoded on its own, without the file's
// strict decoder).
func (u *Upload) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: decision_log.upload: want an object such as {url: http://collector:8080/verdict}", n.Line)
	}
	if err := knownKeys(n, uploadKeys, "Upload"); err != nil {
		return err
	}
	type plain Upload
	return n.Decode((*plain)(u))
}

// Enabled reports whether decisions are logged at all: to an output or to
// a collector.
func (d DecisionLog) Enabled() bool { return d.Output != "off" || d.Upload != nil }

// checkUpload checks decision_log.upload, with the defaults filled in
// where the limits are compared.
func (c *Config) checkUpload(bad func(key, format string, args ...any)) {
	up := c.DecisionLog.Upload
	if up == nil {
		return
	}
	const key = "decision_log.upload"
	if up.URL == "" {
		bad(key+".url", "required: the collector's http(s) URL")
	} else if err := checkHTTPURL(up.URL, true, ""); err != nil {
		bad(key+".url", "%v", err)
	} else if up.CAFile != "" && !strings.HasPrefix(strings.ToLower(up.URL), "https:") {
		// The operator believes the collector is reached over TLS; its
		// headers (a credential) would go in the clear.
		bad(key+".ca_file", "set with an http:// url, which uses no TLS: its headers would be sent in the clear (use https)")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"interval", up.Interval}, {"timeout", up.Timeout}} {
		if d.v < 0 {
			bad(key+"."+d.name, "must not be negative")
		}
	}
	for _, n := range []struct {
		name string
		v    int
	}{{"max_batch_records", up.MaxBatchRecords}, {"max_batch_bytes", int(up.MaxBatchBytes)},
		{"max_buffer_records", up.MaxBufferRecords}, {"max_buffer_bytes", int(up.MaxBufferBytes)},
		{"max_attempts", up.MaxAttempts}} {
		if n.v < 0 {
			bad(key+"."+n.name, "must not be negative")
		}
	}
	record := cmp.Or(int(c.DecisionLog.MaxRecordBytes), decisionlog.DefaultMaxRecordBytes)
	batchRecords := cmp.Or(up.MaxBatchRecords, decisionlog.DefaultMaxBatchRecords)
	batchBytes := cmp.Or(int(up.MaxBatchBytes), decisionlog.DefaultMaxBatchBytes)
	if batchBytes < record {
		bad(key+".max_batch_bytes", "%d is below max_record_bytes (%d): records within that cap would not fit in a batch", batchBytes, record)
	}
	if b := cmp.Or(up.MaxBufferRecords, decisionlog.DefaultMaxBufferRecords); b < batchRecords {
		bad(key+".max_buffer_records", "%d is below max_batch_records (%d)", b, batchRecords)
	}
	if b := cmp.Or(int(up.MaxBufferBytes), decisionlog.DefaultMaxBufferBytes); b < batchBytes {
		bad(key+".max_buffer_bytes", "%d is below max_batch_bytes (%d)", b, batchBytes)
	}
	checkHeaders(bad, key+".headers", up.Headers, "Content-Type", "Content-Encoding")
}

// checkHeaders checks a map of request headers at key: valid names, each
// once whatever its case, none that the HTTP client (or the caller:
// reserved) sets itself, and values without control characters. It never repeats a value: it is usually a
// credential.
func checkHeaders(bad func(key, format string, args ...any), key string, headers map[string]HeaderValue, reserved ...string) {
	seen := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(headers)) {
		v := headers[name]
		canonical := http.CanonicalHeaderKey(name)
		other, twice := seen[canonical]
		seen[canonical] = name
		switch {
		case twice:
			// Which of the two is sent would change from request to request.
			bad(key+"."+name, "the same header as %s (header names ignore case)", other)
		case !httpguts.ValidHeaderFieldName(name):
			bad(key+"."+name, "not a valid header name")
		case clientHeader(name):
			bad(key+"."+name, "set by the HTTP client itself; it cannot be configured")
		case slices.Contains(reserved, http.CanonicalHeaderKey(name)):
			bad(key+"."+name, "set by Verdict itself; it cannot be configured")
		case !httpguts.ValidHeaderFieldValue(v.Value) || !httpguts.ValidHeaderFieldValue(v.Prefix):
			bad(key+"."+name, "the value has a control character (a line break?)")
		}
	}
}
