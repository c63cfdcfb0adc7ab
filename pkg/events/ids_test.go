package events_test

import (
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
