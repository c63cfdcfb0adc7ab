package loader

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/chstore"
	"github.com/marketpipe/marketpipe/pkg/chtest"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/pkg/natsx"
	"github.com/marketpipe/marketpipe/pkg/obs"
	"github.com/marketpipe/marketpipe/pkg/rowcodec"
	"github.com/marketpipe/marketpipe/pkg/stage"
)

func TestMain(m *testing.M) { chtest.Main(m) }

func openStore(t testing.TB) *chstore.Store {
	t.Helper()
	srv := chtest.Start(t)
	st, err := chstore.Open(context.Background(), chstore.Config{Addr: srv.Addr(), Database: chtest.NewDatabase(t, srv)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return st
}

// countingInserter counts INSERT calls.
type countingInserter struct {
	Inserter
	calls atomic.Int64
}

func (c *countingInserter) InsertFrom(ctx context.Context, src chstore.BatchSource) (int, error) {
	c.calls.Add(1)
	return c.Inserter.InsertFrom(ctx, src)
}

func batch(jobID string, seq, n int) rowcodec.Batch {
	b := rowcodec.Batch{JobID: jobID, Program: "gethistory", Version: 7, Seq: seq}
	for i := range n {
		b.Obs = append(b.Obs, obs.Observation{Security: "S" + string(rune('A'+seq)), Field: "PX_LAST",
			Date: obs.MakeDate(2026, 1, 1+i), Kind: obs.Number, Num: float64(i)})
	}
	return b
}

func deliverBatch(t *testing.T, env *natstest.Env, b rowcodec.Batch) *stage.Message {
	t.Helper()
	data, err := rowcodec.Encode(nil, &b)
	if err != nil {
		t.Fatal(err)
	}
	return env.Deliver(events.RowsStream, events.RowsSubject(b.JobID), data)
}

func TestRowsHandler(t *testing.T) {
	env := natstest.NewEnv(t)
	st := openStore(t)
	ins := &countingInserter{Inserter: st}
	h := &RowsHandler{commit: &groupCommit{ins: ins, maxRows: 1000, linger: 300 * time.Millisecond, timeout: time.Minute},
		Ledger: env.Streams.Ledger}
	ctx := context.Background()

	// Eight batches handled at once go to ClickHouse in one INSERT.
	msgs := make([]*stage.Message, 8)
	for i := range msgs {
		msgs[i] = deliverBatch(t, env, batch("job-a", i, 10))
	}
	var wg sync.WaitGroup
	errs := make([]error, len(msgs))
	for i, m := range msgs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = h.Handle(ctx, m) }()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if c := ins.calls.Load(); c != 1 {
		t.Errorf("%d INSERTs for 8 concurrent batches, want 1 (group commit)", c)
	}
	if n, _ := natsx.LoadedBatches(ctx, env.JS, "job-a", 0); n != 8 {
		t.Errorf("ledger holds %d batches, want 8", n)
	}
	if n, _ := st.CountObservations(ctx, false); n != 80 {
		t.Errorf("%d rows, want 80", n)
	}

	// A redelivered batch is found in the ledger and not inserted again.
	if err := h.Handle(ctx, msgs[3]); err != nil {
		t.Fatal(err)
	}
	if c := ins.calls.Load(); c != 1 {
		t.Errorf("a redelivered batch was inserted again (%d INSERTs)", c)
	}

	// Poison: not a row batch.
	bad := env.Deliver(events.RowsStream, events.RowsSubject("job-a"), []byte("garbage"))
	if err := h.Handle(ctx, bad); !stage.IsPermanent(err) {
		t.Errorf("undecodable batch: %v, want a permanent error", err)
	}
}

func TestRowsHandlerClickHouseDownIsTransient(t *testing.T) {
	env := natstest.NewEnv(t)
	srv := chtest.StartPrivate(t)
	st, err := chstore.Open(context.Background(), chstore.Config{Addr: srv.Addr(), Database: chtest.NewDatabase(t, srv), DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	h := &RowsHandler{commit: &groupCommit{ins: st, maxRows: 1000, linger: time.Millisecond, timeout: 10 * time.Second},
		Ledger: env.Streams.Ledger}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	m := deliverBatch(t, env, batch("job-b", 0, 5))
	err = h.Handle(context.Background(), m)
	if err == nil || stage.IsPermanent(err) {
		t.Fatalf("insert with ClickHouse down: %v, want a transient error", err)
	}
	if _, err := env.Streams.Ledger.Get(context.Background(), natsx.LedgerKey("job-b", 0, 0)); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("a batch that was not inserted is in the ledger: %v", err)
	}
}

func TestCompleteHandler(t *testing.T) {
	env := natstest.NewEnv(t)
	ctx := context.Background()
	loaded := 0
	h := &CompleteHandler{Count: func(context.Context, string, int) (int, error) { return loaded, nil },
		Pub: stage.NewPublisher(env.JS), Poll: 100 * time.Millisecond, Timeout: time.Hour, Now: time.Now}
	j := events.Job{ID: "job-c", Batches: 2, RowsParsed: 150}
	j = j.Advance(events.Transformed, time.Now())

	loaded = 1
	if d, ok := stage.RetryAfter(h.Handle(ctx, env.DeliverJob(&j))); !ok || d != 100*time.Millisecond {
		t.Errorf("1 of 2 batches loaded: want Retry(100ms)")
	}
	loaded = 2
	if err := h.Handle(ctx, env.DeliverJob(&j)); err != nil {
		t.Fatal(err)
	}
	if got, _ := env.LastJob(j.ID); got.State != events.Loaded || got.RowsLoaded != 150 {
		t.Errorf("state %q rows loaded %d, want loaded 150", got.State, got.RowsLoaded)
	}

	late := events.Job{ID: "job-late", Batches: 3}
	late = late.Advance(events.Transformed, time.Now().Add(-2*time.Hour))
	loaded = 1
	if err := h.Handle(ctx, env.DeliverJob(&late)); err != nil {
		t.Fatal(err)
	}
	if got, _ := env.LastJob(late.ID); got.State != events.Failed || !strings.Contains(got.Error, "only 1 of 3 row batches") {
		t.Errorf("state %q error %q", got.State, got.Error)
	}
}

func TestJobsHandlerKeepsTheLatestEvent(t *testing.T) {
	env := natstest.NewEnv(t)
	st := openStore(t)
	h := &JobsHandler{Store: st}
	ctx := context.Background()
	j := events.Job{ID: "job-d", Spec: events.Spec{Name: "d", Program: "getdata"}}
	sub := j.Advance(events.Submitted, time.Now())
	req := sub.Advance(events.Requested, time.Now())
	req.VendorRequestID = "mpd"
	mReq := env.DeliverJob(&req)
	mSub := env.DeliverJob(&sub) // published later, but an older state: its sequence is higher
	for _, m := range []*stage.Message{mReq, mSub} {
		if err := h.Handle(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	got, ok, err := st.Job(ctx, "job-d")
	if err != nil || !ok {
		t.Fatalf("job: %v %v", ok, err)
	}
	// The stream sequence orders them: the event stored last is the one kept.
	if got.State != events.Submitted {
		t.Errorf("state %q, want the event with the highest stream sequence (submitted)", got.State)
	}
	if err := h.Handle(ctx, env.Deliver(events.JobsStream, events.JobSubject("x", "submitted"), []byte("{"))); !stage.IsPermanent(err) {
		t.Errorf("undecodable job event: %v, want a permanent error", err)
	}
}

func TestRejectsReachClickHouse(t *testing.T) {
	env := natstest.NewEnv(t)
	st := openStore(t)
	h := &RowsHandler{commit: &groupCommit{ins: st, maxRows: 1000, linger: time.Millisecond, timeout: time.Minute},
		Ledger: env.Streams.Ledger}
	b := batch("job-r", 0, 3)
	b.Rejects = []obs.Reject{{Line: 11, Raw: "broken line", Reason: "row has 1 columns"}}
	if err := h.Handle(context.Background(), deliverBatch(t, env, b)); err != nil {
		t.Fatal(err)
	}
	rej, err := st.Rejects(context.Background(), "job-r")
	if err != nil {
		t.Fatal(err)
	}
	if len(rej) != 1 || rej[0] != b.Rejects[0] {
		t.Errorf("rejects table: %+v, want %+v", rej, b.Rejects)
	}
	if n, _ := st.CountObservations(context.Background(), true); n != 3 {
		t.Errorf("%d observations beside the reject, want 3", n)
	}
}

func TestDriverInserts(t *testing.T) {
	for v, want := range map[string]bool{"": false, "marketpipe": false, "clickhouse-go": true} {
		got, err := driverInserts(func(string) (string, bool) { return v, v != "" })
		if err != nil || got != want {
			t.Errorf("LOADER_INSERT_CLIENT=%q: %v, %v; want %v", v, got, err, want)
		}
	}
	if _, err := driverInserts(func(string) (string, bool) { return "http", true }); err == nil ||
		!strings.Contains(err.Error(), `LOADER_INSERT_CLIENT="http"`) {
		t.Errorf("an unknown client: err = %v", err)
	}
}
