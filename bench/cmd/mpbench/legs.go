package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/marketpipe/marketpipe/pkg/chstore"
	"github.com/marketpipe/marketpipe/pkg/dlformat"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natsx"
	"github.com/marketpipe/marketpipe/pkg/obs"
	"github.com/marketpipe/marketpipe/pkg/rawstore"
	"github.com/marketpipe/marketpipe/pkg/rowcodec"
	"github.com/marketpipe/marketpipe/pkg/vendor"
	"github.com/marketpipe/marketpipe/services/transformer"
	"github.com/marketpipe/marketpipe/services/vendorsim"
)

// runID makes job ids unique across runs against the same servers.
var runID = strconv.FormatInt(time.Now().Unix()%1_000_000, 10)

// ---- 1. direct ----

// directRows is how many observations go into one INSERT of the direct leg (the loader's
// default LOADER_MAX_INSERT_ROWS).
var directRows = 500_000

func (b *bench) legDirect(ctx context.Context) error {
	if v := os.Getenv("BENCH_DIRECT_ROWS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return fmt.Errorf("BENCH_DIRECT_ROWS=%q: want a positive integer", v)
		}
		directRows = n
	}
	// Parse alone first: the parser's share, and the file is in the page cache for all runs.
	t0 := time.Now()
	n, err := parseOnly(b.refPath)
	if err != nil {
		return err
	}
	b.res.DirectParseS = round(time.Since(t0).Seconds(), 3)
	log.Printf("direct: parse only: %d observations in %.2fs (%.0f obs/s, %.0f MB/s)", n, b.res.DirectParseS,
		float64(n)/b.res.DirectParseS, float64(b.refBytes)/1e6/b.res.DirectParseS)

	stop, err := b.selfProfile("direct")
	if err != nil {
		return err
	}
	defer stop()
	// One INSERT at a time, then two concurrent ones; the best is the direct figure.
	for _, workers := range []int{1, 2} {
		if _, err := b.directRun(ctx, "direct", fmt.Sprintf("bench_direct%d", workers), workers); err != nil {
			return err
		}
	}
	return nil
}

// directStore waits for ClickHouse to be idle and opens a fresh database db for a direct run.
func (b *bench) directStore(ctx context.Context, db string) (*chstore.Store, error) {
	b.settle(ctx)
	return b.openStore(ctx, db)
}

// openStore opens the database db, creating the schema, with the INSERTs' compression of the
// run.
func (b *bench) openStore(ctx context.Context, db string) (*chstore.Store, error) {
	st, err := chstore.Open(ctx, chstore.Config{Addr: b.ch.Addr(), Database: db, NoCompression: b.res.CHCompression == "none"})
	if err != nil {
		return nil, err
	}
	if err := st.Migrate(ctx); err != nil {
		st.Close()
		return nil, err
	}
	return st, nil
}

// directRun parses the reference file and inserts it into a fresh database db with workers
// INSERTs at a time, once ClickHouse is idle, and logs it under label; the result counts
// towards direct_s if it is the best so far.
func (b *bench) directRun(ctx context.Context, label, db string, workers int) (time.Duration, error) {
	st, err := b.directStore(ctx, db)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	f, err := os.Open(b.refPath)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	t0, self0, ch0 := time.Now(), selfCPU(), b.chCPU()
	rows, err := directLoad(ctx, st, f, "bench-direct-"+runID, uint64(time.Now().UnixNano()), workers)
	d := time.Since(t0)
	if err != nil {
		return 0, err
	}
	// The CPU of this process (parse and blocks) and of the server, against the run's time:
	// how much of the two cores the direct run leaves idle.
	self, ch := selfCPU()-self0, b.chCPU()-ch0
	log.Printf("%s: parse + insert (%d-row INSERTs, %d at a time, overlapping the parse): %d observations in %.2fs = %.0f obs/s; CPU: this process %.2f s, clickhouse-server %.2f s (%.2f cores)",
		label, directRows, workers, rows, d.Seconds(), float64(rows)/d.Seconds(), self.Seconds(), ch.Seconds(), (self+ch).Seconds()/d.Seconds())
	if cnt, err := st.CountObservations(ctx, false); err != nil || cnt != uint64(b.refObs) {
		return 0, fmt.Errorf("direct: %d rows in %s.observations (%v), want %d", cnt, db, err, b.refObs)
	}
	if b.res.DirectS == 0 || d.Seconds() < b.res.DirectS {
		b.res.DirectS = round(d.Seconds(), 3)
		b.res.DirectRowsPerS = round(float64(rows)/d.Seconds(), 0)
		b.res.DirectWorkers = workers
	}
	return d, nil
}

// directDownloadRun is the direct run as a script that fetches the file from the vendor runs
// it: this process downloads the reference job's reply from a simulator of its own through
// pkg/vendor (gzip, the SHA-512 checked), parses it as it arrives and inserts it, two INSERTs
// at a time, into a fresh database db. It is timed from the download's start, as the pipeline
// is from "ready"; the simulator prepares the file before, when it is first listed.
func (b *bench) directDownloadRun(ctx context.Context, label, db string) (time.Duration, error) {
	st, err := b.directStore(ctx, db)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	sim := vendorsim.NewServer(vendorsim.Options{Account: vendorsim.DefaultAccount, Seed: simSeed, RunDate: runDate.Time()})
	defer sim.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	srv := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	vc, err := vendor.New(vendor.Config{BaseURL: "http://" + ln.Addr().String() + vendorsim.Prefix})
	if err != nil {
		return 0, err
	}
	s := b.refSpec
	id := fmt.Sprintf("benchdl%s%d", runID, time.Now().UnixNano()%1e6) // HAPI: 1 to 21 letters or digits
	if err := vc.Submit(ctx, vendor.Request{Identifier: id, Title: s.Name, Program: s.Program,
		Securities: s.Securities, Fields: s.Fields, Start: s.Start, End: s.End}); err != nil {
		return 0, fmt.Errorf("%s: submit: %w", label, err)
	}
	var out *vendor.Output
	for out == nil {
		if out, err = vc.Output(ctx, id); err != nil {
			return 0, fmt.Errorf("%s: output: %w", label, err)
		}
		if out == nil {
			select {
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	t0 := time.Now()
	body, err := vc.Download(ctx, out.Key, out.Digest, out.ContentLength)
	if err != nil {
		return 0, fmt.Errorf("%s: download: %w", label, err)
	}
	rows, err := directLoad(ctx, st, body, "bench-direct-dl-"+runID, uint64(time.Now().UnixNano()), 2)
	if err == nil {
		// The parser stops at the file's last line; the digest is checked at the body's end.
		_, err = io.Copy(io.Discard, body)
	}
	body.Close()
	d := time.Since(t0)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", label, err)
	}
	log.Printf("%s: download, parse + insert (%d-row INSERTs, 2 at a time, overlapping the download): %d observations in %.2fs = %.0f obs/s",
		label, directRows, rows, d.Seconds(), float64(rows)/d.Seconds())
	if cnt, err := st.CountObservations(ctx, false); err != nil || cnt != uint64(b.refObs) {
		return 0, fmt.Errorf("%s: %d rows in %s.observations (%v), want %d", label, cnt, db, err, b.refObs)
	}
	if b.res.DirectDownloadS == 0 || d.Seconds() < b.res.DirectDownloadS {
		b.res.DirectDownloadS = round(d.Seconds(), 3)
	}
	return d, nil
}

func parseOnly(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	rd, err := dlformat.NewReader(f)
	if err != nil {
		return 0, err
	}
	var n int64
	for {
		_, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		n++
	}
}

// directLoad parses the reply file r gives and inserts its observations in INSERTs of
// directRows rows, the parse of the next INSERT overlapping the current one.
func directLoad(ctx context.Context, st *chstore.Store, r io.Reader, jobID string, version uint64, workers int) (int64, error) {
	rd, err := dlformat.NewReader(r)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	work := make(chan []obs.Observation, 1)
	done := make(chan error, workers)
	program := rd.Program()
	for range workers {
		go func() {
			var err error
			for batch := range work {
				if err == nil {
					_, err = st.Insert(ctx, []chstore.Batch{{JobID: jobID, Program: program, Version: version, Obs: batch}})
					if err != nil {
						cancel()
					}
				}
			}
			done <- err
		}()
	}
	var n int64
	buf := make([]obs.Observation, 0, directRows)
	var perr error
	for {
		o, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			perr = err
			break
		}
		buf = append(buf, *o)
		n++
		if len(buf) == directRows {
			select {
			case work <- buf:
			case <-ctx.Done():
			}
			if ctx.Err() != nil {
				break
			}
			buf = make([]obs.Observation, 0, directRows)
		}
	}
	if len(buf) > 0 && perr == nil && ctx.Err() == nil {
		work <- buf
	}
	close(work)
	var ierr error
	for range workers {
		if err := <-done; err != nil && ierr == nil {
			ierr = err
		}
	}
	if ierr != nil {
		return n, ierr
	}
	if perr != nil {
		return n, perr
	}
	return n, ctx.Err()
}

// selfProfile starts a CPU profile of this process into <BENCH_PROFILE>/<name>.pprof, if
// profiles are asked for, and returns what stops it.
func (b *bench) selfProfile(name string) (stop func(), err error) {
	if b.profile == "" {
		return func() {}, nil
	}
	f, err := os.Create(filepath.Join(b.profile, name+".pprof"))
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// ---- 2. pipeline, and 7. latency ----

// legPipeline runs the reference job through the five stages twice, each time on a cluster of
// its own (a fresh NATS server and database, ClickHouse idle), and keeps the faster run: the
// direct and transform legs also keep the better of two, so a passing slowdown of this shared
// machine weighs on no figure alone. The latency jobs run on the first cluster.
//
// This machine's speed drifts by a third within minutes, so each pipeline run follows a direct
// run of its own (two INSERTs at a time, the direct leg's usual best), taken just before: both
// count towards the best figures, and ratio_pairs gives each run's pipeline / direct.
func (b *bench) legPipeline(ctx context.Context) error {
	var best *pipelineRun
	for i := range 2 {
		if i > 0 {
			b.dropDatabases(ctx)
		}
		dd, err := b.directRun(ctx, fmt.Sprintf("pipeline: run %d: direct just before", i+1), fmt.Sprintf("bench_paired%d", i), 2)
		if err != nil {
			return err
		}
		ddl, err := b.directDownloadRun(ctx, fmt.Sprintf("pipeline: run %d: direct from the vendor just before", i+1), fmt.Sprintf("bench_paired_dl%d", i))
		if err != nil {
			return err
		}
		b.dropDatabases(ctx)
		b.settle(ctx)
		// This process's profile shows the simulator's work (it serves the downloads).
		stop, err := b.selfProfile(fmt.Sprintf("pipeline%d-mpbench", i+1))
		if err != nil {
			return err
		}
		r, err := b.pipelineOnce(ctx, i)
		stop()
		if err != nil {
			return err
		}
		b.res.RatioPairs = append(b.res.RatioPairs, round(r.d.Seconds()/dd.Seconds(), 3))
		b.res.RatioDownloadPairs = append(b.res.RatioDownloadPairs, round(r.d.Seconds()/ddl.Seconds(), 3))
		log.Printf("pipeline: run %d: %d observations ready → loaded in %.2fs = %.0f obs/s (submit → loaded %.2fs); stages (ms): %v",
			i+1, b.refObs, r.d.Seconds(), float64(b.refObs)/r.d.Seconds(), r.submit.Seconds(), r.stages)
		log.Printf("pipeline: run %d: CPU seconds during the job: %v; peak RSS MB: %v; ClickHouse's events: %v", i+1, r.cpu, r.rss, r.chEvents)
		if best == nil || r.d < best.d {
			best = r
		}
	}
	b.res.PipelineS = round(best.d.Seconds(), 3)
	b.res.PipelineSubmitS = round(best.submit.Seconds(), 3)
	b.res.PipelineStagesMS, b.res.PipelineCPUS, b.res.PipelineRSSMB = best.stages, best.cpu, best.rss
	return nil
}

// pipelineRun is the outcome of one run of the reference job through the pipeline.
type pipelineRun struct {
	d, submit time.Duration // ready → loaded, submit → loaded
	stages    map[string]float64
	cpu, rss  map[string]float64
	chEvents  map[string]uint64 // ClickHouse's counters' increase during the job
}

// pipelineOnce starts a cluster (the n-th of the leg) with the five stages, measures the latency
// of small jobs if n is 0, and runs the reference job.
func (b *bench) pipelineOnce(ctx context.Context, n int) (*pipelineRun, error) {
	leg := "pipeline"
	if n > 0 {
		leg = fmt.Sprintf("pipeline%d", n+1)
	}
	c, err := b.newCluster(ctx, leg, 0)
	if err != nil {
		return nil, err
	}
	defer c.close()
	ps, err := c.startPipeline()
	if err != nil {
		return nil, err
	}
	if err := c.waitConsumers(ctx, events.JobsStream, 1, "requester", "poller", "collector", "transformer", "loader-complete", "jobs"); err != nil {
		return nil, err
	}
	if err := c.waitConsumers(ctx, events.RowsStream, 1, "loader"); err != nil {
		return nil, err
	}
	measured := maps.Clone(ps)
	measured["nats-server"] = c.natsP
	var all []*proc
	for _, p := range measured {
		all = append(all, p)
	}
	stopSampling := sampler(all, 50*time.Millisecond)
	defer stopSampling()

	if n == 0 {
		if err := b.latency(ctx, c); err != nil {
			return nil, err
		}
	}

	// 2. The reference job, submit → loaded.
	cpu0 := map[string]time.Duration{}
	for n, p := range measured {
		cpu0[n] = p.cpu()
	}
	ch0, self0, ev0 := b.chCPU(), selfCPU(), b.chEvents(ctx)
	id := fmt.Sprintf("bench-ref-%s-%d", runID, n)
	ch := c.watch(id)
	t0 := time.Now()
	if _, err := c.submit(ctx, id, b.refSpec); err != nil {
		return nil, err
	}
	j, t1, err := waitEvent(ctx, ch, events.Loaded, 30*time.Minute)
	if err != nil {
		c.dumpLogs()
		return nil, err
	}
	if j.RowsLoaded != b.refObs {
		return nil, fmt.Errorf("pipeline loaded %d observations, want %d", j.RowsLoaded, b.refObs)
	}
	// The simulator stamps each request's file with a start time of its own
	// (simdata.StartedFor): the same data and size as the direct leg's file, not the same bytes.
	if j.FileSize != b.refBytes {
		log.Printf("pipeline: WARNING: collected file of %d bytes, the direct leg's has %d", j.FileSize, b.refBytes)
	}
	// From the vendor's "ready": the simulator writes and compresses a reply file when it is
	// first listed (a vendor prepares it before), which is no work of the pipeline's.
	r := &pipelineRun{d: j.LoadedAt.Sub(j.ReadyAt), submit: t1.Sub(t0),
		stages: map[string]float64{
			"1_submitted_requested":   ms(j.RequestedAt.Sub(j.SubmittedAt)),
			"2_requested_ready":       ms(j.ReadyAt.Sub(j.RequestedAt)),
			"3_ready_collected":       ms(j.CollectedAt.Sub(j.ReadyAt)),
			"4_collected_transformed": ms(j.TransformedAt.Sub(j.CollectedAt)),
			"5_transformed_loaded":    ms(j.LoadedAt.Sub(j.TransformedAt)),
			"collected_loaded":        ms(j.LoadedAt.Sub(j.CollectedAt)),
		},
		cpu: map[string]float64{"clickhouse-server": round((b.chCPU() - ch0).Seconds(), 2),
			"mpbench(vendorsim)": round((selfCPU() - self0).Seconds(), 2)},
		rss: map[string]float64{},
	}
	for n, p := range measured {
		r.cpu[n] = round((p.cpu() - cpu0[n]).Seconds(), 2)
		r.rss[n] = round(p.peakMB(), 1)
	}
	r.chEvents = eventsSince(b.chEvents(ctx), ev0)
	return r, nil
}

// latency measures collected → loaded of small jobs, one at a time, from their events.
func (b *bench) latency(ctx context.Context, c *cluster) error {
	small := events.Spec{Name: "bench-small", Program: events.GetHistory, Fields: fields[:5],
		Start: "2025-01-01", End: "2025-01-31"}
	for i := range 10 {
		small.Securities = append(small.Securities, fmt.Sprintf("SEC%05d US Equity", i))
	}
	const warmup, nLatency = 3, 30
	var lat []float64
	for i := range warmup + nLatency {
		id := fmt.Sprintf("bench-small-%s-%d", runID, i)
		ch := c.watch(id)
		if _, err := c.submit(ctx, id, small); err != nil {
			return err
		}
		j, _, err := waitEvent(ctx, ch, events.Loaded, time.Minute)
		c.unwatch(id)
		if err != nil {
			c.dumpLogs()
			return fmt.Errorf("small job %d: %w", i, err)
		}
		if i >= warmup {
			lat = append(lat, float64(j.LoadedAt.Sub(j.CollectedAt).Microseconds())/1000)
		}
	}
	slices.Sort(lat)
	b.res.LatencyP50MS = round(percentile(lat, 0.50), 1)
	b.res.LatencyP99MS = round(percentile(lat, 0.99), 1)
	b.res.LatencyJobs = len(lat)
	log.Printf("latency: %d small jobs (%d observations each), collected → loaded: p50 %.0f ms, p99 %.0f ms, min %.0f, max %.0f",
		len(lat), len(small.Securities)*len(small.Fields)*23, b.res.LatencyP50MS, b.res.LatencyP99MS, lat[0], lat[len(lat)-1])
	return nil
}

// selfCPU is the harness's own CPU time: the embedded NATS server and the vendor simulator.
func selfCPU() time.Duration {
	d, _ := cpuTime(os.Getpid())
	return d
}

func ms(d time.Duration) float64 { return round(float64(d.Microseconds())/1000, 1) }

// percentile is the nearest-rank percentile of sorted xs.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(xs)))) - 1
	return xs[min(max(i, 0), len(xs)-1)]
}

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

// ---- 6. transform, 1 and 2 replicas ----

func (b *bench) legTransform(ctx context.Context) error {
	c, err := b.newCluster(ctx, "transform", 0)
	if err != nil {
		return err
	}
	defer c.close()
	key := "bench/reference.out"
	f, err := os.Open(b.refPath)
	if err != nil {
		return err
	}
	// Stored as the collector stores it, with the marks it finds.
	stored, err := (&rawstore.Store{Objects: c.streams.Raw}).Put(ctx, key, rawstore.Meta{}, f)
	f.Close()
	if err != nil {
		return fmt.Errorf("store the reference file: %w", err)
	}
	n := 0
	// running are the transformer processes of the setting under test, and nats-server: the
	// CPU they use during a transform is the setting's.
	var running []*proc
	cpuNow := func() time.Duration {
		var d time.Duration
		for _, p := range running {
			d += p.cpu()
		}
		return d
	}
	var lastCPU time.Duration // of the last transform
	// transform publishes "collected" for k jobs of the stored file at once and times them
	// until every one is transformed.
	transform := func(k int) (time.Duration, error) {
		var chans []<-chan events.Job
		var ids []string
		for range k {
			n++
			id := fmt.Sprintf("bench-transform-%s-%d", runID, n)
			ids = append(ids, id)
			chans = append(chans, c.watch(id))
		}
		t0, cpu0 := time.Now(), cpuNow()
		for _, id := range ids {
			now := time.Now().UTC()
			j := events.Job{ID: id, Spec: b.refSpec, Version: uint64(now.UnixNano()), Deadline: now.Add(time.Hour),
				FileKey: key, FileSHA256: b.refSHA, FileSize: b.refBytes, FileMarks: stored.Marks}
			j = j.Advance(events.Submitted, now).Advance(events.Collected, now)
			if err := c.pub.PublishJob(ctx, &j); err != nil {
				return 0, err
			}
		}
		for i, ch := range chans {
			j, _, err := waitEvent(ctx, ch, events.Transformed, 20*time.Minute)
			if err != nil {
				c.dumpLogs()
				return 0, err
			}
			if j.RowsParsed != b.refObs {
				return 0, fmt.Errorf("%s: transformed %d observations, want %d", ids[i], j.RowsParsed, b.refObs)
			}
			c.unwatch(ids[i])
		}
		d := time.Since(t0)
		lastCPU = cpuNow() - cpu0
		return d, nil
	}
	// Three settings, each the best of two runs in a process so that no figure carries a cold
	// start (the replicated ones in two rounds, below):
	//  - unchunked: one replica parses the whole file (chunking off);
	//  - chunked, 1 replica: the file in chunkN chunks, one chunk at a time;
	//  - chunked, 2 replicas: the same chunks shared by two replicas, one at a time each.
	// One chunk at a time per replica, so that the second replica is what adds a core.
	const chunkN = 8
	chunkBytes := strconv.FormatInt((b.refBytes+chunkN-1)/chunkN, 10)
	// run starts the setting's replicas and returns its better time of two, with the CPU the
	// replicas and nats-server used in that run.
	run := func(names []string, env map[string]string) (time.Duration, time.Duration, error) {
		var ps []*proc
		for _, name := range names {
			p, err := c.start(name, "transformer", env)
			if err != nil {
				return 0, 0, err
			}
			ps = append(ps, p)
		}
		running = append([]*proc{c.natsP}, ps...)
		defer func() {
			for _, p := range ps {
				_ = p.stop()
			}
		}()
		if err := c.waitConsumers(ctx, events.JobsStream, len(names), transformer.Name); err != nil {
			return 0, 0, err
		}
		if err := c.waitConsumers(ctx, events.ChunksStream, len(names), transformer.ChunkName); err != nil {
			return 0, 0, err
		}
		var best, bestCPU time.Duration
		for i := range 2 {
			d, err := transform(1)
			if err != nil {
				return 0, 0, err
			}
			if i == 0 || d < best {
				best, bestCPU = d, lastCPU
			}
		}
		return best, bestCPU, nil
	}
	du, _, err := run([]string{"transformer-unchunked"}, map[string]string{"TRANSFORMER_CHUNK_BYTES": strconv.FormatInt(1<<50, 10)})
	if err != nil {
		return err
	}
	// One and two replicas take turns, twice, and each keeps its best: the speed of this shared
	// machine drifts over seconds (up to a third here), and a slow spell during one setting
	// alone would skew the speedup either way.
	chunked := map[string]string{"TRANSFORMER_CHUNK_BYTES": chunkBytes, "TRANSFORMER_CHUNK_CONCURRENCY": "1"}
	var d1, cpu1, d2, cpu2 time.Duration
	for i := range 2 {
		d, cpu, err := run([]string{"transformer-chunked"}, chunked)
		if err != nil {
			return err
		}
		if i == 0 || d < d1 {
			d1, cpu1 = d, cpu
		}
		if d, cpu, err = run([]string{"transformer-replica-1", "transformer-replica-2"}, chunked); err != nil {
			return err
		}
		if i == 0 || d < d2 {
			d2, cpu2 = d, cpu
		}
	}
	b.res.TransformCPU1 = round(cpu1.Seconds(), 2)
	b.res.TransformCPU2 = round(cpu2.Seconds(), 2)
	b.res.TransformUnchunkedS = round(du.Seconds(), 3)
	b.res.TransformS1 = round(d1.Seconds(), 3)
	b.res.TransformS2 = round(d2.Seconds(), 3)
	b.res.TransformSpeedup = round(d1.Seconds()/d2.Seconds(), 2)
	b.res.TransformRowsPS = round(float64(b.refObs)/d1.Seconds(), 0)
	log.Printf("transform: one file (%d observations, %d chunks of %s bytes, one chunk at a time per replica): "+
		"1 replica %.2fs (%.0f obs/s), 2 replicas %.2fs: speedup %.2f; unchunked, 1 replica: %.2fs",
		b.refObs, chunkN, chunkBytes, d1.Seconds(), b.res.TransformRowsPS, d2.Seconds(), b.res.TransformSpeedup, du.Seconds())
	log.Printf("transform: CPU of the transformers and nats-server: 1 replica %.2fs (%.2f cores), 2 replicas %.2fs (%.2f cores)",
		cpu1.Seconds(), cpu1.Seconds()/d1.Seconds(), cpu2.Seconds(), cpu2.Seconds()/d2.Seconds())
	return nil
}

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
