package coverage_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/coverage"
	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/pkg/obs"
	"github.com/marketpipe/marketpipe/pkg/vendor"
)

func d(s string) obs.Date {
	v, err := obs.ParseDate(s)
	if err != nil {
		panic(err)
	}
	return v
}

func r(from, to string) coverage.Range { return coverage.Range{From: d(from), To: d(to)} }

func TestRangesAddMerges(t *testing.T) {
	for _, c := range []struct {
		name string
		add  []coverage.Range
		want coverage.Ranges
	}{
		{"one", []coverage.Range{r("2025-01-01", "2025-01-31")}, coverage.Ranges{r("2025-01-01", "2025-01-31")}},
		{"disjoint, sorted on add", []coverage.Range{r("2025-03-01", "2025-03-31"), r("2025-01-01", "2025-01-31")},
			coverage.Ranges{r("2025-01-01", "2025-01-31"), r("2025-03-01", "2025-03-31")}},
		{"adjacent days merge", []coverage.Range{r("2025-01-01", "2025-01-31"), r("2025-02-01", "2025-02-28")},
			coverage.Ranges{r("2025-01-01", "2025-02-28")}},
		{"overlap", []coverage.Range{r("2025-01-01", "2025-01-20"), r("2025-01-10", "2025-02-10")},
			coverage.Ranges{r("2025-01-01", "2025-02-10")}},
		{"bridges several", []coverage.Range{r("2025-01-01", "2025-01-05"), r("2025-01-10", "2025-01-12"),
			r("2025-01-20", "2025-01-25"), r("2025-03-01", "2025-03-02"), r("2025-01-04", "2025-01-21")},
			coverage.Ranges{r("2025-01-01", "2025-01-25"), r("2025-03-01", "2025-03-02")}},
		{"inside", []coverage.Range{r("2025-01-01", "2025-12-31"), r("2025-05-01", "2025-05-02")},
			coverage.Ranges{r("2025-01-01", "2025-12-31")}},
		{"one day gap stays", []coverage.Range{r("2025-01-01", "2025-01-10"), r("2025-01-12", "2025-01-20")},
			coverage.Ranges{r("2025-01-01", "2025-01-10"), r("2025-01-12", "2025-01-20")}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var got coverage.Ranges
			for _, a := range c.add {
				got = got.Add(a)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %v, want %v", got, c.want)
			}
			if !reflect.DeepEqual(coverage.Ranges(c.add).Normal(), c.want) {
				t.Errorf("Normal: got %v, want %v", coverage.Ranges(c.add).Normal(), c.want)
			}
		})
	}
}

func TestRangesMissing(t *testing.T) {
	have := coverage.Ranges{r("2025-01-01", "2025-01-31"), r("2025-03-01", "2025-03-31")}
	for _, c := range []struct {
		want coverage.Range
		miss coverage.Ranges
	}{
		{r("2025-01-01", "2025-01-31"), nil},
		{r("2025-01-10", "2025-01-20"), nil},
		{r("2025-01-01", "2025-02-10"), coverage.Ranges{r("2025-02-01", "2025-02-10")}},
		{r("2024-12-01", "2025-04-30"), coverage.Ranges{r("2024-12-01", "2024-12-31"), r("2025-02-01", "2025-02-28"), r("2025-04-01", "2025-04-30")}},
		{r("2025-05-01", "2025-05-02"), coverage.Ranges{r("2025-05-01", "2025-05-02")}},
		{r("2025-03-31", "2025-04-01"), coverage.Ranges{r("2025-04-01", "2025-04-01")}},
	} {
		if got := have.Missing(c.want); !reflect.DeepEqual(got, c.miss) {
			t.Errorf("Missing(%v) = %v, want %v", c.want, got, c.miss)
		}
	}
	if got := coverage.Ranges(nil).Missing(r("2025-01-01", "2025-01-02")); !reflect.DeepEqual(got, coverage.Ranges{r("2025-01-01", "2025-01-02")}) {
		t.Errorf("nothing covered: missing %v", got)
	}
	if got := have.Upto(d("2025-03-10")); !reflect.DeepEqual(got, coverage.Ranges{r("2025-01-01", "2025-01-31"), r("2025-03-01", "2025-03-10")}) {
		t.Errorf("Upto: %v", got)
	}
}

func TestRangeJSON(t *testing.T) {
	c := coverage.Covered{"PX_LAST": {r("2025-01-01", "2025-06-30")}}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"PX_LAST":[["2025-01-01","2025-06-30"]]}` {
		t.Errorf("JSON %s", b)
	}
	var back coverage.Covered
	if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, c) {
		t.Errorf("round trip: %v %v", back, err)
	}
	if err := json.Unmarshal([]byte(`{"X":[["2025-02-01","2025-01-01"]]}`), &back); err == nil {
		t.Error("a range ending before it starts was accepted")
	}
}

// TestMissingAndGroups: a security with nothing missing is not asked; a field missing for one
// security asks every field of it; securities missing the same dates share a request; a new
// security asks the whole range; a small hole of loaded dates is asked again rather than
// splitting a request, a large one splits it.
func TestMissingAndGroups(t *testing.T) {
	fields := []string{"PX_LAST", "PX_VOLUME"}
	both := func(rs ...coverage.Range) coverage.Covered {
		return coverage.Covered{"PX_LAST": rs, "PX_VOLUME": rs}
	}
	cov := map[string]coverage.Covered{
		"DONE":    both(r("2025-01-01", "2025-12-31")),
		"OLD1":    both(r("2025-01-01", "2025-06-30")),
		"OLD2":    both(r("2024-06-01", "2025-06-30")),
		"ONEFLD":  {"PX_LAST": {r("2025-01-01", "2025-12-31")}, "PX_VOLUME": {r("2025-01-01", "2025-06-30")}},
		"HOLE":    both(r("2025-01-01", "2025-03-31"), r("2025-04-05", "2025-12-31")), // 4 days missing in April
		"FARHOLE": both(r("2025-01-01", "2025-02-28"), r("2025-11-01", "2025-12-31")),
	}
	order := []string{"DONE", "NEW", "OLD1", "OLD2", "ONEFLD", "HOLE", "FARHOLE"}
	want := r("2025-01-01", "2025-12-31")
	miss := coverage.Missing(cov, order, fields, want)
	wantMiss := map[string]coverage.Ranges{
		"NEW":     {want},
		"OLD1":    {r("2025-07-01", "2025-12-31")},
		"OLD2":    {r("2025-07-01", "2025-12-31")},
		"ONEFLD":  {r("2025-07-01", "2025-12-31")},
		"HOLE":    {r("2025-04-01", "2025-04-04")},
		"FARHOLE": {r("2025-03-01", "2025-10-31")},
	}
	if !reflect.DeepEqual(miss, wantMiss) {
		t.Fatalf("missing:\n got %v\nwant %v", miss, wantMiss)
	}
	groups := coverage.Groups(miss, order)
	wantGroups := []coverage.Group{
		{Securities: []string{"NEW"}, Range: want},
		{Securities: []string{"FARHOLE"}, Range: r("2025-03-01", "2025-10-31")},
		{Securities: []string{"HOLE"}, Range: r("2025-04-01", "2025-04-04")},
		{Securities: []string{"OLD1", "OLD2", "ONEFLD"}, Range: r("2025-07-01", "2025-12-31")},
	}
	if !reflect.DeepEqual(groups, wantGroups) {
		t.Fatalf("groups:\n got %v\nwant %v", groups, wantGroups)
	}
	secs, span, ok := coverage.Span(groups, order)
	if !ok || !reflect.DeepEqual(secs, []string{"NEW", "OLD1", "OLD2", "ONEFLD", "HOLE", "FARHOLE"}) || span != want {
		t.Errorf("span: %v %v %v", secs, span, ok)
	}

	// Gaps: two missing ranges with 7 loaded days between are one request, with 8 two.
	near := map[string]coverage.Ranges{"A": {r("2025-01-01", "2025-01-10"), r("2025-01-18", "2025-01-20")}}
	if g := coverage.Groups(near, []string{"A"}); len(g) != 1 || g[0].Range != r("2025-01-01", "2025-01-20") {
		t.Errorf("gap of %d days: %v", coverage.MaxGap, g)
	}
	far := map[string]coverage.Ranges{"A": {r("2025-01-01", "2025-01-10"), r("2025-01-19", "2025-01-20")}}
	if g := coverage.Groups(far, []string{"A"}); len(g) != 2 {
		t.Errorf("gap of %d days: %v", coverage.MaxGap+1, g)
	}

	// Everything loaded: nothing to ask.
	if m := coverage.Missing(cov, []string{"DONE"}, fields, r("2025-02-01", "2025-03-01")); len(m) != 0 {
		t.Errorf("DONE: missing %v", m)
	}
	if _, _, ok := coverage.Span(coverage.Groups(nil, order), order); ok {
		t.Error("Span of no groups is ok")
	}
}

func TestDatesAndPoints(t *testing.T) {
	for _, c := range []struct {
		r    coverage.Range
		per  string
		want int64
	}{
		{r("2025-01-01", "2025-01-31"), "", 23}, // January 2025: 23 weekdays
		{r("2025-01-04", "2025-01-05"), "daily", 0},
		{r("2025-01-01", "2025-12-31"), "", 261},
		{r("2025-01-01", "2025-12-31"), "monthly", 12},
		{r("2025-01-01", "2025-12-31"), "quarterly", 4},
		{r("2025-01-01", "2025-12-31"), "yearly", 1},
		{r("2025-01-01", "2025-01-31"), "weekly", 5},
	} {
		if got := coverage.Dates(c.r, c.per); got != c.want {
			t.Errorf("Dates(%v, %q) = %d, want %d", c.r, c.per, got, c.want)
		}
	}
	if p := vendor.Points(vendor.ProgramGetHistory, 3, 2, "2025-01-01", "2025-01-31", ""); p != 3*2*23 {
		t.Errorf("Points = %d", p)
	}
}

// TestStore records coverage in a real bucket: what is added is read back merged, adding it
// again writes nothing, concurrent writers to one key lose nothing, and another dataset's
// coverage is its own.
func TestStore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	env := natstest.NewEnv(t)
	st := coverage.Store{KV: env.Streams.Coverage}
	secs := []string{"IBM US Equity", "/ISIN/US0378331005", "VOD LN Equity"}
	fields := []string{"PX_LAST", "PX_VOLUME"}
	if err := st.Add(ctx, "gethistory", secs, fields, r("2025-01-01", "2025-06-30")); err != nil {
		t.Fatal(err)
	}
	if err := st.Add(ctx, "gethistory", secs[:2], fields[:1], r("2025-07-01", "2025-09-30")); err != nil {
		t.Fatal(err)
	}
	got, err := st.Read(ctx, "gethistory", append(secs, "NEW US Equity"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]coverage.Covered{
		secs[0]: {"PX_LAST": {r("2025-01-01", "2025-09-30")}, "PX_VOLUME": {r("2025-01-01", "2025-06-30")}},
		secs[1]: {"PX_LAST": {r("2025-01-01", "2025-09-30")}, "PX_VOLUME": {r("2025-01-01", "2025-06-30")}},
		secs[2]: {"PX_LAST": {r("2025-01-01", "2025-06-30")}, "PX_VOLUME": {r("2025-01-01", "2025-06-30")}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("read\n got %v\nwant %v", got, want)
	}
	if other, err := st.Read(ctx, "gethistory[currency=EUR]", secs); err != nil || len(other) != 0 {
		t.Errorf("another dataset: %v %v", other, err)
	}

	// Adding what is there again (a redelivered commit) writes nothing.
	key := coverage.Key("gethistory", secs[0])
	before, err := env.Streams.Coverage.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Add(ctx, "gethistory", secs[:1], fields[:1], r("2025-02-01", "2025-03-01")); err != nil {
		t.Fatal(err)
	}
	after, err := env.Streams.Coverage.Get(ctx, key)
	if err != nil || after.Revision() != before.Revision() {
		t.Errorf("revision %d after adding covered dates, was %d (%v)", after.Revision(), before.Revision(), err)
	}

	// Concurrent writers, each adding its own month to one key: all twelve are kept.
	var wg sync.WaitGroup
	errs := make(chan error, 12)
	for m := 1; m <= 12; m++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			from := obs.MakeDate(2030, time.Month(m), 1)
			to := obs.MakeDate(2030, time.Month(m), 10)
			errs <- coverage.Store{KV: env.Streams.Coverage}.Add(ctx, "race", []string{"X"}, []string{fmt.Sprint("F", m%2)}, coverage.Range{From: from, To: to})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	race, err := st.Read(ctx, "race", []string{"X"})
	if err != nil {
		t.Fatal(err)
	}
	if n0, n1 := len(race["X"]["F0"]), len(race["X"]["F1"]); n0 != 6 || n1 != 6 {
		t.Errorf("concurrent adds kept %d and %d ranges, want 6 and 6: %v", n0, n1, race["X"])
	}
}

func TestKeyIsValid(t *testing.T) {
	k := coverage.Key("gethistory[currency=EUR,pricing_source=BGN!]", "IBM US Equity")
	for _, c := range k {
		if !(c >= 'a' && c <= 'f' || c >= '0' && c <= '9' || c == '.') {
			t.Fatalf("key %q has %q", k, c)
		}
	}
	if k == coverage.Key("gethistory", "IBM US Equity") {
		t.Error("two datasets share a key")
	}
}
