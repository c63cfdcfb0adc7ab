package chstore

import (
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/marketpipe/marketpipe/pkg/chinsert"
	"github.com/marketpipe/marketpipe/pkg/chtest"
	"github.com/marketpipe/marketpipe/pkg/obs"
	"github.com/marketpipe/marketpipe/pkg/rowcodec"
)

// sent is one row as a block carries it.
type sent struct {
	security, field, str, flag, program, jobID string
	date                                       uint16
	null                                       byte
	num                                        uint64
	kind                                       byte
	version                                    uint64
	snapshotAt                                 uint32
}

func (s sent) less(t sent) int {
	return cmp.Or(strings.Compare(s.security, t.security), strings.Compare(s.field, t.field), cmp.Compare(s.date, t.date))
}

// decodeBlock reads the rows of a block's columns back.
func decodeBlock(t *testing.T, r *obsRows, blk block) []sent {
	t.Helper()
	n := blk.rows()
	col := func(i int) []byte { return r.column(blk, i, nil, 0) }
	strs := func(b []byte) []string {
		var out []string
		for len(b) > 0 {
			l, k := binary.Uvarint(b)
			out = append(out, string(b[k:k+int(l)]))
			b = b[k+int(l):]
		}
		if len(out) != n {
			t.Fatalf("String column of %d values in a block of %d rows", len(out), n)
		}
		return out
	}
	sec, field, str, flag, prog, job := strs(col(0)), strs(col(1)), strs(col(4)), strs(col(6)), strs(col(7)), strs(col(9))
	date, nullNum, kind, snap, version := col(2), col(3), col(5), col(8), col(10)
	if len(date) != 2*n || len(nullNum) != 9*n || len(kind) != n || len(snap) != 4*n || len(version) != 8*n || len(col(11)) != 4*n {
		t.Fatalf("fixed-width columns of the wrong size for %d rows", n)
	}
	out := make([]sent, n)
	for i := range out {
		out[i] = sent{security: sec[i], field: field[i], str: str[i], flag: flag[i], program: prog[i], jobID: job[i],
			date: binary.LittleEndian.Uint16(date[2*i:]), null: nullNum[i], num: binary.LittleEndian.Uint64(nullNum[n+8*i:]),
			kind: kind[i], version: binary.LittleEndian.Uint64(version[8*i:]), snapshotAt: binary.LittleEndian.Uint32(snap[4*i:])}
	}
	return out
}

// expect is what a block must carry for observation o of batch b.
func expect(b *Batch, o obs.Observation) sent {
	s := sent{security: o.Security, field: o.Field, flag: o.Flag, program: b.Program, jobID: b.JobID, snapshotAt: uint32(b.SnapshotAt),
		date: uint16(o.Date), kind: byte(o.Kind), version: b.Version, null: 1}
	switch o.Kind {
	case obs.Number:
		s.null, s.num = 0, math.Float64bits(o.Num)
	case obs.String, obs.Bulk:
		s.str = o.Str
	}
	return s
}

// rowBatch is a Batch with its observations as rows too, which the tests build and compare
// with.
type rowBatch struct {
	Batch
	Obs []obs.Observation
}

// withCols returns the Batch of b's rows, their columns made by obs.ColumnsOf.
func (b rowBatch) withCols() Batch {
	c := b.Batch
	c.Cols = obs.ColumnsOf(b.Obs)
	return c
}

// add appends the rows os of batch b: the reference, from rows, that addColumns is tested
// against.
func (r *obsRows) add(b *Batch, os []obs.Observation) {
	bi, cur := r.lastRun(b)
	var prevSec, prevField string
	if cur != nil {
		sec, field := r.key(cur)
		prevSec, prevField = string(sec), string(field)
	}
	for i := range os {
		o := &os[i]
		if cur == nil || o.Security != prevSec || o.Field != prevField || o.Date <= cur.lastDate {
			cur = r.newRun(bi, o.Security, o.Field, o.Date)
			prevSec, prevField = o.Security, o.Field
		}
		cur.end++
		cur.lastDate = o.Date
		r.n++
		r.date = binary.LittleEndian.AppendUint16(r.date, uint16(o.Date))
		r.value(o.Kind, o.Num, o.Str)
		r.flagAt = append(r.flagAt, uint32(len(r.flag)))
		r.flag = chinsert.AppendString(r.flag, o.Flag)
	}
}

// keyOrderBatches are two jobs' batches: securities and fields in request order, not the
// key's; a string value, a null with a marker.
func keyOrderBatches() []rowBatch {
	d := obs.MakeDate(2025, 3, 3)
	var batches []rowBatch
	for j, job := range []string{"job-b", "job-a"} {
		b := rowBatch{Batch: Batch{JobID: job, Program: "gethistory", Version: uint64(10 + j)}}
		if j == 1 {
			b.Program, b.SnapshotAt = "getdata", 1765988350 // a snapshot's time travels as a constant column
		}
		for _, sec := range []string{"ZZZ US Equity", "AAPL US Equity", "MSFT US Equity"} {
			sec = fmt.Sprintf("%s %d", sec, 1-j)
			for _, f := range []string{"PX_LAST", "NAME", "PX_BID"} {
				for k := range 10 {
					o := obs.Observation{Security: sec, Field: f, Date: d + obs.Date(k), Kind: obs.Number, Num: float64(k) / 3}
					switch f {
					case "NAME":
						o.Kind, o.Num, o.Str = obs.String, 0, sec+" INC"
					case "PX_BID":
						if k == 2 {
							o.Kind, o.Num, o.Flag = obs.Null, 0, "N.A."
						}
					}
					b.Obs = append(b.Obs, o)
				}
			}
		}
		batches = append(batches, b)
	}
	return batches
}

func TestObsRowsKeyOrder(t *testing.T) {
	d := obs.MakeDate(2025, 3, 3)
	batches := keyOrderBatches()
	r := &obsRows{}
	var want []sent
	for i := range batches {
		b := &batches[i]
		// In two pieces, as a block boundary would cut it.
		r.add(&b.Batch, b.Obs[:7])
		r.add(&b.Batch, b.Obs[7:])
		for _, o := range b.Obs {
			want = append(want, expect(&b.Batch, o))
		}
	}
	if len(r.runs) != 2*9 {
		t.Errorf("%d runs, want 18 (one per job, security and field)", len(r.runs))
	}
	r.sortRuns()
	var got []sent
	for blk := range r.blocks(7) {
		if n := blk.rows(); n == 0 || n > 7 {
			t.Errorf("block of %d rows, want 1 to 7", n)
		}
		got = append(got, decodeBlock(t, r, blk)...)
	}
	if !slices.IsSortedFunc(got, sent.less) {
		t.Errorf("rows not in key order: %v", got)
	}
	// Every row exactly once, with its batch's job and version.
	slices.SortStableFunc(want, sent.less)
	key := func(s sent) string { return fmt.Sprintf("%+v", s) }
	count := map[string]int{}
	for _, s := range want {
		count[key(s)]++
	}
	for _, s := range got {
		count[key(s)]--
	}
	for k, c := range count {
		if c != 0 {
			t.Errorf("row %s: %+d", k, c)
		}
	}

	// Rows that make no runs stay in the order they came.
	r.reset()
	b := rowBatch{Batch: Batch{JobID: "j", Program: "getdata", Version: 1}}
	for i := range 20 {
		b.Obs = append(b.Obs, obs.Observation{Security: fmt.Sprintf("S%02d", 20-i), Field: "F", Date: d, Kind: obs.Null})
	}
	r.add(&b.Batch, b.Obs)
	r.sortRuns()
	got = got[:0]
	for blk := range r.blocks(blockRows) {
		got = append(got, decodeBlock(t, r, blk)...)
	}
	for i, s := range got {
		if s.security != b.Obs[i].Security {
			t.Fatalf("row %d is %s, want %s: short runs were reordered", i, s.security, b.Obs[i].Security)
		}
	}
}

// The server writes the parts of an INSERT sent in key order without sorting them again: one
// per year (the partition) its rows fall in.
func TestInsertSendsKeyOrder(t *testing.T) {
	srv := chtest.StartPrivate(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Open(ctx, Config{Addr: srv.Addr(), Database: chtest.NewDatabase(t, srv)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	conn, err := chtest.Conn(srv)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// 300 securities in reverse order, fields out of order, 100 dates over three years.
	var b rowBatch
	b.JobID, b.Program, b.Version = "sorted", "gethistory", 1
	for i := range 300 {
		for _, f := range []string{"PX_LAST", "PX_BID", "CUR_MKT_CAP"} {
			for k := range 100 {
				b.Obs = append(b.Obs, obs.Observation{Security: fmt.Sprintf("S%03d", 300-i), Field: f,
					Date: obs.MakeDate(2024, 1, 1) + obs.Date(10*k), Kind: obs.Number, Num: float64(k)})
			}
		}
	}
	before := writerEvents(t, conn)
	if n, err := s.Insert(ctx, []Batch{b.withCols()}); err != nil || n != len(b.Obs) {
		t.Fatalf("Insert = %d, %v", n, err)
	}
	after := writerEvents(t, conn)
	parts := after["MergeTreeDataWriterBlocks"] - before["MergeTreeDataWriterBlocks"]
	sorted := after["MergeTreeDataWriterBlocksAlreadySorted"] - before["MergeTreeDataWriterBlocksAlreadySorted"]
	if parts != 3 || sorted != parts {
		t.Errorf("the server wrote %d parts, %d of them already sorted; want 3, all sorted", parts, sorted)
	}
	if n, err := s.CountObservations(ctx, true); err != nil || n != uint64(len(b.Obs)) {
		t.Errorf("CountObservations = %d, %v; want %d", n, err, len(b.Obs))
	}
}

func writerEvents(t *testing.T, conn clickhouse.Conn) map[string]uint64 {
	t.Helper()
	rows, err := conn.Query(context.Background(), "SELECT event, value FROM system.events WHERE event LIKE 'MergeTreeDataWriterBlocks%'")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	ev := map[string]uint64{}
	for rows.Next() {
		var k string
		var v uint64
		if err := rows.Scan(&k, &v); err != nil {
			t.Fatal(err)
		}
		ev[k] = v
	}
	return ev
}

// columnar returns b with its observations as rowcodec's DecodeColumns gives them, as the
// loader decodes them.
func columnar(t *testing.T, b rowBatch) Batch {
	t.Helper()
	data, err := rowcodec.Encode(nil, &rowcodec.Batch{JobID: b.JobID, Program: b.Program, Version: b.Version, Obs: b.Obs})
	if err != nil {
		t.Fatal(err)
	}
	var cb rowcodec.ColumnBatch
	if err := rowcodec.DecodeColumns(data, &cb); err != nil {
		t.Fatal(err)
	}
	c := b.Batch
	c.Cols = &cb.Cols
	return c
}

// Columns (the loader's batches) make the same rows and runs as observations do.
func TestObsRowsColumns(t *testing.T) {
	d := obs.MakeDate(2025, 3, 3)
	var batches []rowBatch
	for _, b := range keyOrderBatches() {
		// Each job's rows in two messages, the second continuing the first one's last run,
		// with dictionaries in another order.
		cut := len(b.Obs) - 15
		first, second := b, b
		first.Obs, second.Obs = b.Obs[:cut], b.Obs[cut:]
		batches = append(batches, first, second)
	}
	short := rowBatch{Batch: Batch{JobID: "j", Program: "getdata", Version: 1}}
	for i := range 20 {
		short.Obs = append(short.Obs, obs.Observation{Security: fmt.Sprintf("S%02d", 20-i), Field: "F", Date: d,
			Kind: obs.Null, Flag: []string{"", "N.A.", "N.S."}[i%3]})
	}
	batches = append(batches, short)

	rows, cols := &obsRows{}, &obsRows{}
	for _, b := range batches {
		c := columnar(t, b)
		// In pieces, as sortRows would cut them.
		for lo := 0; lo < len(b.Obs); lo += 13 {
			hi := min(lo+13, len(b.Obs))
			rows.add(&b.Batch, b.Obs[lo:hi])
			cols.addColumns(&c, lo, hi)
		}
	}
	if len(rows.runs) != 2*9+20 {
		t.Errorf("%d runs, want 38: a run goes on across messages and pieces", len(rows.runs))
	}
	for _, r := range []*obsRows{rows, cols} {
		r.sortRuns()
	}
	fields := func(r *obsRows) map[string]any {
		return map[string]any{"n": r.n, "str": r.str, "flag": r.flag, "strAt": r.strAt, "flagAt": r.flagAt,
			"date": r.date, "null": r.null, "num": r.num, "kind": r.kind, "runs": r.runs, "keys": r.keys, "batches": r.batches}
	}
	want, got := fields(rows), fields(cols)
	for k := range want {
		if !reflect.DeepEqual(want[k], got[k]) {
			t.Errorf("columns gave another %s:\nobservations: %v\ncolumns:      %v", k, want[k], got[k])
		}
	}
}

// The rows' buffers outlive garbage collections between INSERTs (a sync.Pool drops them at
// the second), so an INSERT does not grow them anew.
func TestObsRowsKeptAcrossCollections(t *testing.T) {
	for len(freeObsRows) > 0 { // what other tests left
		<-freeObsRows
	}
	r := getObsRows()
	r.num = append(r.num, make([]byte, 1<<20)...)
	r.reset()
	putObsRows(r)
	runtime.GC()
	runtime.GC()
	if got := getObsRows(); got != r || cap(got.num) < 1<<20 {
		t.Fatalf("after two collections got %p with %d bytes of num, want %p with its 1 MiB kept", got, cap(got.num), r)
	}
	putObsRows(r)
	putObsRows(&obsRows{})
	putObsRows(&obsRows{}) // beyond the two kept: dropped
	if n := len(freeObsRows); n != 2 {
		t.Errorf("%d rows kept, want at most 2", n)
	}
}
