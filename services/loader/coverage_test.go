package loader

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/coverage"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/pkg/natsx"
	"github.com/marketpipe/marketpipe/pkg/obs"
	"github.com/marketpipe/marketpipe/pkg/stage"
)

// TestCompleteRecordsCoverage: a committed gethistory run records its securities, fields and
// dates (up to the day before its request) in the coverage bucket, also when its securities
// list is in the object store; a run that fails strict, a cancelled one and a getdata one
// record nothing.
func TestCompleteRecordsCoverage(t *testing.T) {
	env := natstest.NewEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st := openStore(t)
	cov := coverage.Store{KV: env.Streams.Coverage}
	h := stage.Jobs(stage.NewPublisher(env.JS), events.Decode, &CompleteHandler{
		Count:   func(context.Context, string, int) (int, error) { return 1, nil },
		Commits: st, Ends: env.Streams.Ends, Coverage: cov, Specs: env.Streams.Specs,
		Poll: 100 * time.Millisecond, Timeout: time.Hour, Now: time.Now})
	fields := []string{"PX_LAST", "PX_VOLUME"}
	run := func(id string, spec events.Spec, requested time.Time) events.Job {
		j := events.Job{ID: id, Batches: 1, Version: uint64(len(id)), Spec: spec}
		j.RequestedAt = requested
		return j.Advance(events.Transformed, time.Now())
	}
	hist := events.Spec{Program: events.GetHistory, Securities: []string{"A US Equity", "B US Equity"}, Fields: fields,
		Start: "2025-01-01", End: "2025-03-31", Options: events.Options{Currency: "EUR"}}
	// Requested on 2025-03-20: the dates from then on may not have been final.
	j := run("job-cov", hist, time.Date(2025, 3, 20, 18, 0, 0, 0, time.UTC))
	if err := h.Handle(ctx, env.DeliverJob(&j)); err != nil {
		t.Fatal(err)
	}
	if got, _ := env.LastJob(j.ID); got.State != events.Loaded {
		t.Fatalf("state %q", got.State)
	}
	got, err := cov.Read(ctx, hist.Dataset(), hist.Securities)
	if err != nil {
		t.Fatal(err)
	}
	span := coverage.Ranges{{From: obs.MakeDate(2025, 1, 1), To: obs.MakeDate(2025, 3, 19)}}
	want := map[string]coverage.Covered{"A US Equity": {"PX_LAST": span, "PX_VOLUME": span}, "B US Equity": {"PX_LAST": span, "PX_VOLUME": span}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("coverage of %s:\n got %v\nwant %v", hist.Dataset(), got, want)
	}

	// A list of more than events.InlineSecurities securities travels by reference.
	big := hist
	big.Options = events.Options{}
	big.Securities = make([]string, events.InlineSecurities+1)
	for i := range big.Securities {
		big.Securities[i] = "S" + string(rune('a'+i%26)) + time.Duration(i).String() + " US Equity"
	}
	all := big.Securities
	if err := natsx.ExternalizeSecurities(ctx, env.Streams.Specs, "job-big", &big); err != nil || big.SecuritiesRef == nil {
		t.Fatalf("externalize: %v", err)
	}
	jb := run("job-big", big, time.Now())
	if err := h.Handle(ctx, env.DeliverJob(&jb)); err != nil {
		t.Fatal(err)
	}
	gotBig, err := cov.Read(ctx, big.Dataset(), all)
	if err != nil {
		t.Fatal(err)
	}
	full := coverage.Ranges{{From: obs.MakeDate(2025, 1, 1), To: obs.MakeDate(2025, 3, 31)}}
	if len(gotBig) != len(all) || !reflect.DeepEqual(gotBig[all[len(all)-1]]["PX_LAST"], full) {
		t.Errorf("coverage of the %d securities by reference: %d recorded, last %v", len(all), len(gotBig), gotBig[all[len(all)-1]])
	}

	// Nothing recorded for these.
	none := func(name string, spec events.Spec, prepare func(*events.Job)) {
		t.Helper()
		j := run(name, spec, time.Now())
		if prepare != nil {
			prepare(&j)
		}
		if err := h.Handle(ctx, env.DeliverJob(&j)); err != nil {
			t.Fatal(err)
		}
		if got, err := cov.Read(ctx, spec.Dataset(), spec.Securities); err != nil || len(got) != 0 {
			t.Errorf("%s: coverage %v (%v), want none", name, got, err)
		}
	}
	other := hist
	other.Options = events.Options{Currency: "JPY"}
	strict := other
	strict.Strict = true
	none("job-strict", strict, func(j *events.Job) { j.Warnings = &events.Warnings{UnknownFields: []string{"PX_NOPE"}} })
	none("job-cancelled", other, func(j *events.Job) {
		if _, err := natsx.ClaimEnd(ctx, env.Streams.Ends, j.ID, j.Generation, natsx.End{State: events.Cancelled, At: time.Now()}); err != nil {
			t.Fatal(err)
		}
	})
	snap := events.Spec{Program: events.GetData, Securities: []string{"A US Equity"}, Fields: fields}
	none("job-snap", snap, nil)
}
