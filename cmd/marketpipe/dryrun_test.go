package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/coverage"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/jobspec"
	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/pkg/obs"
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
	if err := dryRun(f, time.Now(), 1_000_000, nil, &out); err != nil {
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
		if got := vendor.HistoryDates(c.start, c.end, c.period); got != c.want {
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
	if err := dryRun(f, time.Now(), 11, nil, &out); err != nil {
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
		if err := dryRun(f, time.Now(), 1_000_000, nil, &out); err != nil {
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

// TestDryRunIncremental: `submit --dry-run` of an incremental job reads what committed runs
// loaded from NATS and shows only what is missing, grouped as the requester groups it; with
// everything loaded it says nothing is missing; and without NATS it shows the most the job
// asks, saying why.
func TestDryRunIncremental(t *testing.T) {
	srv := natstest.Start(t)
	env := map[string]string{"NATS_URL": srv.ClientURL()}
	if out, err := runRoot(t, env, "migrate", "--only", "nats"); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "inc.yaml")
	if err := os.WriteFile(path, []byte("name: inc\nprogram: gethistory\nincremental: true\n"+
		"securities: [A US Equity, B US Equity]\nfields: [PX_LAST]\nstart: 2025-01-01\nend: 2025-03-31\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, js := natstest.Connect(t, srv)
	ctx := context.Background()
	kv, err := js.KeyValue(ctx, events.CoverageBucket)
	if err != nil {
		t.Fatal(err)
	}
	cov := coverage.Store{KV: kv}
	// A is loaded to the end of February, B not at all: B over the quarter, A over March.
	feb := coverage.Range{From: obs.MakeDate(2025, 1, 1), To: obs.MakeDate(2025, 2, 28)}
	if err := cov.Add(ctx, "gethistory", []string{"A US Equity"}, []string{"PX_LAST"}, feb); err != nil {
		t.Fatal(err)
	}
	out, err := runRoot(t, env, "submit", "--dry-run", path)
	if err != nil {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	for _, want := range []string{
		"request 1 of 2: gethistory, 1 securities (1 to 1) × 1 fields (1 to 1) × 2025-01-01 to 2025-03-31, 64 dates = 64 data points",
		"request 2 of 2: gethistory, 1 securities (2 to 2) × 1 fields (1 to 1) × 2025-03-01 to 2025-03-31, 21 dates = 21 data points",
		"incremental: only what committed runs have not loaded", "in all: 2 vendor requests, 85 data points"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run lacks %q:\n%s", want, out)
		}
	}
	mar := coverage.Range{From: obs.MakeDate(2025, 1, 1), To: obs.MakeDate(2025, 3, 31)}
	if err := cov.Add(ctx, "gethistory", []string{"A US Equity", "B US Equity"}, []string{"PX_LAST"}, mar); err != nil {
		t.Fatal(err)
	}
	if out, err = runRoot(t, env, "submit", "--dry-run", path); err != nil || !strings.Contains(out, "nothing missing") || !strings.Contains(out, "in all: 0 vendor requests") {
		t.Errorf("dry run with everything loaded: %v\n%s", err, out)
	}
	// No NATS: the most it asks, and why.
	out, err = runRoot(t, map[string]string{"NATS_URL": "nats://127.0.0.1:1"}, "submit", "--dry-run", path)
	if err != nil || !strings.Contains(out, "at most this, as what earlier runs loaded could not be read") || !strings.Contains(out, "in all: 1 vendor request, 128 data points") {
		t.Errorf("dry run without NATS: %v\n%s", err, out)
	}
}
