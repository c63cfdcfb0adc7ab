package tests

import (
	"context"
	"encoding/json"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/chstore"
	"github.com/marketpipe/marketpipe/pkg/coverage"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/obs"
	"github.com/marketpipe/marketpipe/services/vendorsim"
)

// TestIncrementalRuns runs an incremental gethistory job through the five stages, then the
// same job over a longer range: the second asks the vendor only for the dates the first did
// not load (the request body the simulator received says so), and readers see the simulator's
// data for the whole range. Asked again, the job sends nothing to the vendor and ends loaded
// with 0 points; with one more security, only that security is asked for.
func TestIncrementalRuns(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	p := startPipeline(t, ctx)
	dir := t.TempDir()
	secs := securities(4)
	fields := []string{"PX_LAST", "PX_VOLUME"}
	const d1, d2, d3 = "2025-01-01", "2025-03-31", "2025-06-30"
	jobFile := func(secs []string, end string) string {
		return writeJob(t, dir, "inc-"+end+"-"+secs[len(secs)-1][:6]+".yaml", "name: inc\nprogram: gethistory\nincremental: true\nsecurities:\n"+
			yamlList(secs)+"fields: ["+strings.Join(fields, ", ")+"]\nstart: "+d1+"\nend: "+end+"\ndeadline: 3m\n")
	}
	// run submits a job file, waits for it, and returns its run as `status --json` shows it
	// once the jobs table has its end, and the text of `status` (after submit's progress).
	run := func(path string, args ...string) (events.Job, string) {
		t.Helper()
		out, stderr, code := runCLI(t, ctx, p.env, append(append([]string{"submit"}, args...), path, "--wait", "--timeout", "2m")...)
		if code != 0 {
			t.Fatalf("submit %s: exit %d: %s%s", path, code, out, stderr)
		}
		id := strings.TrimSpace(strings.SplitN(out, "\n", 2)[0])
		var j struct {
			events.Job
			ScheduledFor string `json:"scheduled_for"` // status --json's, a string
		}
		waitUntil(t, ctx, "job "+id+" loaded in the jobs table", func() bool {
			out, _, code := runCLI(t, ctx, p.env, "status", id, "--json")
			j.Job = events.Job{}
			return code == 0 && json.Unmarshal([]byte(out), &j) == nil && j.State == events.Loaded
		})
		text, serr, code := runCLI(t, ctx, p.env, "status", id)
		if code != 0 {
			t.Fatalf("status %s: exit %d: %s", id, code, serr)
		}
		return j.Job, stderr + text
	}
	weekdays := func(from, to string) int64 {
		r, err := coverage.ParseRange(from, to)
		if err != nil {
			t.Fatal(err)
		}
		return coverage.Dates(r, "")
	}
	pointsLine := regexp.MustCompile(`(?m)^points\s+requested (\d+), saved (\d+)`)

	// 1. Nothing loaded yet: everything is asked for.
	first, text := run(jobFile(secs, d2))
	body := postedBody(t, p.sim, first.VendorRequestID)
	if !slices.Equal(body.securities, secs) || body.start != d1 || body.end != d2 {
		t.Errorf("first run asked for %v from %s to %s; want every security from %s to %s", body.securities, body.start, body.end, d1, d2)
	}
	if want := int64(len(secs)*len(fields)) * weekdays(d1, d2); first.PointsRequested != want || first.RowsLoaded == 0 {
		t.Errorf("first run: %d points requested (want %d), %d saved", first.PointsRequested, want, first.RowsLoaded)
	}
	if m := pointsLine.FindStringSubmatch(text); m == nil || m[1] == "0" {
		t.Errorf("status of the first run says nothing of its points:\n%s", text)
	}

	// 2. The same job to d3: only the dates after d2 are asked for.
	second, text := run(jobFile(secs, d3))
	body = postedBody(t, p.sim, second.VendorRequestID)
	if !slices.Equal(body.securities, secs) || body.start != "2025-04-01" || body.end != d3 {
		t.Errorf("second run asked for %v from %s to %s; want every security from 2025-04-01 to %s", body.securities, body.start, body.end, d3)
	}
	if want := int64(len(secs)*len(fields)) * weekdays("2025-04-01", d3); second.PointsRequested != want {
		t.Errorf("second run: %d points requested, want %d", second.PointsRequested, want)
	}
	if m := pointsLine.FindStringSubmatch(text); m == nil || m[2] != strconv.FormatInt(second.RowsLoaded, 10) {
		t.Errorf("status of the second run (saved %d):\n%s", second.RowsLoaded, text)
	}
	spec := events.Spec{Program: events.GetHistory, Securities: secs, Fields: fields, Start: d1, End: d3}
	compare(t, current(t, ctx, p.store, secs, fields, spec.Dataset()), expected(t, spec, p.runDate))

	// 3. Again: nothing missing, nothing asked of the vendor, loaded with 0 points.
	posts := len(p.sim.Requests())
	third, text := run(jobFile(secs, d3), "--again")
	if n := len(p.sim.Requests()); n != posts || third.VendorRequestID != "" {
		t.Errorf("nothing was missing, yet %d vendor requests were made (run's request %q)", n-posts, third.VendorRequestID)
	}
	if m := pointsLine.FindStringSubmatch(text); m == nil || m[1] != "0" || m[2] != "0" || third.PointsRequested != 0 ||
		!strings.Contains(text, "nothing missing: earlier runs loaded every security and date") {
		t.Errorf("status of the run with nothing missing:\n%s", text)
	}
	t.Logf("submit --wait and status of the run with nothing missing:\n%s", text)
	compare(t, current(t, ctx, p.store, secs, fields, spec.Dataset()), expected(t, spec, p.runDate))

	// 4. One more security: only it is asked for, over the whole range.
	more := securities(5)
	fourth, _ := run(jobFile(more, d3))
	body = postedBody(t, p.sim, fourth.VendorRequestID)
	if !slices.Equal(body.securities, more[4:]) || body.start != d1 || body.end != d3 {
		t.Errorf("with one new security the run asked for %v from %s to %s; want %v from %s to %s", body.securities, body.start, body.end, more[4:], d1, d3)
	}
	spec.Securities = more
	compare(t, current(t, ctx, p.store, more, fields, spec.Dataset()), expected(t, spec, p.runDate))
}

// requestBody is what the simulator received of a vendor request: its securities and dates.
type requestBody struct {
	securities []string
	start, end string
}

// postedBody is what the simulator received of the vendor request id, read from the body it
// was posted with.
func postedBody(t *testing.T, sim *vendorsim.Server, id string) requestBody {
	t.Helper()
	secs, start, end, ok := sim.Asked(id)
	if !ok {
		t.Fatalf("the simulator has no vendor request %q", id)
	}
	return requestBody{securities: secs, start: start, end: end}
}

// current is what readers see (observations_current) of securities and fields in a dataset
// (the program column), in key order.
func current(t *testing.T, ctx context.Context, st *chstore.Store, secs, fields []string, dataset string) []obs.Observation {
	t.Helper()
	var out []obs.Observation
	err := st.Query(ctx, chstore.Filter{Securities: secs, Fields: fields}, func(r *chstore.Row) error {
		if r.Program == dataset {
			out = append(out, r.Observation)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(out, cmpKey)
	return out
}
