package collector_test

import (
	"testing"

	"github.com/marketpipe/marketpipe/pkg/config"
	"github.com/marketpipe/marketpipe/pkg/rawstore"
	"github.com/marketpipe/marketpipe/services/collector"
)

// TestSettingsDefault: COLLECTOR_MARK_BYTES's declared default is rawstore.DefaultMarkBytes,
// which the raw store and the benchmarks use when none is given.
func TestSettingsDefault(t *testing.T) {
	var s collector.Settings
	if err := config.Read(func(string) (string, bool) { return "", false }, &s); err != nil {
		t.Fatal(err)
	}
	if s.MarkBytes != rawstore.DefaultMarkBytes {
		t.Errorf("COLLECTOR_MARK_BYTES defaults to %d, DefaultMarkBytes is %d", s.MarkBytes, rawstore.DefaultMarkBytes)
	}
}
