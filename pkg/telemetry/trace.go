package telemetry

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Tracing is a tracer provider and how to flush it.
type Tracing struct {
	Provider trace.TracerProvider
	Shutdown func(context.Context) error
}

// NewTracing builds the tracer provider OTEL_TRACES_EXPORTER asks for: "otlp" (OTLP over HTTP to
// OTEL_EXPORTER_OTLP_ENDPOINT), "console" (JSON spans to stdout, or to the file named by
// MARKETPIPE_TRACE_FILE), or "none"/unset (no export: a no-op provider). OTEL_SERVICE_NAME
// overrides defaultName.
func NewTracing(ctx context.Context, otel map[string]string, defaultName string) (*Tracing, error) {
	name := defaultName
	if v := otel["OTEL_SERVICE_NAME"]; v != "" {
		name = v
	}
	var exp sdktrace.SpanExporter
	var closer io.Closer
	switch v := strings.ToLower(otel["OTEL_TRACES_EXPORTER"]); v {
	case "", "none":
		return &Tracing{Provider: noop.NewTracerProvider(), Shutdown: func(context.Context) error { return nil }}, nil
	case "console":
		var w io.Writer = os.Stdout
		if path := otel["MARKETPIPE_TRACE_FILE"]; path != "" {
			f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			if err != nil {
				return nil, fmt.Errorf("open trace file: %w", err)
			}
			w, closer = f, f
		}
		e, err := stdouttrace.New(stdouttrace.WithWriter(w))
		if err != nil {
			return nil, fmt.Errorf("console trace exporter: %w", err)
		}
		exp = e
	case "otlp":
		// otlptracehttp reads OTEL_EXPORTER_OTLP_ENDPOINT and friends itself.
		e, err := otlptracehttp.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("otlp trace exporter: %w", err)
		}
		exp = e
	default:
		return nil, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: want otlp, console or none", v)
	}
	res := resource.NewWithAttributes(semconv.SchemaURL, semconv.ServiceName(name))
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return &Tracing{Provider: tp, Shutdown: func(ctx context.Context) error {
		err := tp.Shutdown(ctx)
		if closer != nil {
			closer.Close()
		}
		return err
	}}, nil
}

// Propagator carries trace context in message headers (W3C traceparent).
var Propagator propagation.TextMapPropagator = propagation.TraceContext{}

// HeaderCarrier adapts NATS headers to OpenTelemetry propagation. Set writes lower-case keys
// (the W3C names) because nats.Header lookups are case-sensitive; Get finds a key in any case,
// since a producer outside marketpipe may have written "Traceparent".
type HeaderCarrier nats.Header

// Get returns the value of key, whatever the case it was written in.
func (c HeaderCarrier) Get(key string) string {
	key = strings.ToLower(key)
	if v := c[key]; len(v) > 0 {
		return v[0]
	}
	for k, v := range c {
		if len(v) > 0 && strings.EqualFold(k, key) {
			return v[0]
		}
	}
	return ""
}

// Set sets key to value.
func (c HeaderCarrier) Set(key, value string) { c[strings.ToLower(key)] = []string{value} }

// Keys lists the keys.
func (c HeaderCarrier) Keys() []string {
	ks := make([]string, 0, len(c))
	for k := range c {
		ks = append(ks, k)
	}
	return ks
}

// Inject writes ctx's span context into h.
func Inject(ctx context.Context, h nats.Header) { Propagator.Inject(ctx, HeaderCarrier(h)) }

// Extract returns ctx with the remote span context found in h.
func Extract(ctx context.Context, h nats.Header) context.Context {
	if h == nil {
		return ctx
	}
	return Propagator.Extract(ctx, HeaderCarrier(h))
}
