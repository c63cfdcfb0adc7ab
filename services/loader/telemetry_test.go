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
	"github.com/marketpipe/marketpipe/pkg/rowcodec"
)

// recordingInserter records the job ids of each INSERT's batches, optionally holding each
// INSERT for a while, and counts how many run at once.
type recordingInserter struct {
	hold             time.Duration
	mu               sync.Mutex
	calls            [][]string
	running, maxRuns int
}

func (c *recordingInserter) InsertFrom(ctx context.Context, src chstore.BatchSource) (int, error) {
	c.mu.Lock()
	c.running++
	c.maxRuns = max(c.maxRuns, c.running)
	c.mu.Unlock()
	var jobs []string
	n := 0
	for b := src.Next(); b != nil; b = src.Next() {
		jobs = append(jobs, b.JobID)
		if b.Cols != nil {
			n += b.Cols.Len()
		}
	}
	time.Sleep(c.hold)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.running--
	c.calls = append(c.calls, jobs)
	return n, nil
}

// encoded returns an encoded batch of one observation per row and its header.
func encoded(t *testing.T, job string, seq, rows int) (rowcodec.Header, []byte) {
	t.Helper()
	b := rowcodec.Batch{JobID: job, Seq: seq}
	for i := range rows {
		b.Obs = append(b.Obs, obs.Observation{Security: "S", Field: "F", Date: obs.MakeDate(2026, 1, 1+i%28)})
	}
	data, err := rowcodec.Encode(nil, &b)
	if err != nil {
		t.Fatal(err)
	}
	h, err := rowcodec.Peek(data)
	if err != nil {
		t.Fatal(err)
	}
	return h, data
}

// Batches of two jobs in one INSERT: its span links to both handlers' spans (two traces) and is
// the child of one of them.
func TestInsertSpanLinksEveryBatch(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tracer := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)).Tracer("test")
	ins := &recordingInserter{}
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
			hdr, data := encoded(t, job, 0, 1)
			if err := g.Insert(ctx, hdr, data, false); err != nil {
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
