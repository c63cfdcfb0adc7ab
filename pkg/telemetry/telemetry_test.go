package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/marketpipe/marketpipe/pkg/telemetry"
)

func TestHeaderCarrierRoundTrip(t *testing.T) {
	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("test").Start(context.Background(), "parent")
	defer span.End()

	hdr := nats.Header{}
	telemetry.Inject(ctx, hdr)
	// nats.Header lookups are case-sensitive: the key must be the W3C lower-case name, which is
	// what another W3C implementation sends and looks for.
	if hdr["traceparent"] == nil {
		t.Fatalf("no lower-case traceparent header in %v", hdr)
	}
	for _, h := range []nats.Header{hdr, {"Traceparent": hdr["traceparent"]}} {
		got := trace.SpanContextFromContext(telemetry.Extract(context.Background(), h))
		if !got.IsRemote() || got.TraceID() != span.SpanContext().TraceID() || got.SpanID() != span.SpanContext().SpanID() {
			t.Errorf("extracted %v from %v, want trace %s span %s", got, h, span.SpanContext().TraceID(), span.SpanContext().SpanID())
		}
	}
	if sc := trace.SpanContextFromContext(telemetry.Extract(context.Background(), nil)); sc.IsValid() {
		t.Errorf("span context %v from no headers", sc)
	}
}

func TestLoggerAddsJobAndTrace(t *testing.T) {
	var buf bytes.Buffer
	log := telemetry.NewLogger(&buf, "debug", "json").With("service", "poller")
	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("test").Start(telemetry.WithJobID(context.Background(), "job-1"), "work")
	defer span.End()

	log.InfoContext(ctx, "about a job")
	log.Info("not about a job")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2:\n%s", len(lines), buf.String())
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"service": "poller", "job_id": "job-1",
		"trace_id": span.SpanContext().TraceID().String(), "span_id": span.SpanContext().SpanID().String()} {
		if rec[k] != want {
			t.Errorf("%s = %v, want %q in %s", k, rec[k], want, lines[0])
		}
	}
	rec = nil
	if err := json.Unmarshal([]byte(lines[1]), &rec); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"job_id", "trace_id", "span_id"} {
		if _, ok := rec[k]; ok {
			t.Errorf("%s on a line without context: %s", k, lines[1])
		}
	}
}

func TestConsoleTracingToFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spans.json")
	ctx := context.Background()
	tr, err := telemetry.NewTracing(ctx, map[string]string{"OTEL_TRACES_EXPORTER": "console",
		"MARKETPIPE_TRACE_FILE": path, "OTEL_SERVICE_NAME": "renamed"}, "default-name")
	if err != nil {
		t.Fatal(err)
	}
	_, span := tr.Provider.Tracer("test").Start(ctx, "one")
	span.End()
	if err := tr.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Name     string
		Resource []struct {
			Key   string
			Value struct{ Value any }
		}
	}
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatalf("%v in %s", err, data)
	}
	name := ""
	for _, kv := range got.Resource {
		if kv.Key == "service.name" {
			name, _ = kv.Value.Value.(string)
		}
	}
	if got.Name != "one" || name != "renamed" {
		t.Errorf("span %q of service %q, want \"one\" of \"renamed\" (OTEL_SERVICE_NAME)", got.Name, name)
	}

	if _, err := telemetry.NewTracing(ctx, map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, "x"); err == nil {
		t.Error("OTEL_TRACES_EXPORTER=zipkin accepted")
	}
	none, err := telemetry.NewTracing(ctx, map[string]string{}, "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, span := none.Provider.Tracer("t").Start(ctx, "s"); span.SpanContext().IsValid() {
		t.Error("no exporter configured, yet spans are recorded")
	}
}
