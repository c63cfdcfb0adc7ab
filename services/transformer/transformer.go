// Package transformer is the fourth stage: it reads a collected reply file from the raw store
// as a stream, turns it into observations, and publishes them as row batches (compact, columnar,
// compressed, at most 1 MB each) on mp.rows.<job id>, then "transformed" with the batch count.
// Its consumer reads mp.job.*.collected.
//
// A file larger than ChunkBytes (TRANSFORMER_CHUNK_BYTES, default 64 MiB) is not parsed by the
// handler of "collected": cut at the marks stored with it (pkg/rawstore), it publishes one task
// per chunk on mp.chunk.<job id> (stream MP_CHUNKS), and the service's second consumer,
// transformer-chunk, shared by the replicas, transforms the chunks in parallel. Each chunk's
// batches are numbered from chunk<<20, so the job run's ledger keys stay unique; each chunk
// records its figures in the mp_chunks bucket, and the chunk that finds them all recorded
// publishes "transformed" with the sums. The loader sees no difference. A file stored without
// marks (by an earlier version) is transformed in one piece.
package transformer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/marketpipe/marketpipe/pkg/auth"
	"github.com/marketpipe/marketpipe/pkg/bounds"
	"github.com/marketpipe/marketpipe/pkg/chunk"
	"github.com/marketpipe/marketpipe/pkg/config"
	"github.com/marketpipe/marketpipe/pkg/dlformat"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natsx"
	"github.com/marketpipe/marketpipe/pkg/obs"
	"github.com/marketpipe/marketpipe/pkg/rawstore"
	"github.com/marketpipe/marketpipe/pkg/rowcodec"
	"github.com/marketpipe/marketpipe/pkg/service"
	"github.com/marketpipe/marketpipe/pkg/stage"
	"github.com/marketpipe/marketpipe/pkg/telemetry"
)

// Name is the stage's consumer and service name; ChunkName is the consumer of chunk tasks.
const (
	Name      = "transformer"
	ChunkName = "transformer-chunk"
)

// Handler transforms one collected job's file.
type Handler struct {
	// Raw holds the reply files, with their marks.
	Raw *rawstore.Store
	// Pub publishes the chunk tasks and the chunk stage's job events; the "collected" stage
	// publishes what HandleJob returns (stage.Jobs).
	Pub *stage.Publisher
	Now func() time.Time
	// Tracer gives the parse span (default no-op); RowsParsed and RowsRejected count a job's
	// figures once its "transformed" event is durable (nil: not counted).
	Tracer                   trace.Tracer
	RowsParsed, RowsRejected Counter
	// ReadTimeout bounds reading one stored file (default 1h). The object store's reader needs
	// a deadline: without one, nats.go gives the whole read 5 seconds, which fails large files.
	ReadTimeout time.Duration
	// ChunkBytes, when positive, splits a file larger than that into chunks of about that
	// size (at most MaxChunks) that the chunk stage transforms in parallel
	// (TRANSFORMER_CHUNK_BYTES). Zero: every file in one piece.
	ChunkBytes int64
	// Chunks records the transformed chunks of a job run; CountChunks counts a job run's
	// records (natsx.RecordedChunks). Both are needed by HandleChunk.
	Chunks      jetstream.KeyValue
	CountChunks func(ctx context.Context, jobID string, generation int) (int, error)

	// builders keeps row-batch builders between transforms: a chunk is a transform, and a
	// new Builder would grow its arrays again for each.
	builders sync.Pool
}

// HandleJob implements stage.JobHandler for "collected". A file larger than ChunkBytes is cut
// at the marks stored with it and handed out as chunk tasks (see HandleChunk), and nothing is
// returned; any other is transformed here and "transformed" returned. A redelivery parses the
// file again and republishes the same batches under the same message ids; JetStream and the
// loader's ledger drop the duplicates.
func (h *Handler) HandleJob(ctx context.Context, j events.Job, _ *stage.Message) (*events.Job, error) {
	f, done, err := h.open(ctx, &j)
	if err != nil {
		return h.openFailed(&j, err)
	}
	defer done()
	// The stored file's marks are the source. A file stored by an earlier version has none:
	// the marks of its "collected" event, if any, serve instead, and without them the file is
	// transformed in one piece.
	marks := f.Info.Marks
	if len(marks) == 0 {
		marks = j.FileMarks
	}
	if n := chunk.Count(f.Info.Size, h.ChunkBytes, MaxChunks); n > 1 && len(marks) > 0 {
		if starts := chunk.Cut(fileMarks(marks), f.Info.Size, n); len(starts) > 0 {
			done() // the chunks read the file themselves
			return nil, h.publishChunksAt(ctx, &j, starts)
		}
	}
	obj := &readErrs{r: f}
	st, err := h.transform(ctx, &j, obj, nil)
	if err != nil {
		return h.transformFailed(&j, obj.err, err)
	}
	return h.transformed(&j, st), nil
}

// Published implements stage.JobPublished: a job's figures are counted once its "transformed"
// event is durable.
func (h *Handler) Published(_ context.Context, j *events.Job) {
	if j.State == events.Transformed {
		add(h.RowsParsed, j.RowsParsed)
		add(h.RowsRejected, j.RowsRejected)
	}
}

// publish is the chunk stage's publish of what the collected stage's runtime publishes
// (stage.Jobs): next unless err, then Published.
func (h *Handler) publish(ctx context.Context, next *events.Job, err error) error {
	if err != nil || next == nil {
		return err
	}
	if err := h.Pub.PublishJob(ctx, next); err != nil {
		return err
	}
	h.Published(ctx, next)
	return nil
}

// HandleChunk implements the chunk stage's handler: it transforms one chunk of a job's file
// (pkg/chunk) with sequence numbers of its own (chunk<<20 + the chunk's), records what it
// published in the chunks bucket once JetStream has it all, and, if every chunk of the job run
// is then recorded, publishes "transformed" with the sums. Two chunks finishing together both
// publish it under the same message id: JetStream keeps one. A redelivered chunk already
// recorded only does that last step; one not recorded republishes the same batch ids.
func (h *Handler) HandleChunk(ctx context.Context, m *stage.Message) error {
	task, err := events.DecodeChunkTask(m.Data())
	if err != nil {
		return stage.Permanent(err)
	}
	j := &task.Job
	ctx = telemetry.WithJobID(ctx, j.ID)
	key := natsx.ChunkKey(j.ID, j.Generation, task.Chunk)
	if _, err := h.Chunks.Get(ctx, key); errors.Is(err, jetstream.ErrKeyNotFound) {
		if ok, err := h.transformChunk(ctx, &task); !ok || err != nil {
			return err
		}
	} else if err != nil {
		return fmt.Errorf("chunk record %s: %w", key, err)
	}
	return h.completeChunks(ctx, &task)
}

// transformChunk transforms and records one chunk. A chunk that cannot be read fails the job:
// then it returns false.
func (h *Handler) transformChunk(ctx context.Context, task *events.ChunkTask) (ok bool, err error) {
	j := &task.Job
	if !task.AtMarks() {
		// Only earlier versions cut files without marks (by scanning them); a replay of the job
		// cuts it at its marks or transforms it in one piece.
		return false, h.publish(ctx, h.failed(j, fmt.Sprintf("chunk %d of %d of %s: a task not cut at marks, from an earlier version: replay the job",
			task.Chunk, task.Chunks, j.FileKey)), nil)
	}
	f, done, err := h.open(ctx, j)
	if err != nil {
		next, err := h.openFailed(j, err)
		return false, h.publish(ctx, next, err)
	}
	defer done()
	obj := &readErrs{r: f}
	var data *readErrs // the file from the chunk's start, when that is not obj
	st, err := func() (transformStats, error) {
		var (
			cs  chunkStream
			err error
		)
		if task.Chunk == 0 {
			cs, err = chunk.OpenFirst(obj, task.End, task.Chunks)
		} else {
			readCtx, cancel := context.WithTimeout(ctx, h.readTimeout())
			defer cancel()
			r, openErr := h.Raw.OpenAt(readCtx, f.Info, task.Start.Offset)
			if openErr != nil {
				return transformStats{}, openErr
			}
			defer r.Close()
			data = &readErrs{r: r}
			if cs, err = chunk.OpenAt(obj, data, chunk.Mark(task.Start), task.End, task.Chunk, task.Chunks); err == nil {
				// The header is read: stop the object's delivery, which would otherwise fill
				// the client's buffers with chunks nobody reads.
				done()
			}
		}
		if err != nil {
			return transformStats{}, err
		}
		c := cs.Chunk()
		return h.transform(ctx, j, cs, &c)
	}()
	if err != nil {
		readErr := obj.err
		if data != nil && readErr == nil {
			readErr = data.err
		}
		next, err := h.transformFailed(j, readErr, err)
		return false, h.publish(ctx, next, err)
	}
	rec, err := json.Marshal(st)
	if err != nil {
		return false, err
	}
	key := natsx.ChunkKey(j.ID, j.Generation, task.Chunk)
	if _, err := h.Chunks.Put(ctx, key, rec); err != nil {
		return false, fmt.Errorf("record chunk %s: %w", key, err)
	}
	return true, nil
}

// chunkStream is a chunk's stream for the parser: chunk.Reader or chunk.RangeReader.
type chunkStream interface {
	io.Reader
	Chunk() chunk.Chunk
}

func (h *Handler) readTimeout() time.Duration {
	if h.ReadTimeout <= 0 {
		return time.Hour
	}
	return h.ReadTimeout
}

// fileMarks converts a job's marks for pkg/chunk.
func fileMarks(fm []events.FileMark) []chunk.Mark {
	ms := make([]chunk.Mark, len(fm))
	for i, m := range fm {
		ms[i] = chunk.Mark(m)
	}
	return ms
}

// completeChunks publishes "transformed" when every chunk of the task's job run is recorded.
func (h *Handler) completeChunks(ctx context.Context, task *events.ChunkTask) error {
	j := &task.Job
	n, err := h.CountChunks(ctx, j.ID, j.Generation)
	if err != nil {
		return err
	}
	if n < task.Chunks {
		return nil // the last chunk recorded publishes it
	}
	var sum transformStats
	for i := range task.Chunks {
		key := natsx.ChunkKey(j.ID, j.Generation, i)
		e, err := h.Chunks.Get(ctx, key)
		if err != nil {
			return fmt.Errorf("chunk record %s: %w", key, err)
		}
		var st transformStats
		if err := json.Unmarshal(e.Value(), &st); err != nil {
			return stage.Permanent(fmt.Errorf("chunk record %s: %w", key, err))
		}
		sum.Batches += st.Batches
		sum.Rows += st.Rows
		sum.Rejects += st.Rejects
		sum.Warnings.Add(&st.Warnings)
	}
	return h.publish(ctx, h.transformed(j, sum), nil)
}

// MaxChunks bounds the chunks of one file.
const MaxChunks = 64

// publishChunksAt publishes one task per chunk of j's file cut at starts (chunk.Cut): the
// first chunk from the data to starts[0], chunk i from starts[i-1] to starts[i], the last to
// the end of the file.
func (h *Handler) publishChunksAt(ctx context.Context, j *events.Job, starts []chunk.Mark) error {
	n := len(starts) + 1
	for i := range n {
		task := events.ChunkTask{Job: *j, Chunk: i, Chunks: n}
		if i > 0 {
			task.Start = events.FileMark(starts[i-1])
		}
		if i < len(starts) {
			task.End = starts[i].Offset
		}
		if err := h.publishTask(ctx, &task); err != nil {
			return err
		}
	}
	return nil
}

func (h *Handler) publishTask(ctx context.Context, task *events.ChunkTask) error {
	data, err := task.Encode()
	if err != nil {
		return fmt.Errorf("encode chunk task of %s: %w", task.ID, err)
	}
	return h.Pub.Publish(ctx, events.ChunkSubject(task.ID), task.MsgID(), data, nil)
}

// open opens j's stored file for reading, with a deadline (ReadTimeout); done closes it.
func (h *Handler) open(ctx context.Context, j *events.Job) (f *rawstore.File, done func(), err error) {
	readCtx, cancel := context.WithTimeout(ctx, h.readTimeout())
	f, err = h.Raw.Open(readCtx, j.FileKey)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	var once sync.Once
	return f, func() { once.Do(func() { f.Close(); cancel() }) }, nil
}

// openFailed settles a failure to open j's file: a missing file fails the job (the "failed"
// event is returned), anything else is retried.
func (h *Handler) openFailed(j *events.Job, err error) (*events.Job, error) {
	if errors.Is(err, rawstore.ErrNotFound) {
		return h.failed(j, fmt.Sprintf("raw file %s is not in the raw store", j.FileKey)), nil
	}
	return nil, err
}

// transformFailed settles a failed transform of (part of) j's file; readErr is the error of
// reading the stored object, if any. A job that fails gets its "failed" event returned.
func (h *Handler) transformFailed(j *events.Job, readErr, err error) (*events.Job, error) {
	if readErr != nil {
		// Reading the stored object failed (a timeout, NATS unavailable, a digest mismatch):
		// not the file's fault, so retried, and dead-lettered if it persists.
		return nil, fmt.Errorf("read raw file %s: %w", j.FileKey, readErr)
	}
	var bad *dlformat.Error
	if errors.As(err, &bad) {
		err = bad
	}
	if bad != nil || errors.Is(err, chunk.ErrNotSplittable) || errors.Is(err, bounds.ErrExceeded) {
		// The file cannot be read at all, or breaks a bound every reader of vendor bytes keeps
		// (a line too long for pkg/chunk): retrying cannot help. It stays in the raw store
		// for inspection and replay.
		return h.failed(j, fmt.Sprintf("reply file %s: %v", j.FileKey, err)), nil
	}
	return nil, err
}

func (h *Handler) failed(j *events.Job, reason string) *events.Job {
	failed := j.Fail(reason, h.Now())
	return &failed
}

// transformed is the "transformed" event of j with the job's figures.
func (h *Handler) transformed(j *events.Job, st transformStats) *events.Job {
	next := j.Advance(events.Transformed, h.Now())
	next.Batches, next.RowsParsed, next.RowsRejected = st.Batches, st.Rows, st.Rejects
	st.Warnings.RejectedLines = st.Rejects
	next.Warnings = st.Warnings.OrNil()
	// The marks served the transform; "collected" keeps them for a replay.
	next.FileMarks = nil
	return &next
}

// readErrs remembers the first error of the reader it wraps other than io.EOF, so a failure of
// the store can be told apart from a file that cannot be parsed.
type readErrs struct {
	r   io.Reader
	err error
}

func (e *readErrs) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}

// transformStats is what a transform published; for a chunk it is also its record in the
// chunks bucket.
type transformStats struct {
	Batches int   `json:"batches"`
	Rows    int64 `json:"rows"`
	Rejects int64 `json:"rejects"`
	// Warnings are the unknown fields and return codes the file's rows carried (its rejected
	// lines are Rejects).
	Warnings events.Warnings `json:"warnings,omitzero"`
}

// warn notes what o says was wrong with the request, if anything: a field the vendor does not
// know, or a security answered with a return code.
func (st *transformStats) warn(o *obs.Observation) {
	switch {
	case o.Flag == dlformat.FlagUnknown:
		if !slices.Contains(st.Warnings.UnknownFields, o.Field) {
			st.Warnings.UnknownFields = append(st.Warnings.UnknownFields, o.Field)
			slices.Sort(st.Warnings.UnknownFields)
		}
	case strings.HasPrefix(o.Flag, "RC="):
		if st.Warnings.ReturnCodes == nil {
			st.Warnings.ReturnCodes = map[string]int64{}
		}
		st.Warnings.ReturnCodes[o.Flag]++
	}
}

// asyncWindow bounds the row batches published and not yet acknowledged by one transform, so
// that memory does not grow with the file: each is up to 1 MB.
const asyncWindow = 8

// transform parses r, the whole file or (c not nil) the stream of chunk c, and publishes its
// rows.
func (h *Handler) transform(ctx context.Context, j *events.Job, r io.Reader, c *chunk.Chunk) (st transformStats, err error) {
	ctx, span := h.tracer().Start(ctx, "transformer.parse", trace.WithAttributes(attribute.String("marketpipe.file_key", j.FileKey)))
	if c != nil {
		span.SetAttributes(attribute.Int("marketpipe.chunk", c.Index), attribute.Int("marketpipe.chunks", c.Count))
	}
	defer func() {
		span.SetAttributes(attribute.Int("marketpipe.batches", st.Batches), attribute.Int64("marketpipe.rows", st.Rows),
			attribute.Int64("marketpipe.rejects", st.Rejects))
		endSpan(span, err)
	}()
	// fileLine maps the reader's line numbers to the file's; keep is false for the repeated
	// header of a chunk other than the first.
	fileLine := func(l int64) (line int64, keep bool) { return l, true }
	b, _ := h.builders.Get().(*rowcodec.Builder)
	if b == nil {
		b = rowcodec.NewBuilder(j.ID, j.Spec.Program, j.Generation, j.Version)
	} else {
		b.Reset(j.ID, j.Spec.Program, j.Generation, j.Version)
	}
	// Flush hands out copies, so the builder is free once this transform returns.
	defer h.builders.Put(b)
	if c != nil {
		b.StartSeq(c.Index << 20)
		fileLine = func(l int64) (int64, bool) {
			if l <= c.HeaderLines {
				return l, c.Index == 0
			}
			return l + c.LineOffset, true
		}
	}
	rd, err := dlformat.NewReader(r)
	if err != nil {
		return st, fmt.Errorf("read %s: %w", j.FileKey, mapLine(err, fileLine))
	}
	reject := func(rej *obs.Reject) {
		var keep bool
		if rej.Line, keep = fileLine(rej.Line); keep {
			st.Rejects++
			b.AddReject(rej)
		}
	}
	rd.OnReject = func(rej obs.Reject) error {
		reject(&rej)
		return nil
	}
	// Two groups of at most asyncWindow publishes: one fills while the other's acks arrive.
	async, prev := h.Pub.Async(), h.Pub.Async()
	inFlight := 0
	// more marks the batches published while the file is still being read (events.MoreRowsHeader).
	more := nats.Header{events.MoreRowsHeader: []string{"1"}}
	flush := func(hdr nats.Header) error {
		batch, data, err := b.Flush()
		if err != nil {
			return fmt.Errorf("encode batch of %s: %w", j.ID, err)
		}
		if batch == nil {
			return nil
		}
		st.Batches++
		id := natsx.LedgerKey(j.ID, j.Generation, batch.Seq)
		if err := async.Publish(ctx, events.RowsSubject(j.ID), id, data, hdr); err != nil {
			return err
		}
		if inFlight++; inFlight == asyncWindow {
			if err := prev.Wait(ctx); err != nil {
				return err
			}
			async, prev, inFlight = prev, async, 0
		}
		return nil
	}
	dated := false // the batches carry the file's snapshot time
	for {
		o, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return st, mapLine(err, fileLine)
		}
		if !dated && j.Spec.Program == events.GetData {
			// A snapshot is keyed by when it was taken: two of one day are two snapshots.
			// The header is complete once the first row is read.
			if t, ok := rd.Header().SnapshotTime(); ok {
				b.SetSnapshotAt(t.Unix())
			}
		}
		dated = true
		if err := b.Add(o); err != nil {
			// No batch can carry it (a giant bulk cell): recorded as a reject, not lost.
			reject(&obs.Reject{Line: rd.Stats().Lines, Reason: err.Error()})
		} else {
			st.Rows++
			if o.Flag != "" {
				st.warn(o)
			}
		}
		for b.Full() {
			if err := flush(more); err != nil {
				return st, err
			}
		}
	}
	for b.Len() > 0 {
		if err := flush(nil); err != nil {
			return st, err
		}
	}
	if err := prev.Wait(ctx); err != nil {
		return st, err
	}
	return st, async.Wait(ctx)
}

// mapLine gives a *dlformat.Error the file's line number.
func mapLine(err error, fileLine func(int64) (int64, bool)) error {
	var bad *dlformat.Error
	if !errors.As(err, &bad) || bad.Line == 0 {
		return err
	}
	c := *bad
	c.Line, _ = fileLine(c.Line)
	return &c
}

func (h *Handler) tracer() trace.Tracer {
	if h.Tracer == nil {
		return noop.NewTracerProvider().Tracer(tracerName)
	}
	return h.Tracer
}

// Stages returns the transformer's two stages on env's JetStream: "collected" events, and the
// chunk tasks of large files (ChunkName). TRANSFORMER_CHUNK_BYTES sets ChunkBytes and
// TRANSFORMER_CHUNK_CONCURRENCY how many chunks a replica transforms at once.
func Stages(env *service.Env) ([]service.Runner, error) {
	counters, err := env.Counters()
	if err != nil {
		return nil, err
	}
	tracer := env.Tracing.Provider.Tracer(tracerName)
	raw := &rawstore.Store{Objects: env.Streams.Raw, JS: env.JS, Tracer: tracer}
	h := &Handler{Raw: raw, Pub: env.Publisher(), Now: time.Now,
		Tracer: tracer, RowsParsed: counters.RowsParsed, RowsRejected: counters.RowsRejected}
	var s Settings
	if err := config.Read(env.Lookup, &s); err != nil {
		return nil, err
	}
	h.ChunkBytes = int64(s.ChunkBytes)
	h.Chunks = env.Streams.Chunks
	h.CountChunks = func(ctx context.Context, id string, gen int) (int, error) {
		return natsx.RecordedChunks(ctx, env.JS, id, gen)
	}
	files, err := stage.NewJobs(env.JS, FilesConsumer, h, env.StageOptions())
	if err != nil {
		return nil, err
	}
	chunkCfg := ChunksConsumer
	chunkCfg.Concurrency = s.ChunkConcurrency
	chunks, err := stage.New(env.JS, chunkCfg, stage.HandlerFunc(h.HandleChunk), env.StageOptions())
	if err != nil {
		return nil, err
	}
	return []service.Runner{files, chunks}, nil
}

// FilesConsumer is the transformer's stage of "collected" events.
var FilesConsumer = stage.Config{
	Name: Name, Stream: events.JobsStream, Filters: []string{events.JobFilter(events.Collected)},
	MaxBytes:    events.MaxJobEventBytes,
	Concurrency: 2, AckWait: time.Minute, MaxDeliver: 10,
}

// ChunksConsumer is the transformer's stage of chunk tasks; TRANSFORMER_CHUNK_CONCURRENCY sets
// its Concurrency in each replica (the consumer the admin declares has the default's
// MaxAckPending).
var ChunksConsumer = stage.Config{
	Name: ChunkName, Stream: events.ChunksStream, Filters: []string{events.ChunkSubjects},
	MaxBytes:    events.MaxJobEventBytes + 1<<10,
	Concurrency: 2, AckWait: time.Minute, MaxDeliver: 10,
}

// Uses is what the transformer does on NATS (its identity's permissions): it reads the raw
// files, publishes row batches, chunk tasks and "transformed" or "failed", and keeps the chunk
// records.
var Uses = auth.Uses{
	Consumers: []stage.Config{FilesConsumer, ChunksConsumer},
	Publishes: []string{events.RowsSubjects, events.ChunkSubjects,
		events.JobFilter(events.Transformed), events.JobFilter(events.Failed)},
	ObjRead: []string{events.RawBucket},
	KVWrite: []string{events.ChunksBucket},
}

// Summary is what the transformer does, for -h.
const Summary = "turns collected reply files into row batches"

// Settings are the transformer's own variables (pkg/config reads them). Two chunks at once by
// default, so that one replica can use two cores on one large file.
type Settings struct {
	ChunkBytes       int `env:"TRANSFORMER_CHUNK_BYTES" default:"67108864" shown:"67108864 (64 MiB)" help:"a plain reply file larger than this is cut at its marks (security boundaries) into chunks of about this size, at most 64, that every replica's chunk consumer shares"`
	ChunkConcurrency int `env:"TRANSFORMER_CHUNK_CONCURRENCY" default:"2" help:"chunks one replica transforms at once"`
}

// Build is the service's wiring.
func Build(ctx context.Context, env *service.Env) ([]service.Runner, error) {
	return Stages(env)
}
