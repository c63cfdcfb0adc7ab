package requester_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/pkg/natsx"
	"github.com/marketpipe/marketpipe/pkg/stage"
	"github.com/marketpipe/marketpipe/pkg/vendor"
	"github.com/marketpipe/marketpipe/services/requester"
	"github.com/marketpipe/marketpipe/services/vendorsim"
)

func setup(t *testing.T) (stage.Handler, *natstest.Env) {
	h, env, _ := setupSim(t)
	return h, env
}

// setupSim is setup that also returns the simulator's URL.
func setupSim(t *testing.T) (stage.Handler, *natstest.Env, string) {
	t.Helper()
	env := natstest.NewEnv(t)
	sim := httptest.NewServer(vendorsim.NewServer(vendorsim.Options{Account: vendorsim.DefaultAccount}))
	t.Cleanup(sim.Close)
	v, err := vendor.New(vendor.Config{BaseURL: sim.URL + "/eap"})
	if err != nil {
		t.Fatal(err)
	}
	return stage.Jobs(stage.NewPublisher(env.JS), events.Decode, &requester.Handler{Vendor: v, Specs: env.Streams.Specs, Now: time.Now}), env, sim.URL
}

// TestSecuritiesByReference: a job too large for a job event keeps its securities in the
// object store; the event stays small, and the vendor request carries every security. A list
// that is gone fails the job with the reason.
func TestSecuritiesByReference(t *testing.T) {
	h, env, simURL := setupSim(t)
	ctx := context.Background()
	spec := events.Spec{Name: "big", Program: "getdata", Fields: []string{"PX_LAST"}}
	for i := range 20_000 {
		spec.Securities = append(spec.Securities, fmt.Sprintf("US%010d", i)) // ISIN-length identifiers
	}
	j := submitted("job-big", spec)
	if err := natsx.ExternalizeSecurities(ctx, env.Streams.Specs, j.ID, &j.Spec); err != nil {
		t.Fatal(err)
	}
	data, _ := j.Encode()
	if len(data) > 4<<10 || j.Spec.SecurityCount() != 20_000 {
		t.Fatalf("job event of %d bytes for %d securities: the list did not move to the object store", len(data), j.Spec.SecurityCount())
	}
	if err := h.Handle(ctx, env.Deliver(events.JobsStream, events.JobSubject(j.ID, events.Submitted), data)); err != nil {
		t.Fatal(err)
	}
	got, _ := env.LastJob(j.ID)
	if got.State != events.Requested {
		t.Fatalf("state %q (%s)", got.State, got.Error)
	}
	req, err := http.NewRequest("GET", simURL+"/eap/catalogs/"+vendorsim.DefaultAccount+"/requests/"+got.VendorRequestID+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("api-version", "2")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if n := strings.Count(string(body), `"US0`); n != 20_000 {
		t.Errorf("the vendor request names %d securities, want 20000", n)
	}

	// The list gone: the job fails, saying so.
	lost := submitted("job-lost", spec)
	lost.Spec.Securities = spec.Securities[:2000]
	if err := natsx.ExternalizeSecurities(ctx, env.Streams.Specs, lost.ID, &lost.Spec); err != nil {
		t.Fatal(err)
	}
	if err := env.Streams.Specs.Delete(ctx, lost.Spec.SecuritiesRef.Object); err != nil {
		t.Fatal(err)
	}
	data, _ = lost.Encode()
	if err := h.Handle(ctx, env.Deliver(events.JobsStream, events.JobSubject(lost.ID, events.Submitted), data)); err != nil {
		t.Fatal(err)
	}
	if got, _ := env.LastJob(lost.ID); got.State != events.Failed || !strings.Contains(got.Error, "securities list not in the object store") {
		t.Errorf("state %q error %q", got.State, got.Error)
	}
}

func submitted(id string, spec events.Spec) events.Job {
	now := time.Now().UTC()
	j := events.Job{ID: id, Spec: spec, Version: 1, Deadline: now.Add(time.Hour)}
	return j.Advance(events.Submitted, now)
}

func TestRequester(t *testing.T) {
	good := events.Spec{Name: "eod", Program: "gethistory", Securities: []string{"IBM US Equity"},
		Fields: []string{"PX_LAST"}, Start: "2026-01-02", End: "2026-01-30"}
	tests := []struct {
		name      string
		spec      events.Spec
		wantState string
		wantError string
	}{
		{"creates the request", good, events.Requested, ""},
		{"vendor refusal fails the job with its description",
			events.Spec{Name: "x", Program: "getdata", Securities: []string{"IBM US Equity"}, Fields: []string{"px last"}},
			events.Failed, `mnemonic "px last" is not a field mnemonic`},
		{"a request the client refuses fails the job",
			events.Spec{Name: "x", Program: "gethistory", Securities: []string{"IBM US Equity"}, Fields: []string{"PX_LAST"},
				Start: "2026-02-01", End: "2026-01-01"},
			events.Failed, "end 2026-01-01 before start 2026-02-01"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, env := setup(t)
			j := submitted("job-1", tc.spec)
			data, _ := j.Encode()
			m := env.Deliver(events.JobsStream, events.JobSubject(j.ID, events.Submitted), data)
			if err := h.Handle(context.Background(), m); err != nil {
				t.Fatalf("Handle: %v", err)
			}
			got, ok := env.LastJob(j.ID)
			if !ok || got.State != tc.wantState {
				t.Fatalf("last event %q, want %q", got.State, tc.wantState)
			}
			if !strings.Contains(got.Error, tc.wantError) {
				t.Errorf("error %q, want it to contain %q", got.Error, tc.wantError)
			}
			if tc.wantState == events.Requested && (got.VendorRequestID == "" || got.VendorAccount != vendorsim.DefaultAccount) {
				t.Errorf("requested event lacks the vendor request: %+v", got)
			}
		})
	}
}

func TestRequesterRedeliveryIsHarmless(t *testing.T) {
	h, env := setup(t)
	j := submitted("job-2", events.Spec{Name: "eod", Program: "getdata", Securities: []string{"IBM US Equity"}, Fields: []string{"PX_LAST"}})
	data, _ := j.Encode()
	m := env.Deliver(events.JobsStream, events.JobSubject(j.ID, events.Submitted), data)
	for i := range 2 { // the second call is what a redelivery does: the vendor answers 409
		if err := h.Handle(context.Background(), m); err != nil {
			t.Fatalf("Handle #%d: %v", i+1, err)
		}
	}
	if n := env.Count(events.JobsStream, events.JobSubject(j.ID, events.Requested)); n != 1 {
		t.Errorf("%d requested events, want 1 (Nats-Msg-Id deduplicates)", n)
	}
}

func TestRequesterPoison(t *testing.T) {
	h, env := setup(t)
	m := env.Deliver(events.JobsStream, events.JobSubject("bad", events.Submitted), []byte("{"))
	if err := h.Handle(context.Background(), m); !stage.IsPermanent(err) {
		t.Errorf("undecodable event: %v, want a permanent error", err)
	}
}

// TestInvalidJobIDIsPermanent: a job event whose id cannot name a job is poison, found before
// the vendor is asked for anything.
func TestInvalidJobIDIsPermanent(t *testing.T) {
	env := natstest.NewEnv(t)
	var calls atomic.Int64
	sim := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		vendorsim.NewServer(vendorsim.Options{Account: vendorsim.DefaultAccount}).ServeHTTP(w, r)
	}))
	t.Cleanup(sim.Close)
	v, err := vendor.New(vendor.Config{BaseURL: sim.URL + "/eap"})
	if err != nil {
		t.Fatal(err)
	}
	h := stage.Jobs(stage.NewPublisher(env.JS), events.Decode, &requester.Handler{Vendor: v, Now: time.Now})
	spec := events.Spec{Name: "eod", Program: "getdata", Securities: []string{"IBM US Equity"}, Fields: []string{"PX_LAST"}}
	for _, id := range []string{"a b", "x*y", ""} {
		j := submitted(id, spec)
		data, _ := j.Encode()
		m := env.Deliver(events.JobsStream, events.JobSubject("ok", events.Submitted), data)
		err := h.Handle(context.Background(), m)
		// Decode itself refuses an empty id.
		if !stage.IsPermanent(err) || id != "" && !errors.Is(err, events.ErrInvalidJobID) {
			t.Errorf("job id %q: %v, want a permanent ErrInvalidJobID", id, err)
		}
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("%d vendor calls for invalid jobs, want none", n)
	}
}

// TestRequesterParts: a job over the vendor's universe limit and the data-point budget is
// submitted as several requests, each of the securities, fields and dates of its part, and
// "requested" carries the parts; a redelivery creates none again.
func TestRequesterParts(t *testing.T) {
	env := natstest.NewEnv(t)
	sim := vendorsim.NewServer(vendorsim.Options{Account: vendorsim.DefaultAccount})
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	v, err := vendor.New(vendor.Config{BaseURL: srv.URL + "/eap"})
	if err != nil {
		t.Fatal(err)
	}
	h := stage.Jobs(stage.NewPublisher(env.JS), events.Decode,
		&requester.Handler{Vendor: v, Specs: env.Streams.Specs, Now: time.Now, MaxPoints: 1_000_000})
	ctx := context.Background()
	spec := events.Spec{Name: "wide", Program: "getdata", Fields: []string{"PX_LAST", "PX_BID"}}
	for i := range 100_000 {
		spec.Securities = append(spec.Securities, fmt.Sprintf("US%010d", i))
	}
	j := submitted("job-wide", spec)
	if err := natsx.ExternalizeSecurities(ctx, env.Streams.Specs, j.ID, &j.Spec); err != nil {
		t.Fatal(err)
	}
	data, _ := j.Encode()
	m := env.Deliver(events.JobsStream, events.JobSubject(j.ID, events.Submitted), data)
	for range 2 {
		if err := h.Handle(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := env.LastJob(j.ID)
	if got.State != events.Requested || len(got.Parts) != 2 {
		t.Fatalf("state %q (%s), %d parts, want requested in 2", got.State, got.Error, len(got.Parts))
	}
	posts := sim.Requests()
	next := 0
	for i, p := range got.Parts {
		if p.SecFrom != next || p.SecTo-p.SecFrom > vendor.MaxUniverse || p.Points != int64(p.SecTo-p.SecFrom)*2 {
			t.Errorf("part %d: %+v", i, p)
		}
		next = p.SecTo
		if n := posts[p.VendorRequestID]; n != 2 {
			t.Errorf("part %d (%s) posted %d times, want 2 (the second refused: it exists)", i, p.VendorRequestID, n)
		}
	}
	if next != 100_000 || len(posts) != 2 {
		t.Errorf("parts cover %d securities in %d vendor requests", next, len(posts))
	}
}

// TestRequesterHistoryParts: a history over the data-point budget is submitted as requests of
// one security each and whole date ranges, each body carrying its part's universe and dates;
// a job that cannot be split within the budget fails with the reason, and nothing is sent.
func TestRequesterHistoryParts(t *testing.T) {
	env := natstest.NewEnv(t)
	sim := vendorsim.NewServer(vendorsim.Options{Account: vendorsim.DefaultAccount})
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	v, err := vendor.New(vendor.Config{BaseURL: srv.URL + "/eap"})
	if err != nil {
		t.Fatal(err)
	}
	h := stage.Jobs(stage.NewPublisher(env.JS), events.Decode,
		&requester.Handler{Vendor: v, Specs: env.Streams.Specs, Now: time.Now, MaxPoints: 12})
	ctx := context.Background()
	// 2 securities × 1 field × 22 weekdays: one security a request, its dates in two ranges of 11.
	j := submitted("job-hist", events.Spec{Name: "hist", Program: "gethistory", Securities: []string{"A US Equity", "B US Equity"},
		Fields: []string{"PX_LAST"}, Start: "2026-01-01", End: "2026-01-30"})
	data, _ := j.Encode()
	if err := h.Handle(ctx, env.Deliver(events.JobsStream, events.JobSubject(j.ID, events.Submitted), data)); err != nil {
		t.Fatal(err)
	}
	got, _ := env.LastJob(j.ID)
	if got.State != events.Requested || len(got.Parts) != 4 || got.VendorRequestID != "" {
		t.Fatalf("state %q (%s), %d parts, request %q", got.State, got.Error, len(got.Parts), got.VendorRequestID)
	}
	want := []struct{ sec, start, end string }{
		{"A US Equity", "2026-01-01", "2026-01-15"}, {"A US Equity", "2026-01-16", "2026-01-30"},
		{"B US Equity", "2026-01-01", "2026-01-15"}, {"B US Equity", "2026-01-16", "2026-01-30"},
	}
	for i, p := range got.Parts {
		req, _ := http.NewRequest("GET", srv.URL+"/eap/catalogs/"+vendorsim.DefaultAccount+"/requests/"+p.VendorRequestID+"/", nil)
		req.Header.Set("api-version", "2")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		w := want[i]
		if resp.StatusCode != 200 || strings.Count(string(body), `"identifierValue"`) != 1 || !strings.Contains(string(body), `"identifierValue":"`+w.sec+`"`) ||
			!strings.Contains(string(body), `"startDate":"`+w.start+`","endDate":"`+w.end+`"`) || p.Points != 11 {
			t.Errorf("part %d (%d points): %d %s, want %s from %s to %s", i, p.Points, resp.StatusCode, body, w.sec, w.start, w.end)
		}
	}

	// 22 years of one security at one point a request: more requests than vendor.MaxParts.
	long := submitted("job-long", events.Spec{Name: "long", Program: "gethistory", Securities: []string{"A US Equity"},
		Fields: []string{"PX_LAST"}, Start: "2000-01-01", End: "2021-12-31"})
	hl := stage.Jobs(stage.NewPublisher(env.JS), events.Decode,
		&requester.Handler{Vendor: v, Specs: env.Streams.Specs, Now: time.Now, MaxPoints: 1})
	data, _ = long.Encode()
	before := len(sim.Requests())
	if err := hl.Handle(ctx, env.Deliver(events.JobsStream, events.JobSubject(long.ID, events.Submitted), data)); err != nil {
		t.Fatal(err)
	}
	if got, _ := env.LastJob(long.ID); got.State != events.Failed || !strings.Contains(got.Error, "cannot be split") {
		t.Errorf("state %q error %q, want failed: cannot be split", got.State, got.Error)
	}
	if n := len(sim.Requests()); n != before {
		t.Errorf("%d requests sent for a job that cannot be split", n-before)
	}
}
