package backfill

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/jobspec"
	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/pkg/natsx"
)

func plan(t *testing.T, name, body, from, to string) *Record {
	t.Helper()
	f, err := jobspec.Parse([]byte(body), "job.yaml")
	if err != nil {
		t.Fatal(err)
	}
	spec, err := f.SpecAt(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRecord(name, f, spec, day(from), day(to), 132, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

const jobBody = "name: eod\nprogram: gethistory\nsecurities: [A US Equity, B US Equity]\nfields: [PX_LAST, PX_VOLUME]\nstart: 2026-01-01\nend: 2026-01-31\n"

// Open keeps the first plan of a name, refuses another request or range under it, and
// UpdatePart changes one part without losing a concurrent change of another writer.
func TestStore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := natstest.Start(t)
	_, js := natstest.Connect(t, s)
	if _, err := natsx.Setup(ctx, js, natsx.Retention{}); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, "mp_backfills")
	if err != nil {
		t.Fatal(err)
	}
	st := Store{KV: kv}
	want := plan(t, "eod-1", jobBody, "2025-01-01", "2025-04-30")
	got, _, err := st.Open(ctx, want)
	if err != nil || len(got.Parts) != len(want.Parts) {
		t.Fatalf("open: %v, %+v", err, got)
	}
	// A rerun with a smaller budget keeps the stored plan.
	again := plan(t, "eod-1", jobBody, "2025-01-01", "2025-04-30")
	again.MaxPoints, again.Parts = 10, again.Parts[:1]
	if got, _, err := st.Open(ctx, again); err != nil || len(got.Parts) != len(want.Parts) || got.MaxPoints != 132 {
		t.Errorf("reopen: %v, %d parts of %d points", err, len(got.Parts), got.MaxPoints)
	}
	changed := plan(t, "eod-1", strings.Replace(jobBody, "B US Equity]", "B US Equity, C US Equity]\ncurrency: EUR", 1), "2025-01-01", "2025-04-30")
	_, _, err = st.Open(ctx, changed)
	if !errors.Is(err, ErrChanged) || !strings.Contains(err.Error(), "securities (2 then, 3 now)") ||
		!strings.Contains(err.Error(), "request options (stored as gethistory then, gethistory[currency=EUR] now)") {
		t.Errorf("changed file: %v", err)
	}
	if _, _, err := st.Open(ctx, plan(t, "eod-1", jobBody, "2025-01-01", "2025-05-31")); err == nil || !strings.Contains(err.Error(), "is of 2025-01-01 to 2025-04-30") {
		t.Errorf("another range under the name: %v", err)
	}

	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := st.UpdatePart(ctx, "eod-1", 1, func(p *Part) { p.Rows++ }); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	r, _, err := st.Get(ctx, "eod-1")
	if err != nil || r.Parts[1].Rows != 8 || r.Parts[0].Rows != 0 {
		t.Errorf("after 8 concurrent updates: %v, parts %+v", err, r.Parts)
	}
	list, err := st.List(ctx)
	if err != nil || len(list) != 1 || list[0].Name != "eod-1" {
		t.Errorf("list: %v %+v", err, list)
	}
}
