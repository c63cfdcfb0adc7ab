package tests

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/pkg/stage"
)

// TestMetricsExporter runs a requester with OTEL_METRICS_EXPORTER=console: the metrics its
// /metrics serves must also be pushed through OpenTelemetry, under its service name, with the
// counts of what it handled.
func TestMetricsExporter(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns := natstest.Start(t)
	file := filepath.Join(t.TempDir(), "metrics.json")
	env := map[string]string{"NATS_URL": ns.ClientURL(), "HTTP_ADDR": "127.0.0.1:0",
		"VENDOR_URL": "http://127.0.0.1:1/eap", "OTEL_METRICS_EXPORTER": "console",
		"MARKETPIPE_METRICS_FILE": file, "OTEL_METRIC_EXPORT_INTERVAL": "200"}
	startProc(t, "requester", "requester", env)
	// One poison event gives the requester something to count.
	_, js := natstest.ConnectURL(t, ns.ClientURL())
	if err := stage.NewPublisher(js).Publish(ctx, events.JobSubject("m", events.Submitted), "m", []byte("{"), nil); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, ctx, "the dead-letter count in the exported metrics", func() bool {
		data, _ := os.ReadFile(file)
		s := string(data)
		return strings.Contains(s, `"marketpipe_messages_dead_lettered_total"`) &&
			strings.Contains(s, `"requester"`) && strings.Contains(s, `"go_goroutines"`)
	})
}
