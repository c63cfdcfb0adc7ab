package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/auth"
	"github.com/marketpipe/marketpipe/pkg/chstore"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/jobspec"
	"github.com/marketpipe/marketpipe/pkg/natsx"
	"github.com/marketpipe/marketpipe/pkg/obs"
)

// TestBackfillResumesAfterKill runs `marketpipe backfill` of four windows, two at a time, kills
// the CLI (SIGKILL, as a crash) once the first window has loaded, and runs the same command
// again: it completes, each window's vendor request was posted exactly once, the loaded
// observations are the simulator's for the whole range, `backfill status` shows every window
// loaded, and a third run asks the vendor for nothing. --dry-run before it all sends nothing
// and needs no NATS.
func TestBackfillResumesAfterKill(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	p := startPipeline(t, ctx)
	// 3 securities × 2 fields = 6 data points a date; a budget of 132 makes windows of 22 dates:
	// 2025-01-01 to 2025-04-30 (86 weekdays) is four windows (22, 22, 22, 20).
	p.env["VENDOR_MAX_POINTS_PER_REQUEST"] = "132"
	secs := []string{"BKF001 US Equity", "BKF002 US Equity", "BKF003 US Equity"}
	fields := []string{"PX_LAST", "PX_VOLUME"}
	path := writeJob(t, t.TempDir(), "bkf.yaml", "name: bkf\nprogram: gethistory\nsecurities:\n"+yamlList(secs)+
		"fields: [PX_LAST, PX_VOLUME]\nstart: 2026-01-01\nend: 2026-01-31\ndeadline: 5m\n")
	const from, to, name, windows = "2025-01-01", "2025-04-30", "bkf-20250101-20250430", 4
	args := []string{"backfill", path, "--from", from, "--to", to, "--parallel", "2"}

	// --dry-run: the plan, without NATS (none named) and without a request.
	out, stderr, code := runCLI(t, ctx, map[string]string{"VENDOR_MAX_POINTS_PER_REQUEST": "132"}, append(args, "--dry-run")...)
	if code != 0 || !strings.Contains(out, "in 4 windows of at most 132 data points") ||
		!strings.Contains(out, "in all: 4 vendor requests, 516 data points; nothing sent") {
		t.Fatalf("backfill --dry-run: exit %d: %s%s", code, out, stderr)
	}
	if n := len(p.sim.Requests()); n != 0 {
		t.Fatalf("--dry-run: %d vendor requests", n)
	}

	// The first run, killed once the first window has loaded.
	ensureMigrated(t, p.env)
	js := connectAs(t, p.env, auth.AdminName)
	state := func(i int) string {
		j, ok, err := natsx.LastJobEvent(ctx, js, jobspec.BackfillJobID(name, i, 1))
		if err != nil || !ok {
			return ""
		}
		return j.State
	}
	first := exec.CommandContext(ctx, bin(t, "marketpipe"), args...)
	first.Env = processEnv(p.env, auth.OperatorName)
	var firstOut bytes.Buffer
	first.Stdout, first.Stderr = &firstOut, &firstOut
	first.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- first.Wait() }()
	// Killed with the first window loaded and the third submitted (two at a time: it went in
	// when one of the first two loaded), so that the next run finds a window in flight.
	waitUntil(t, ctx, "the first window loaded and the third submitted", func() bool {
		return state(1) == events.Loaded && state(3) != ""
	})
	_ = syscall.Kill(-first.Process.Pid, syscall.SIGKILL)
	<-done
	var states []string
	inFlight := 0
	for i := 1; i <= windows; i++ {
		s := state(i)
		states = append(states, s)
		if s != "" && s != events.Loaded {
			inFlight++
		}
	}
	t.Logf("killed the first run; its output:\n%s\nwindows then: %q", firstOut.String(), states)
	if inFlight == 0 {
		t.Fatal("no window was in flight at the kill: the test would not check that the next run waits on it")
	}

	// The same command again completes the backfill.
	out, stderr, code = runCLI(t, ctx, p.env, args...)
	t.Logf("second run:\n%s%s", stderr, out)
	if code != 0 || !strings.Contains(out, "4 of 4 windows loaded") {
		t.Fatalf("second run: exit %d: %s%s", code, out, stderr)
	}
	if !strings.Contains(stderr, "window 1 "+from+"..") || !strings.Contains(stderr, "loaded before") ||
		!strings.Contains(stderr, "waiting") {
		t.Errorf("the second run does not say the first window loaded before, and that it waits on one in flight:\n%s", stderr)
	}

	// Each window's request was posted once, and no other.
	requests := p.sim.Requests()
	for i := 1; i <= windows; i++ {
		id := jobspec.BackfillJobID(name, i, 1)
		if n := requests[jobspec.VendorRequestID(id, 0)]; n != 1 {
			t.Errorf("window %d (job %s): posted %d times, want once", i, id, n)
		}
	}
	if len(requests) != windows {
		t.Errorf("vendor requests: %v, want %d", requests, windows)
	}
	// At most two windows were in flight at any moment (across both runs): when each job was
	// submitted, at most one other was between its submission and its load.
	var runs []events.Job
	for i := 1; i <= windows; i++ {
		j, ok, err := natsx.LastJobEvent(ctx, js, jobspec.BackfillJobID(name, i, 1))
		if err != nil || !ok || j.State != events.Loaded {
			t.Fatalf("window %d: %+v %v %v", i, j, ok, err)
		}
		runs = append(runs, j)
	}
	for _, a := range runs {
		n := 0
		for _, b := range runs {
			if !b.SubmittedAt.After(a.SubmittedAt) && b.LoadedAt.After(a.SubmittedAt) {
				n++
			}
		}
		if n > 2 {
			t.Errorf("%d jobs in flight when %s was submitted at %s, want at most 2 (--parallel 2)", n, a.ID, a.SubmittedAt)
		}
	}

	// What readers see is the simulator's data for the whole range, each observation once.
	whole := events.Spec{Name: "bkf", Program: events.GetHistory, Securities: secs, Fields: fields, Start: from, End: to}
	want := expected(t, whole, p.runDate)
	var got []obs.Observation
	err := p.store.Query(ctx, chstore.Filter{Securities: secs}, func(r *chstore.Row) error {
		got = append(got, r.Observation)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got, cmpKey)
	compare(t, got, want)

	// backfill status: the list, and each window loaded with its rows.
	out, stderr, code = runCLI(t, ctx, p.env, "backfill", "status")
	if code != 0 || !strings.Contains(out, name) || !strings.Contains(out, "4/4") || !strings.Contains(out, "complete") {
		t.Errorf("backfill status: exit %d: %s%s", code, out, stderr)
	}
	out, stderr, code = runCLI(t, ctx, p.env, "backfill", "status", name, "--json")
	var rec struct {
		Parts []struct {
			Start, End, State string
			Rows              int64
		}
	}
	if code != 0 || json.Unmarshal([]byte(out), &rec) != nil || len(rec.Parts) != windows {
		t.Fatalf("backfill status %s --json: exit %d: %s%s", name, code, out, stderr)
	}
	var rows int64
	for i, part := range rec.Parts {
		if part.State != events.Loaded || part.Rows == 0 {
			t.Errorf("window %d (%s..%s): %s, %d rows", i+1, part.Start, part.End, part.State, part.Rows)
		}
		rows += part.Rows
	}
	if rows != int64(len(want)) {
		t.Errorf("the windows loaded %d rows in all; the range holds %d observations", rows, len(want))
	}
	if out, _, _ := runCLI(t, ctx, p.env, "backfill", "status", name); !strings.Contains(out, "4/4 windows loaded") ||
		strings.Count(out, " loaded ") < windows {
		t.Errorf("backfill status %s:\n%s", name, out)
	}

	// Once more: nothing is asked of the vendor.
	out, stderr, code = runCLI(t, ctx, p.env, args...)
	if code != 0 || !strings.Contains(out, "4 of 4 windows loaded") {
		t.Errorf("third run: exit %d: %s%s", code, out, stderr)
	}
	if after := p.sim.Requests(); !maps.Equal(after, requests) {
		t.Errorf("the third run asked the vendor again: %v, then %v", requests, after)
	}
}

// startCLI starts the marketpipe CLI with args as the operator; wait returns its exit code and
// output.
func startCLI(t *testing.T, ctx context.Context, env map[string]string, args ...string) (cmd *exec.Cmd, wait func() (int, string)) {
	t.Helper()
	ensureMigrated(t, env)
	cmd = exec.CommandContext(ctx, bin(t, "marketpipe"), args...)
	cmd.Env = processEnv(env, auth.OperatorName)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	return cmd, func() (int, string) {
		err := <-done
		done <- err
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		return code, out.String()
	}
}

// TestBackfillRetriesCancelledWindow cancels the job of a backfill's first window while the
// backfill runs one job at a time, interrupts the backfill (SIGINT, as Ctrl-C) while its second
// window is in flight, and runs it again: the cancelled window runs again as a new job (its
// second attempt), the second window is waited on, and the whole range loads, each request
// posted once. The same name with a changed job file is then refused, saying what changed.
func TestBackfillRetriesCancelledWindow(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	p := startPipeline(t, ctx)
	p.env["VENDOR_MAX_POINTS_PER_REQUEST"] = "132" // 22 dates of 3 × 2: May 2025, then June
	secs := []string{"BKG001 US Equity", "BKG002 US Equity", "BKG003 US Equity"}
	dir := t.TempDir()
	job := func(secs []string) string {
		return writeJob(t, dir, "bkg.yaml", "name: bkg\nprogram: gethistory\nsecurities:\n"+yamlList(secs)+
			"fields: [PX_LAST, PX_VOLUME]\nstart: 2026-01-01\nend: 2026-01-31\n")
	}
	path := job(secs)
	const from, to, name = "2025-05-01", "2025-06-30", "bkg-20250501-20250630"
	args := []string{"backfill", path, "--from", from, "--to", to, "--parallel", "1"}
	js := connectAs(t, p.env, auth.AdminName)
	state := func(id string) string {
		j, ok, err := natsx.LastJobEvent(ctx, js, id)
		if err != nil || !ok {
			return ""
		}
		return j.State
	}
	w1, w1r2, w2 := jobspec.BackfillJobID(name, 1, 1), jobspec.BackfillJobID(name, 1, 2), jobspec.BackfillJobID(name, 2, 1)

	cli, wait := startCLI(t, ctx, p.env, args...)
	waitUntil(t, ctx, "the first window submitted", func() bool { return state(w1) != "" })
	if out, stderr, code := runCLI(t, ctx, p.env, "cancel", w1); code != 0 {
		t.Fatalf("cancel %s: exit %d: %s%s (it must still be in flight for this test)", w1, code, out, stderr)
	}
	waitUntil(t, ctx, "the second window submitted", func() bool { return state(w2) != "" })
	if err := cli.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	code, out := wait()
	t.Logf("interrupted run:\n%s", out)
	if code != 130 || !strings.Contains(out, "CANCELLED") || !strings.Contains(out, "window 2 ("+w2+") keeps running; window 1 did not load and will run again") ||
		!strings.Contains(out, "`marketpipe backfill "+path+" --from "+from+" --to "+to+"` resumes it") {
		t.Fatalf("interrupted backfill: exit %d (want 130), output:\n%s", code, out)
	}

	out, stderr, code := runCLI(t, ctx, p.env, args...)
	t.Logf("second run:\n%s%s", stderr, out)
	if code != 0 || !strings.Contains(out, "2 of 2 windows loaded") || !strings.Contains(stderr, "submitted attempt 2") {
		t.Fatalf("second run: exit %d: %s%s", code, out, stderr)
	}
	requests := p.sim.Requests()
	if requests[jobspec.VendorRequestID(w1r2, 0)] != 1 || requests[jobspec.VendorRequestID(w2, 0)] != 1 ||
		requests[jobspec.VendorRequestID(w1, 0)] > 1 {
		t.Errorf("vendor requests %v: want %s and %s posted once, %s at most once", requests, w1r2, w2, w1)
	}
	whole := events.Spec{Name: "bkg", Program: events.GetHistory, Securities: secs, Fields: []string{"PX_LAST", "PX_VOLUME"}, Start: from, End: to}
	var got []obs.Observation
	if err := p.store.Query(ctx, chstore.Filter{Securities: secs}, func(r *chstore.Row) error {
		got = append(got, r.Observation)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got, cmpKey)
	compare(t, got, expected(t, whole, p.runDate))
	if out, _, _ := runCLI(t, ctx, p.env, "backfill", "status", name); !strings.Contains(out, w1r2) || !strings.Contains(out, "complete") {
		t.Errorf("backfill status %s does not show the second attempt's job:\n%s", name, out)
	}

	// The same backfill with another universe is refused, saying what changed.
	job(append(secs, "BKG004 US Equity"))
	if _, stderr, code := runCLI(t, ctx, p.env, args...); code != 2 || !strings.Contains(stderr, "securities (3 then, 4 now)") {
		t.Errorf("changed job file: exit %d: %s", code, stderr)
	}
}
