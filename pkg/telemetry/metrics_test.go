package telemetry

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestMetricExportConsole(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "marketpipe_test_handled_total", Help: "test"}, []string{"stage"})
	reg.MustRegister(c)
	c.WithLabelValues("loader").Add(3)
	path := filepath.Join(t.TempDir(), "metrics.json")
	stop, err := NewMetricExport(context.Background(), map[string]string{
		"OTEL_METRICS_EXPORTER": "console", "MARKETPIPE_METRICS_FILE": path, "OTEL_METRIC_EXPORT_INTERVAL": "3600000",
	}, "loader", reg)
	if err != nil {
		t.Fatal(err)
	}
	if err := stop(context.Background()); err != nil { // flushes one export
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Resource     json.RawMessage
		ScopeMetrics []struct {
			Metrics []struct {
				Name string
				Data struct {
					DataPoints []struct {
						Attributes []struct {
							Key   string
							Value struct{ Value any }
						}
						Value float64
					}
				}
			}
		}
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("console output is not one JSON document: %v\n%s", err, data)
	}
	if !strings.Contains(string(doc.Resource), "loader") {
		t.Errorf("resource lacks the service name: %s", doc.Resource)
	}
	found := false
	for _, sm := range doc.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "marketpipe_test_handled_total" {
				continue
			}
			for _, dp := range m.Data.DataPoints {
				if dp.Value == 3 && len(dp.Attributes) == 1 && dp.Attributes[0].Key == "stage" && dp.Attributes[0].Value.Value == "loader" {
					found = true
				}
			}
		}
	}
	if !found {
		t.Errorf("the counter (3, stage=loader) is not in the export:\n%s", data)
	}
}

func TestMetricExportSettings(t *testing.T) {
	reg := prometheus.NewRegistry()
	for _, tc := range []struct {
		name string
		env  map[string]string
		ok   bool
	}{
		{"unset", map[string]string{}, true},
		{"prometheus", map[string]string{"OTEL_METRICS_EXPORTER": "prometheus"}, true},
		{"none", map[string]string{"OTEL_METRICS_EXPORTER": "none"}, true},
		{"unknown exporter", map[string]string{"OTEL_METRICS_EXPORTER": "statsd"}, false},
		{"bad interval", map[string]string{"OTEL_METRICS_EXPORTER": "console", "OTEL_METRIC_EXPORT_INTERVAL": "soon"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stop, err := NewMetricExport(context.Background(), tc.env, "x", reg)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if err == nil {
				stop(context.Background())
			}
		})
	}
}
