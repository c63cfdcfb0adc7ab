package telemetry

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	promb "go.opentelemetry.io/contrib/bridges/prometheus"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdoutmetric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"

	"github.com/prometheus/client_golang/prometheus"
)

// NewMetricExport pushes the metrics of gatherer (the process's Prometheus registry, which
// /metrics serves in any case) through OpenTelemetry when OTEL_METRICS_EXPORTER asks for it:
// "otlp" (OTLP over HTTP to OTEL_EXPORTER_OTLP_ENDPOINT) or "console" (JSON to stdout, or to
// the file named by MARKETPIPE_METRICS_FILE), every OTEL_METRIC_EXPORT_INTERVAL milliseconds
// (default 60000). "prometheus", "none" or unset export nothing more. One set of collectors
// feeds both, so the two views never disagree. The returned function flushes and stops.
func NewMetricExport(ctx context.Context, otel map[string]string, defaultName string, gatherer prometheus.Gatherer) (func(context.Context) error, error) {
	noop := func(context.Context) error { return nil }
	var exp sdkmetric.Exporter
	var closer io.Closer
	switch v := strings.ToLower(otel["OTEL_METRICS_EXPORTER"]); v {
	case "", "none", "prometheus":
		return noop, nil
	case "console":
		var w io.Writer = os.Stdout
		if path := otel["MARKETPIPE_METRICS_FILE"]; path != "" {
			f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			if err != nil {
				return nil, fmt.Errorf("open metrics file: %w", err)
			}
			w, closer = f, f
		}
		e, err := stdoutmetric.New(stdoutmetric.WithWriter(w))
		if err != nil {
			return nil, fmt.Errorf("console metric exporter: %w", err)
		}
		exp = e
	case "otlp":
		// otlpmetrichttp reads OTEL_EXPORTER_OTLP_ENDPOINT and friends itself.
		e, err := otlpmetrichttp.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("otlp metric exporter: %w", err)
		}
		exp = e
	default:
		return nil, fmt.Errorf("OTEL_METRICS_EXPORTER=%q: want otlp, console, prometheus or none", v)
	}
	interval := time.Minute
	if v := otel["OTEL_METRIC_EXPORT_INTERVAL"]; v != "" {
		var ms int64
		if _, err := fmt.Sscan(v, &ms); err != nil || ms <= 0 {
			return nil, fmt.Errorf("OTEL_METRIC_EXPORT_INTERVAL=%q: want milliseconds", v)
		}
		interval = time.Duration(ms) * time.Millisecond
	}
	name := defaultName
	if v := otel["OTEL_SERVICE_NAME"]; v != "" {
		name = v
	}
	reader := sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(interval),
		sdkmetric.WithProducer(promb.NewMetricProducer(promb.WithGatherer(gatherer))))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader),
		sdkmetric.WithResource(resource.NewWithAttributes(semconv.SchemaURL, semconv.ServiceName(name))))
	return func(ctx context.Context) error {
		err := mp.Shutdown(ctx) // collects and exports once more
		if closer != nil {
			closer.Close()
		}
		return err
	}, nil
}
