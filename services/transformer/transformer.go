// Package transformer is the fourth stage: it reads a collected reply file from the raw store
// as a stream, turns it into observations, and publishes them as row batches (compact, columnar,
// compressed, at most 1 MB each) on mp.rows.<job id>, then "transformed" with the batch count.
// Its consumer reads mp.job.*.collected.
package transformer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/marketpipe/marketpipe/pkg/dlformat"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natsx"
	"github.com/marketpipe/marketpipe/pkg/obs"
	"github.com/marketpipe/marketpipe/pkg/rowcodec"
	"github.com/marketpipe/marketpipe/pkg/service"
	"github.com/marketpipe/marketpipe/pkg/stage"
)

// Name is the stage's consumer and service name.
const Name = "transformer"

// RawStore reads stored reply files.
type RawStore interface {
	Get(ctx context.Context, name string, opts ...jetstream.GetObjectOpt) (jetstream.ObjectResult, error)
}

// Handler transforms one collected job's file.
type Handler struct {
	Raw RawStore
	Pub *stage.Publisher
	Now func() time.Time
	// Tracer gives the parse span (default no-op); RowsParsed and RowsRejected count a job's
	// figures once its "transformed" event is durable (nil: not counted).
	Tracer                   trace.Tracer
	RowsParsed, RowsRejected Counter
	// ReadTimeout bounds reading one stored file (default 1h). The object store's reader needs
	// a deadline: without one, nats.go gives the whole read 5 seconds, which fails large files.
	ReadTimeout time.Duration
}

// Handle implements stage.Handler. A redelivery parses the file again and republishes the same
// batches under the same message ids; JetStream and the loader's ledger drop the duplicates.
func (h *Handler) Handle(ctx context.Context, m *stage.Message) error {
	j, err := events.Decode(m.Data())
	if err != nil {
		return stage.Permanent(err)
	}
	timeout := h.ReadTimeout
	if timeout <= 0 {
		timeout = time.Hour
	}
	readCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	obj, err := h.Raw.Get(readCtx, j.FileKey)
	if err != nil {
		if errors.Is(err, jetstream.ErrObjectNotFound) {
			failed := j.Fail(fmt.Sprintf("raw file %s is not in the raw store", j.FileKey), h.Now())
			return h.Pub.PublishJob(ctx, &failed)
		}
		return fmt.Errorf("open raw file %s: %w", j.FileKey, err)
	}
	defer obj.Close()

	src := &readErrs{r: obj}
	st, err := h.transform(ctx, &j, src)
	if err != nil {
		var bad *dlformat.Error
		if src.err != nil {
			// Reading the stored object failed (a timeout, NATS unavailable, a digest
			// mismatch): not the file's fault, so retried, and dead-lettered if it persists.
			return fmt.Errorf("read raw file %s: %w", j.FileKey, src.err)
		}
		if errors.As(err, &bad) {
			// The file cannot be read at all: retrying cannot help. It stays in the raw
			// store for inspection and replay.
			failed := j.Fail(fmt.Sprintf("reply file %s: %v", j.FileKey, bad), h.Now())
			return h.Pub.PublishJob(ctx, &failed)
		}
		return err
	}
	next := j.Advance(events.Transformed, h.Now())
	next.Batches, next.RowsParsed, next.RowsRejected = st.batches, st.rows, st.rejects
	if err := h.Pub.PublishJob(ctx, &next); err != nil {
		return err
	}
	add(h.RowsParsed, st.rows)
	add(h.RowsRejected, st.rejects)
	return nil
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

type transformStats struct {
	batches       int
	rows, rejects int64
}

func (h *Handler) transform(ctx context.Context, j *events.Job, r io.Reader) (st transformStats, err error) {
	ctx, span := h.tracer().Start(ctx, "transformer.parse", trace.WithAttributes(attribute.String("marketpipe.file_key", j.FileKey)))
	defer func() {
		span.SetAttributes(attribute.Int("marketpipe.batches", st.batches), attribute.Int64("marketpipe.rows", st.rows),
			attribute.Int64("marketpipe.rejects", st.rejects))
		endSpan(span, err)
	}()
	rd, err := dlformat.NewReader(r)
	if err != nil {
		return st, fmt.Errorf("read %s: %w", j.FileKey, err)
	}
	b := rowcodec.NewBuilder(j.ID, j.Spec.Program, j.Generation, j.Version)
	rd.OnReject = func(rej obs.Reject) error {
		st.rejects++
		b.AddReject(&rej)
		return nil
	}
	async := h.Pub.Async()
	flush := func() error {
		batch, data, err := b.Flush()
		if err != nil {
			return fmt.Errorf("encode batch of %s: %w", j.ID, err)
		}
		if batch == nil {
			return nil
		}
		st.batches++
		id := natsx.LedgerKey(j.ID, j.Generation, batch.Seq)
		return async.Publish(ctx, events.RowsSubject(j.ID), id, data, nil)
	}
	for {
		o, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return st, err
		}
		if err := b.Add(o); err != nil {
			// No batch can carry it (a giant bulk cell): recorded as a reject, not lost.
			st.rejects++
			b.AddReject(&obs.Reject{Line: rd.Stats().Lines, Reason: err.Error()})
		} else {
			st.rows++
		}
		for b.Full() {
			if err := flush(); err != nil {
				return st, err
			}
		}
	}
	for b.Len() > 0 {
		if err := flush(); err != nil {
			return st, err
		}
	}
	if err := async.Wait(ctx); err != nil {
		return st, err
	}
	return st, nil
}

func (h *Handler) tracer() trace.Tracer {
	if h.Tracer == nil {
		return noop.NewTracerProvider().Tracer(tracerName)
	}
	return h.Tracer
}

// Stage returns the transformer stage on env's JetStream.
func Stage(env *service.Env) (*stage.Stage, error) {
	counters, err := env.Counters()
	if err != nil {
		return nil, err
	}
	tracer := env.Tracing.Provider.Tracer(tracerName)
	h := &Handler{Raw: tracedRaw{env.Streams.Raw, tracer}, Pub: env.Publisher(), Now: time.Now,
		Tracer: tracer, RowsParsed: counters.RowsParsed, RowsRejected: counters.RowsRejected}
	return stage.New(env.JS, stage.Config{
		Name: Name, Stream: events.JobsStream, Filters: []string{events.JobFilter(events.Collected)},
		MaxBytes:    events.MaxJobEventBytes,
		Concurrency: 2, AckWait: time.Minute, MaxDeliver: 10,
	}, h, env.StageOptions())
}

// Build is the service's wiring.
func Build(ctx context.Context, env *service.Env) ([]service.Runner, error) {
	return service.Only(Stage(env))
}
