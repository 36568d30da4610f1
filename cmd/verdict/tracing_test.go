package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"go.opentelemetry.io/otel"

	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/server/config"
)

// TestNewTracing: when tracing is on, where spans go and how they are
// sampled, from the file and the environment (the file winning key by key).
func TestNewTracing(t *testing.T) {
	ratio := 0.25
	for _, tc := range []struct {
		name         string
		tracing      *config.Tracing
		env          map[string]string
		wantOff      bool
		wantEndpoint string
		wantSampler  string
		wantErr      string
	}{
		{name: "neither file nor environment", wantOff: true},
		{name: "an OTEL_ variable that is not an endpoint", env: map[string]string{"OTEL_SERVICE_NAME": "x"}, wantOff: true},
		{name: "empty block", tracing: &config.Tracing{},
			wantEndpoint: "http://localhost:4318/v1/traces", wantSampler: "parentbased_always_on"},
		{name: "environment only", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
			"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.5"},
			wantEndpoint: "http://collector:4318/v1/traces", wantSampler: "parentbased_traceidratio 0.5"},
		{name: "per-signal endpoint as is", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://otlp.example.com/in"},
			wantEndpoint: "https://otlp.example.com/in", wantSampler: "parentbased_always_on"},
		{name: "the file wins", tracing: &config.Tracing{Endpoint: "http://mine:4318", SampleRatio: &ratio},
			env:          map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://theirs:4318/v1/traces", "OTEL_TRACES_SAMPLER": "always_on"},
			wantEndpoint: "http://mine:4318/v1/traces", wantSampler: "parentbased_traceidratio 0.25"},
		{name: "kill switch", tracing: &config.Tracing{Endpoint: "http://mine:4318"},
			env: map[string]string{"OTEL_SDK_DISABLED": "TRUE"}, wantOff: true},
		{name: "gRPC refused", tracing: &config.Tracing{}, env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
			wantErr: `OTEL_EXPORTER_OTLP_PROTOCOL "grpc": verdict exports traces over OTLP/HTTP`},
		{name: "per-signal protocol first", tracing: &config.Tracing{},
			env:          map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"},
			wantEndpoint: "http://localhost:4318/v1/traces", wantSampler: "parentbased_always_on"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			setOTelEnv(t, tc.env)
			tr, err := newTracing(t.Context(), &config.Config{Tracing: tc.tracing}, slog.New(slog.DiscardHandler))
			switch {
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			case err != nil:
				t.Fatal(err)
			case tc.wantOff:
				if tr != nil {
					t.Fatalf("tracing on (%s, %s), want off", tr.endpoint, tr.sampler)
				}
				return
			case tr == nil:
				t.Fatal("tracing off, want on")
			}
			defer tr.provider.Shutdown(context.Background())
			if tr.endpoint != tc.wantEndpoint || tr.sampler != tc.wantSampler {
				t.Errorf("endpoint %q sampler %q, want %q %q", tr.endpoint, tr.sampler, tc.wantEndpoint, tc.wantSampler)
			}
		})
	}
}

// TestTracingEndpointLoggedRedacted: an endpoint from the environment,
// which unlike tracing.endpoint is never checked for user info or a query,
// is logged without either, at start and in the shutdown warning.
func TestTracingEndpointLoggedRedacted(t *testing.T) {
	for _, env := range []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"} {
		t.Run(env, func(t *testing.T) {
			setOTelEnv(t, map[string]string{env: "http://tenant:hunter2@127.0.0.1:1/v1/traces?api-key=sekrit#frag"})
			tr, logger, logs := newLoggedTracing(t)
			_, span := tr.provider.Tracer("test").Start(t.Context(), "span")
			span.End()
			tr.shutdown(t.Context(), time.Nanosecond, logger)
			got := logs.String()
			if !strings.Contains(got, "endpoint=http://127.0.0.1:1/v1/traces") || !strings.Contains(got, "spans not flushed") {
				t.Errorf("want the endpoint without user info and query, at start and shutdown; logged:\n%s", got)
			}
			for _, secret := range []string{"tenant", "hunter2", "api-key", "sekrit", "frag"} {
				if strings.Contains(got, secret) {
					t.Errorf("the log holds %q:\n%s", secret, got)
				}
			}
		})
	}
}

// TestTracingEnvironmentErrorsRedacted: OpenTelemetry logs an OTEL_*
// variable it cannot read with its value; a malformed
// OTEL_EXPORTER_OTLP_HEADERS (a colon for the "=", a stray "%") is a
// credential. Its complaints reach Verdict's log as "tracing error"
// warnings, without the value.
func TestTracingEnvironmentErrorsRedacted(t *testing.T) {
	setOTelEnv(t, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1",
		"OTEL_EXPORTER_OTLP_HEADERS": "Authorization: Bearer hunter2,X-Api-Key=sekrit%qq,Bad Name: tok3n=v"})
	tr, _, logs := newLoggedTracing(t)
	defer tr.provider.Shutdown(context.Background())
	got := logs.String()
	for _, want := range []string{`msg="tracing error" error="parse headers: missing '="`, `error="escape header value: invalid URL escape"`,
		`error="parse headers: invalid header key"`} {
		if !strings.Contains(got, want) {
			t.Errorf("the log lacks %q:\n%s", want, got)
		}
	}
	for _, secret := range []string{"hunter2", "sekrit", "%qq", "tok3n"} {
		if strings.Contains(got, secret) {
			t.Errorf("the log holds %q:\n%s", secret, got)
		}
	}
}

// TestTracingErrorsBounded: a failed export's error quotes the collector's
// answer, up to 4 MiB of its body (and its status text): a collector
// answering every batch so made each warning megabytes long. The log keeps
// the first KiB of every tracing error (and of the shutdown warning).
func TestTracingErrorsBounded(t *testing.T) {
	body := strings.Repeat("b", 1<<20)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	setOTelEnv(t, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": srv.URL})
	tr, logger, logs := newLoggedTracing(t)
	_, span := tr.provider.Tracer("test").Start(t.Context(), "span")
	span.End()
	tr.shutdown(t.Context(), 5*time.Second, logger)
	otel.Handle(errors.New(strings.Repeat("h", 1<<20)))
	got := logs.String()
	if !strings.Contains(got, "400 Bad Request (body: bbbb") || !strings.Contains(got, "bbbb…") || !strings.Contains(got, "hhhh…") {
		t.Errorf("want the failed export and another tracing error, each cut short; logged %d bytes:\n%.2000s", len(got), got)
	}
	for _, line := range strings.Split(strings.TrimSpace(got), "\n") {
		if len(line) > 2<<10 {
			t.Errorf("a line of %d bytes: %.200s…", len(line), line)
		}
	}
}

// setOTelEnv sets the OTEL_* variables tracing reads for the test: those in
// env to their values, the others empty.
func setOTelEnv(t *testing.T, env map[string]string) {
	t.Helper()
	for _, k := range []string{"OTEL_SDK_DISABLED", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
		"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_HEADERS",
		"OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"} {
		t.Setenv(k, env[k])
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
}

// newLoggedTracing starts tracing as serve does, from the environment, with
// a logger writing text to the returned buffer, and logs its start. It puts
// OpenTelemetry's global logger and error handler back when the test ends.
func newLoggedTracing(t *testing.T) (*tracing, *slog.Logger, *authztest.SyncBuffer) {
	t.Helper()
	t.Cleanup(func() {
		otel.SetLogger(logr.Discard())
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(error) {}))
	})
	logs := new(authztest.SyncBuffer)
	logger := slog.New(slog.NewTextHandler(logs, nil))
	tr, err := newTracing(t.Context(), &config.Config{}, logger)
	if err != nil || tr == nil {
		t.Fatalf("newTracing: %v, %v", tr, err)
	}
	tr.logStart(t.Context(), logger)
	return tr, logger, logs
}
