package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/jobspec"
)

func TestDryRun(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "w.yaml")
	if err := os.WriteFile(path, []byte("name: w\nprogram: gethistory\nsecurities: [IBM US Equity, AAPL US Equity]\n"+
		"fields: [PX_LAST, PX_VOLUME]\nstart: 2026-01-01\nend: 2026-03-31\nperiodicity: weekly\ncurrency: EUR\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := jobspec.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := dryRun(f, time.Now(), &out); err != nil {
		t.Fatal(err)
	}
	// 14 ISO weeks hold the weekdays of 2026-01-01 to 2026-03-31: 2 × 2 × 14 = 56.
	for _, want := range []string{"2 securities × 2 fields × 2026-01-01 to 2026-03-31, 14 dates = 56 data points",
		"stored as gethistory[currency=EUR,periodicity=weekly]", "in all: 1 vendor request, 56 data points; nothing sent"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("dry run lacks %q:\n%s", want, out.String())
		}
	}
}

func TestHistoryDates(t *testing.T) {
	for _, c := range []struct {
		start, end, period string
		want               int
	}{
		{"2026-11-23", "2026-11-29", "", 5},         // a week's weekdays
		{"2026-11-28", "2026-11-29", "", 0},         // a week-end
		{"2026-01-01", "2026-12-31", "monthly", 12}, // month ends
		{"2026-01-01", "2026-12-31", "quarterly", 4},
		{"2025-06-01", "2026-06-01", "yearly", 2},
		{"2026-02-01", "2026-01-01", "", 0},
	} {
		if got := historyDates(c.start, c.end, c.period); got != c.want {
			t.Errorf("%s..%s %s: %d dates, want %d", c.start, c.end, c.period, got, c.want)
		}
	}
}
