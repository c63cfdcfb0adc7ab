package main

import (
	"context"
	"fmt"
	"log"
	"math"
	"time"

	"github.com/marketpipe/marketpipe/pkg/events"
)

// ---- 5. memory on a 1 GB file ----

func (b *bench) legMemory(ctx context.Context) error {
	probe, err := historySpec("bench-mem", 20)
	if err != nil {
		return err
	}
	sz, err := replySize(probe)
	if err != nil {
		return err
	}
	target := float64(memFileBytes) * b.scale
	secs := int(math.Ceil(target / (float64(sz) / 20)))
	spec, err := historySpec("bench-mem", secs)
	if err != nil {
		return err
	}
	size, err := replySize(spec)
	if err != nil {
		return err
	}
	nobs, err := countObservations(spec)
	if err != nil {
		return err
	}
	b.res.MemFileMB = round(float64(size)/(1<<20), 1)
	b.res.MemObservations = nobs
	log.Printf("memory: reply file of %d securities × %d fields × %d days = %d observations, %.0f MiB",
		secs, len(fields), refDays, nobs, b.res.MemFileMB)
	return b.memoryRun(ctx, spec, nobs)
}

// memoryRun runs one job of spec through a fresh pipeline and records each service's peak RSS.
func (b *bench) memoryRun(ctx context.Context, spec events.Spec, nobs int64) error {
	c, err := b.newCluster(ctx, "memory", 0)
	if err != nil {
		return err
	}
	defer c.close()
	ps, err := c.startPipeline()
	if err != nil {
		return err
	}
	var all []*proc
	for _, p := range ps {
		all = append(all, p)
	}
	stopSampling := sampler(all, 20*time.Millisecond)
	defer stopSampling()
	if err := c.waitConsumers(ctx, events.JobsStream, 1, "requester", "poller", "collector", "transformer", "loader-complete"); err != nil {
		return err
	}
	id := "bench-mem-" + runID
	ch := c.watch(id)
	t0 := time.Now()
	if _, err := c.submit(ctx, id, spec); err != nil {
		return err
	}
	j, t1, err := waitEvent(ctx, ch, events.Loaded, 60*time.Minute)
	// The peaks so far, also when the job failed (then memory_completed says so).
	for n, p := range ps {
		b.res.MaxRSSMB[n] = round(p.peakMB(), 1)
	}
	if err != nil {
		log.Printf("memory: peak RSS (VmHWM) MB until the failure after %.1fs: %v", time.Since(t0).Seconds(), b.res.MaxRSSMB)
		c.dumpLogs()
		return err
	}
	b.res.MemCompleted = true
	b.res.MemPipelineS = round(t1.Sub(t0).Seconds(), 2)
	log.Printf("memory: %d observations loaded in %.1fs; peak RSS (VmHWM) MB: %v; nats-server %.0f MB",
		j.RowsLoaded, b.res.MemPipelineS, b.res.MaxRSSMB, c.natsP.peakMB())
	if j.RowsLoaded != nobs {
		return fmt.Errorf("memory: loaded %d observations, want %d", j.RowsLoaded, nobs)
	}
	return nil
}
