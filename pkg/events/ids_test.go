package events_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/marketpipe/marketpipe/pkg/events"
)

func TestValidJobID(t *testing.T) {
	for _, id := range []string{"a b", "x*y", "", "a.b", "a>b", "a/b", "ü", "a\tb", strings.Repeat("a", events.MaxJobIDLen+1)} {
		err := events.ValidJobID(id)
		if !errors.Is(err, events.ErrInvalidJobID) {
			t.Errorf("ValidJobID(%q) = %v, want ErrInvalidJobID", id, err)
		}
	}
	for _, id := range []string{"eod-prices-20261125t045724z-k3qa", "Job_1", strings.Repeat("a", events.MaxJobIDLen)} {
		if err := events.ValidJobID(id); err != nil {
			t.Errorf("ValidJobID(%q) = %v", id, err)
		}
	}
	if err := events.ValidJobID("x*y"); err == nil || !strings.Contains(err.Error(), `"x*y"`) || !strings.Contains(err.Error(), "byte 1") {
		t.Errorf("error does not say what and where: %v", err)
	}
}

// TestDecodeRefusesInvalidJobIDs: every stage decodes through Decode, so none can be handed an
// event whose id no subject or key can carry.
func TestDecodeRefusesInvalidJobIDs(t *testing.T) {
	for _, id := range []string{"", "a b", "x*y", "a.b"} {
		data, _ := json.Marshal(events.Job{ID: id})
		if _, err := events.Decode(data); !errors.Is(err, events.ErrInvalidJobID) {
			t.Errorf("Decode of job %q: %v, want ErrInvalidJobID", id, err)
		}
		task, _ := json.Marshal(events.ChunkTask{Job: events.Job{ID: id}, Chunks: 1})
		if _, err := events.DecodeChunkTask(task); !errors.Is(err, events.ErrInvalidJobID) {
			t.Errorf("DecodeChunkTask of job %q: %v, want ErrInvalidJobID", id, err)
		}
	}
}
