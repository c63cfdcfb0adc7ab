package chstore_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/chserver"
	"github.com/marketpipe/marketpipe/pkg/chstore"
	"github.com/marketpipe/marketpipe/pkg/chtest"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/obs"
	"github.com/marketpipe/marketpipe/pkg/rowcodec"
)

func TestMain(m *testing.M) { chtest.Main(m) }

// open returns a store on a fresh database of srv, closed at the end of the test; driver
// sets Config.DriverInserts.
func open(t testing.TB, srv *chserver.Server, db string, driver ...bool) *chstore.Store {
	t.Helper()
	s, err := chstore.Open(context.Background(), chstore.Config{Addr: srv.Addr(), Database: db,
		DriverInserts: len(driver) > 0 && driver[0]})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// migrated returns a store on a fresh, migrated database of the shared server; driver sets
// Config.DriverInserts.
func migrated(t testing.TB, driver ...bool) *chstore.Store {
	t.Helper()
	srv := chtest.Start(t)
	s := open(t, srv, chtest.NewDatabase(t, srv), driver...)
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

// writer is a way of writing observations: through clickhouse-go's batches
// (Config.DriverInserts) or pkg/chinsert's blocks (the default), from columns made of rows
// (obs.ColumnsOf) or decoded from row batches (as the loader writes).
type writer struct{ driver, columns bool }

// eachWriter runs test once with each writer of observation INSERTs, from columns made of
// rows and from decoded ones.
func eachWriter(t *testing.T, test func(t *testing.T, w writer)) {
	for _, w := range []writer{{false, false}, {false, true}, {true, false}, {true, true}} {
		name := map[bool]string{false: "blocks", true: "driver"}[w.driver] + map[bool]string{false: "", true: "-columns"}[w.columns]
		t.Run(name, func(t *testing.T) { test(t, w) })
	}
}

// batches returns bs as the writer takes them: with their observations as columns, as the
// loader decodes them (rowcodec.DecodeColumns), if it writes columns.
func (w writer) batches(t *testing.T, bs []chstore.Batch) []chstore.Batch {
	t.Helper()
	if !w.columns {
		return bs
	}
	out := make([]chstore.Batch, len(bs))
	for i, b := range bs {
		var cb rowcodec.ColumnBatch
		decodeColumns(t, b, &cb)
		b.Cols = &cb.Cols
		out[i] = b
	}
	return out
}

// rows returns b's observations as rows.
func rows(b chstore.Batch) []obs.Observation {
	if b.Cols == nil {
		return nil
	}
	return b.Cols.Rows()
}

// decodeColumns encodes b as a row batch and decodes its columns into cb.
func decodeColumns(t testing.TB, b chstore.Batch, cb *rowcodec.ColumnBatch) {
	t.Helper()
	data, err := rowcodec.Encode(nil, &rowcodec.Batch{JobID: b.JobID, Program: b.Program, Version: b.Version, Obs: rows(b), Rejects: b.Rejects})
	if err != nil {
		t.Fatal(err)
	}
	if err := rowcodec.DecodeColumns(data, cb); err != nil {
		t.Fatal(err)
	}
}

func TestMigrate(t *testing.T) {
	tests := []struct {
		name    string
		runners int // concurrent processes (stores)
		times   int // sequential runs by each
		dropDB  bool
	}{
		{"once", 1, 1, false},
		{"twice", 1, 2, false},
		{"concurrently on an existing database", 6, 2, false},
		{"concurrently creating the database", 6, 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := chtest.Start(t)
			db := chtest.NewDatabase(t, srv)
			ctx := context.Background()
			if tt.dropDB {
				s := open(t, srv, db)
				if err := dropDatabase(ctx, srv, db); err != nil {
					t.Fatal(err)
				}
				_ = s
			}
			var wg sync.WaitGroup
			errs := make(chan error, tt.runners*tt.times)
			for range tt.runners {
				s := open(t, srv, db)
				wg.Go(func() {
					for range tt.times {
						errs <- s.Migrate(ctx)
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			s := open(t, srv, db)
			v, err := s.AppliedSchemaVersion(ctx)
			if err != nil || v != chstore.SchemaVersion() {
				t.Fatalf("applied schema version = %d, %v; want %d", v, err, chstore.SchemaVersion())
			}
			conn, err := chtest.Conn(srv)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			var tables []string
			rows, err := conn.Query(ctx, "SELECT name FROM system.tables WHERE database = ? ORDER BY name", db)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var name string
				if err := rows.Scan(&name); err != nil {
					t.Fatal(err)
				}
				tables = append(tables, name)
			}
			rows.Close()
			if got, want := strings.Join(tables, ","), "commits,jobs,observations,observations_current,rejects,schema_migrations"; got != want {
				t.Fatalf("tables = %s, want %s", got, want)
			}
		})
	}
}

func dropDatabase(ctx context.Context, srv *chserver.Server, db string) error {
	conn, err := chtest.Conn(srv)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Exec(ctx, "DROP DATABASE `"+db+"`")
}

func TestOpenInvalidDatabase(t *testing.T) {
	for _, db := range []string{"a-b", "x`; DROP DATABASE y", "1abc", "a b"} {
		t.Run(db, func(t *testing.T) {
			_, err := chstore.Open(context.Background(), chstore.Config{Addr: "127.0.0.1:1", Database: db})
			if !errors.Is(err, chstore.ErrInvalidDatabase) {
				t.Fatalf("Open(%q) = %v, want ErrInvalidDatabase", db, err)
			}
		})
	}
}

var (
	d0   = obs.MakeDate(1970, 1, 1)
	d1   = obs.MakeDate(2026, 1, 2)
	d2   = obs.MakeDate(2026, 2, 27)
	dMax = obs.MakeDate(2149, 6, 6)
)

func TestInsertRoundTrip(t *testing.T) { eachWriter(t, testInsertRoundTrip) }

func testInsertRoundTrip(t *testing.T, w writer) {
	tests := []struct {
		name string
		o    obs.Observation
	}{
		{"number", obs.Observation{Security: "IBM US Equity", Field: "PX_LAST", Date: d1, Kind: obs.Number, Num: 123.45}},
		{"negative zero-ish number", obs.Observation{Security: "IBM US Equity", Field: "CHG", Date: d1, Kind: obs.Number, Num: -1e-300}},
		{"zero", obs.Observation{Security: "IBM US Equity", Field: "ZERO", Date: d1, Kind: obs.Number, Num: 0}},
		{"NaN", obs.Observation{Security: "IBM US Equity", Field: "NAN", Date: d1, Kind: obs.Number, Num: math.NaN()}},
		{"+Inf", obs.Observation{Security: "IBM US Equity", Field: "INF", Date: d1, Kind: obs.Number, Num: math.Inf(1)}},
		{"max float", obs.Observation{Security: "IBM US Equity", Field: "MAX", Date: d1, Kind: obs.Number, Num: math.MaxFloat64}},
		{"string", obs.Observation{Security: "IBM US Equity", Field: "NAME", Date: d1, Kind: obs.String, Str: "INTL BUSINESS MACHINES CORP"}},
		{"empty string", obs.Observation{Security: "IBM US Equity", Field: "EMPTY", Date: d1, Kind: obs.String, Str: ""}},
		{"unicode", obs.Observation{Security: "7203 JP Equity", Field: "NAME_KANJI", Date: d1, Kind: obs.String, Str: "トヨタ自動車 — Ünïcödé ✓ 𝄞"}},
		{"control characters", obs.Observation{Security: "X", Field: "TAB", Date: d1, Kind: obs.String, Str: "a\tb\nc\x00d'\"\\"}},
		{"bulk", obs.Observation{Security: "IBM US Equity", Field: "DVD_HIST", Date: d1, Kind: obs.Bulk, Str: `[["2025-11-10",1.68],["2025-08-08",1.68]]`}},
		{"null with marker", obs.Observation{Security: "IBM US Equity", Field: "PX_BID", Date: d1, Kind: obs.Null, Flag: "N.A."}},
		{"null blank", obs.Observation{Security: "IBM US Equity", Field: "PX_ASK", Date: d1, Kind: obs.Null}},
		{"return code record", obs.Observation{Security: "BAD US Equity", Field: "", Date: d1, Kind: obs.Null, Flag: "RC=10"}},
		{"first date", obs.Observation{Security: "OLD", Field: "PX_LAST", Date: d0, Kind: obs.Number, Num: 1}},
		{"last date", obs.Observation{Security: "NEW", Field: "PX_LAST", Date: dMax, Kind: obs.Number, Num: 2}},
		{"other month", obs.Observation{Security: "IBM US Equity", Field: "PX_LAST", Date: d2, Kind: obs.Number, Num: 130}},
	}
	s := migrated(t, w.driver)
	ctx := context.Background()
	var all []obs.Observation
	for _, tt := range tests {
		all = append(all, tt.o)
	}
	// Two batches of two jobs in one call.
	half := len(all) / 2
	n, err := s.Insert(ctx, w.batches(t, []chstore.Batch{
		{JobID: "job-a", Program: events.GetHistory, Version: 7, Cols: obs.ColumnsOf(all[:half])},
		{JobID: "job-b", Program: events.GetData, Version: 8, Cols: obs.ColumnsOf(all[half:])},
	}))
	if err != nil || n != len(all) {
		t.Fatalf("Insert = %d, %v; want %d", n, err, len(all))
	}
	type stored struct {
		o       obs.Observation
		program string
		jobID   string
		version uint64
	}
	got := map[obs.Key]stored{}
	var order []obs.Key
	err = s.Observations(ctx, "", func(o obs.Observation, program, jobID string, version uint64) error {
		got[o.Key()] = stored{o, program, jobID, version}
		order = append(order, o.Key())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(all) {
		t.Errorf("read %d observations, want %d", len(got), len(all))
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, ok := got[tt.o.Key()]
			if !ok {
				t.Fatalf("%v not read back", tt.o.Key())
			}
			if !g.o.Equal(&tt.o) {
				t.Errorf("read %+v\nwant %+v", g.o, tt.o)
			}
			wantJob, wantProgram, wantVersion := "job-a", events.GetHistory, uint64(7)
			if i >= half {
				wantJob, wantProgram, wantVersion = "job-b", events.GetData, 8
			}
			if g.jobID != wantJob || g.program != wantProgram || g.version != wantVersion {
				t.Errorf("read job %s program %s version %d; want %s %s %d", g.jobID, g.program, g.version, wantJob, wantProgram, wantVersion)
			}
		})
	}
	for i := 1; i < len(order); i++ {
		a, b := order[i-1], order[i]
		if a.Security > b.Security || a.Security == b.Security && (a.Field > b.Field || a.Field == b.Field && a.Date >= b.Date) {
			t.Errorf("not in key order: %v before %v", a, b)
		}
	}
	// A filter on the job.
	var nb int
	if err := s.Observations(ctx, "job-b", func(o obs.Observation, _, jobID string, _ uint64) error {
		if jobID != "job-b" {
			t.Errorf("job filter let %s through", jobID)
		}
		nb++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if nb != len(all)-half {
		t.Errorf("job-b has %d observations, want %d", nb, len(all)-half)
	}
	// fn's error stops the scan and comes back as is.
	stop := errors.New("stop")
	if err := s.Observations(ctx, "", func(obs.Observation, string, string, uint64) error { return stop }); err != stop {
		t.Errorf("Observations returned %v, want fn's error", err)
	}
}

func TestInsertDateOutOfRange(t *testing.T) {
	s := migrated(t)
	ctx := context.Background()
	for _, d := range []obs.Date{obs.MakeDate(1969, 12, 31), obs.MakeDate(2149, 6, 7)} {
		_, err := s.Insert(ctx, []chstore.Batch{{JobID: "j", Version: 1, Cols: obs.ColumnsOf([]obs.Observation{
			{Security: "A", Field: "F", Date: d1, Kind: obs.Number, Num: 1},
			{Security: "A", Field: "F", Date: d, Kind: obs.Number, Num: 1},
		})}})
		if !errors.Is(err, chstore.ErrDateOutOfRange) {
			t.Errorf("Insert of %s = %v, want ErrDateOutOfRange", d, err)
		}
	}
	if n, err := s.CountObservations(ctx, false); err != nil || n != 0 {
		t.Errorf("count = %d, %v; want nothing written", n, err)
	}
}

func TestInsertEmpty(t *testing.T) {
	s := migrated(t)
	n, err := s.Insert(context.Background(), []chstore.Batch{{JobID: "j"}})
	if err != nil || n != 0 {
		t.Fatalf("Insert of nothing = %d, %v", n, err)
	}
	if n, err := s.Insert(context.Background(), nil); err != nil || n != 0 {
		t.Fatalf("Insert(nil) = %d, %v", n, err)
	}
}

// history makes n observations of one security and field on consecutive days from d1, with
// value base+i.
func history(sec string, n int, base float64) []obs.Observation {
	out := make([]obs.Observation, n)
	for i := range out {
		out[i] = obs.Observation{Security: sec, Field: "PX_LAST", Date: d1 + obs.Date(i), Kind: obs.Number, Num: base + float64(i)}
	}
	return out
}

// current reads what readers see (observations_current's query), as of asOf if not zero, as
// "security field date program snapshot = value job" lines.
func current(t *testing.T, s *chstore.Store, asOf time.Time) []string {
	t.Helper()
	var out []string
	err := s.Query(context.Background(), chstore.Filter{AsOf: asOf}, func(r *chstore.Row) error {
		out = append(out, fmt.Sprintf("%s %s %s %s %d = %v %s", r.Security, r.Field, r.Date, r.Program,
			r.SnapshotAt.Unix(), r.Value(), r.JobID))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// runRows is what current gives for history(sec, n, base) loaded by job.
func runRows(sec string, n int, base float64, job string) []string {
	var out []string
	for _, o := range history(sec, n, base) {
		out = append(out, fmt.Sprintf("%s %s %s gethistory %d = %v %s", o.Security, o.Field, o.Date, time.Time{}.Unix(), o.Value(), job))
	}
	return out
}

// TestCurrentSeesCommittedRuns: readers see, per key, the latest committed run's value, without
// FINAL and before any merge; a run's rows are invisible until it is committed, whatever was
// inserted twice, and an earlier run's rows stay for "as of" queries.
func TestCurrentSeesCommittedRuns(t *testing.T) {
	const n = 40 // spans two months
	ctx := context.Background()
	s := migrated(t)
	insert := func(job string, version uint64, base float64) {
		t.Helper()
		b := chstore.Batch{JobID: job, Program: "gethistory", Version: version, Cols: obs.ColumnsOf(history("S", n, base))}
		if _, err := s.Insert(ctx, []chstore.Batch{b}); err != nil {
			t.Fatal(err)
		}
	}
	commit := func(job string, version uint64) time.Time {
		t.Helper()
		at := time.Now()
		if err := s.Commit(ctx, job, version, at); err != nil {
			t.Fatal(err)
		}
		return at
	}
	check := func(what string, asOf time.Time, want []string) {
		t.Helper()
		if got := current(t, s, asOf); !slices.Equal(got, want) {
			t.Errorf("%s:\n got  %q\n want %q", what, got, want)
		}
	}

	// Run a, inserted twice (a redelivery after a crash before the ledger), not yet committed.
	insert("a", 1, 100)
	insert("a", 1, 100)
	check("uncommitted run", time.Time{}, nil)
	tA := commit("a", 1)
	check("run a committed, its batch inserted twice", time.Time{}, runRows("S", n, 100, "a"))

	// Run b (a higher version) fails halfway: some rows inserted, never committed.
	b := chstore.Batch{JobID: "b", Program: "gethistory", Version: 2, Cols: obs.ColumnsOf(history("S", n/2, 200))}
	if _, err := s.Insert(ctx, []chstore.Batch{b}); err != nil {
		t.Fatal(err)
	}
	check("a failed run's rows", time.Time{}, runRows("S", n, 100, "a"))

	// Run c (higher still) is committed: it supersedes a; a stays as of before c.
	insert("c", 3, 300)
	time.Sleep(2 * time.Millisecond)
	tC := commit("c", 3)
	check("run c committed", time.Time{}, runRows("S", n, 300, "c"))
	check("as of a's commit", tA, runRows("S", n, 100, "a"))
	check("as of just before c's commit", tC.Add(-time.Nanosecond), runRows("S", n, 100, "a"))
	check("as of before anything", tA.Add(-time.Hour), nil)

	// A late redelivery of a's rows and a commit twice change nothing.
	insert("a", 1, 100)
	commit("a", 1)
	check("a redelivered late", time.Time{}, runRows("S", n, 300, "c"))
	// A run's summary counts its rows once, however often they were inserted.
	if fs, err := s.FieldSummary(ctx, "a", 1); err != nil || len(fs) != 1 || fs[0].Observations != n {
		t.Errorf("FieldSummary of run a = %+v, %v; want %d PX_LAST observations", fs, err, n)
	}

	// Merges keep every run's rows: a stays readable as of its time after OPTIMIZE ... FINAL.
	conn, err := chtest.Conn(chtest.Start(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.Exec(ctx, "OPTIMIZE TABLE `"+s.Database()+"`.observations FINAL"); err != nil {
		t.Fatal(err)
	}
	check("after merging, now", time.Time{}, runRows("S", n, 300, "c"))
	check("after merging, as of a", tA, runRows("S", n, 100, "a"))
	if raw, err := s.CountObservations(ctx, false); err != nil || raw != n+n/2+n {
		t.Errorf("rows kept after merging = %d, %v; want %d (a, b's half, c)", raw, err, n+n/2+n)
	}
}

// TestSnapshotsKeepTheirTime: a snapshot and a history row of the same key both stay, and so do
// two snapshots of one day.
func TestSnapshotsKeepTheirTime(t *testing.T) {
	ctx := context.Background()
	s := migrated(t)
	d := obs.MakeDate(2026, 1, 5)
	morning, evening := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC), time.Date(2026, 1, 5, 21, 0, 0, 0, time.UTC)
	px := func(v float64) []obs.Observation {
		return []obs.Observation{{Security: "IBM US Equity", Field: "PX_LAST", Date: d, Kind: obs.Number, Num: v}}
	}
	runs := []chstore.Batch{
		{JobID: "hist", Program: "gethistory", Version: 1, Cols: obs.ColumnsOf(px(1))},
		{JobID: "snap-am", Program: "getdata", Version: 2, SnapshotAt: morning.Unix(), Cols: obs.ColumnsOf(px(2))},
		{JobID: "snap-pm", Program: "getdata", Version: 3, SnapshotAt: evening.Unix(), Cols: obs.ColumnsOf(px(3))},
	}
	for _, b := range runs {
		if _, err := s.Insert(ctx, []chstore.Batch{b}); err != nil {
			t.Fatal(err)
		}
		if err := s.Commit(ctx, b.JobID, b.Version, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{
		fmt.Sprintf("IBM US Equity PX_LAST 2026-01-05 getdata %d = 2 snap-am", morning.Unix()),
		fmt.Sprintf("IBM US Equity PX_LAST 2026-01-05 getdata %d = 3 snap-pm", evening.Unix()),
		fmt.Sprintf("IBM US Equity PX_LAST 2026-01-05 gethistory %d = 1 hist", time.Time{}.Unix()),
	}
	if got := current(t, s, time.Time{}); !slices.Equal(got, want) {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

// TestQueryFilter: the filter selects securities, fields and dates inside the query.
func TestQueryFilter(t *testing.T) {
	ctx := context.Background()
	s := migrated(t)
	b := chstore.Batch{JobID: "j", Program: "gethistory", Version: 1,
		Cols: obs.ColumnsOf(append(append(history("A", 10, 1), history("B", 10, 2)...), obs.Observation{Security: "A", Field: "PX_VOLUME", Date: d1, Kind: obs.Number, Num: 5}))}
	if _, err := s.Insert(ctx, []chstore.Batch{b}); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, "j", 1, time.Now()); err != nil {
		t.Fatal(err)
	}
	var got []string
	f := chstore.Filter{Securities: []string{"A"}, Fields: []string{"PX_LAST"}, From: (d1 + 2).Time(), To: (d1 + 4).Time()}
	err := s.Query(ctx, f, func(r *chstore.Row) error {
		got = append(got, fmt.Sprintf("%s %s %s %v", r.Security, r.Field, r.Date, r.Num))
		return nil
	})
	want := []string{"A PX_LAST " + (d1 + 2).String() + " 3", "A PX_LAST " + (d1 + 3).String() + " 4", "A PX_LAST " + (d1 + 4).String() + " 5"}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("got %q, %v; want %q", got, err, want)
	}
}

func TestRecordJob(t *testing.T) {
	t0 := time.Date(2026, 3, 4, 5, 6, 7, 890_000_000, time.UTC)
	base := events.Job{
		ID:         "eod-prices-20260304",
		Generation: 1,
		Spec: events.Spec{Name: "eod-prices", Program: events.GetHistory,
			Securities: []string{"IBM US Equity", "ＡＡＰＬ"}, Fields: []string{"PX_LAST"}, Start: "2026-01-02", End: "2026-01-31"},
		Version:  1772600767000000000,
		Deadline: t0.Add(6 * time.Hour),
		TraceID:  "4bf92f3577b34da6a3ce929d0e0e4736",
	}
	submitted := base.Advance(events.Submitted, t0)
	requested := submitted.Advance(events.Requested, t0.Add(time.Second))
	requested.VendorRequestID, requested.VendorAccount = "mp-123", "acct"
	loaded := requested.Advance(events.Ready, t0.Add(time.Minute)).Advance(events.Collected, t0.Add(2*time.Minute)).
		Advance(events.Transformed, t0.Add(3*time.Minute)).Advance(events.Loaded, t0.Add(4*time.Minute))
	loaded.ResponseKey, loaded.FileKey, loaded.FileSHA256, loaded.FileSize = "resp.bbg", "raw/x", strings.Repeat("ab", 32), 1<<40
	loaded.Polls, loaded.Batches, loaded.RowsParsed, loaded.RowsLoaded, loaded.RowsRejected = 3, 2, 1000, 998, 2
	failed := requested.Fail("vendor said no: 'quoted' \"error\"", t0.Add(time.Hour))

	type write struct {
		j   events.Job
		seq uint64
	}
	tests := []struct {
		name   string
		writes []write
		want   events.Job
	}{
		{"one write, zero times stay zero", []write{{submitted, 1}}, submitted},
		{"in order", []write{{submitted, 1}, {requested, 2}, {loaded, 7}}, loaded},
		{"out of order: highest seq wins", []write{{loaded, 7}, {submitted, 1}, {requested, 2}}, loaded},
		{"duplicate writes", []write{{requested, 2}, {requested, 2}, {submitted, 1}}, requested},
		{"failed", []write{{submitted, 1}, {failed, 3}, {requested, 2}}, failed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := migrated(t)
			ctx := context.Background()
			for _, w := range tt.writes {
				if err := s.RecordJob(ctx, w.j, w.seq); err != nil {
					t.Fatal(err)
				}
			}
			got, ok, err := s.Job(ctx, base.ID)
			if err != nil || !ok {
				t.Fatalf("Job = %v, %v", ok, err)
			}
			want := truncateTimes(tt.want)
			if g, w := fmt.Sprintf("%+v", got), fmt.Sprintf("%+v", want); g != w {
				t.Errorf("Job =\n%s\nwant\n%s", g, w)
			}
			if !tt.want.ReadyAt.IsZero() == got.ReadyAt.IsZero() {
				t.Errorf("ReadyAt = %v", got.ReadyAt)
			}
		})
	}

	t.Run("unknown job", func(t *testing.T) {
		s := migrated(t)
		if _, ok, err := s.Job(context.Background(), "nope"); ok || err != nil {
			t.Fatalf("Job(nope) = %v, %v", ok, err)
		}
	})

	t.Run("recent jobs", func(t *testing.T) {
		s := migrated(t)
		ctx := context.Background()
		for i := range 5 {
			j := base
			j.ID = fmt.Sprintf("job-%d", i)
			j = j.Advance(events.Submitted, t0.Add(time.Duration(i)*time.Hour))
			if err := s.RecordJob(ctx, j, 1); err != nil {
				t.Fatal(err)
			}
			if err := s.RecordJob(ctx, j.Advance(events.Requested, t0.Add(time.Duration(i)*time.Hour+time.Second)), 2); err != nil {
				t.Fatal(err)
			}
		}
		jobs, err := s.RecentJobs(ctx, 3)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, j := range jobs {
			ids = append(ids, j.ID+":"+j.State)
		}
		if got, want := strings.Join(ids, ","), "job-4:requested,job-3:requested,job-2:requested"; got != want {
			t.Errorf("RecentJobs = %s, want %s", got, want)
		}
	})
}

// truncateTimes gives what the jobs table keeps of a job: times to the second, in UTC.
func truncateTimes(j events.Job) events.Job {
	for _, p := range []*time.Time{&j.SubmittedAt, &j.RequestedAt, &j.ReadyAt, &j.CollectedAt, &j.TransformedAt, &j.LoadedAt, &j.FailedAt, &j.Deadline} {
		if !p.IsZero() {
			*p = p.UTC().Truncate(time.Second)
		}
	}
	return j
}

func TestRejects(t *testing.T) {
	s := migrated(t)
	ctx := context.Background()
	rejects := []obs.Reject{
		{Line: 12, Raw: "IBM US Equity|0|3|garbage", Reason: "want 4 fields"},
		{Line: 3, Raw: "", Reason: "empty line in data section"},
		{Line: 40, Raw: "ünïcödé|\t|", Reason: "bad date \"x\""},
	}
	batch := chstore.Batch{JobID: "job-r", Version: 1, Rejects: rejects,
		Cols: obs.ColumnsOf([]obs.Observation{{Security: "A", Field: "F", Date: d1, Kind: obs.Null}})}
	for range 2 { // a redelivery
		if _, err := s.Insert(ctx, []chstore.Batch{batch, {JobID: "other", Rejects: rejects[:1]}}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Rejects(ctx, "job-r")
	if err != nil {
		t.Fatal(err)
	}
	want := []obs.Reject{rejects[1], rejects[0], rejects[2]}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Rejects =\n%+v\nwant\n%+v", got, want)
	}
	if got, err := s.Rejects(ctx, "none"); err != nil || len(got) != 0 {
		t.Errorf("Rejects(none) = %v, %v", got, err)
	}
}

func TestServerDown(t *testing.T) {
	// An address where nothing listens.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := l.Addr().String()
	l.Close()

	t.Run("open fails fast", func(t *testing.T) {
		begin := time.Now()
		_, err := chstore.Open(context.Background(), chstore.Config{Addr: deadAddr, Password: "hunter2-secret", DialTimeout: time.Second})
		if err == nil {
			t.Fatal("Open succeeded with no server")
		}
		if d := time.Since(begin); d > 5*time.Second {
			t.Errorf("Open took %v", d)
		}
		if !strings.Contains(err.Error(), deadAddr) {
			t.Errorf("error lacks the address: %v", err)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error shows the password: %v", err)
		}
	})

	t.Run("open against a silent server is bounded", func(t *testing.T) {
		// Accepts connections, never answers the handshake.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				defer c.Close()
			}
		}()
		begin := time.Now()
		_, err = chstore.Open(context.Background(), chstore.Config{Addr: l.Addr().String(), DialTimeout: time.Second})
		if err == nil {
			t.Fatal("Open succeeded against a silent server")
		}
		if d := time.Since(begin); d > 5*time.Second {
			t.Errorf("Open took %v: %v", d, err)
		}
	})

	t.Run("wrong password", func(t *testing.T) {
		srv := chtest.Start(t)
		_, err := chstore.Open(context.Background(), chstore.Config{Addr: srv.Addr(), Password: "hunter2-secret"})
		if err == nil {
			t.Fatal("Open succeeded with a wrong password")
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error shows the password: %v", err)
		}
		t.Log(err)
	})

	t.Run("server stops under an open store, and comes back", func(t *testing.T) {
		srv := chtest.StartPrivate(t)
		s := open(t, srv, "marketpipe")
		ctx := context.Background()
		if err := s.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		batch := []chstore.Batch{{JobID: "j", Version: 1, Cols: obs.ColumnsOf(history("S", 10, 1))}}
		if _, err := s.Insert(ctx, batch); err != nil {
			t.Fatal(err)
		}
		if err := srv.Kill(); err != nil {
			t.Fatal(err)
		}
		begin := time.Now()
		_, err := s.Insert(ctx, batch)
		if err == nil {
			t.Fatal("Insert succeeded with the server down")
		}
		if !strings.Contains(err.Error(), "rows 0-9: start: ") || !strings.Contains(err.Error(), srv.Addr()) {
			t.Errorf("error lacks context: %v", err)
		}
		if err := s.Ping(ctx); err == nil {
			t.Error("Ping succeeded with the server down")
		}
		if d := time.Since(begin); d > 10*time.Second {
			t.Errorf("failing took %v", d)
		}
		if err := srv.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		var lastErr error
		for range 3 { // the pool may hold dead connections
			if _, lastErr = s.Insert(ctx, batch); lastErr == nil {
				break
			}
		}
		if lastErr != nil {
			t.Fatalf("Insert after restart: %v", lastErr)
		}
		if n, err := s.CountObservations(ctx, true); err != nil || n != 10 {
			t.Fatalf("final count = %d, %v", n, err)
		}
	})
}

func TestServerVersion(t *testing.T) {
	s := migrated(t)
	v := s.ServerVersion()
	if v == "" || v == "0.0.0" {
		t.Fatalf("ServerVersion = %q", v)
	}
	t.Logf("server version %s", v)
}

func TestServerTimezone(t *testing.T) {
	// Production servers run in any time zone: dates and times must not shift with it.
	for _, tz := range []string{"America/New_York", "Asia/Tokyo"} {
		t.Run(tz, func(t *testing.T) {
			srv, err := chserver.Start(context.Background(), chserver.Options{Dir: t.TempDir(), Binary: chtest.Binary(t), Timezone: tz})
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Stop()
			s := open(t, srv, "marketpipe")
			ctx := context.Background()
			if err := s.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			want := []obs.Observation{
				{Security: "A", Field: "F", Date: d0, Kind: obs.Number, Num: 1},
				{Security: "A", Field: "F", Date: d1, Kind: obs.Number, Num: 2},
				{Security: "A", Field: "F", Date: dMax, Kind: obs.Number, Num: 3},
			}
			if _, err := s.Insert(ctx, []chstore.Batch{{JobID: "j", Version: 1, Cols: obs.ColumnsOf(want)}}); err != nil {
				t.Fatal(err)
			}
			var got []obs.Observation
			if err := s.Observations(ctx, "", func(o obs.Observation, _, _ string, _ uint64) error {
				got = append(got, o)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("read\n%v\nwant\n%v", got, want)
			}
			at := time.Date(2026, 3, 4, 23, 30, 0, 0, time.UTC) // another day in Tokyo
			j := events.Job{ID: "j1", State: events.Submitted, SubmittedAt: at}
			if err := s.RecordJob(ctx, j, 1); err != nil {
				t.Fatal(err)
			}
			g, _, err := s.Job(ctx, "j1")
			if err != nil || !g.SubmittedAt.Equal(at) || g.SubmittedAt.Location() != time.UTC || !g.ReadyAt.IsZero() {
				t.Errorf("SubmittedAt = %v, ReadyAt = %v, %v; want %v and zero", g.SubmittedAt, g.ReadyAt, err, at)
			}
		})
	}
}

func TestInsertManyBlocks(t *testing.T) { eachWriter(t, testInsertManyBlocks) }

func testInsertManyBlocks(t *testing.T, w writer) {
	// More rows than one block: the INSERT is sent in several.
	s := migrated(t, w.driver)
	ctx := context.Background()
	var batches []chstore.Batch
	var want [][]obs.Observation
	const secs, days = 250, 1000 // 250,000 rows
	for i := range secs {
		want = append(want, history(fmt.Sprintf("S%03d", i), days, float64(i)))
		batches = append(batches, chstore.Batch{JobID: "big", Version: 1, Cols: obs.ColumnsOf(want[i])})
	}
	n, err := s.Insert(ctx, w.batches(t, batches))
	if err != nil || n != secs*days {
		t.Fatalf("Insert = %d, %v", n, err)
	}
	var count int
	err = s.Observations(ctx, "big", func(o obs.Observation, _, _ string, _ uint64) error {
		if w := want[count/days][count%days]; !o.Equal(&w) {
			return fmt.Errorf("row %d = %+v, want %+v", count, o, w)
		}
		count++
		return nil
	})
	if err != nil || count != secs*days {
		t.Fatalf("read %d rows, %v", count, err)
	}
}

// reusingSource yields copies of batches through one Batch whose slices it overwrites, as the
// loader's decoding source does; with columns, it decodes them into one reused ColumnBatch, as
// the loader does.
type reusingSource struct {
	t       testing.TB
	batches []chstore.Batch
	columns bool
	cur     chstore.Batch
	own     obs.Columns // cur's columns, without columns
	cb      rowcodec.ColumnBatch
	i       int
}

func (r *reusingSource) Next() *chstore.Batch {
	if r.i == len(r.batches) {
		return nil
	}
	b := r.batches[r.i]
	r.i++
	r.cur.JobID, r.cur.Program, r.cur.Version = b.JobID, b.Program, b.Version
	if r.columns {
		decodeColumns(r.t, b, &r.cb)
		r.cur.Cols, r.cur.Rejects = &r.cb.Cols, r.cb.Rejects
		return &r.cur
	}
	r.cur.Cols = nil
	if c := b.Cols; c != nil {
		o := &r.own
		o.Securities, o.Fields, o.Flags = append(o.Securities[:0], c.Securities...), append(o.Fields[:0], c.Fields...), append(o.Flags[:0], c.Flags...)
		o.Security, o.Field, o.Flag = append(o.Security[:0], c.Security...), append(o.Field[:0], c.Field...), append(o.Flag[:0], c.Flag...)
		o.Date, o.Kind = append(o.Date[:0], c.Date...), append(o.Kind[:0], c.Kind...)
		o.Num, o.Str = append(o.Num[:0], c.Num...), append(o.Str[:0], c.Str...)
		r.cur.Cols = o
	}
	r.cur.Rejects = append(r.cur.Rejects[:0], b.Rejects...)
	return &r.cur
}

func manyHistories(prefix string, secs, days int) []obs.Observation {
	var out []obs.Observation
	for i := range secs {
		out = append(out, history(fmt.Sprintf("%s%03d", prefix, i), days, float64(i))...)
	}
	return out
}

func TestInsertFromReusedBatch(t *testing.T) { eachWriter(t, testInsertFromReusedBatch) }

func testInsertFromReusedBatch(t *testing.T, w writer) {
	s := migrated(t, w.driver)
	ctx := context.Background()
	// Batches that straddle blocks, one of rejects only, one empty.
	batches := []chstore.Batch{
		{JobID: "src", Program: "gethistory", Version: 1, Cols: obs.ColumnsOf(manyHistories("A", 280, 250))},
		{JobID: "src", Program: "gethistory", Version: 1, Rejects: []obs.Reject{{Line: 7, Raw: "x", Reason: "bad"}}},
		{JobID: "src", Program: "gethistory", Version: 1, Cols: obs.ColumnsOf(manyHistories("B", 240, 250)),
			Rejects: []obs.Reject{{Line: 9, Raw: "y", Reason: "worse"}}},
		{JobID: "src", Program: "gethistory", Version: 1},
		{JobID: "src", Program: "gethistory", Version: 1, Cols: obs.ColumnsOf(history("C", 10, 3))},
	}
	n, err := s.InsertFrom(ctx, &reusingSource{t: t, batches: batches, columns: w.columns})
	if err != nil || n != 130_010 {
		t.Fatalf("InsertFrom = %d, %v; want 130010", n, err)
	}
	var want []obs.Observation
	for _, b := range batches {
		want = append(want, rows(b)...)
	}
	count := 0
	err = s.Observations(ctx, "src", func(o obs.Observation, program, _ string, _ uint64) error {
		if w := want[count]; !o.Equal(&w) || program != "gethistory" {
			return fmt.Errorf("row %d = %+v (%s), want %+v", count, o, program, w)
		}
		count++
		return nil
	})
	if err != nil || count != len(want) {
		t.Fatalf("read %d of %d rows, %v", count, len(want), err)
	}
	rej, err := s.Rejects(ctx, "src")
	if err != nil || len(rej) != 2 || rej[0].Line != 7 || rej[1].Reason != "worse" {
		t.Errorf("Rejects = %+v, %v", rej, err)
	}

	// Rejects only: no observations INSERT, the rejects stored.
	n, err = s.InsertFrom(ctx, &reusingSource{t: t, batches: batches[1:2], columns: w.columns})
	if err != nil || n != 0 {
		t.Errorf("InsertFrom(rejects only) = %d, %v", n, err)
	}

	// A date out of range ends the insert with ErrDateOutOfRange.
	bad := []chstore.Batch{{JobID: "bad", Version: 1, Cols: obs.ColumnsOf([]obs.Observation{{Security: "A", Field: "F", Date: -1}})}}
	if _, err := s.InsertFrom(ctx, &reusingSource{t: t, batches: bad, columns: w.columns}); !errors.Is(err, chstore.ErrDateOutOfRange) {
		t.Errorf("InsertFrom(bad date) = %v, want ErrDateOutOfRange", err)
	}
}

// TestJobsKeepEachGeneration: the jobs table keeps a row per run; a late event of an older run
// (a higher stream sequence than the newer run's latest) never overwrites the newer run's state.
func TestJobsKeepEachGeneration(t *testing.T) {
	ctx := context.Background()
	s := migrated(t)
	t0 := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	first := events.NewRun("eod-20260304", events.Spec{Name: "eod", Program: events.GetHistory}, t0, time.Hour)
	failed := first.Fail("vendor refused", t0.Add(time.Minute))
	replay := first.Rerun(0, "requester", events.Submitted, t0.Add(2*time.Minute))
	loaded := replay.Advance(events.Loaded, t0.Add(3*time.Minute))
	loaded.Warnings = &events.Warnings{UnknownFields: []string{"PX_NOPE"}}
	for _, w := range []struct {
		j   events.Job
		seq uint64
	}{{first, 1}, {replay, 3}, {loaded, 4}, {failed, 5}} { // the first run's failure arrives last
		if err := s.RecordJob(ctx, w.j, w.seq); err != nil {
			t.Fatal(err)
		}
	}
	got, ok, err := s.Job(ctx, first.ID)
	if err != nil || !ok || got.Generation != 1 || got.State != events.Loaded || got.Outcome() != events.OutcomeLoadedWarnings ||
		got.Warnings.String() != "1 unknown field (PX_NOPE)" {
		t.Errorf("Job = %+v (%v, %v); want generation 1 loaded with warnings", got, ok, err)
	}
	runs, err := s.JobRuns(ctx, first.ID)
	if err != nil || len(runs) != 2 || runs[0].State != events.Failed || runs[0].Error != "vendor refused" || runs[1].State != events.Loaded {
		t.Errorf("JobRuns = %+v, %v; want generation 0 failed and 1 loaded", runs, err)
	}
	if named, ok, err := s.LatestJobNamed(ctx, "eod"); err != nil || !ok || named.ID != first.ID || named.Generation != 1 {
		t.Errorf("LatestJobNamed(eod) = %+v, %v, %v; want the job at generation 1", named, ok, err)
	}
	if _, ok, err := s.LatestJobNamed(ctx, "nope"); err != nil || ok {
		t.Errorf("LatestJobNamed(nope) found %v, %v", ok, err)
	}
	recent, err := s.RecentJobs(ctx, 10)
	if err != nil || len(recent) != 1 || recent[0].Generation != 1 {
		t.Errorf("RecentJobs = %+v, %v; want the job once, at its latest run", recent, err)
	}
}
