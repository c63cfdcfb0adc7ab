package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/jobspec"
	"github.com/marketpipe/marketpipe/pkg/vendor"
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
	if err := dryRun(f, time.Now(), 1_000_000, &out); err != nil {
		t.Fatal(err)
	}
	// 14 ISO weeks hold the weekdays of 2026-01-01 to 2026-03-31: 2 × 2 × 14 = 56.
	for _, want := range []string{"2 securities × 2 fields × 2026-01-01 to 2026-03-31, 14 dates = 56 data points",
		"stored as gethistory[currency=EUR,periodicity=weekly]", "in all: 1 vendor request, 56 data points (at most 1000000 a request); nothing sent"} {
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

// TestDryRunParts: a job over the data-point budget prints each vendor request it becomes,
// securities first, then dates, and the total; one that cannot be split is refused.
func TestDryRunParts(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "p.yaml")
	if err := os.WriteFile(path, []byte("name: p\nprogram: gethistory\nsecurities: [A US Equity, B US Equity]\n"+
		"fields: [PX_LAST]\nstart: 2026-01-01\nend: 2026-01-30\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := jobspec.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	// 2 securities × 1 field × 22 weekdays = 44 points; at most 11 a request: one security a
	// request, its dates in two ranges of 11.
	var out bytes.Buffer
	if err := dryRun(f, time.Now(), 11, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"request 1 of 4: gethistory, 1 securities (1 to 1) × 1 fields (1 to 1) × 2026-01-01 to 2026-01-15, 11 dates = 11 data points",
		"request 2 of 4: gethistory, 1 securities (1 to 1) × 1 fields (1 to 1) × 2026-01-16 to 2026-01-30, 11 dates = 11 data points",
		"request 4 of 4: gethistory, 1 securities (2 to 2)",
		"in all: 4 vendor requests, 44 data points (at most 11 a request); nothing sent"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("dry run lacks %q:\n%s", want, out.String())
		}
	}
	if err := checkRequests(f, time.Now(), 11); err != nil {
		t.Errorf("a job that splits is refused: %v", err)
	}
	if err := checkRequests(f, time.Now(), 0); err != nil {
		t.Errorf("no budget: %v", err)
	}
	// 22 dates a request at most 1 point: 44 requests, within MaxParts; a longer history is not.
	long := *f
	long.Start.Fixed, long.End.Fixed = "2000-01-01", "2025-12-31"
	if err := checkRequests(&long, time.Now(), 1); err == nil || !strings.Contains(err.Error(), "cannot be split") {
		t.Errorf("a job needing more than %d requests: %v", 1000, err)
	}
}

// TestDryRunOverTheUniverseLimit: a universe larger than a vendor request's is not refused: it
// becomes balanced requests within the limit (with overrides, within the lower one).
func TestDryRunOverTheUniverseLimit(t *testing.T) {
	dir := t.TempDir()
	var secs strings.Builder
	for i := range 100_000 {
		fmt.Fprintf(&secs, "S%06d US Equity\n", i)
	}
	if err := os.WriteFile(filepath.Join(dir, "secs.txt"), []byte(secs.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		extra string
		want  []string
	}{
		{"", []string{"request 2 of 2: getdata, 50000 securities (50001 to 100000) × 2 fields (1 to 2) × snapshot = 100000 data points",
			"in all: 2 vendor requests, 200000 data points"}},
		{"overrides: {VWAP_START_TIME: \"09:30\"}\n", []string{"request 5 of 5: getdata, 20000 securities (80001 to 100000)",
			"in all: 5 vendor requests, 200000 data points"}},
	} {
		path := filepath.Join(dir, "wide.yaml")
		if err := os.WriteFile(path, []byte("name: wide\nprogram: getdata\nsecurities_file: secs.txt\nfields: [PX_LAST, PX_BID]\n"+c.extra), 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := jobspec.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := dryRun(f, time.Now(), 1_000_000, &out); err != nil {
			t.Fatalf("%q: %v", c.extra, err)
		}
		for _, want := range c.want {
			if !strings.Contains(out.String(), want) {
				t.Errorf("dry run lacks %q:\n%s", want, out.String())
			}
		}
	}
}

// TestScheduleApplyRefusesUnsplittable: `schedule apply` refuses a job that cannot be cut into
// vendor requests, as `submit` does, before it contacts NATS, rather than failing each firing.
func TestScheduleApplyRefusesUnsplittable(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "long.yaml")
	job := "name: long\nprogram: gethistory\nsecurities: [IBM US Equity]\nfields: [PX_LAST]\n" +
		"start: 2000-01-01\nend: 2025-12-31\nschedule: \"0 7 * * 1-5\"\n"
	if err := os.WriteFile(path, []byte(job), 0o600); err != nil {
		t.Fatal(err)
	}
	// No NATS listens there: the refusal must come first.
	env := map[string]string{"NATS_URL": "nats://127.0.0.1:1", "VENDOR_MAX_POINTS_PER_REQUEST": "1"}
	out, err := runRoot(t, env, "schedule", "apply", path)
	if err == nil || !strings.Contains(err.Error(), "cannot be split") || !strings.Contains(err.Error(), path) {
		t.Fatalf("schedule apply of a job needing more than %d requests: %v\n%s", vendor.MaxParts, err, out)
	}
}
