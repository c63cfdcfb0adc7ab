package simdata

import (
	"testing"

	"github.com/marketpipe/marketpipe/pkg/obs"
)

func TestHistory(t *testing.T) {
	s := History("h", 3, 250)
	ds, err := Dates(s, obs.MakeDate(2026, 11, 20))
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 250 || s.Start != "2025-01-01" || s.End != "2025-12-16" {
		t.Errorf("%d dates from %s to %s, want 250 from 2025-01-01 to 2025-12-16", len(ds), s.Start, s.End)
	}
	n := 0
	if err := Observations(s, obs.MakeDate(2026, 11, 20), 7, func(*obs.Observation) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 3*len(HistoryFields)*250 || s.Securities[2] != "SEC00002 US Equity" {
		t.Errorf("%d observations, securities %v", n, s.Securities)
	}
}
