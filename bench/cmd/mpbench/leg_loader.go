package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"time"

	"github.com/marketpipe/marketpipe/pkg/dlformat"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natsx"
	"github.com/marketpipe/marketpipe/pkg/rowcodec"
)

// ---- 3. loader leg ----

// legLoader times the loader alone, from row batches published before it starts. Like each
// pipeline run, it follows a direct run of its own (two INSERTs at a time), which counts
// towards direct_s too: loader_vs_direct_pair is the loader's rate over that run's, which
// this machine's drift between legs does not skew.
func (b *bench) legLoader(ctx context.Context) error {
	dd, err := b.directRun(ctx, "loader: direct just before", "bench_paired_loader", 2)
	if err != nil {
		return err
	}
	b.dropDatabases(ctx)
	b.settle(ctx)
	c, err := b.newCluster(ctx, "loader", 0)
	if err != nil {
		return err
	}
	defer c.close()
	id := "bench-loader-" + runID
	version := uint64(time.Now().UnixNano())
	nb, rows, size, err := publishBatches(ctx, c, b.refPath, id, version)
	if err != nil {
		return err
	}
	b.res.LoaderBatches = nb
	b.res.LoaderAvgBatchKB = round(float64(size)/float64(nb)/1024, 1)
	log.Printf("loader: published %d batches (%d observations, %.1f MB, %.0f KB each on average) to %s",
		nb, rows, float64(size)/1e6, b.res.LoaderAvgBatchKB, events.RowsStream)
	now := time.Now().UTC()
	j := events.Job{ID: id, Spec: b.refSpec, Version: version, Deadline: now.Add(time.Hour)}
	// The loader loads batches only of a run it knows from its "collected" event.
	j = j.Advance(events.Submitted, now).Advance(events.Collected, now)
	if err := c.pub.PublishJob(ctx, &j); err != nil {
		return err
	}
	j = j.Advance(events.Transformed, now)
	j.Batches, j.RowsParsed = nb, rows
	ch := c.watch(id)
	if err := c.pub.PublishJob(ctx, &j); err != nil {
		return err
	}
	p, err := c.start("loader", "loader", nil)
	if err != nil {
		return err
	}
	// The clock starts when the loader's row consumer exists: after its start-up (NATS,
	// ClickHouse, schema), as it starts consuming.
	if err := c.waitConsumers(ctx, events.RowsStream, 0, "loader"); err != nil {
		return err
	}
	t0 := time.Now()
	cpu0 := p.cpu()
	ch0 := b.chCPU()
	for {
		n, err := natsx.LoadedBatches(ctx, c.js, id, 0)
		if err != nil {
			return err
		}
		if n >= nb {
			break
		}
		if p.exited() {
			return fmt.Errorf("loader exited: %v\n%s", p.waitErr, p.logTail(3000))
		}
		if time.Since(t0) > 20*time.Minute {
			return fmt.Errorf("only %d of %d batches loaded after 20 minutes", n, nb)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	d := time.Since(t0)
	b.res.LoaderRowsPerS = round(float64(rows)/d.Seconds(), 0)
	b.res.LoaderVsDirectPair = round(dd.Seconds()/d.Seconds(), 3)
	log.Printf("loader: %d observations from JetStream into ClickHouse in %.2fs = %.0f obs/s (loader %.1f s CPU, clickhouse-server %.1f s CPU); %.2f × the direct run just before",
		rows, d.Seconds(), b.res.LoaderRowsPerS, (p.cpu() - cpu0).Seconds(), (b.chCPU() - ch0).Seconds(), b.res.LoaderVsDirectPair)
	if _, _, err := waitEvent(ctx, ch, events.Loaded, time.Minute); err != nil {
		return fmt.Errorf("loaded event: %w", err)
	}
	return nil
}

// publishBatches encodes path's observations into row batches exactly as the transformer does
// and publishes them on the job's rows subject.
func publishBatches(ctx context.Context, c *cluster, path, id string, version uint64) (nb int, rows int64, size int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, 0, err
	}
	defer f.Close()
	rd, err := dlformat.NewReader(f)
	if err != nil {
		return 0, 0, 0, err
	}
	bld := rowcodec.NewBuilder(id, rd.Program(), 0, version)
	async := c.pub.Async()
	flush := func() error {
		batch, data, err := bld.Flush()
		if err != nil || batch == nil {
			return err
		}
		nb++
		size += int64(len(data))
		return async.Publish(ctx, events.RowsSubject(id), natsx.LedgerKey(id, 0, batch.Seq), data, nil)
	}
	for {
		o, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nb, rows, size, err
		}
		if err := bld.Add(o); err != nil {
			return nb, rows, size, err
		}
		rows++
		for bld.Full() {
			if err := flush(); err != nil {
				return nb, rows, size, err
			}
		}
	}
	for bld.Len() > 0 {
		if err := flush(); err != nil {
			return nb, rows, size, err
		}
	}
	return nb, rows, size, async.Wait(ctx)
}
