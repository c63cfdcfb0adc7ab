package loader

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/chstore"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/pkg/natsx"
	"github.com/marketpipe/marketpipe/pkg/obs"
	"github.com/marketpipe/marketpipe/pkg/rowcodec"
	"github.com/marketpipe/marketpipe/pkg/stage"
)

// A backlog becomes INSERTs of at most maxRows rows, and two of them run at once.
func TestGroupCommitSplitsBacklogAcrossInserts(t *testing.T) {
	ins := &recordingInserter{hold: 100 * time.Millisecond}
	g := &groupCommit{ins: ins, maxRows: 10, inserts: 2, linger: time.Hour, timeout: time.Minute}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := range 8 {
		hdr, data := encoded(t, "job", i, 5)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := g.Insert(ctx, hdr, data, false); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if len(ins.calls) != 4 {
		t.Errorf("%d INSERTs of %v, want 4 of two 5-row batches", len(ins.calls), ins.calls)
	}
	for _, c := range ins.calls {
		if len(c) != 2 {
			t.Errorf("INSERT of %d batches, want 2 (10 rows)", len(c))
		}
	}
	if ins.maxRuns != 2 {
		t.Errorf("at most %d INSERTs ran at once, want 2", ins.maxRuns)
	}
}

// A batch alone, below maxRows, goes out once it has waited linger.
func TestGroupCommitLinger(t *testing.T) {
	ins := &recordingInserter{}
	g := &groupCommit{ins: ins, maxRows: 1000, linger: 20 * time.Millisecond, timeout: time.Minute}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 3 { // one after the other: each waits for its own INSERT
		hdr, data := encoded(t, "job", i, 1)
		if err := g.Insert(ctx, hdr, data, false); err != nil {
			t.Fatal(err)
		}
	}
	if len(ins.calls) != 3 {
		t.Errorf("INSERTs %v, want 3", ins.calls)
	}
}

// While a transform is still sending batches (more follow), an INSERT waits to fill up to
// maxRows instead of taking each batch after linger; the last batch of the stream shortens the
// wait back to linger.
func TestGroupCommitWaitsWhileMoreRowsFollow(t *testing.T) {
	ins := &recordingInserter{}
	// maxLinger longer than the test's deadline: a batch left waiting for it fails the test.
	g := &groupCommit{ins: ins, maxRows: 10, inserts: 2, linger: 20 * time.Millisecond, maxLinger: time.Hour,
		timeout: time.Minute}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	insert := func(seq int, more bool, after time.Duration) {
		hdr, data := encoded(t, "job", seq, 3)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := g.Insert(ctx, hdr, data, more); err != nil {
				t.Errorf("batch %d: %v", seq, err)
			}
		}()
		time.Sleep(after)
	}
	for seq := range 3 {
		insert(seq, true, 3*g.linger)
	}
	// 12 rows: one INSERT of the first three batches (9 rows). Then the last, with the fourth:
	// the two go out together once they have waited linger, not maxLinger.
	insert(3, true, 0)
	insert(4, false, 0)
	wg.Wait()
	if len(ins.calls) != 2 || len(ins.calls[0]) != 3 || len(ins.calls[1]) != 2 {
		t.Errorf("INSERTs of %v batches, want one of 3 then one of 2", ins.calls)
	}
}

// Batches that cannot be decoded or stored fail alone and permanently; the others of their
// INSERT are loaded.
func TestRowsHandlerBadBatchFailsAlone(t *testing.T) {
	env := natstest.NewEnv(t)
	st := openStore(t)
	h := rowsHandler(t, env, &groupCommit{ins: st, maxRows: 1 << 20, linger: 500 * time.Millisecond, timeout: time.Minute}, "job-g")
	ctx := context.Background()

	good := batch("job-g", 0, 10)
	badDate := batch("job-g", 1, 10)
	badDate.Obs[4].Date = -1
	// A batch large enough that Peek reads only its start, with its zstd checksum broken: Peek
	// accepts it, Decode does not.
	big := rowcodec.Batch{JobID: "job-g", Program: "gethistory", Version: 7, Seq: 2}
	for i := range 60_000 {
		big.Obs = append(big.Obs, obs.Observation{Security: "S" + string(rune('A'+i%26)), Field: "PX_LAST",
			Date: obs.Date(i % 20000), Kind: obs.Number, Num: float64(i) * 1.37})
	}
	corrupt, err := rowcodec.Encode(nil, &big)
	if err != nil {
		t.Fatal(err)
	}
	corrupt[len(corrupt)-1] ^= 0xff
	if _, err := rowcodec.Peek(corrupt); err != nil {
		t.Fatalf("Peek of the corrupt batch: %v", err)
	}
	msgs := []*stage.Message{deliverBatch(t, env, good), deliverBatch(t, env, badDate),
		env.Deliver(events.RowsStream, events.RowsSubject("job-g"), corrupt)}
	errs := make([]error, len(msgs))
	var wg sync.WaitGroup
	for i, m := range msgs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = h.Handle(ctx, m) }()
	}
	wg.Wait()
	if errs[0] != nil {
		t.Errorf("good batch: %v", errs[0])
	}
	if !stage.IsPermanent(errs[1]) || !errors.Is(errs[1], chstore.ErrDateOutOfRange) {
		t.Errorf("batch with a date out of range: %v, want permanent ErrDateOutOfRange", errs[1])
	}
	if !stage.IsPermanent(errs[2]) || !errors.Is(errs[2], rowcodec.ErrCorrupt) {
		t.Errorf("corrupt batch: %v, want permanent ErrCorrupt", errs[2])
	}
	if n, _ := st.CountObservations(ctx, false); n != 10 {
		t.Errorf("%d rows in ClickHouse, want the good batch's 10", n)
	}
	if n, _ := natsx.LoadedBatches(ctx, env.JS, "job-g", 0); n != 1 {
		t.Errorf("ledger holds %d batches, want 1", n)
	}
}
