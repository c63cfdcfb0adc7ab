// Command mpbench is marketpipe's benchmark harness (`make bench`). In one run, on the same
// simulator output, it measures:
//
//  1. direct: this process parses the reply file and inserts it into ClickHouse in large
//     columnar INSERTs (the practical limit);
//  2. pipeline: the same file through the five stages as separate processes over NATS, from
//     the vendor's "ready" to loaded (and from submit), the better of two runs on fresh
//     clusters, and the ratio pipeline / direct; each run also follows a direct run that
//     downloads the file from the vendor simulator first, as a script would
//     (ratio_download: the pipeline against the same job done end to end in one process);
//  3. loader leg: observations per second from JetStream into ClickHouse (batches published
//     first, then the loader alone is timed);
//  4. poller: CPU used by the poller for 10,000 pending vendor requests polled every 30 s;
//  5. memory: peak RSS (VmHWM) of each service while a 1 GB reply file goes through;
//  6. data parallelism: transform throughput with 1 and 2 transformer replicas;
//  7. latency: collected → loaded of a small job, p50 and p99;
//  8. query: marketpipe query of one security's 10 fields over 10 years, now and as of a time,
//     on a table of 20 M observations in 4 committed runs, and the storage per run;
//  9. notify: "published → ready" latency, from the moment an output is ready at the vendor to
//     the poller's "ready" event, with VENDOR_NOTIFICATIONS=sse and with polling every 30 s.
//
// Servers: a private clickhouse-server (pkg/chserver) on a temporary directory, an embedded
// NATS server (a fresh one per leg, so no leg consumes another's leftovers), the vendor
// simulator on loopback. The stages run as separate processes of bench/cmd/mpsvc, which runs
// each stage's Build through service.Run exactly as the stage's own main does.
//
// Environment:
//
//	BENCH_SCALE        share of the reference job (1.0 = 2,000 securities × 10 fields × 250
//	                   days = 5,000,000 observations); the 1 GB memory file scales with it
//	BENCH_LEGS         comma-separated subset of direct,pipeline,loader,poller,memory,transform,query,schedules,notify
//	BENCH_POLL_WINDOW  how long the poller's CPU is measured (default 60s)
//	BENCH_PROFILE      a directory: every service process, nats-server and the direct leg
//	                   write CPU profiles there (<leg>-<process>.pprof)
//	BENCH_TIMEOUT      bound on the whole run (default 30m)
//	BENCH_CLICKHOUSE_COMPRESSION
//	                   how every INSERT's blocks travel, in the direct leg and the loader
//	                   alike (CLICKHOUSE_COMPRESSION): lz4, the default, or none
//	BENCH_KEEP         when set, the run's directory (files, every process's log) is kept
//	MPSVC_<VAR>        sets VAR for every service process (e.g. MPSVC_LOADER_INSERTS=1)
//
// The last line printed is one JSON object with every figure.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/marketpipe/marketpipe/pkg/chserver"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/obs"
	"github.com/marketpipe/marketpipe/pkg/simdata"
)

const (
	simSeed      = 7
	refSecs      = 2000
	refFields    = 10
	refDays      = 250
	memFileBytes = 1 << 30
	pollRequests = 10_000
)

var runDate = obs.MakeDate(2026, 11, 20)

var fields = simdata.HistoryFields

// Result is the final JSON line.
type Result struct {
	Scale        float64 `json:"scale"`
	Observations int64   `json:"observations"`
	FileMB       float64 `json:"file_mb"`
	Cores        int     `json:"cores"`
	LoadStart    string  `json:"loadavg_start"`
	LoadEnd      string  `json:"loadavg_end"`
	// StealS is the CPU time the hypervisor gave other guests while each leg ran (all cores,
	// /proc/stat): a leg with much of it ran on a slower machine than the others.
	StealS map[string]float64 `json:"steal_s,omitempty"`

	CHCompression string `json:"clickhouse_compression"` // of every INSERT, direct and loader

	DirectS         float64   `json:"direct_s"`
	DirectRowsPerS  float64   `json:"direct_rows_per_s"`
	DirectParseS    float64   `json:"direct_parse_only_s"`
	DirectWorkers   int       `json:"direct_insert_workers"`
	PipelineS       float64   `json:"pipeline_s"`
	PipelineSubmitS float64   `json:"pipeline_submit_s"`
	Ratio           float64   `json:"ratio"`
	RatioPairs      []float64 `json:"ratio_pairs"` // each pipeline run / the direct run just before it
	// DirectDownloadS is the best direct run that also downloads the file from the vendor
	// (directDownloadRun), and RatioDownload the pipeline's best over it: the pipeline against
	// a script doing the same job end to end. RatioDownloadPairs pairs the runs as RatioPairs.
	DirectDownloadS    float64            `json:"direct_download_s"`
	RatioDownload      float64            `json:"ratio_download"`
	RatioDownloadPairs []float64          `json:"ratio_download_pairs"`
	PipelineStagesMS   map[string]float64 `json:"pipeline_stage_ms,omitempty"`
	PipelineCPUS       map[string]float64 `json:"pipeline_cpu_s,omitempty"`
	PipelineRSSMB      map[string]float64 `json:"pipeline_rss_mb,omitempty"`

	LoaderRowsPerS float64 `json:"loader_rows_per_s"`
	LoaderVsDirect float64 `json:"loader_vs_direct"`
	// LoaderVsDirectPair is the loader leg's rate / the rate of the direct run just before it.
	LoaderVsDirectPair float64 `json:"loader_vs_direct_pair"`
	LoaderBatches      int     `json:"loader_batches"`
	LoaderAvgBatchKB   float64 `json:"loader_avg_batch_kb"`

	PollerCores     float64            `json:"poller_cores"`
	PollerPollsPerS float64            `json:"poller_polls_per_s"`
	PollerWindowS   float64            `json:"poller_window_s"`
	PollerRequests  int                `json:"poller_requests"`
	PollerInterval  string             `json:"poller_interval"`
	PollerRSSMB     float64            `json:"poller_rss_mb"`
	MaxRSSMB        map[string]float64 `json:"max_rss_mb"`
	MemFileMB       float64            `json:"memory_file_mb"`
	MemObservations int64              `json:"memory_observations"`
	MemPipelineS    float64            `json:"memory_pipeline_s"`
	MemCompleted    bool               `json:"memory_completed"`

	TransformUnchunkedS float64 `json:"transform_unchunked_s"`
	TransformS1         float64 `json:"transform_1_s"`
	TransformS2         float64 `json:"transform_2_s"`
	TransformSpeedup    float64 `json:"transform_speedup_2"`
	TransformRowsPS     float64 `json:"transform_rows_per_s_1"`
	TransformCPU1       float64 `json:"transform_cpu_1_s"` // transformers' and nats-server's CPU
	TransformCPU2       float64 `json:"transform_cpu_2_s"`
	LatencyP50MS        float64 `json:"latency_p50_ms"`
	LatencyP99MS        float64 `json:"latency_p99_ms"`
	LatencyJobs         int     `json:"latency_jobs"`
	// The query leg: marketpipe query of one security's 10 fields over 10 years, p50 of
	// queryTimes each, on a table of QueryTableObs observations (queryRuns committed runs); the
	// bytes on disk per observation of one run.
	QueryCurrentP50MS float64 `json:"query_current_p50_ms"`
	QueryAsOfP50MS    float64 `json:"query_as_of_p50_ms"`
	QueryTableObs     int64   `json:"query_table_observations"`
	QueryBytesPerObs  float64 `json:"query_bytes_per_observation_per_run"`
	// The schedules leg: schedules applied and how long that took, the CPU of the requester
	// and nats-server (in cores) while none fires, their CPU seconds over the minute in which
	// all fire, and the jobs submitted.
	SchedulesApplied    int                `json:"schedules_applied"`
	SchedulesApplyS     float64            `json:"schedules_apply_s"`
	SchedulesQuietCores float64            `json:"schedules_quiet_cores"`
	SchedulesFiringCPUS map[string]float64 `json:"schedules_firing_cpu_s,omitempty"`
	SchedulesJobs       int64              `json:"schedules_jobs"`
	// The notify leg: published → ready latency in seconds (p50, p90, max) of NotifyJobs jobs
	// whose outputs get ready at times unrelated to the polls, with notifications (sse) and with
	// polling at POLL_INTERVAL's default (poll), and the vendor listings asked per job.
	NotifyJobs         int                `json:"notify_jobs,omitempty"`
	NotifyLatencyS     map[string]float64 `json:"notify_latency_s,omitempty"` // <mode>_p50, <mode>_p90, <mode>_max
	NotifyPollsPerJob  map[string]float64 `json:"notify_polls_per_job,omitempty"`
	NotifyPollInterval string             `json:"notify_poll_interval,omitempty"`
	Errors             []string           `json:"errors,omitempty"`
}

type bench struct {
	root     string // repository root
	tmp      string // everything the run creates
	svc      string // the mpsvc binary
	profile  string // BENCH_PROFILE directory, or ""
	ch       *chserver.Server
	chPID    int
	scale    float64
	refSpec  events.Spec
	refPath  string
	refSHA   string
	refObs   int64
	refBytes int64
	res      Result
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("mpbench: ")
	code := run()
	os.Exit(code)
}

func run() int {
	scale := 1.0
	if v := os.Getenv("BENCH_SCALE"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 || f > 10 {
			log.Printf("BENCH_SCALE=%q: want a number in (0, 10]", v)
			return 2
		}
		scale = f
	}
	timeout := 30 * time.Minute
	if v := os.Getenv("BENCH_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			log.Printf("BENCH_TIMEOUT=%q: %v", v, err)
			return 2
		}
		timeout = d
	}
	compression := envOr("BENCH_CLICKHOUSE_COMPRESSION", "lz4")
	if compression != "lz4" && compression != "none" {
		log.Printf("BENCH_CLICKHOUSE_COMPRESSION=%q: want lz4 or none", compression)
		return 2
	}
	legs := map[string]bool{}
	for _, l := range strings.Split(envOr("BENCH_LEGS", "direct,pipeline,loader,transform,memory,poller,query,schedules,notify"), ",") {
		legs[strings.TrimSpace(l)] = true
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	b := &bench{scale: scale, profile: os.Getenv("BENCH_PROFILE")}
	b.res.Scale = scale
	b.res.CHCompression = compression
	b.res.Cores = runtime.NumCPU()
	b.res.LoadStart = loadAvg()
	b.res.MaxRSSMB = map[string]float64{}
	var err error
	if b.tmp, err = os.MkdirTemp("", "mpbench-"); err != nil {
		log.Print(err)
		return 1
	}
	defer func() {
		stopAll()
		if b.ch != nil {
			_ = b.ch.Stop()
		}
		if os.Getenv("BENCH_KEEP") != "" {
			log.Printf("kept %s (each leg's process logs are in <leg>/<process>.log)", b.tmp)
			return
		}
		os.RemoveAll(b.tmp)
	}()
	if b.profile != "" {
		if b.profile, err = filepath.Abs(b.profile); err == nil {
			err = os.MkdirAll(b.profile, 0o755)
		}
		if err != nil {
			log.Print(err)
			return 1
		}
	}
	if err := b.setup(ctx); err != nil {
		log.Print(err)
		return 1
	}
	log.Printf("machine: %d cores, load average %s; scale %g", b.res.Cores, b.res.LoadStart, scale)
	log.Printf("reference job: gethistory %d securities × %d fields × %d days = %d observations, %.1f MB",
		len(b.refSpec.Securities), len(b.refSpec.Fields), refDays, b.refObs, float64(b.refBytes)/1e6)

	type leg struct {
		name string
		fn   func(context.Context) error
	}
	for _, l := range []leg{
		{"direct", b.legDirect},
		{"pipeline", b.legPipeline},
		{"loader", b.legLoader},
		{"transform", b.legTransform},
		{"memory", b.legMemory},
		{"poller", b.legPoller},
		{"query", b.legQuery},
		{"schedules", b.legSchedules},
		{"notify", b.legNotify},
	} {
		if !legs[l.name] {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		b.settle(ctx)
		log.Printf("---- %s (load average %s)", l.name, loadAvg())
		start := time.Now()
		chCPU0, steal0, chEv0 := b.chCPU(), stealTime(), b.chEvents(ctx)
		if err := l.fn(ctx); err != nil {
			log.Printf("%s: FAILED: %v", l.name, err)
			b.res.Errors = append(b.res.Errors, l.name+": "+err.Error())
		}
		stopAll()
		b.dropDatabases(ctx)
		steal := stealTime() - steal0
		if b.res.StealS == nil {
			b.res.StealS = map[string]float64{}
		}
		b.res.StealS[l.name] = round(steal.Seconds(), 2)
		chEv := eventsSince(b.chEvents(ctx), chEv0)
		log.Printf("%s: took %.1fs; clickhouse-server used %.1f s CPU (its events: %v); CPU stolen by the hypervisor: %.2f s",
			l.name, time.Since(start).Seconds(), (b.chCPU() - chCPU0).Seconds(), chEv, steal.Seconds())
	}
	if ctx.Err() != nil {
		b.res.Errors = append(b.res.Errors, "run: "+ctx.Err().Error())
	}
	if b.res.DirectS > 0 && b.res.PipelineS > 0 {
		b.res.Ratio = round(b.res.PipelineS/b.res.DirectS, 3)
	}
	if b.res.DirectDownloadS > 0 && b.res.PipelineS > 0 {
		b.res.RatioDownload = round(b.res.PipelineS/b.res.DirectDownloadS, 3)
	}
	if b.res.DirectRowsPerS > 0 && b.res.LoaderRowsPerS > 0 {
		b.res.LoaderVsDirect = round(b.res.LoaderRowsPerS/b.res.DirectRowsPerS, 3)
	}
	b.res.Observations = b.refObs
	b.res.FileMB = round(float64(b.refBytes)/1e6, 1)
	b.res.LoadEnd = loadAvg()
	out, _ := json.Marshal(b.res)
	fmt.Println(string(out))
	if len(b.res.Errors) > 0 {
		return 1
	}
	return 0
}

// setup builds the service wrapper, starts ClickHouse and writes the reference reply file.
func (b *bench) setup(ctx context.Context) error {
	var err error
	if b.root, err = repoRoot(); err != nil {
		return err
	}
	b.svc = filepath.Join(b.tmp, "mpsvc")
	log.Printf("building the stage wrapper")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", b.svc, "./bench/cmd/mpsvc")
	cmd.Dir = b.root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./bench/cmd/mpsvc: %v\n%s", err, out)
	}
	log.Printf("starting clickhouse-server")
	chDir := filepath.Join(b.tmp, "clickhouse")
	if b.ch, err = chserver.Start(ctx, chserver.Options{Dir: chDir}); err != nil {
		return err
	}
	b.chPID = findPID(chDir)

	b.refSpec, err = historySpec("bench-ref", max(1, int(float64(refSecs)*b.scale+0.5)))
	if err != nil {
		return err
	}
	b.refPath = filepath.Join(b.tmp, "reference.out")
	b.refBytes, b.refSHA, err = writeReply(b.refPath, b.refSpec)
	if err != nil {
		return err
	}
	b.refObs, err = countObservations(b.refSpec)
	return err
}

// settle waits (at most 60s) until clickhouse-server is idle: background merges of the
// previous leg's parts would otherwise take CPU from the next leg.
func (b *bench) settle(ctx context.Context) {
	if b.chPID == 0 {
		return
	}
	start := time.Now()
	for time.Since(start) < time.Minute && ctx.Err() == nil {
		c0 := b.chCPU()
		time.Sleep(500 * time.Millisecond)
		if b.chCPU()-c0 <= 25*time.Millisecond { // at most 5% of a core
			break
		}
	}
	if d := time.Since(start); d > time.Second {
		log.Printf("waited %.1fs for clickhouse-server to go idle", d.Seconds())
	}
}

// chEvents reads ClickHouse's counters of INSERTs, parts written (and how many of them came
// already sorted by the table's key, which spares the server a sort), merges, and the
// buffers, page faults and user and system CPU of its queries (system.events), so that a
// leg's log tells how many INSERTs it made and how much work they caused; nil if they cannot
// be read.
func (b *bench) chEvents(ctx context.Context) map[string]uint64 {
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{b.ch.Addr()}, DialTimeout: 5 * time.Second})
	if err != nil {
		return nil
	}
	defer conn.Close()
	rows, err := conn.Query(ctx, "SELECT event, value FROM system.events WHERE event IN ('InsertQuery', 'InsertedRows', 'MergeTreeDataWriterBlocks', 'MergeTreeDataWriterBlocksAlreadySorted', 'Merge', 'MergedRows', 'Query', 'SelectQuery', 'SelectedRows', 'MergedUncompressedBytes', 'IOBufferAllocBytes', 'SoftPageFaults', 'UserTimeMicroseconds', 'SystemTimeMicroseconds')")
	if err != nil {
		return nil
	}
	defer rows.Close()
	ev := map[string]uint64{}
	for rows.Next() {
		var k string
		var v uint64
		if rows.Scan(&k, &v) == nil {
			ev[k] = v
		}
	}
	return ev
}

// eventsSince returns the counters now minus the counters before.
func eventsSince(now, before map[string]uint64) map[string]uint64 {
	for k, v := range now {
		now[k] = v - before[k]
	}
	return now
}

// dropDatabases drops every database a leg created, so no merges of its parts go on.
func (b *bench) dropDatabases(ctx context.Context) {
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{b.ch.Addr()}, DialTimeout: 5 * time.Second})
	if err != nil {
		log.Printf("drop databases: %v", err)
		return
	}
	defer conn.Close()
	rows, err := conn.Query(ctx, "SELECT name FROM system.databases WHERE name LIKE 'bench_%'")
	if err != nil {
		log.Printf("drop databases: %v", err)
		return
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err == nil {
			names = append(names, n)
		}
	}
	rows.Close()
	for _, n := range names {
		if err := conn.Exec(ctx, "DROP DATABASE IF EXISTS `"+n+"`"); err != nil {
			log.Printf("drop database %s: %v", n, err)
		}
	}
}

func (b *bench) chCPU() time.Duration {
	if b.chPID == 0 {
		return 0
	}
	d, _ := cpuTime(b.chPID)
	return d
}

// historySpec is a gethistory spec of n securities × refFields fields × refDays weekdays.
func historySpec(name string, n int) (events.Spec, error) {
	s := simdata.History(name, n, refDays)
	ds, err := simdata.Dates(s, runDate)
	if err != nil {
		return s, err
	}
	if len(ds) != refDays {
		return s, fmt.Errorf("spec has %d dates, want %d", len(ds), refDays)
	}
	return s, nil
}

// writeReply writes the simulator's reply file for spec to path: the bytes the vendor
// simulator serves for the same spec, seed and run date.
func writeReply(path string, spec events.Spec) (int64, string, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, "", err
	}
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(f, h)}
	if err := simdata.WriteReply(cw, spec, runDate, simSeed); err != nil {
		f.Close()
		return 0, "", err
	}
	if err := f.Close(); err != nil {
		return 0, "", err
	}
	return cw.n, hex.EncodeToString(h.Sum(nil)), nil
}

func countObservations(spec events.Spec) (int64, error) {
	var n int64
	err := simdata.Observations(spec, runDate, simSeed, func(*obs.Observation) error { n++; return nil })
	return n, err
}

// replySize is the size of spec's reply file.
func replySize(spec events.Spec) (int64, error) {
	var cw countWriter
	cw.w = io.Discard
	err := simdata.WriteReply(&cw, spec, runDate, simSeed)
	return cw.n, err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil &&
			strings.Contains(string(b), "module github.com/marketpipe/marketpipe\n") {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", errors.New("run mpbench inside the marketpipe repository (make bench)")
		}
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func round(x float64, digits int) float64 {
	p := 1.0
	for range digits {
		p *= 10
	}
	if x >= 0 {
		return float64(int64(x*p+0.5)) / p
	}
	return -float64(int64(-x*p+0.5)) / p
}

// stealTime is the machine's CPU time stolen by the hypervisor so far, all cores (the "steal"
// column of /proc/stat's cpu line, in USER_HZ ticks of 10 ms); 0 where it cannot be read.
func stealTime() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	ticks, err := strconv.ParseInt(f[8], 10, 64)
	if err != nil {
		return 0
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}
