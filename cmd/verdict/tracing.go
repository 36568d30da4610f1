package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/verdict-pdp/verdict/internal/httpfetch"
	"github.com/verdict-pdp/verdict/internal/printable"
	"github.com/verdict-pdp/verdict/server"
	"github.com/verdict-pdp/verdict/server/config"
)

// Tracing: OpenTelemetry's SDK and its OTLP/HTTP exporter live here, in the
// binary; the engine and the server see only the API's TracerProvider.
//
// Whether: tracing is on when the configuration has a tracing block, or,
// without one, when OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set; OTEL_SDK_DISABLED=true turns
// it off whatever the file says (the specification's kill switch).
//
// How: each key of the block wins over the environment variable for the
// same setting (endpoint over OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT,
// sample_ratio over OTEL_TRACES_SAMPLER[_ARG], service_name over
// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES' service.name); what the
// block leaves out comes from the environment (the exporter reads its
// headers, timeout, compression and certificates; the SDK its sampler and
// batching, OTEL_BSP_*), then from the defaults: http://localhost:4318,
// parent-based always-on sampling, service.name "verdict".

// defaultServiceName is service.name unless the file or the environment
// names another.
const defaultServiceName = "verdict"

// tracing is the tracer provider of verdict serve and what to log about it.
type tracing struct {
	provider *sdktrace.TracerProvider
	endpoint string // where spans go, for the log: no user info or query
	sampler  string // how they are sampled, for the log
}

// newTracing builds the SDK's tracer provider from cfg and the environment,
// or returns nil when tracing is off. It connects to nothing: spans are
// exported in batches, in the background, from the first one on.
// OpenTelemetry's own complaints (an OTEL_* variable it cannot read) go to
// logger, without the values they quote (otelLogSink).
func newTracing(ctx context.Context, cfg *config.Config, logger *slog.Logger) (*tracing, error) {
	if strings.EqualFold(strings.TrimSpace(os.Getenv("OTEL_SDK_DISABLED")), "true") {
		return nil, nil
	}
	// Before the exporter reads the environment: it reports a variable it
	// cannot read through this logger, quoting the value.
	otel.SetLogger(logr.New(otelLogSink{logger: logger}))
	tc := cfg.Tracing
	if tc == nil {
		if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
			return nil, nil
		}
		tc = &config.Tracing{}
	}
	// The exporter speaks OTLP over HTTP only; a gRPC collector port
	// (4317) would refuse every export, so say so now.
	protocol := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if protocol == "" {
		protocol = os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	if protocol != "" && protocol != "http/protobuf" && protocol != "http/json" {
		return nil, fmt.Errorf("tracing: OTEL_EXPORTER_OTLP_PROTOCOL %q: verdict exports traces over OTLP/HTTP (http/protobuf, port 4318 by convention)", protocol)
	}

	// Logged without user info or query: unlike tracing.endpoint, the
	// environment's endpoint is never checked for either.
	t := &tracing{endpoint: httpfetch.Redact(tracesEndpoint(tc))}
	var expOpts []otlptracehttp.Option
	if u := tc.TracesURL(); u != "" {
		expOpts = append(expOpts, otlptracehttp.WithEndpointURL(u))
	}
	exp, err := otlptracehttp.New(ctx, expOpts...)
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}

	// service.name: the default, then the environment, then the file.
	defaults := []attribute.KeyValue{attribute.String("service.name", defaultServiceName),
		attribute.String("service.version", buildInfo().Version)}
	resOpts := []resource.Option{resource.WithAttributes(defaults...), resource.WithFromEnv(), resource.WithTelemetrySDK()}
	if tc.ServiceName != "" {
		resOpts = append(resOpts, resource.WithAttributes(attribute.String("service.name", tc.ServiceName)))
	}
	res, err := resource.New(ctx, resOpts...)
	if err != nil {
		exp.Shutdown(ctx)
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}

	tpOpts := []sdktrace.TracerProviderOption{sdktrace.WithBatcher(exp), sdktrace.WithResource(res)}
	switch {
	case tc.SampleRatio != nil:
		tpOpts = append(tpOpts, sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(*tc.SampleRatio))))
		t.sampler = "parentbased_traceidratio " + strconv.FormatFloat(*tc.SampleRatio, 'g', -1, 64)
	case os.Getenv("OTEL_TRACES_SAMPLER") != "":
		// The SDK reads it (and OTEL_TRACES_SAMPLER_ARG) itself.
		t.sampler = strings.TrimSpace(os.Getenv("OTEL_TRACES_SAMPLER") + " " + os.Getenv("OTEL_TRACES_SAMPLER_ARG"))
	default:
		t.sampler = "parentbased_always_on"
	}
	t.provider = sdktrace.NewTracerProvider(tpOpts...)
	return t, nil
}

// tracesEndpoint is where the exporter sends spans, as it works it out,
// for the log.
func tracesEndpoint(tc *config.Tracing) string {
	if u := tc.TracesURL(); u != "" {
		return u
	}
	if u := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"); u != "" {
		return u
	}
	if u := os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT"); u != "" {
		return (&config.Tracing{Endpoint: u}).TracesURL()
	}
	return "http://localhost:4318/v1/traces"
}

// logStart logs that tracing is on, where spans go and how they are
// sampled, and routes OpenTelemetry's own errors (a failed export) to
// logger: the SDK reports them only through its global error handler.
func (t *tracing) logStart(ctx context.Context, logger *slog.Logger) {
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		logger.LogAttrs(context.Background(), slog.LevelWarn, "tracing error", slog.String("error", boundText(err.Error())))
	}))
	logger.LogAttrs(ctx, slog.LevelInfo, "tracing",
		slog.String("endpoint", t.endpoint), slog.String("sampler", t.sampler))
}

// shutdown flushes the spans still batched and stops the exporter, within
// timeout (limits.shutdown_timeout); spans it cannot send by then are
// lost, and logged as such.
func (t *tracing) shutdown(ctx context.Context, timeout time.Duration, logger *slog.Logger) {
	if timeout <= 0 {
		timeout = server.DefaultShutdownTimeout
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	if err := t.provider.Shutdown(sctx); err != nil {
		logger.LogAttrs(sctx, slog.LevelWarn, "tracing: spans not flushed at shutdown",
			slog.String("endpoint", t.endpoint), slog.String("error", boundText(err.Error())))
	}
}

// otelLogSink is OpenTelemetry's logger (otel.SetLogger): its errors become
// "tracing error" warnings on Verdict's logger, and the rest (its
// warnings, information and debugging) is dropped, as its default logger
// drops it. Only the message and the error's text are kept, never the
// key-value pairs, which quote the values of the environment: a malformed
// pair of OTEL_EXPORTER_OTLP_HEADERS ("Authorization: Bearer …", with a
// colon for the "=") is logged by the exporter with the pair, the
// credential, and OTEL_EXPORTER_OTLP_ENDPOINT it cannot parse with the URL.
// Its default logger wrote them to stderr, outside the log's format.
type otelLogSink struct{ logger *slog.Logger }

func (otelLogSink) Init(logr.RuntimeInfo) {}

// Enabled says no to every information message: only errors are logged.
func (otelLogSink) Enabled(int) bool { return false }

func (otelLogSink) Info(int, string, ...any) {}

// Error logs msg and err, leaving out keysAndValues. A URL's parse error
// repeats the URL, and a bad escape quotes itself: only what went wrong is
// kept.
func (s otelLogSink) Error(err error, msg string, _ ...any) {
	text := msg
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		var ee url.EscapeError // quotes the escape, three bytes of the value
		if errors.As(err, &ee) {
			err = errors.New("invalid URL escape")
		}
		text += ": " + err.Error()
	}
	s.logger.LogAttrs(context.Background(), slog.LevelWarn, "tracing error", slog.String("error", boundText(text)))
}

// WithValues and WithName drop what they are given: values are never
// logged, and the name adds nothing to "tracing error".
func (s otelLogSink) WithValues(...any) logr.LogSink { return s }
func (s otelLogSink) WithName(string) logr.LogSink   { return s }

// maxErrorText bounds the text of a tracing error in the log. A failed
// export's error quotes the collector's answer (its status text, up to
// 10 MiB, and up to 4 MiB of its body), once a batch.
const maxErrorText = 1 << 10

// boundText cuts s to maxErrorText bytes (printable.Cut).
func boundText(s string) string { return printable.Cut(s, maxErrorText) }
