// Package oteltrace holds what the engine and the server share about
// OpenTelemetry tracing.
package oteltrace

import (
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Tracer returns tp's tracer for the instrumentation scope name, or nil
// when tp records nothing (nil, or a no-op provider): callers then skip
// tracing altogether, at no cost.
func Tracer(tp trace.TracerProvider, name string) trace.Tracer {
	if tp == nil {
		return nil
	}
	t := tp.Tracer(name)
	if _, ok := t.(noop.Tracer); ok {
		return nil
	}
	return t
}
