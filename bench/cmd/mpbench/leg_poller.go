package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/marketpipe/marketpipe/pkg/events"
)

// ---- 4. poller ----

func (b *bench) legPoller(ctx context.Context) error {
	window := 60 * time.Second
	if v := os.Getenv("BENCH_POLL_WINDOW"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second {
			return fmt.Errorf("BENCH_POLL_WINDOW=%q: want a duration of at least 1s", v)
		}
		window = d
	}
	const interval = 30 * time.Second
	// The vendor never gets ready within the run: every request stays pending.
	c, err := b.newCluster(ctx, "poller", 24*time.Hour)
	if err != nil {
		return err
	}
	defer c.close()
	var requested, failed atomic.Int64
	if _, err := c.nc.Subscribe(events.JobFilter(events.Requested), func(*nats.Msg) { requested.Add(1) }); err != nil {
		return err
	}
	if _, err := c.nc.Subscribe(events.JobFilter(events.Failed), func(*nats.Msg) { failed.Add(1) }); err != nil {
		return err
	}
	req, err := c.start("requester", "requester", nil)
	if err != nil {
		return err
	}
	poller, err := c.start("poller", "poller", map[string]string{"POLL_INTERVAL": interval.String()})
	if err != nil {
		return err
	}
	if err := c.waitConsumers(ctx, events.JobsStream, 1, "requester", "poller"); err != nil {
		return err
	}
	spec := events.Spec{Name: "bench-poll", Program: events.GetData, Securities: []string{"SEC00001 US Equity"},
		Fields: []string{"PX_LAST"}}
	async := c.pub.Async()
	t0 := time.Now()
	for i := range pollRequests {
		now := time.Now().UTC()
		j := events.Job{ID: fmt.Sprintf("bench-poll-%s-%d", runID, i), Spec: spec, Version: uint64(now.UnixNano()),
			Deadline: now.Add(6 * time.Hour)}
		j = j.Advance(events.Submitted, now)
		data, err := j.Encode()
		if err != nil {
			return err
		}
		if err := async.Publish(ctx, events.JobSubject(j.ID, events.Submitted), j.MsgID(events.Submitted), data, nil); err != nil {
			return err
		}
	}
	if err := async.Wait(ctx); err != nil {
		return err
	}
	for requested.Load() < pollRequests {
		if failed.Load() > 0 {
			return fmt.Errorf("%d jobs failed while being requested", failed.Load())
		}
		if time.Since(t0) > 10*time.Minute {
			return fmt.Errorf("only %d of %d requests created in 10 minutes", requested.Load(), pollRequests)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	log.Printf("poller: %d vendor requests created and pending in %.1fs; measuring the poller for %s (POLL_INTERVAL=%s)",
		pollRequests, time.Since(t0).Seconds(), window, interval)
	if err := req.stop(); err != nil {
		return fmt.Errorf("stop requester: %w", err)
	}
	cpu0, polls0, w0 := poller.cpu(), c.polls.Load(), time.Now()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(window):
	}
	cpu1, polls1, w1 := poller.cpu(), c.polls.Load(), time.Now()
	wall := w1.Sub(w0).Seconds()
	b.res.PollerCores = round((cpu1-cpu0).Seconds()/wall, 4)
	b.res.PollerPollsPerS = round(float64(polls1-polls0)/wall, 1)
	b.res.PollerWindowS = round(wall, 1)
	b.res.PollerRequests = pollRequests
	b.res.PollerInterval = interval.String()
	b.res.PollerRSSMB = round(poller.peakMB(), 1)
	log.Printf("poller: %.2f s CPU over %.1fs = %.3f cores; %.0f polls/s (expected %.0f); RSS %.0f MB; %d failed",
		(cpu1 - cpu0).Seconds(), wall, b.res.PollerCores, b.res.PollerPollsPerS,
		float64(pollRequests)/interval.Seconds(), b.res.PollerRSSMB, failed.Load())
	return nil
}
