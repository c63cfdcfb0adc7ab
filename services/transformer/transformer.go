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
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/marketpipe/marketpipe/pkg/bounds"
	"github.com/marketpipe/marketpipe/pkg/chunk"
	"github.com/marketpipe/marketpipe/pkg/dlformat"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/rawstore"
	"github.com/marketpipe/marketpipe/pkg/stage"
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
	if len(j.Parts) > 0 {
		return h.publishPartChunks(ctx, &j)
	}
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
	st, err := h.transform(ctx, &j, obj, nil, 0)
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

func (h *Handler) readTimeout() time.Duration {
	if h.ReadTimeout <= 0 {
		return time.Hour
	}
	return h.ReadTimeout
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
