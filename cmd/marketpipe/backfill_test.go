package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/backfill"
	"github.com/marketpipe/marketpipe/pkg/config"
	"github.com/marketpipe/marketpipe/pkg/events"
)

// runBackfillCmd runs `marketpipe args...` with env as the whole environment (NATS_URL on a
// port where nothing listens, so that anything that would need NATS fails).
func runBackfillCmd(t *testing.T, env map[string]string, args ...string) (string, string, error) {
	t.Helper()
	if env == nil {
		env = map[string]string{}
	}
	if _, ok := env["NATS_URL"]; !ok {
		env["NATS_URL"] = "nats://127.0.0.1:1"
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	var out, errOut bytes.Buffer
	root := newRootCmd(config.Lookup(lookup), &out, &errOut)
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

const historyFile = "name: eod\nprogram: gethistory\nsecurities: [IBM US Equity, AAPL US Equity, VOD LN Equity]\n" +
	"fields: [PX_LAST, PX_VOLUME]\nstart: 2026-01-01\nend: 2026-01-31\n"

// Bad flags and files are refused with exit status 2, naming the flag, before anything else
// (no NATS here).
func TestBackfillRefusesBadInput(t *testing.T) {
	hist := writeFile(t, "h.yaml", historyFile)
	snap := writeFile(t, "s.yaml", "name: snap\nprogram: getdata\nsecurities: [IBM US Equity]\nfields: [PX_LAST]\n")
	tomorrow := time.Now().UTC().AddDate(0, 0, 2).Format(time.DateOnly)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{hist, "--to", "2025-12-31"}, "--from is required"},
		{[]string{hist, "--from", "2025-01-01"}, "--to is required"},
		{[]string{hist, "--from", "2025-13-01", "--to", "2025-12-31"}, `--from "2025-13-01" is not a date`},
		{[]string{hist, "--from", "2025-01-01", "--to", "31/12/2025"}, `--to "31/12/2025" is not a date`},
		{[]string{hist, "--from", "2025-06-01", "--to", "2025-01-01"}, "--from 2025-06-01 is after --to 2025-01-01"},
		{[]string{hist, "--from", "2025-06-01", "--to", tomorrow}, "--to " + tomorrow + " is after today"},
		{[]string{hist, "--from", "2025-01-01", "--to", "2025-12-31", "--parallel", "0"}, "--parallel 0: want at least 1"},
		{[]string{hist, "--from", "2025-01-01", "--to", "2025-12-31", "--name", "a b"}, "--name: backfill name \"a b\""},
		{[]string{snap, "--from", "2025-01-01", "--to", "2025-12-31"}, "is a getdata job: only gethistory job files can be backfilled"},
		{[]string{hist, "--from", "2026-11-28", "--to", "2026-11-29"}, "holds no weekday"},
		{[]string{writeFile(t, "bad.yaml", "name: x\nprogram: gethistory\n"), "--from", "2025-01-01", "--to", "2025-12-31"}, "invalid job file"},
	} {
		_, _, err := runBackfillCmd(t, nil, append([]string{"backfill"}, c.args...)...)
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != exitInvalid || !strings.Contains(err.Error(), c.want) {
			t.Errorf("backfill %v: %v, want exit %d saying %q", c.args, err, exitInvalid, c.want)
		}
	}
}

// --dry-run prints every window's request and the total, without NATS.
func TestBackfillDryRun(t *testing.T) {
	hist := writeFile(t, "h.yaml", historyFile)
	// 3 × 2 = 6 points a date, 132 a window: 22 dates each; 86 weekdays in 2025-01-01..2025-04-30.
	out, _, err := runBackfillCmd(t, map[string]string{"VENDOR_MAX_POINTS_PER_REQUEST": "132"},
		"backfill", hist, "--from", "2025-01-01", "--to", "2025-04-30", "--dry-run")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"backfill eod-20250101-20250430: gethistory 2025-01-01 to 2025-04-30 in 4 windows of at most 132 data points",
		"window 1 of 4: 2025-01-01 to 2025-01-30, 3 securities × 2 fields × 22 dates = 132 data points (job eod-20250101-20250430-w001)",
		"window 4 of 4: 2025-04-03 to 2025-04-30, 3 securities × 2 fields × 20 dates = 120 data points (job eod-20250101-20250430-w004)",
		"in all: 4 vendor requests, 516 data points; nothing sent",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run lacks %q:\n%s", want, out)
		}
	}
	// --name names the backfill and its jobs.
	out, _, err = runBackfillCmd(t, nil, "backfill", hist, "--from", "2025-01-01", "--to", "2025-04-30", "--dry-run", "--name", "eod_history")
	if err != nil || !strings.Contains(out, "in 1 windows") || !strings.Contains(out, "(job eod_history-w001)") {
		t.Errorf("dry run --name: %v\n%s", err, out)
	}
}

// The display: plain lines, or a progress bar of the windows loaded on a terminal, with the
// failures printed above it.
func TestBackfillDisplay(t *testing.T) {
	rec := &backfill.Record{Name: "eod-x", From: "2025-01-01", To: "2025-04-30", Parts: make([]backfill.Part, 4)}
	for i := range rec.Parts {
		rec.Parts[i].Window = backfill.Window{Start: "2025-01-01", End: "2025-01-30"}
	}
	feed := func(d *backfillDisplay) {
		loaded := backfill.Part{Window: rec.Parts[0].Window, State: events.Loaded, Rows: 132}
		d.report(backfill.Progress{Window: 0, JobID: "eod-x-w001", Part: loaded, Skipped: true})
		d.report(backfill.Progress{Window: 1, JobID: "eod-x-w002", Part: backfill.Part{State: events.Submitted}, Submitted: true})
		d.report(backfill.Progress{Window: 1, JobID: "eod-x-w002", Part: loaded})
		d.report(backfill.Progress{Window: 2, JobID: "eod-x-w003", Part: backfill.Part{State: events.Failed, Error: "vendor refused"}})
		d.finish()
	}
	var plain bytes.Buffer
	feed(newBackfillDisplay(&plain, rec, false))
	for _, want := range []string{"[1/4 loaded] window 1 2025-01-01..2025-01-30 job eod-x-w001: loaded before, 132 observations",
		"[1/4 loaded] window 2 .. job eod-x-w002: submitted", "[2/4 loaded] window 2 2025-01-01..2025-01-30 job eod-x-w002: loaded, 132 observations",
		"window 3 .. job eod-x-w003: FAILED: vendor refused"} {
		if !strings.Contains(plain.String(), want) {
			t.Errorf("plain lines lack %q:\n%s", want, plain.String())
		}
	}
	var bar bytes.Buffer
	feed(newBackfillDisplay(&bar, rec, true))
	if s := bar.String(); !strings.Contains(s, "windows loaded (1 in flight)") || !strings.Contains(s, "(2/4)") ||
		!strings.Contains(s, "FAILED: vendor refused") || strings.Contains(s, "submitted") {
		t.Errorf("progress bar output:\n%q", s)
	}
}
