package loader

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/marketpipe/marketpipe/pkg/chstore"
	"github.com/marketpipe/marketpipe/pkg/rowcodec"
)

// Inserter writes row batches to ClickHouse in one INSERT, taking them one at a time.
type Inserter interface {
	InsertFrom(ctx context.Context, src chstore.BatchSource) (int, error)
}

// groupCommit gathers the batches that concurrent handlers hand it into large columnar INSERTs
// (ClickHouse prefers few large inserts to many small ones), and tells every handler the
// outcome of the insert that carried its batch, so each message is acked only once its rows
// are durable.
//
// Batches wait still encoded (a few bytes per row) and are decoded one at a time while their
// INSERT is written, so the loader's memory is bounded by a decoded batch and a block of
// columns per running INSERT, however many rows are queued. Up to inserts INSERTs run at once:
// ClickHouse works on each with a thread of its own, and while one INSERT's last block is
// being written the next one is already filling.
type groupCommit struct {
	ins     Inserter
	maxRows int           // an INSERT starts once this many rows wait
	linger  time.Duration // or once the oldest has waited this long
	// maxLinger replaces linger while a transform is still sending the batches queued: an
	// INSERT then waits for maxRows, up to this long, instead of taking a batch or two, so a
	// large job makes few large INSERTs (fewer parts for ClickHouse to write and merge).
	maxLinger time.Duration
	inserts   int           // INSERTs at once at most (0: 1)
	timeout   time.Duration // bound on one INSERT
	tracer    trace.Tracer  // nil: no spans

	mu      sync.Mutex
	pending []*pendingBatch
	rows    int
	running int
	timer   *time.Timer
	timerAt time.Time // when timer fires
}

// pendingBatch is one handler's batch waiting for its INSERT.
type pendingBatch struct {
	hdr    rowcodec.Header
	data   []byte // the encoded batch
	queued time.Time
	done   chan error
	sc     trace.SpanContext // of the handler that queued it, for the INSERT's links
	failed bool              // given its own error while its INSERT was written
	more   bool              // more batches of its transform follow (events.MoreRowsHeader)
}

func (p *pendingBatch) rows() int { return p.hdr.Observations + p.hdr.Rejects }

// Insert queues the encoded batch data, whose header is hdr, and waits for the INSERT that
// carries it; more says that more batches of its transform follow. A batch that cannot be
// decoded or stored gets an error wrapping rowcodec's or chstore's (ErrCorrupt, ErrVersion,
// ErrDateOutOfRange) without failing the others.
func (g *groupCommit) Insert(ctx context.Context, hdr rowcodec.Header, data []byte, more bool) error {
	p := &pendingBatch{hdr: hdr, data: data, queued: time.Now(), done: make(chan error, 1),
		sc: trace.SpanContextFromContext(ctx), more: more}
	g.mu.Lock()
	g.pending = append(g.pending, p)
	g.rows += p.rows()
	g.startLocked()
	g.mu.Unlock()
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		// The insert may still succeed; the redelivery then finds the batch in the ledger or
		// inserts the same rows of the same run again, which readers see once.
		return ctx.Err()
	}
}

// startLocked starts INSERTs while a slot is free and the queue is worth one: maxRows rows, or
// a batch that has waited long enough (lingerLocked). Otherwise it arms the timer that will
// look again, sooner if the wait became shorter.
func (g *groupCommit) startLocked() {
	for g.running < max(g.inserts, 1) && len(g.pending) > 0 {
		if wait := g.lingerLocked() - time.Since(g.pending[0].queued); g.rows < g.maxRows && wait > 0 {
			at := time.Now().Add(wait)
			if g.timer != nil && !g.timerAt.After(at) {
				return
			}
			if g.timer != nil {
				g.timer.Stop()
			}
			g.timerAt = at
			g.timer = time.AfterFunc(wait, func() {
				g.mu.Lock()
				g.timer = nil
				g.startLocked()
				g.mu.Unlock()
			})
			return
		}
		g.running++
		go g.flush(g.takeLocked())
	}
}

// lingerLocked is how long the oldest queued batch may wait for an INSERT to fill: maxLinger
// while a transform is still sending batches (the latest queued batch of one of the streams a
// transform publishes, a job run's file or chunk, says more follow), else linger. A small job's
// single batch, or the end of a large one, is inserted after linger.
func (g *groupCommit) lingerLocked() time.Duration {
	if g.maxLinger <= g.linger {
		return g.linger
	}
	type stream struct {
		job        string
		gen, chunk int
	}
	latest := make(map[stream]*pendingBatch, 4)
	for _, p := range g.pending {
		k := stream{p.hdr.JobID, p.hdr.Generation, p.hdr.Seq >> 20} // chunks number from chunk<<20
		if q := latest[k]; q == nil || p.hdr.Seq > q.hdr.Seq {
			latest[k] = p
		}
	}
	for _, p := range latest {
		if p.more {
			return g.maxLinger
		}
	}
	return g.linger
}

// takeLocked takes the oldest batches, up to maxRows rows (at least one batch), so that a
// backlog becomes several INSERTs that can run side by side.
func (g *groupCommit) takeLocked() []*pendingBatch {
	rows, n := 0, 0
	for n < len(g.pending) && (n == 0 || rows+g.pending[n].rows() <= g.maxRows) {
		rows += g.pending[n].rows()
		n++
	}
	items := g.pending[:n:n]
	g.pending = append([]*pendingBatch(nil), g.pending[n:]...)
	g.rows -= rows
	// In the file's order: the INSERT's blocks then hold rows of neighbouring keys, as the
	// transformer's batches came, whatever order the handlers queued them in.
	slices.SortFunc(items, func(a, b *pendingBatch) int {
		return cmp.Or(strings.Compare(a.hdr.JobID, b.hdr.JobID), cmp.Compare(a.hdr.Seq, b.hdr.Seq))
	})
	return items
}

func (g *groupCommit) flush(items []*pendingBatch) {
	defer func() {
		g.mu.Lock()
		g.running--
		g.startLocked()
		g.mu.Unlock()
	}()
	// The insert serves several handlers, so it is bounded by its own timeout, not by the
	// context of whichever handler happened to trigger it.
	ctx, cancel := context.WithTimeout(context.Background(), g.timeout)
	defer cancel()
	ctx, span := g.startSpan(ctx, items)
	_, err := g.ins.InsertFrom(ctx, &decodingSource{items: items})
	endSpan(span, err)
	for _, it := range items {
		if !it.failed {
			it.done <- err
		}
	}
}

// decodingSource decodes the queued batches one at a time for InsertFrom, into one reused
// batch. A batch that does not decode, or has a date ClickHouse cannot store, is answered with
// its error and skipped: the INSERT goes on with the others.
//
// Batches are decoded column by column (rowcodec.DecodeColumns), the form chstore writes, with
// no observation built per row.
type decodingSource struct {
	items []*pendingBatch
	i     int
	b     rowcodec.ColumnBatch
	cb    chstore.Batch
}

func (s *decodingSource) Next() *chstore.Batch {
	for s.i < len(s.items) {
		it := s.items[s.i]
		s.i++
		if err := rowcodec.DecodeColumns(it.data, &s.b); err != nil {
			s.fail(it, err)
			continue
		}
		s.cb = chstore.Batch{JobID: s.b.JobID, Program: s.b.Program, Version: s.b.Version, SnapshotAt: s.b.SnapshotAt, Cols: &s.b.Cols, Rejects: s.b.Rejects}
		if err := chstore.CheckDates(&s.cb); err != nil {
			s.fail(it, err)
			continue
		}
		return &s.cb
	}
	return nil
}

func (s *decodingSource) fail(it *pendingBatch, err error) {
	it.failed = true
	it.done <- fmt.Errorf("batch %d of %s: %w", it.hdr.Seq, it.hdr.JobID, err)
}

// startSpan starts the INSERT's span. It links to the span of every handler whose batch it
// carries (batches of several jobs, so of several traces), and is the child of the first, so
// that job's trace shows it in place.
func (g *groupCommit) startSpan(ctx context.Context, items []*pendingBatch) (context.Context, trace.Span) {
	tracer := g.tracer
	if tracer == nil {
		tracer = noop.NewTracerProvider().Tracer(tracerName)
	}
	links := make([]trace.Link, 0, len(items))
	jobs := map[string]bool{}
	rows := 0
	for _, it := range items {
		if it.sc.IsValid() {
			links = append(links, trace.Link{SpanContext: it.sc})
		}
		jobs[it.hdr.JobID] = true
		rows += it.rows()
	}
	if len(links) > 0 {
		ctx = trace.ContextWithSpanContext(ctx, links[0].SpanContext)
	}
	return tracer.Start(ctx, "clickhouse.insert", trace.WithSpanKind(trace.SpanKindClient), trace.WithLinks(links...),
		trace.WithAttributes(attribute.String("db.system", "clickhouse"), attribute.String("db.operation", "INSERT"),
			attribute.String("db.collection.name", "observations"), attribute.Int("marketpipe.batches", len(items)),
			attribute.Int("marketpipe.jobs", len(jobs)), attribute.Int("marketpipe.rows", rows)))
}
