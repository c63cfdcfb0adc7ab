package loader

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/marketpipe/marketpipe/pkg/chstore"
)

// Inserter writes row batches to ClickHouse in one INSERT.
type Inserter interface {
	Insert(ctx context.Context, batches []chstore.Batch) (int, error)
}

// groupCommit gathers the batches that concurrent handlers hand it into one large columnar
// INSERT (ClickHouse prefers few large inserts to many small ones), and tells every handler
// the outcome of the insert that carried its batch, so each message is acked only once its
// rows are durable.
type groupCommit struct {
	ins     Inserter
	maxRows int           // flush when this many rows wait
	linger  time.Duration // or when the oldest has waited this long
	timeout time.Duration // bound on one INSERT
	tracer  trace.Tracer  // nil: no spans

	// inserting lets one INSERT run at a time: ClickHouse takes one large insert best, and
	// concurrent ones each hold their columns in memory (make bench saw 2.6 GB RSS without it).
	inserting sync.Mutex

	mu      sync.Mutex
	pending []pendingBatch
	rows    int
	timer   *time.Timer
}

type pendingBatch struct {
	b    chstore.Batch
	done chan error
	sc   trace.SpanContext // of the handler that queued it, for the INSERT's links
}

// Insert queues b and waits for the INSERT that carries it.
func (g *groupCommit) Insert(ctx context.Context, b chstore.Batch) error {
	p := pendingBatch{b: b, done: make(chan error, 1), sc: trace.SpanContextFromContext(ctx)}
	g.mu.Lock()
	g.pending = append(g.pending, p)
	g.rows += len(b.Obs) + len(b.Rejects)
	if g.rows >= g.maxRows {
		items := g.takeLocked()
		g.mu.Unlock()
		go g.flush(items)
	} else {
		if g.timer == nil {
			g.timer = time.AfterFunc(g.linger, func() {
				g.mu.Lock()
				items := g.takeLocked()
				g.mu.Unlock()
				g.flush(items)
			})
		}
		g.mu.Unlock()
	}
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		// The insert may still succeed; the redelivery then finds the batch in the ledger or
		// inserts the same rows again, which FINAL collapses.
		return ctx.Err()
	}
}

func (g *groupCommit) takeLocked() []pendingBatch {
	items := g.pending
	g.pending, g.rows = nil, 0
	if g.timer != nil {
		g.timer.Stop()
		g.timer = nil
	}
	return items
}

func (g *groupCommit) flush(items []pendingBatch) {
	if len(items) == 0 {
		return
	}
	batches := make([]chstore.Batch, len(items))
	for i, it := range items {
		batches[i] = it.b
	}
	g.inserting.Lock()
	defer g.inserting.Unlock()
	// The insert serves several handlers, so it is bounded by its own timeout, not by the
	// context of whichever handler happened to trigger it.
	ctx, cancel := context.WithTimeout(context.Background(), g.timeout)
	ctx, span := g.startSpan(ctx, items)
	_, err := g.ins.Insert(ctx, batches)
	endSpan(span, err)
	cancel()
	for _, it := range items {
		it.done <- err
	}
}

// startSpan starts the INSERT's span. It links to the span of every handler whose batch it
// carries (batches of several jobs, so of several traces), and is the child of the first, so
// that job's trace shows it in place.
func (g *groupCommit) startSpan(ctx context.Context, items []pendingBatch) (context.Context, trace.Span) {
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
		jobs[it.b.JobID] = true
		rows += len(it.b.Obs) + len(it.b.Rejects)
	}
	if len(links) > 0 {
		ctx = trace.ContextWithSpanContext(ctx, links[0].SpanContext)
	}
	return tracer.Start(ctx, "clickhouse.insert", trace.WithSpanKind(trace.SpanKindClient), trace.WithLinks(links...),
		trace.WithAttributes(attribute.String("db.system", "clickhouse"), attribute.String("db.operation", "INSERT"),
			attribute.String("db.collection.name", "observations"), attribute.Int("marketpipe.batches", len(items)),
			attribute.Int("marketpipe.jobs", len(jobs)), attribute.Int("marketpipe.rows", rows)))
}
