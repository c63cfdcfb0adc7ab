package loader

import (
	"context"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/marketpipe/marketpipe/pkg/chstore"
	"github.com/marketpipe/marketpipe/pkg/obs"
)

type spanTestInserter struct {
	mu    sync.Mutex
	calls [][]chstore.Batch
}

func (c *spanTestInserter) Insert(ctx context.Context, b []chstore.Batch) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, b)
	return len(b), nil
}

// Batches of two jobs in one INSERT: its span links to both handlers' spans (two traces) and is
// the child of one of them.
func TestInsertSpanLinksEveryBatch(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tracer := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)).Tracer("test")
	ins := &spanTestInserter{}
	g := &groupCommit{ins: ins, maxRows: 2, linger: time.Minute, timeout: time.Minute, tracer: tracer}

	handlers := map[trace.SpanID]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, job := range []string{"job-a", "job-b"} {
		ctx, span := tracer.Start(context.Background(), "loader "+job) // a new trace per job
		mu.Lock()
		handlers[span.SpanContext().SpanID()] = job
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer span.End()
			b := chstore.Batch{JobID: job, Obs: []obs.Observation{{Security: "S", Field: "F"}}}
			if err := g.Insert(ctx, b); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if len(ins.calls) != 1 || len(ins.calls[0]) != 2 {
		t.Fatalf("inserts %v, want one of both batches", ins.calls)
	}
	var insert sdktrace.ReadOnlySpan
	for _, sp := range rec.Ended() {
		if sp.Name() == "clickhouse.insert" {
			insert = sp
		}
	}
	if insert == nil {
		t.Fatal("no clickhouse.insert span")
	}
	linked := map[string]bool{}
	for _, l := range insert.Links() {
		linked[handlers[l.SpanContext.SpanID()]] = true
	}
	if !linked["job-a"] || !linked["job-b"] || len(insert.Links()) != 2 {
		t.Errorf("insert links %v, want the spans of job-a and job-b", insert.Links())
	}
	if _, ok := handlers[insert.Parent().SpanID()]; !ok {
		t.Errorf("insert's parent %s is no handler's span", insert.Parent().SpanID())
	}
}
