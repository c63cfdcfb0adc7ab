package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/services/poller"
	"github.com/marketpipe/marketpipe/services/vendorsim"
)

// ---- 9. notify ----

// notifyJobs is how many jobs each mode of the notify leg measures (BENCH_NOTIFY_JOBS).
const notifyJobs = 40

// notifyPollInterval is POLL_INTERVAL's default (without notifications): what the poll mode uses.
const notifyPollInterval = 30 * time.Second

// legNotify measures "published → ready": from the moment each output is ready at the vendor to
// the poller's "ready" event, for jobs whose outputs get ready 2 to 62 s after their request (a
// time unrelated to the polls), with VENDOR_NOTIFICATIONS=sse (POLL_INTERVAL at its sse default,
// the fallback) and with polling every 30 s.
func (b *bench) legNotify(ctx context.Context) error {
	n := notifyJobs
	if v := os.Getenv("BENCH_NOTIFY_JOBS"); v != "" {
		k, err := strconv.Atoi(v)
		if err != nil || k < 1 {
			return fmt.Errorf("BENCH_NOTIFY_JOBS=%q: want a positive number", v)
		}
		n = k
	}
	b.res.NotifyJobs = n
	b.res.NotifyLatencyS = map[string]float64{}
	b.res.NotifyPollsPerJob = map[string]float64{}
	b.res.NotifyPollInterval = notifyPollInterval.String()
	for _, mode := range []string{poller.NotificationsSSE, poller.NotificationsPoll} {
		lat, polls, err := b.notifyRun(ctx, mode, n)
		if err != nil {
			return fmt.Errorf("%s: %w", mode, err)
		}
		slices.Sort(lat)
		q := func(p float64) float64 { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
		b.res.NotifyLatencyS[mode+"_p50"] = round(q(0.5), 3)
		b.res.NotifyLatencyS[mode+"_p90"] = round(q(0.9), 3)
		b.res.NotifyLatencyS[mode+"_max"] = round(lat[len(lat)-1], 3)
		b.res.NotifyPollsPerJob[mode] = round(polls, 2)
		log.Printf("notify: %s: published → ready p50 %.2fs, p90 %.2fs, max %.2fs over %d jobs; %.2f vendor listings per job",
			mode, q(0.5), q(0.9), lat[len(lat)-1], len(lat), polls)
	}
	return nil
}

// notifyRun runs n jobs through a requester and a poller in mode and returns each one's
// published → ready latency in seconds and the listings asked per job.
func (b *bench) notifyRun(ctx context.Context, mode string, n int) ([]float64, float64, error) {
	c, err := b.newCluster(ctx, "notify-"+mode, 2*time.Second, func(o *vendorsim.Options) {
		o.ReadyJitter = time.Minute
		o.Heartbeat = 5 * time.Second
	})
	if err != nil {
		return nil, 0, err
	}
	defer c.close()
	var mu sync.Mutex
	readyAt := map[string]time.Time{} // vendor request id → when the poller's ready event came
	sub, err := c.nc.Subscribe(events.JobFilter(events.Ready), func(m *nats.Msg) {
		if j, err := events.Decode(m.Data); err == nil {
			mu.Lock()
			if _, ok := readyAt[j.VendorRequestID]; !ok {
				readyAt[j.VendorRequestID] = time.Now()
			}
			mu.Unlock()
		}
	})
	if err != nil {
		return nil, 0, err
	}
	defer sub.Unsubscribe()
	extra := map[string]string{"VENDOR_NOTIFICATIONS": mode, "POLL_INTERVAL": notifyPollInterval.String()}
	if mode == poller.NotificationsSSE {
		extra["POLL_INTERVAL"] = poller.SSEPollInterval.String()
	}
	if _, err := c.start("requester", "requester", nil); err != nil {
		return nil, 0, err
	}
	if _, err := c.start("poller", "poller", extra); err != nil {
		return nil, 0, err
	}
	if err := c.waitConsumers(ctx, events.JobsStream, 1, "requester", "poller"); err != nil {
		return nil, 0, err
	}
	if mode == poller.NotificationsSSE {
		for start := time.Now(); c.sim.NotificationStreams() < 1; time.Sleep(20 * time.Millisecond) {
			if time.Since(start) > 30*time.Second {
				return nil, 0, fmt.Errorf("the poller did not open the notification stream")
			}
		}
	}
	polls0 := c.polls.Load() // before the first job: its first poll may come at once
	spec := events.Spec{Name: "bench-notify", Program: events.GetData, Securities: []string{"SEC00001 US Equity"},
		Fields: []string{"PX_LAST"}}
	for i := range n {
		now := time.Now().UTC()
		j := events.Job{ID: fmt.Sprintf("bench-notify-%s-%s-%d", mode, runID, i), Spec: spec,
			Version: uint64(now.UnixNano()), Deadline: now.Add(time.Hour)}
		j = j.Advance(events.Submitted, now)
		data, err := j.Encode()
		if err != nil {
			return nil, 0, err
		}
		if err := c.pub.Publish(ctx, events.JobSubject(j.ID, events.Submitted), j.MsgID(events.Submitted), data, nil); err != nil {
			return nil, 0, err
		}
	}
	limit := time.Now().Add(time.Minute + 2*notifyPollInterval + 30*time.Second)
	for {
		mu.Lock()
		done := len(readyAt)
		mu.Unlock()
		if done >= n {
			break
		}
		if time.Now().After(limit) {
			return nil, 0, fmt.Errorf("only %d of %d jobs ready", done, n)
		}
		select {
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	mu.Lock()
	defer mu.Unlock()
	var lat []float64
	for id, at := range readyAt {
		pub, ok := c.sim.ReadyAt(id)
		if !ok {
			return nil, 0, fmt.Errorf("no vendor request %s", id)
		}
		lat = append(lat, at.Sub(pub).Seconds())
	}
	return lat, float64(c.polls.Load()-polls0) / float64(n), nil
}
