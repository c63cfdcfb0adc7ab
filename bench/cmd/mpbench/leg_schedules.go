package main

import (
	"context"
	"fmt"
	"log"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/jobspec"
	"github.com/marketpipe/marketpipe/pkg/schedule"
)

// scheduleCount is how many schedules the schedules leg applies.
const scheduleCount = 1000

// legSchedules applies scheduleCount schedules that all fire at one time a minute or so ahead,
// then measures the CPU of the requester (whose firing consumer turns each firing into a job
// and makes its vendor request) and of nats-server (which keeps and fires the schedules): over
// a quiet window before the firing, when nothing should be polled or recomputed per schedule,
// and over the minute in which all of them fire.
func (b *bench) legSchedules(ctx context.Context) error {
	c, err := b.newCluster(ctx, "schedules", 24*time.Hour)
	if err != nil {
		return err
	}
	defer c.close()
	var submitted atomic.Int64
	if _, err := c.nc.Subscribe(events.JobFilter(events.Submitted), func(*nats.Msg) { submitted.Add(1) }); err != nil {
		return err
	}
	req, err := c.start("requester", "requester", nil)
	if err != nil {
		return err
	}
	if err := c.waitConsumers(ctx, events.SchedulesStream, 1, schedule.ConsumerName); err != nil {
		return err
	}
	store := &schedule.Store{JS: c.js, KV: c.streams.Schedules}
	// Every schedule fires daily at fireAt, at least 40 s after the applies start.
	fireAt := time.Now().UTC().Add(40 * time.Second).Truncate(time.Minute).Add(time.Minute)
	cron := fmt.Sprintf("0 %d %d * * *", fireAt.Minute(), fireAt.Hour())
	t0 := time.Now()
	for i := range scheduleCount {
		f := &jobspec.File{Name: fmt.Sprintf("bench-sched-%04d", i), Program: events.GetData,
			Securities: []string{fmt.Sprintf("SCH%04d US Equity", i)}, Fields: []string{"PX_LAST"},
			Schedule: cron, Deadline: 6 * time.Hour, Path: "bench"}
		if _, err := store.Apply(ctx, f, time.Now()); err != nil {
			return err
		}
	}
	applyS := time.Since(t0).Seconds()
	log.Printf("schedules: %d applied in %.1fs; all fire at %s", scheduleCount, applyS, fireAt.Format(time.TimeOnly))

	// The quiet window: from now until 5 s before the firing.
	quietEnd := fireAt.Add(-5 * time.Second)
	if time.Until(quietEnd) < 10*time.Second {
		return fmt.Errorf("applying took too long: %s left before the firing", time.Until(fireAt).Round(time.Second))
	}
	reqCPU0, natsCPU0, q0 := req.cpu(), c.natsP.cpu(), time.Now()
	if err := sleepCtx(ctx, time.Until(quietEnd)); err != nil {
		return err
	}
	reqCPU1, natsCPU1, q1 := req.cpu(), c.natsP.cpu(), time.Now()
	if err := sleepCtx(ctx, time.Until(quietEnd.Add(time.Minute))); err != nil {
		return err
	}
	reqCPU2, natsCPU2, q2 := req.cpu(), c.natsP.cpu(), time.Now()
	quiet, busy := q1.Sub(q0).Seconds(), q2.Sub(q1).Seconds()
	b.res.SchedulesApplied = scheduleCount
	b.res.SchedulesApplyS = round(applyS, 2)
	b.res.SchedulesJobs = submitted.Load()
	b.res.SchedulesQuietCores = round((reqCPU1-reqCPU0+natsCPU1-natsCPU0).Seconds()/quiet, 4)
	b.res.SchedulesFiringCPUS = map[string]float64{
		"requester": round((reqCPU2 - reqCPU1).Seconds(), 2), "nats-server": round((natsCPU2 - natsCPU1).Seconds(), 2)}
	log.Printf("schedules: quiet %.0fs: requester %.2f s CPU, nats-server %.2f s CPU (%.4f cores together); "+
		"the firing minute (%.0fs): requester %.2f s, nats-server %.2f s; %d of %d firings submitted a job",
		quiet, (reqCPU1 - reqCPU0).Seconds(), (natsCPU1 - natsCPU0).Seconds(), b.res.SchedulesQuietCores,
		busy, (reqCPU2 - reqCPU1).Seconds(), (natsCPU2 - natsCPU1).Seconds(), submitted.Load(), scheduleCount)
	if submitted.Load() != scheduleCount {
		return fmt.Errorf("%d of %d firings became jobs", submitted.Load(), scheduleCount)
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
