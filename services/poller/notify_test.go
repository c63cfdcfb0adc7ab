package poller_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/pkg/stage"
	"github.com/marketpipe/marketpipe/pkg/telemetry"
	"github.com/marketpipe/marketpipe/pkg/vendor"
	"github.com/marketpipe/marketpipe/services/poller"
	"github.com/marketpipe/marketpipe/services/vendorsim"
)

// TestNotifiedWakesWaitingJobs runs the poller stage with a poll interval of ten minutes and the
// notification listener, on a real NATS server and the simulator over HTTP: each job becomes
// ready within seconds of its output's publication, which only a notification can do, the
// vendor is polled once per job (the first delivery), outputs published while the stream was
// down arrive after it resumes, and the ready event carries the output the listing gives.
func TestNotifiedWakesWaitingJobs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env := natstest.NewEnv(t)
	sim := vendorsim.NewServer(vendorsim.Options{Account: vendorsim.DefaultAccount, ReadyAfter: 300 * time.Millisecond,
		Faults: vendorsim.Faults{DuplicateEvents: true, StaleEvents: true}})
	t.Cleanup(func() { sim.Close() })
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	v, err := vendor.New(vendor.Config{BaseURL: srv.URL + "/eap"})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(env.Server.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	var mu sync.Mutex
	outcomes := map[string]int{}
	n := &poller.Notified{KV: env.Streams.Outputs, NC: nc, Vendor: v, Log: telemetry.Discard(),
		Counted: func(o string) { mu.Lock(); outcomes[o]++; mu.Unlock() }}
	h := &poller.Handler{Vendor: n, Interval: 10 * time.Minute, Now: time.Now, OnWait: n.OnWait}
	s, err := stage.NewJobs(env.JS, poller.Consumer, events.Decode, h, stage.Options{Subjects: events.Subjects{}})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.Run(runCtx) }()
	listen := func() (stop func()) {
		lctx, cancel := context.WithCancel(runCtx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			n.Listen(lctx, v, vendor.NotifyOptions{MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
		}()
		return func() { cancel(); <-done }
	}
	stopListener := listen()
	t.Cleanup(func() { stopListener(); stop(); wg.Wait() })
	waitFor := func(what string, d time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(d)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out after %s waiting for %s", d, what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("the notification stream", 10*time.Second, func() bool { return sim.NotificationStreams() == 1 })

	submit := func(id string) events.Job {
		j := requested(t, v, id, time.Now().Add(time.Hour))
		data, err := j.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := env.JS.Publish(ctx, events.JobSubject(j.ID, j.State), data); err != nil {
			t.Fatal(err)
		}
		return j
	}
	ready := func(j events.Job) {
		t.Helper()
		waitFor(j.ID+" ready", 10*time.Second, func() bool {
			got, ok := env.LastJob(j.ID)
			return ok && got.State == events.Ready
		})
		got, _ := env.LastJob(j.ID)
		out, err := v.Output(ctx, j.VendorRequestID)
		if err != nil || out == nil {
			t.Fatalf("listing of %s: %v %v", j.VendorRequestID, out, err)
		}
		if got.ResponseKey != out.Key || got.ResponseDigest != out.Digest {
			t.Errorf("%s ready with %s %s; the listing has %s %s", j.ID, got.ResponseKey, got.ResponseDigest, out.Key, out.Digest)
		}
		if p := sim.Polls(j.VendorRequestID); p != 2 { // the first delivery's, and ours just now
			t.Errorf("%s: the vendor was asked %d times (with ours); want the first delivery's only", j.VendorRequestID, p)
		}
	}

	first := []events.Job{submit("ntfa1"), submit("ntfa2"), submit("ntfa3")}
	for _, j := range first {
		ready(j)
	}

	// Published while the stream is down: the listener resumes with Last-Event-ID and wakes them.
	sim.PauseNotifications(true)
	second := []events.Job{submit("ntfb1"), submit("ntfb2")}
	waitFor("the outputs published", 10*time.Second, func() bool {
		_, ok1 := sim.Published("ntfb1")
		_, ok2 := sim.Published("ntfb2")
		return ok1 && ok2
	})
	time.Sleep(300 * time.Millisecond)
	for _, j := range second {
		if got, _ := env.LastJob(j.ID); got.State != events.Requested {
			t.Fatalf("%s is %s while the notifications were paused", j.ID, got.State)
		}
	}
	sim.PauseNotifications(false)
	for _, j := range second {
		ready(j)
	}
	mu.Lock()
	if outcomes["handled"] != 5 || outcomes["duplicate"] != 5 || outcomes["stale"] != 5 {
		t.Errorf("notifications by outcome %v; want 5 handled, 5 duplicates, 5 stale", outcomes)
	}
	mu.Unlock()

	// A listener that stops (a replica restarting) and starts again with a fresh memory resumes
	// after the cursor recorded in the bucket: an output published meanwhile is not lost to it,
	// and what it hears again changes no record.
	stopListener()
	third := submit("ntfc1")
	waitFor("its output published", 10*time.Second, func() bool { _, ok := sim.Published("ntfc1"); return ok })
	time.Sleep(300 * time.Millisecond)
	if got, _ := env.LastJob(third.ID); got.State != events.Requested {
		t.Fatalf("%s is %s without a listener", third.ID, got.State)
	}
	stopListener = listen()
	ready(third)
	for _, id := range []string{"ntfa1", "ntfb2"} {
		e, err := env.Streams.Outputs.Get(ctx, "out."+id)
		if err != nil {
			t.Fatal(err)
		}
		out, _ := v.Output(ctx, id)
		if !strings.Contains(string(e.Value()), out.Digest) {
			t.Errorf("record of %s after the replay: %s; the listing's digest is %s", id, e.Value(), out.Digest)
		}
	}
}
