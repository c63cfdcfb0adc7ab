package chstore

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"github.com/marketpipe/marketpipe/pkg/chinsert"
	"github.com/marketpipe/marketpipe/pkg/obs"
)

// observationTypes are the observations table's columns, in the order the INSERTs send them,
// as the server describes them for an INSERT.
var observationTypes = []chinsert.Column{
	{Name: "security", Type: "String"}, {Name: "field", Type: "String"}, {Name: "date", Type: "Date"},
	{Name: "value_num", Type: "Nullable(Float64)"}, {Name: "value_str", Type: "String"},
	{Name: "value_kind", Type: "UInt8"}, {Name: "flag", Type: "String"}, {Name: "program", Type: "String"},
	{Name: "snapshot_at", Type: "DateTime"}, {Name: "job_id", Type: "String"}, {Name: "version", Type: "UInt64"},
	{Name: "loaded_at", Type: "DateTime"},
}

// sortRows is how many rows blockSink gathers before it sends them in the table's key order.
// ClickHouse squashes the blocks of an INSERT into blocks of about a million rows
// (min_insert_block_size_rows) and writes each as a part per partition (year), sorted by the
// key; a part whose rows come sorted is written without that sort (the
// MergeTreeDataWriterBlocksAlreadySorted event; docs/performance.md has what it saved). Reply
// files are in the order of the request (securities as listed, each one's fields as listed,
// dates ascending), so that is seldom the key's order. The loader's
// INSERTs (LOADER_MAX_INSERT_ROWS, 500,000 rows by default) fit; a larger one is sent in
// windows of this many rows, each sorted, which the server then sorts as it would anyway. The
// rows gathered take about 22 bytes each.
const sortRows = 1 << 19

// blockSink writes the INSERT through pkg/chinsert. Each row's values are appended in
// ClickHouse's native format to column buffers as the rows come; the rows gathered (up to
// sortRows) are then sent in key order, in blocks of blockRows compressed straight from those
// buffers, with no Go value per row in between.
//
// The rows come in runs of one security and field with ascending dates (what reply files
// hold), so putting them in key order is sorting the runs, not the rows: the runs are cut as
// the rows come, and each is copied whole into the blocks. Rows that are not in such runs
// make runs of one row; they are still sent correctly, and the server sorts what is not in
// order.
type blockSink struct {
	s        *Store
	loadedAt uint32
	conn     *chinsert.Conn
	ins      *chinsert.Insert
	rows     *obsRows
	sent     int  // rows sent
	done     bool // the INSERT is finished
}

func (k *blockSink) add(ctx context.Context, b *Batch) error {
	if k.rows == nil {
		k.rows = getObsRows()
	}
	for i, n := 0, b.observations(); i < n; {
		take := min(n-i, sortRows-k.rows.n)
		k.rows.addColumns(b, i, i+take)
		i += take
		if k.rows.n == sortRows {
			if err := k.flush(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// flush sends the rows gathered in key order, in blocks of blockRows.
func (k *blockSink) flush(ctx context.Context) error {
	r := k.rows
	if r.n == 0 {
		return nil
	}
	if k.ins == nil {
		var err error
		k.conn, k.ins, err = k.s.blocks.Insert(ctx, "INSERT INTO "+k.s.table("observations")+" ("+observationColumns+") VALUES",
			observationTypes)
		if err != nil {
			return fmt.Errorf("rows %d-%d: start: %w", k.sent, k.sent+r.n-1, err)
		}
	}
	r.sortRuns()
	for blk := range r.blocks(blockRows) {
		n := blk.rows()
		if err := k.ins.WriteBlock(ctx, n, func(col int, dst []byte) []byte { return r.column(blk, col, dst, k.loadedAt) }); err != nil {
			return fmt.Errorf("rows %d-%d: %w", k.sent, k.sent+n-1, err)
		}
		k.sent += n
	}
	r.reset()
	return nil
}

func (k *blockSink) finish(ctx context.Context) error {
	if err := k.flush(ctx); err != nil {
		return err
	}
	if err := k.ins.Finish(ctx); err != nil {
		return err
	}
	k.done = true
	return nil
}

func (k *blockSink) close() {
	if k.rows != nil {
		k.rows.reset()
		putObsRows(k.rows)
		k.rows = nil
	}
	if k.conn != nil {
		// An unfinished INSERT has left the connection unusable (the server waits for the
		// rest): closed, the server drops what it received.
		if !k.done {
			k.conn.Close()
		}
		k.s.blocks.Put(k.conn)
		k.conn = nil
	}
}

// obsRows gathers rows column by column in ClickHouse's native format, with where each row
// starts in the variable-width columns, and cuts them into runs. The security and field,
// the same for every row of a run, are kept once per run.
type obsRows struct {
	n                     int
	str, flag             []byte
	strAt, flagAt         []uint32 // where row i starts; a final entry ends the last row
	date, null, num, kind []byte
	runs                  []run
	keys                  []byte        // each run's security and field, encoded
	batches               []batchConsts // a run's batch indexes it
	// addColumns' scratch: a batch's flags encoded, flag i at flagEnc[flagEncAt[i]:flagEncAt[i+1]].
	flagEnc   []byte
	flagEncAt []uint32
}

// run is a sequence of rows of one batch, one security and one field, with ascending dates.
type run struct {
	first, end           int32 // rows [first, end)
	firstDate, lastDate  obs.Date
	batch                int32  // in obsRows.batches
	key, fieldAt, keyEnd uint32 // keys[key:fieldAt] is the security, keys[fieldAt:keyEnd] the field
}

// batchConsts are a batch's values for every one of its rows.
type batchConsts struct {
	programS, jobIDS string
	version          uint64
	snapshotAt       int64
	program, jobID   []byte // encoded as String values
	versionEnc       [8]byte
	snapshotEnc      [4]byte // a DateTime
}

// freeObsRows keeps the buffers of the last INSERTs' rows (about 12 MB at sortRows rows) for
// the next ones. Not a sync.Pool: a pool drops what it holds at the second garbage collection
// after a Put, and the loader, which collects several times between two INSERTs, would grow
// them anew for every INSERT. It keeps as many as two INSERTs at a time need (the loader's
// default); more are left to the collector.
var freeObsRows = make(chan *obsRows, 2)

func getObsRows() *obsRows {
	select {
	case r := <-freeObsRows:
		return r
	default:
		return &obsRows{}
	}
}

// putObsRows keeps r, emptied, for getObsRows if there is room.
func putObsRows(r *obsRows) {
	select {
	case freeObsRows <- r:
	default:
	}
}

// reset empties the rows, keeping the buffers.
func (r *obsRows) reset() {
	r.n = 0
	for _, c := range [...]*[]byte{&r.str, &r.flag, &r.date, &r.null, &r.num, &r.kind, &r.keys} {
		*c = (*c)[:0]
	}
	r.strAt, r.flagAt = r.strAt[:0], r.flagAt[:0]
	r.runs = r.runs[:0]
	clear(r.batches) // drop the strings
	r.batches = r.batches[:0]
}

// lastRun returns the index of b's batchConsts, adding them if the last rows were of another
// job run, and the run the last rows are in if they were of the same job run (else nil).
func (r *obsRows) lastRun(b *Batch) (int32, *run) {
	bi := len(r.batches) - 1
	if bi < 0 || r.batches[bi].version != b.Version || r.batches[bi].jobIDS != b.JobID || r.batches[bi].programS != b.Program ||
		r.batches[bi].snapshotAt != b.SnapshotAt {
		c := batchConsts{programS: b.Program, jobIDS: b.JobID, version: b.Version, snapshotAt: b.SnapshotAt,
			program: chinsert.AppendString(nil, b.Program), jobID: chinsert.AppendString(nil, b.JobID)}
		binary.LittleEndian.PutUint64(c.versionEnc[:], b.Version)
		binary.LittleEndian.PutUint32(c.snapshotEnc[:], uint32(b.SnapshotAt))
		r.batches = append(r.batches, c)
		bi++
	}
	if len(r.runs) > 0 && r.runs[len(r.runs)-1].batch == int32(bi) {
		return int32(bi), &r.runs[len(r.runs)-1]
	}
	return int32(bi), nil
}

// newRun starts a run of the batch bi at the next row, and returns it.
func (r *obsRows) newRun(bi int32, security, field string, date obs.Date) *run {
	rn := run{first: int32(r.n), end: int32(r.n), firstDate: date, batch: bi, key: uint32(len(r.keys))}
	r.keys = chinsert.AppendString(r.keys, security)
	rn.fieldAt = uint32(len(r.keys))
	r.keys = chinsert.AppendString(r.keys, field)
	rn.keyEnd = uint32(len(r.keys))
	r.runs = append(r.runs, rn)
	return &r.runs[len(r.runs)-1]
}

// value appends a row's value: value_num (its null map entry and number), value_str and
// value_kind.
func (r *obsRows) value(k obs.Kind, num float64, str string) {
	r.strAt = append(r.strAt, uint32(len(r.str)))
	switch k {
	case obs.Number:
		r.null = append(r.null, 0)
		r.num = binary.LittleEndian.AppendUint64(r.num, math.Float64bits(num))
		r.str = append(r.str, 0)
	case obs.String, obs.Bulk:
		r.null = append(r.null, 1)
		r.num = binary.LittleEndian.AppendUint64(r.num, 0)
		r.str = chinsert.AppendString(r.str, str)
	default:
		r.null = append(r.null, 1)
		r.num = binary.LittleEndian.AppendUint64(r.num, 0)
		r.str = append(r.str, 0)
	}
	r.kind = append(r.kind, byte(k))
}

// addColumns appends the rows [lo, hi) of batch b's columns. It compares the dictionary
// indexes of the rows' securities and fields, not their strings (blocks_test.go's add does
// the same from rows, the reference it is tested against).
func (r *obsRows) addColumns(b *Batch, lo, hi int) {
	c := b.Cols
	bi, cur := r.lastRun(b)
	// The first row continues the last run if it has the same key (compared as strings: the
	// run may be of another message, with other dictionaries) and a later date.
	if cur != nil {
		sec, field := r.key(cur)
		if string(sec) != c.Securities[c.Security[lo]] || string(field) != c.Fields[c.Field[lo]] || c.Date[lo] <= cur.lastDate {
			cur = nil
		}
	}
	prevSec, prevField := uint32(math.MaxUint32), uint32(math.MaxUint32)
	if cur != nil {
		prevSec, prevField = c.Security[lo], c.Field[lo]
	}
	for i := lo; i < hi; i++ {
		s, f, d := c.Security[i], c.Field[i], c.Date[i]
		if s != prevSec || f != prevField || d <= cur.lastDate {
			cur = r.newRun(bi, c.Securities[s], c.Fields[f], d)
			prevSec, prevField = s, f
		}
		cur.end++
		cur.lastDate = d
		r.n++
	}

	for _, d := range c.Date[lo:hi] {
		r.date = binary.LittleEndian.AppendUint16(r.date, uint16(d))
	}
	for i := lo; i < hi; i++ {
		r.value(c.Kind[i], c.Num[i], c.Str[i])
	}
	// The flags, each encoded once.
	r.flagEnc = r.flagEnc[:0]
	r.flagEncAt = r.flagEncAt[:0]
	for _, f := range c.Flags {
		r.flagEncAt = append(r.flagEncAt, uint32(len(r.flagEnc)))
		r.flagEnc = chinsert.AppendString(r.flagEnc, f)
	}
	r.flagEncAt = append(r.flagEncAt, uint32(len(r.flagEnc)))
	for _, f := range c.Flag[lo:hi] {
		r.flagAt = append(r.flagAt, uint32(len(r.flag)))
		r.flag = append(r.flag, r.flagEnc[r.flagEncAt[f]:r.flagEncAt[f+1]]...)
	}
}

// key returns the security and field of a run's rows (in r.keys: not to be kept).
func (r *obsRows) key(rn *run) (security, field []byte) {
	return unprefixed(r.keys[rn.key:rn.fieldAt]), unprefixed(r.keys[rn.fieldAt:rn.keyEnd])
}

// unprefixed returns the value of an encoded String.
func unprefixed(v []byte) []byte {
	n, k := binary.Uvarint(v)
	return v[k : k+int(n)]
}

// minRunRows is the average run length below which sortRuns leaves the rows in the order
// they came: sorting them would be sorting row by row, which spares the server nothing.
const minRunRows = 8

// sortRuns puts the runs in the key's order (security, field, date), runs of one key keeping
// their order, unless they are too short to be worth it.
func (r *obsRows) sortRuns() {
	// The final offsets end the last row.
	r.strAt = append(r.strAt, uint32(len(r.str)))
	r.flagAt = append(r.flagAt, uint32(len(r.flag)))
	if len(r.runs)*minRunRows > r.n {
		return
	}
	slices.SortStableFunc(r.runs, func(a, b run) int {
		as, af := r.key(&a)
		bs, bf := r.key(&b)
		return cmp.Or(bytes.Compare(as, bs), bytes.Compare(af, bf), cmp.Compare(a.firstDate, b.firstDate))
	})
}

// span is the rows [first, end) of a run, in a block.
type span struct {
	first, end int32
	run        *run
}

// block is the spans of one block, in order.
type block []span

func (b block) rows() int {
	n := 0
	for _, s := range b {
		n += int(s.end - s.first)
	}
	return n
}

// blocks yields the sorted runs cut into blocks of at most size rows. A block is valid until
// the next is yielded.
func (r *obsRows) blocks(size int) func(yield func(block) bool) {
	return func(yield func(block) bool) {
		var blk block
		n := 0
		for i := range r.runs {
			rn := &r.runs[i]
			for first := rn.first; first < rn.end; {
				end := min(rn.end, first+int32(size-n))
				blk = append(blk, span{first, end, rn})
				n += int(end - first)
				first = end
				if n == size {
					if !yield(blk) {
						return
					}
					blk, n = blk[:0], 0
				}
			}
		}
		if n > 0 {
			yield(blk)
		}
	}
}

// column appends column i (in observationTypes' order) of the block's rows to dst.
func (r *obsRows) column(blk block, i int, dst []byte, loadedAt uint32) []byte {
	switch i {
	case 0:
		for _, s := range blk {
			dst = appendRepeated(dst, r.keys[s.run.key:s.run.fieldAt], int(s.end-s.first))
		}
		return dst
	case 1:
		for _, s := range blk {
			dst = appendRepeated(dst, r.keys[s.run.fieldAt:s.run.keyEnd], int(s.end-s.first))
		}
		return dst
	case 2:
		return appendFixed(dst, blk, r.date, 2)
	case 3:
		return appendFixed(appendFixed(dst, blk, r.null, 1), blk, r.num, 8)
	case 4:
		return appendSpans(dst, blk, r.str, r.strAt)
	case 5:
		return appendFixed(dst, blk, r.kind, 1)
	case 6:
		return appendSpans(dst, blk, r.flag, r.flagAt)
	case 7:
		for _, s := range blk {
			dst = appendRepeated(dst, r.batches[s.run.batch].program, int(s.end-s.first))
		}
		return dst
	case 8:
		for _, s := range blk {
			dst = appendRepeated(dst, r.batches[s.run.batch].snapshotEnc[:], int(s.end-s.first))
		}
		return dst
	case 9:
		for _, s := range blk {
			dst = appendRepeated(dst, r.batches[s.run.batch].jobID, int(s.end-s.first))
		}
		return dst
	case 10:
		for _, s := range blk {
			dst = appendRepeated(dst, r.batches[s.run.batch].versionEnc[:], int(s.end-s.first))
		}
		return dst
	case 11:
		var t [4]byte
		binary.LittleEndian.PutUint32(t[:], loadedAt)
		return appendRepeated(dst, t[:], blk.rows())
	}
	panic(fmt.Sprintf("chstore: observations column %d", i))
}

// appendSpans appends the spans' rows of a variable-width column whose row i is
// col[at[i]:at[i+1]].
func appendSpans(dst []byte, blk block, col []byte, at []uint32) []byte {
	for _, s := range blk {
		dst = append(dst, col[at[s.first]:at[s.end]]...)
	}
	return dst
}

// appendFixed appends the spans' rows of a column of width-byte values.
func appendFixed(dst []byte, blk block, col []byte, width int) []byte {
	for _, s := range blk {
		dst = append(dst, col[int(s.first)*width:int(s.end)*width]...)
	}
	return dst
}

// appendRepeated appends n copies of v to dst.
func appendRepeated(dst, v []byte, n int) []byte {
	if n == 0 || len(v) == 0 {
		return dst
	}
	start := len(dst)
	dst = append(dst, v...)
	// Double the copied run until it covers n copies.
	for have, want := len(v), n*len(v); have < want; have *= 2 {
		dst = append(dst, dst[start:start+min(have, want-have)]...)
	}
	return dst
}
