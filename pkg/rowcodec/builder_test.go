package rowcodec

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/marketpipe/marketpipe/pkg/obs"
)

// randomString returns n random bytes: incompressible.
func randomString(seed uint64, n int) string {
	r := rand.New(rand.NewPCG(seed, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return string(b)
}

// drain runs the Builder protocol over rows, checking every batch, and returns them decoded.
func drain(t *testing.T, bl *Builder, rows []obs.Observation, rejects []obs.Reject) []Batch {
	t.Helper()
	var out []Batch
	// The batch handed out last, and its rows then: it must stay as it was while the next
	// batch's rows are added.
	var last *ColumnBatch
	var lastRows Batch
	take := func() {
		if last != nil {
			var now Batch
			last.rows(&now)
			sameBatch(t, &now, &lastRows)
		}
		cb, data, err := bl.Flush()
		if err != nil {
			t.Fatalf("Flush: %v", err)
		}
		if cb == nil {
			t.Fatal("Flush returned no batch with rows pending")
		}
		batch := new(Batch)
		cb.rows(batch)
		last, lastRows = cb, *batch
		if len(data) > MaxMessageBytes {
			t.Fatalf("batch %d: %d bytes, bound %d", batch.Seq, len(data), MaxMessageBytes)
		}
		if n := len(batch.Obs) + len(batch.Rejects); n > MaxBatchRows || n == 0 {
			t.Fatalf("batch %d: %d rows", batch.Seq, n)
		}
		// The dictionaries the Builder kept as rows came make the encoding Encode makes.
		if want, err := Encode(nil, batch); err != nil || !bytes.Equal(data, want) {
			t.Fatalf("batch %d: the Builder's encoding differs from Encode's (%v)", batch.Seq, err)
		}
		var got Batch
		if err := Decode(data, &got); err != nil {
			t.Fatalf("Decode batch %d: %v", batch.Seq, err)
		}
		sameBatch(t, &got, batch)
		if got.Seq != len(out) {
			t.Fatalf("batch %d has Seq %d", len(out), got.Seq)
		}
		out = append(out, got)
	}
	for i := range rows {
		if err := bl.Add(&rows[i]); err != nil {
			t.Fatalf("Add %d: %v", i, err)
		}
		if i < len(rejects) {
			bl.AddReject(&rejects[i])
		}
		if bl.Full() {
			take()
		}
	}
	for bl.Len() > 0 {
		take()
	}
	if batch, data, err := bl.Flush(); batch != nil || data != nil || err != nil {
		t.Fatalf("Flush with nothing pending = %v, %d bytes, %v", batch, len(data), err)
	}
	if bl.Seq() != len(out) {
		t.Fatalf("Seq() = %d after %d batches", bl.Seq(), len(out))
	}
	// Every row exactly once, in order.
	i, j := 0, 0
	for _, b := range out {
		for k := range b.Obs {
			if !b.Obs[k].Equal(&rows[i]) {
				t.Fatalf("observation %d: got %+v, want %+v", i, b.Obs[k], rows[i])
			}
			i++
		}
		for k := range b.Rejects {
			if b.Rejects[k] != rejects[j] {
				t.Fatalf("reject %d differs", j)
			}
			j++
		}
	}
	if i != len(rows) || j != min(len(rejects), len(rows)) {
		t.Fatalf("got %d observations and %d rejects back, want %d and %d", i, j, len(rows), len(rejects))
	}
	return out
}

func sizes(bs []Batch) string {
	var s []string
	for _, b := range bs {
		s = append(s, fmt.Sprint(len(b.Obs)+len(b.Rejects)))
	}
	return strings.Join(s, " ")
}

func TestBuilderHistory(t *testing.T) {
	rows := historyObs(200, 250, 5) // 250,000 observations
	bs := drain(t, NewBuilder("j", "gethistory", 0, 1), rows, nil)
	t.Logf("batch rows: %s", sizes(bs))
	// The first batch is sized assuming nothing compresses; later ones use the ratio seen.
	for _, b := range bs[1 : len(bs)-1] {
		if len(b.Obs) != MaxBatchRows {
			t.Errorf("batch %d: %d observations; compressible data should fill %d", b.Seq, len(b.Obs), MaxBatchRows)
		}
	}
}

func TestBuilderIncompressible(t *testing.T) {
	var rows []obs.Observation
	for i := range 3000 {
		rows = append(rows, obs.Observation{Security: randomString(uint64(i), 30), Field: "F", Date: d0,
			Kind: obs.String, Str: randomString(uint64(i)+1e6, 1000), Flag: randomString(uint64(i)+2e6, 3)})
	}
	bs := drain(t, NewBuilder("j", "getdata", 0, 1), rows, nil)
	if len(bs) < 3 {
		t.Errorf("%d batches for ~3 MB of random data", len(bs))
	}
	t.Logf("batch rows: %s", sizes(bs))
}

// Data that compresses well, then turns incompressible: the Builder's prediction is wrong and
// Flush must split the batch rather than exceed the bound.
func TestBuilderCompressibilityDrops(t *testing.T) {
	rows := historyObs(10, 250, 9)
	for i := range 4000 {
		rows = append(rows, obs.Observation{Security: "S", Field: "F", Date: d0, Kind: obs.String,
			Str: randomString(uint64(i), 2000)})
	}
	bs := drain(t, NewBuilder("j", "getdata", 0, 1), rows, nil)
	t.Logf("batch rows: %s", sizes(bs))
}

func TestBuilderLargeValues(t *testing.T) {
	bl := NewBuilder("j", "getdata", 0, 1)
	huge := obs.Observation{Security: "S", Field: "F", Kind: obs.Bulk, Str: strings.Repeat("x", MaxObservationBytes)}
	if err := bl.Add(&huge); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Add(huge) = %v, want ErrTooLarge", err)
	}
	if err := bl.Add(&obs.Observation{Kind: 9}); err == nil {
		t.Fatal("Add(kind 9) succeeded")
	}
	if bl.Len() != 0 {
		t.Fatalf("refused rows kept: %d", bl.Len())
	}
	// The largest allowed values, incompressible, with the largest rejects between them.
	var rows []obs.Observation
	var rejects []obs.Reject
	for i := range 4 {
		rows = append(rows, obs.Observation{Security: "S", Field: "F", Kind: obs.Bulk,
			Str: randomString(uint64(i), MaxObservationBytes-2)})
		rejects = append(rejects, obs.Reject{Line: int64(i), Raw: randomString(uint64(i)+9, MaxRejectRawBytes),
			Reason: randomString(uint64(i)+19, MaxRejectReasonBytes)})
	}
	bs := drain(t, bl, rows, rejects)
	t.Logf("batch rows: %s", sizes(bs))
}

func TestBuilderRowLimit(t *testing.T) {
	bl := NewBuilder("j", "getdata", 0, 1)
	var rows []obs.Observation
	var rejects []obs.Reject
	for i := range MaxBatchRows + 10 {
		rows = append(rows, obs.Observation{Security: "S", Field: "F", Kind: obs.Null})
		rejects = append(rejects, obs.Reject{Line: int64(i)})
	}
	bs := drain(t, bl, rows, rejects)
	if len(bs) != 3 {
		t.Errorf("batches: %s", sizes(bs))
	}
}

// Ignoring Full: Flush still hands out bounded batches.
func TestBuilderFlushWithoutFull(t *testing.T) {
	bl := NewBuilder("j", "getdata", 0, 1)
	for i := range 3000 {
		o := obs.Observation{Security: "S", Kind: obs.String, Str: randomString(uint64(i), 1000)}
		if err := bl.Add(&o); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	for bl.Len() > 0 {
		b, data, err := bl.Flush()
		if err != nil || len(data) > MaxMessageBytes || b.Seq != n {
			t.Fatalf("Flush: %v, %d bytes, seq %d", err, len(data), b.Seq)
		}
		n++
	}
	if n < 3 {
		t.Errorf("%d batches", n)
	}
}

func TestBuilderStartSeq(t *testing.T) {
	bl := NewBuilder("j", "getdata", 0, 1)
	bl.StartSeq(3 << 20)
	for i := range 3000 {
		o := obs.Observation{Security: "S", Kind: obs.String, Str: randomString(uint64(i), 1000)}
		if err := bl.Add(&o); err != nil {
			t.Fatal(err)
		}
	}
	want := 3 << 20
	for bl.Len() > 0 {
		b, data, err := bl.Flush()
		if err != nil {
			t.Fatal(err)
		}
		var got Batch
		if err := Decode(data, &got); err != nil {
			t.Fatal(err)
		}
		if b.Seq != want || got.Seq != want {
			t.Fatalf("batch seq %d (decoded %d), want %d", b.Seq, got.Seq, want)
		}
		want++
	}
	if bl.Seq() != want || want < 3<<20+3 {
		t.Errorf("Seq() = %d after batches up to %d", bl.Seq(), want-1)
	}
}

func TestAddRejectTruncates(t *testing.T) {
	bl := NewBuilder("j", "getdata", 0, 1)
	raw := strings.Repeat("é", MaxRejectRawBytes) // 2 bytes each: the cut falls inside a rune
	bl.AddReject(&obs.Reject{Line: 5, Raw: raw, Reason: strings.Repeat("r", MaxRejectReasonBytes+1)})
	b, _, err := bl.Flush()
	if err != nil {
		t.Fatal(err)
	}
	r := b.Rejects[0]
	if len(r.Raw) != MaxRejectRawBytes || !strings.HasPrefix(raw, r.Raw) {
		t.Errorf("raw of %d bytes", len(r.Raw))
	}
	wantReason := strings.Repeat("r", MaxRejectReasonBytes) + fmt.Sprintf(" (line truncated from %d bytes)", len(raw))
	if r.Reason != wantReason {
		t.Errorf("reason %q...", r.Reason[len(r.Reason)-40:])
	}
	for _, c := range []struct {
		s    string
		n    int
		want string
	}{{"aé", 2, "a"}, {"aé", 3, "aé"}, {"aé", 9, "aé"}, {"a😀", 4, "a"}, {"\x80\x80\x80\x80\x80", 4, "\x80"}, {"", 0, ""}} {
		if got := truncUTF8(c.s, c.n); got != c.want {
			t.Errorf("truncUTF8(%q, %d) = %q, want %q", c.s, c.n, got, c.want)
		}
	}
}

// The Builder's size estimate must never be below the real body size: the bounds rely on it.
func TestEstimateIsUpperBound(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	e := newEncoder()
	for trial := range 200 {
		bl := NewBuilder(randomString(uint64(trial), r.IntN(40)), "gethistory", r.IntN(1e6), r.Uint64())
		n := r.IntN(2000)
		for i := range n {
			o := obs.Observation{Security: fmt.Sprint("S", r.IntN(1+trial)), Field: fmt.Sprint("F", r.IntN(300)),
				Date: obs.Date(r.Int32() - r.Int32()), Kind: obs.Kind(r.IntN(4)), Flag: fmt.Sprint(r.IntN(3))}
			switch o.Kind {
			case obs.Number:
				o.Num = [...]float64{r.Float64(), r.NormFloat64() * 1e12, float64(r.Int64()), 0.5}[r.IntN(4)]
			case obs.String, obs.Bulk:
				o.Str = randomString(uint64(i), r.IntN(200))
			}
			if err := bl.Add(&o); err != nil {
				t.Fatal(err)
			}
			if r.IntN(10) == 0 {
				bl.AddReject(&obs.Reject{Line: r.Int64() - r.Int64(), Raw: randomString(uint64(i), r.IntN(100)), Reason: "x"})
			}
		}
		b := ColumnBatch{JobID: bl.jobID, Program: bl.program, Generation: bl.generation, Version: bl.version,
			Seq: r.IntN(1 << 30), Cols: bl.pending(), Rejects: bl.rejects}
		if err := e.encodeColumns(&b); err != nil {
			t.Fatal(err)
		}
		if bl.est.size < len(e.body) {
			t.Fatalf("trial %d: estimate %d below the body's %d bytes", trial, bl.est.size, len(e.body))
		}
	}
}

// TestBuilderReset: a Builder reset for another job run gives that run's batches, numbered from
// 0 and carrying its identity, with every row once and nothing of the run before; its first
// batch already uses the ratio learnt, and incompressible rows after compressible ones still
// fit (Flush corrects the prediction).
func TestBuilderReset(t *testing.T) {
	bl := NewBuilder("first", "gethistory", 0, 1)
	rows := historyObs(100, 250, 4) // 100,000 observations
	first := drain(t, bl, rows, []obs.Reject{{Line: 1, Raw: "x", Reason: "bad"}})
	bl.Reset("second", "getdata", 2, 7)
	second := drain(t, bl, rows, nil)
	if len(second[0].Obs) <= len(first[0].Obs) {
		t.Errorf("first batch after Reset: %d rows, no more than a new Builder's %d", len(second[0].Obs), len(first[0].Obs))
	}
	for _, b := range second {
		if b.JobID != "second" || b.Program != "getdata" || b.Generation != 2 || b.Version != 7 || len(b.Rejects) != 0 {
			t.Fatalf("batch %d after Reset: job %q program %q gen %d version %d, %d rejects", b.Seq, b.JobID, b.Program, b.Generation, b.Version, len(b.Rejects))
		}
	}
	bl.Reset("third", "getdata", 0, 1)
	var noisy []obs.Observation
	for i := range 3000 {
		noisy = append(noisy, obs.Observation{Security: "S", Kind: obs.String, Str: randomString(uint64(i), 1000)})
	}
	drain(t, bl, noisy, nil) // checks every batch's size bound
}
