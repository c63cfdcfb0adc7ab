package transformer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/marketpipe/marketpipe/pkg/chunk"
	"github.com/marketpipe/marketpipe/pkg/dlformat"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natsx"
	"github.com/marketpipe/marketpipe/pkg/obs"
	"github.com/marketpipe/marketpipe/pkg/rowcodec"
)

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
// rows as batches numbered from seq (a chunk task's Chunk<<20; 0 for a job's only file).
func (h *Handler) transform(ctx context.Context, j *events.Job, r io.Reader, c *chunk.Chunk, seq int) (st transformStats, err error) {
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
		b = rowcodec.NewBuilder(j.ID, j.Spec.Dataset(), j.Generation, j.Version)
	} else {
		b.Reset(j.ID, j.Spec.Dataset(), j.Generation, j.Version)
	}
	// Flush hands out copies, so the builder is free once this transform returns.
	defer h.builders.Put(b)
	b.StartSeq(seq)
	if c != nil {
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
