package poller_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/pkg/stage"
	"github.com/marketpipe/marketpipe/pkg/vendor"
	"github.com/marketpipe/marketpipe/services/poller"
	"github.com/marketpipe/marketpipe/services/vendorsim"
)

func requested(t *testing.T, v *vendor.Client, id string, deadline time.Time) events.Job {
	t.Helper()
	spec := events.Spec{Name: "eod", Program: "getdata", Securities: []string{"IBM US Equity"}, Fields: []string{"PX_LAST"}}
	if v != nil {
		if err := v.Submit(context.Background(), vendor.Request{Identifier: id, Program: spec.Program,
			Securities: spec.Securities, Fields: spec.Fields}); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now().UTC()
	j := events.Job{ID: "job-" + id, Spec: spec, Deadline: deadline, VendorRequestID: id}
	return j.Advance(events.Requested, now)
}

func TestPoller(t *testing.T) {
	env := natstest.NewEnv(t)
	sim := httptest.NewServer(vendorsim.NewServer(vendorsim.Options{Account: vendorsim.DefaultAccount, ReadyAfter: 500 * time.Millisecond}))
	t.Cleanup(sim.Close)
	v, err := vendor.New(vendor.Config{BaseURL: sim.URL + "/eap"})
	if err != nil {
		t.Fatal(err)
	}
	h := stage.Jobs(stage.NewPublisher(env.JS), events.Decode, &poller.Handler{Vendor: v, Interval: 2 * time.Second, Now: time.Now})
	ctx := context.Background()

	t.Run("not ready is a wait of one interval, not a failure", func(t *testing.T) {
		j := requested(t, v, "mpwait1", time.Now().Add(time.Hour))
		err := h.Handle(ctx, env.DeliverJob(&j))
		if d, ok := stage.WaitAfter(err); !ok || d != 2*time.Second {
			t.Fatalf("Handle = %v, want Wait(2s)", err)
		}
		if got, _ := env.LastJob(j.ID); got.State != events.Requested {
			t.Errorf("state %q after a not-ready poll", got.State)
		}
	})
	t.Run("ready publishes the output key and digest", func(t *testing.T) {
		j := requested(t, v, "mpready1", time.Now().Add(time.Hour))
		time.Sleep(600 * time.Millisecond)
		if err := h.Handle(ctx, env.DeliverJob(&j)); err != nil {
			t.Fatal(err)
		}
		got, _ := env.LastJob(j.ID)
		if got.State != events.Ready || !strings.HasPrefix(got.ResponseKey, "mpready1.") ||
			!strings.HasPrefix(got.ResponseDigest, "sha512=") || got.Polls != 1 || got.ResponseSize <= 0 {
			t.Errorf("ready event: %+v", got)
		}
	})
	t.Run("past the deadline the job fails with the reason", func(t *testing.T) {
		j := requested(t, v, "mplate1", time.Now().Add(-time.Second))
		if err := h.Handle(ctx, env.DeliverJob(&j)); err != nil {
			t.Fatal(err)
		}
		got, _ := env.LastJob(j.ID)
		if got.State != events.Failed || !strings.Contains(got.Error, "not ready by the deadline") {
			t.Errorf("state %q error %q", got.State, got.Error)
		}
	})
	t.Run("vendor unreachable is a transient error", func(t *testing.T) {
		down, err := vendor.New(vendor.Config{BaseURL: "http://127.0.0.1:1/eap", MaxRetries: -1})
		if err != nil {
			t.Fatal(err)
		}
		hd := stage.Jobs(stage.NewPublisher(env.JS), events.Decode, &poller.Handler{Vendor: down, Interval: time.Second, Now: time.Now})
		j := requested(t, nil, "mpdown1", time.Now().Add(time.Hour))
		err = hd.Handle(ctx, env.DeliverJob(&j))
		if _, wait := stage.WaitAfter(err); err == nil || wait || stage.IsPermanent(err) {
			t.Errorf("Handle = %v, want a transient error", err)
		}
	})
}

// TestPollerParts: a job of several vendor requests is ready only once every part's output
// is; until then it waits, and OnWait is told which requests are not ready.
func TestPollerParts(t *testing.T) {
	env := natstest.NewEnv(t)
	sim := httptest.NewServer(vendorsim.NewServer(vendorsim.Options{Account: vendorsim.DefaultAccount, ReadyAfter: 500 * time.Millisecond}))
	t.Cleanup(sim.Close)
	v, err := vendor.New(vendor.Config{BaseURL: sim.URL + "/eap"})
	if err != nil {
		t.Fatal(err)
	}
	var waitingFor []string
	h := stage.Jobs(stage.NewPublisher(env.JS), events.Decode, &poller.Handler{Vendor: v, Interval: time.Second, Now: time.Now,
		OnWait: func(_ context.Context, _ *stage.Message, ids []string) error { waitingFor = ids; return nil }})
	ctx := context.Background()
	j := requested(t, v, "mppart0", time.Now().Add(time.Hour))
	j.VendorRequestID = ""
	j.Parts = []events.Part{{SecTo: 1, FieldTo: 1, VendorRequestID: "mppart0"}, {SecTo: 1, FieldTo: 1, VendorRequestID: "mppart1"}}
	time.Sleep(600 * time.Millisecond)
	// Part 1 is created only now: part 0 is ready, part 1 is not.
	if err := v.Submit(ctx, vendor.Request{Identifier: "mppart1", Program: "getdata", Securities: j.Spec.Securities, Fields: j.Spec.Fields}); err != nil {
		t.Fatal(err)
	}
	if err := h.Handle(ctx, env.DeliverJob(&j)); err == nil {
		t.Fatal("ready with one part's output not ready")
	} else if _, ok := stage.WaitAfter(err); !ok || len(waitingFor) != 1 || waitingFor[0] != "mppart1" {
		t.Fatalf("Handle = %v, OnWait got %v: want a wait for mppart1", err, waitingFor)
	}
	time.Sleep(600 * time.Millisecond)
	if err := h.Handle(ctx, env.DeliverJob(&j)); err != nil {
		t.Fatal(err)
	}
	got, _ := env.LastJob(j.ID)
	if got.State != events.Ready || len(got.Parts) != 2 {
		t.Fatalf("state %q with %d parts", got.State, len(got.Parts))
	}
	for i, p := range got.Parts {
		if !strings.HasPrefix(p.ResponseKey, p.VendorRequestID+".") || !strings.HasPrefix(p.ResponseDigest, "sha512=") || p.ResponseSize <= 0 {
			t.Errorf("part %d: %+v", i, p)
		}
	}
}
