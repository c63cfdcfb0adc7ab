package loader

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/chstore"
	"github.com/marketpipe/marketpipe/pkg/chtest"
	"github.com/marketpipe/marketpipe/pkg/config"
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

// rowsHandler returns a RowsHandler over ins that knows runs from env's job events, as the
// loader's does; collected records the "collected" event of each of the jobs with version 7
// (what batch makes).
func rowsHandler(t *testing.T, env *natstest.Env, commit *groupCommit, collected ...string) *RowsHandler {
	t.Helper()
	for _, id := range collected {
		j := events.Job{ID: id, Version: 7}
		j = j.Advance(events.Collected, time.Now())
		env.DeliverJob(&j)
	}
	return &RowsHandler{commit: commit, Ledger: env.Streams.Ledger,
		runs: &runCache{lookup: func(ctx context.Context, id string) (map[int]uint64, error) {
			return natsx.RunVersions(ctx, env.JS, id)
		}}}
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
	h := rowsHandler(t, env, &groupCommit{ins: ins, maxRows: 1000, linger: 300 * time.Millisecond, timeout: time.Minute}, "job-a")
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

// TestForgedBatchesAreRefused: a batch of an unknown job, of an unknown run of a known job, with
// another version than its run's, or on another job's subject is dead-lettered with the reason,
// counted, and changes nothing.
func TestForgedBatchesAreRefused(t *testing.T) {
	env := natstest.NewEnv(t)
	st := openStore(t)
	ins := &countingInserter{Inserter: st}
	h := rowsHandler(t, env, &groupCommit{ins: ins, maxRows: 1000, linger: time.Millisecond, timeout: time.Minute}, "job-f")
	counted := map[string]int{}
	h.Refused = func(reason string) { counted[reason]++ }
	ctx := context.Background()
	encode := func(b rowcodec.Batch) []byte {
		data, err := rowcodec.Encode(nil, &b)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	unknownRun := batch("job-f", 0, 3)
	unknownRun.Generation = 1
	maxVersion := batch("job-f", 0, 3)
	maxVersion.Version = math.MaxUint64
	tests := []struct {
		name, subject string
		b             rowcodec.Batch
		reason, want  string
	}{
		{"unknown job", events.RowsSubject("nobody"), batch("nobody", 0, 3), refusedRun, "no such run"},
		{"unknown run", events.RowsSubject("job-f"), unknownRun, refusedRun, "generation 1: no such run"},
		{"wrong version", events.RowsSubject("job-f"), maxVersion, refusedVersion, "the run was given 7"},
		{"another job's subject", events.RowsSubject("job-f"), batch("nobody", 0, 3), refusedSubject, "on subject mp.rows.job-f"},
		{"a subject for a name that is no job id", events.RowsSubject("job-f"), batch("x*y", 0, 3), refusedSubject, "x*y"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := h.Handle(ctx, env.Deliver(events.RowsStream, tt.subject, encode(tt.b)))
			if !stage.IsPermanent(err) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want a permanent error saying %q", err, tt.want)
			}
			if counted[tt.reason] == 0 {
				t.Errorf("not counted as %s: %v", tt.reason, counted)
			}
		})
	}
	if c := ins.calls.Load(); c != 0 {
		t.Errorf("%d INSERTs of refused batches", c)
	}
	if n, _ := st.CountObservations(ctx, false); n != 0 {
		t.Errorf("%d rows stored from refused batches", n)
	}
	// The run's own batch loads.
	if err := h.Handle(ctx, deliverBatch(t, env, batch("job-f", 0, 3))); err != nil {
		t.Fatal(err)
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
	h := rowsHandler(t, env, &groupCommit{ins: st, maxRows: 1000, linger: time.Millisecond, timeout: 10 * time.Second}, "job-b")
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
	st := openStore(t)
	h := stage.Jobs(stage.NewPublisher(env.JS), events.Decode, &CompleteHandler{Count: func(context.Context, string, int) (int, error) { return loaded, nil },
		Commits: st, Poll: 100 * time.Millisecond, Timeout: time.Hour, Now: time.Now})
	j := events.Job{ID: "job-c", Batches: 2, RowsParsed: 150, Version: 11}
	j = j.Advance(events.Transformed, time.Now())

	loaded = 1
	if d, ok := stage.WaitAfter(h.Handle(ctx, env.DeliverJob(&j))); !ok || d != 100*time.Millisecond {
		t.Errorf("1 of 2 batches loaded: want Wait(100ms)")
	}
	if ok, err := st.Committed(ctx, 11); err != nil || ok {
		t.Errorf("run committed with 1 of 2 batches loaded (%v)", err)
	}
	loaded = 2
	if err := h.Handle(ctx, env.DeliverJob(&j)); err != nil {
		t.Fatal(err)
	}
	if got, _ := env.LastJob(j.ID); got.State != events.Loaded || got.RowsLoaded != 150 {
		t.Errorf("state %q rows loaded %d, want loaded 150", got.State, got.RowsLoaded)
	}
	if ok, err := st.Committed(ctx, 11); err != nil || !ok {
		t.Errorf("loaded run not committed (%v)", err)
	}

	// A strict run whose file had warnings fails, uncommitted; a lenient one loads with them.
	warn := &events.Warnings{UnknownFields: []string{"PX_NOPE"}, ReturnCodes: map[string]int64{"RC=10": 1}}
	strict := events.Job{ID: "job-strict", Batches: 1, Version: 12, Warnings: warn, Spec: events.Spec{Strict: true}}
	strict = strict.Advance(events.Transformed, time.Now())
	lenient := events.Job{ID: "job-lenient", Batches: 1, Version: 13, Warnings: warn}
	lenient = lenient.Advance(events.Transformed, time.Now())
	loaded = 1
	for _, r := range []*events.Job{&strict, &lenient} {
		if err := h.Handle(ctx, env.DeliverJob(r)); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := env.LastJob(strict.ID); got.State != events.Failed ||
		!strings.Contains(got.Error, "strict: the reply file has warnings: 1 unknown field (PX_NOPE); 1 security with return codes (RC=10: 1)") {
		t.Errorf("strict run: state %q error %q", got.State, got.Error)
	}
	if ok, _ := st.Committed(ctx, 12); ok {
		t.Error("strict run with warnings committed")
	}
	if got, _ := env.LastJob(lenient.ID); got.Outcome() != events.OutcomeLoadedWarnings {
		t.Errorf("lenient run: %q", got.Outcome())
	}
	if ok, _ := st.Committed(ctx, 13); !ok {
		t.Error("lenient run with warnings not committed")
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
	h := stage.Jobs(stage.NewPublisher(env.JS), events.Decode, &JobsHandler{Store: st})
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
	h := rowsHandler(t, env, &groupCommit{ins: st, maxRows: 1000, linger: time.Millisecond, timeout: time.Minute}, "job-r")
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
		var c Client
		err := config.Read(func(string) (string, bool) { return v, v != "" }, &c)
		if got := c.Name == "clickhouse-go"; err != nil || got != want {
			t.Errorf("LOADER_INSERT_CLIENT=%q: %v, %v; want %v", v, got, err, want)
		}
	}
	if err := config.Read(func(string) (string, bool) { return "http", true }, &Client{}); err == nil ||
		!strings.Contains(err.Error(), `LOADER_INSERT_CLIENT="http"`) {
		t.Errorf("an unknown client: err = %v", err)
	}
}
