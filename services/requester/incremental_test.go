package requester_test

import (
	"context"
	"maps"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/coverage"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/pkg/natsx"
	"github.com/marketpipe/marketpipe/pkg/obs"
	"github.com/marketpipe/marketpipe/pkg/stage"
	"github.com/marketpipe/marketpipe/pkg/vendor"
	"github.com/marketpipe/marketpipe/services/requester"
	"github.com/marketpipe/marketpipe/services/vendorsim"
)

// posted is what the simulator received of the vendor request id: its securities and dates.
func posted(t *testing.T, sim *vendorsim.Server, id string) (secs []string, start, end string) {
	t.Helper()
	secs, start, end, ok := sim.Asked(id)
	if !ok {
		t.Fatalf("the simulator has no vendor request %q", id)
	}
	return secs, start, end
}

// TestIncremental: an incremental job asks the vendor only for the securities with anything
// missing, each group of them over its missing dates (a vendor request each), and counts those points; with
// nothing missing it sends nothing and ends loaded with 0 points, unless a cancel ended it
// first. A job that is not incremental asks for everything.
func TestIncremental(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	env := natstest.NewEnv(t)
	simSrv := vendorsim.NewServer(vendorsim.Options{Account: vendorsim.DefaultAccount})
	sim := httptest.NewServer(simSrv)
	t.Cleanup(sim.Close)
	v, err := vendor.New(vendor.Config{BaseURL: sim.URL + "/eap"})
	if err != nil {
		t.Fatal(err)
	}
	cov := coverage.Store{KV: env.Streams.Coverage}
	h := stage.Jobs(stage.NewPublisher(env.JS), events.Decode, &requester.Handler{Vendor: v, Specs: env.Streams.Specs,
		Coverage: cov, Ends: env.Streams.Ends, Now: time.Now})

	fields := []string{"PX_LAST", "PX_VOLUME"}
	spec := events.Spec{Name: "inc", Program: events.GetHistory, Securities: []string{"A US Equity", "B US Equity", "C US Equity"},
		Fields: fields, Start: "2025-01-01", End: "2025-03-31", Incremental: true, Options: events.Options{Currency: "EUR"}}
	// A and C loaded to the end of February; B to the end of March; another dataset (no
	// currency) has everything, which does not count.
	feb := coverage.Range{From: obs.MakeDate(2025, 1, 1), To: obs.MakeDate(2025, 2, 28)}
	mar := coverage.Range{From: obs.MakeDate(2025, 1, 1), To: obs.MakeDate(2025, 3, 31)}
	for _, err := range []error{
		cov.Add(ctx, spec.Dataset(), []string{"A US Equity", "C US Equity"}, fields, feb),
		cov.Add(ctx, spec.Dataset(), []string{"B US Equity"}, fields, mar),
		cov.Add(ctx, "gethistory", spec.Securities, fields, mar),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	run := func(id string, s events.Spec) events.Job {
		t.Helper()
		j := submitted(id, s)
		if err := h.Handle(ctx, env.DeliverJob(&j)); err != nil {
			t.Fatal(err)
		}
		got, _ := env.LastJob(id)
		return got
	}

	got := run("job-inc", spec)
	if got.State != events.Requested {
		t.Fatalf("state %q (%s)", got.State, got.Error)
	}
	secs, start, end := posted(t, simSrv, got.VendorRequestID)
	if !slices.Equal(secs, []string{"A US Equity", "C US Equity"}) || start != "2025-03-01" || end != "2025-03-31" {
		t.Errorf("incremental request: %v from %s to %s; want A and C from 2025-03-01 to 2025-03-31", secs, start, end)
	}
	if want := int64(2 * 2 * 21); got.PointsRequested != want { // March 2025: 21 weekdays
		t.Errorf("points requested %d, want %d", got.PointsRequested, want)
	}

	// Not incremental: everything.
	full := spec
	full.Incremental = false
	got = run("job-full", full)
	secs, start, end = posted(t, simSrv, got.VendorRequestID)
	if len(secs) != 3 || start != "2025-01-01" || end != "2025-03-31" || got.PointsRequested != 3*2*coverage.Dates(mar, "") {
		t.Errorf("full request: %v from %s to %s, %d points", secs, start, end, got.PointsRequested)
	}

	// Nothing missing: no vendor request, loaded with 0 points, the end claimed.
	if err := cov.Add(ctx, spec.Dataset(), []string{"A US Equity", "C US Equity"}, fields, mar); err != nil {
		t.Fatal(err)
	}
	before := len(simSrv.Requests())
	got = run("job-none", spec)
	if got.State != events.Loaded || got.PointsRequested != 0 || got.VendorRequestID != "" {
		t.Errorf("nothing missing: state %q, %d points, vendor request %q; want loaded, 0, none", got.State, got.PointsRequested, got.VendorRequestID)
	}
	if n := len(simSrv.Requests()); n != before {
		t.Errorf("nothing missing, yet %d vendor requests were made", n-before)
	}
	if e, ok, err := natsx.RunEnd(ctx, env.Streams.Ends, "job-none", 0); err != nil || !ok || e.State != events.Loaded || e.By != requester.Name {
		t.Errorf("end of the run: %+v %v %v", e, ok, err)
	}

	// Cancelled before the requester got to it: stays cancelled.
	if _, err := natsx.ClaimEnd(ctx, env.Streams.Ends, "job-cancelled", 0, natsx.End{State: events.Cancelled, At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if got = run("job-cancelled", spec); got.State != events.Submitted {
		t.Errorf("a cancelled run with nothing missing published %q (%s)", got.State, got.Error)
	}

	// A new security: only it is asked, for the whole range.
	more := spec
	more.Securities = append(slices.Clone(spec.Securities), "D US Equity")
	got = run("job-more", more)
	secs, start, end = posted(t, simSrv, got.VendorRequestID)
	if !slices.Equal(secs, []string{"D US Equity"}) || start != "2025-01-01" || end != "2025-03-31" {
		t.Errorf("one new security: %v from %s to %s", secs, start, end)
	}

	// A new security needing the whole range beside one needing March: two groups, each its
	// own vendor request over its own dates, not both over the whole range.
	two := spec
	two.Securities = []string{"F US Equity", "E US Equity"}
	if err := cov.Add(ctx, spec.Dataset(), []string{"F US Equity"}, fields, feb); err != nil {
		t.Fatal(err)
	}
	got = run("job-two", two)
	if got.State != events.Requested || len(got.Parts) != 2 {
		t.Fatalf("two groups: state %q (%s), %d parts; want requested in 2 parts", got.State, got.Error, len(got.Parts))
	}
	asked := map[string]string{}
	for _, p := range got.Parts {
		secs, start, end := posted(t, simSrv, p.VendorRequestID)
		if len(secs) != 1 {
			t.Fatalf("part %s asks %v, want one security", p.VendorRequestID, secs)
		}
		asked[secs[0]] = start + ".." + end
	}
	want := map[string]string{"E US Equity": "2025-01-01..2025-03-31", "F US Equity": "2025-03-01..2025-03-31"}
	if !maps.Equal(asked, want) {
		t.Errorf("two groups asked %v, want %v", asked, want)
	}
	if w := 2*coverage.Dates(mar, "") + 2*21; got.PointsRequested != w {
		t.Errorf("two groups: %d points requested, want %d", got.PointsRequested, w)
	}
}
