package chstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/marketpipe/marketpipe/pkg/obs"
)

// Batch is what the loader writes for one row batch of one job run.
type Batch struct {
	JobID   string
	Program string
	// Version orders this run's rows against other runs' rows of the same keys (events.Job's
	// Version): the highest committed one is current.
	Version uint64
	// SnapshotAt is when a snapshot's data was taken, in Unix seconds (0 for history): part of
	// the key, so that two snapshots of one day, or a snapshot and a history row, are kept
	// apart.
	SnapshotAt int64
	// Cols holds the batch's observations column by column (nil: none), as the loader decodes
	// row batches (rowcodec.DecodeColumns); a program with rows makes them with obs.ColumnsOf.
	Cols    *obs.Columns
	Rejects []obs.Reject
}

// observations returns the number of b's observations.
func (b *Batch) observations() int {
	if b.Cols == nil {
		return 0
	}
	return b.Cols.Len()
}

// ErrDateOutOfRange is returned (wrapped) by Insert for an observation whose date ClickHouse's
// Date type cannot hold (1970-01-01 to 2149-06-06). Nothing of the call is written.
var ErrDateOutOfRange = errors.New("date outside ClickHouse Date range 1970-01-01..2149-06-06")

// maxDate is the last day a ClickHouse Date (UInt16 days since 1970) holds.
const maxDate = obs.Date(1<<16 - 1)

// observationColumns is the column list of the observations INSERTs (observationTypes').
var observationColumns = func() string {
	names := make([]string, len(observationTypes))
	for i, c := range observationTypes {
		names[i] = c.Name
	}
	return strings.Join(names, ", ")
}()

// Insert writes the observations and rejects of the batches: one columnar INSERT for all
// observations and, if there are any, one for all rejects; loaded_at is now. It returns the
// number of observations written. It checks every date first (CheckDates): if one is out of
// range, nothing of the call is written.
//
// Insert is idempotent in effect: writing the same batch again adds rows of the same run, which
// readers (Query) see once and background merges collapse. If it fails, some or all rows may
// have been written; retrying is safe for the same reason.
func (s *Store) Insert(ctx context.Context, batches []Batch) (rows int, err error) {
	for i := range batches {
		if err := CheckDates(&batches[i]); err != nil {
			return 0, fmt.Errorf("insert observations: %w", err)
		}
	}
	return s.InsertFrom(ctx, &sliceSource{batches: batches})
}

// A BatchSource yields the batches of one InsertFrom in turn; Next returns nil after the last.
// InsertFrom is done with a batch's slices when it calls Next again, so a source may decode
// every batch into the same one.
type BatchSource interface {
	Next() *Batch
}

type sliceSource struct {
	batches []Batch
	i       int
}

func (s *sliceSource) Next() *Batch {
	if s.i == len(s.batches) {
		return nil
	}
	s.i++
	return &s.batches[s.i-1]
}

// InsertFrom is Insert for batches that a source yields one at a time, so that only one needs
// to be in memory: the observations go out in blocks of blockRows as they come, the rejects
// (few) are kept and inserted after them. The source must yield only batches that pass
// CheckDates: one that does not ends the INSERT with ErrDateOutOfRange after the blocks before
// it were written.
func (s *Store) InsertFrom(ctx context.Context, src BatchSource) (rows int, err error) {
	now := time.Now().UTC().Truncate(time.Second)
	var rej rejectColumns
	n, err := s.insertObservations(ctx, src, now, &rej)
	if err != nil {
		return 0, err
	}
	if len(rej.jobID) > 0 {
		if err := s.insertRejects(ctx, &rej, now); err != nil {
			return n, err
		}
	}
	return n, nil
}

// CheckDates returns an error wrapping ErrDateOutOfRange, naming the observation, if one of
// b's dates is outside what a ClickHouse Date holds, or its snapshot time outside what a
// DateTime holds.
func CheckDates(b *Batch) error {
	if b.SnapshotAt < 0 || b.SnapshotAt > math.MaxUint32 {
		return fmt.Errorf("job %s: snapshot time %d: %w", b.JobID, b.SnapshotAt, ErrDateOutOfRange)
	}
	if c := b.Cols; c != nil {
		for i, d := range c.Date {
			if d < 0 || d > maxDate {
				return dateError(b, c.Row(i))
			}
		}
	}
	return nil
}

func dateError(b *Batch, o obs.Observation) error {
	return fmt.Errorf("job %s: %s %s on %s: %w", b.JobID, o.Security, o.Field, o.Date, ErrDateOutOfRange)
}

// insertObservations sends the rows through the store's writer (chinsert's blocks, or
// clickhouse-go's batches when Config.DriverInserts is set), which sends them in blocks of
// blockRows as they come, so the memory of an INSERT is bounded whatever its number of rows.
// The INSERT is started with the first observation: a source of rejects only sends none. The
// rejects of every batch are added to rej.
func (s *Store) insertObservations(ctx context.Context, src BatchSource, now time.Time, rej *rejectColumns) (int, error) {
	ctx, done := s.quorumInsert(ctx, "observations")
	defer done()
	var sink obsSink
	if s.cfg.DriverInserts {
		sink = &driverSink{s: s, now: now}
	} else {
		sink = &blockSink{s: s, loadedAt: uint32(now.Unix())}
	}
	defer sink.close()
	n := 0
	for b := src.Next(); b != nil; b = src.Next() {
		if err := CheckDates(b); err != nil {
			return 0, fmt.Errorf("insert observations: %w", err)
		}
		rej.add(b)
		if b.observations() == 0 {
			continue
		}
		if err := sink.add(ctx, b); err != nil {
			return 0, fmt.Errorf("insert observations: %w", err)
		}
		n += b.observations()
	}
	if n == 0 {
		return 0, nil
	}
	if err := sink.finish(ctx); err != nil {
		return 0, fmt.Errorf("insert %d observations: %w", n, err)
	}
	return n, nil
}

// An obsSink writes one INSERT of observations, block by block.
type obsSink interface {
	// add takes b's observations (it is done with b when it returns), sending blocks as they
	// fill; the first block starts the INSERT.
	add(ctx context.Context, b *Batch) error
	// finish sends what is left and ends the INSERT once the server has written every block.
	finish(ctx context.Context) error
	// close releases the sink's memory and connection, abandoning an unfinished INSERT.
	close()
}

// driverSink writes the INSERT through clickhouse-go. Each block's columns are built into
// slices from a pool and appended whole: the driver copies them into its column buffers
// without per-row reflection or interface boxing. The slices go back to the pool as soon as
// the driver has copied them, before the block is sent, so concurrent INSERTs mostly share
// one set. A block is sent by the next block's Flush, or by the final Send.
type driverSink struct {
	s     *Store
	now   time.Time
	batch driver.Batch
	cols  *obsColumns
	rows  []obs.Observation // a batch's rows
	sent  int               // rows handed to the driver
	done  bool
}

func (d *driverSink) add(ctx context.Context, b *Batch) error {
	// The driver takes a slice per column: build the rows (this writer is the way back, not
	// the fast one).
	c := b.Cols
	d.rows = d.rows[:0]
	for i := range c.Len() {
		d.rows = append(d.rows, c.Row(i))
	}
	os := d.rows
	for len(os) > 0 {
		if d.cols == nil {
			d.cols = obsColumnsPool.Get().(*obsColumns)
		}
		take := min(len(os), blockRows-len(d.cols.security))
		d.cols.add(b, os[:take])
		os = os[take:]
		if len(d.cols.security) == blockRows {
			if err := d.send(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// send appends the block to the INSERT, sending the one before it.
func (d *driverSink) send(ctx context.Context) error {
	c := d.cols
	d.cols = nil
	defer c.release()
	rows := len(c.security)
	var err error
	if d.batch == nil {
		if d.batch, err = d.s.conn.PrepareBatch(ctx, "INSERT INTO "+d.s.table("observations")+" ("+observationColumns+")"); err != nil {
			return fmt.Errorf("rows %d-%d: start: prepare: %w", d.sent, d.sent+rows-1, err)
		}
	} else if err := d.batch.Flush(); err != nil {
		return fmt.Errorf("rows %d-%d: %w", d.sent-blockRows, d.sent-1, err)
	}
	for k := range rows {
		c.loadedAt[k] = d.now
	}
	columns := [...]any{c.security, c.field, c.date, c.num, c.str, c.kind, c.flag, c.program, c.snapshotAt,
		c.jobID, c.version, c.loadedAt[:rows]}
	for ci, col := range columns {
		if err := d.batch.Column(ci).Append(col); err != nil {
			return fmt.Errorf("column %d: %w", ci, err)
		}
	}
	d.sent += rows
	return nil
}

func (d *driverSink) finish(ctx context.Context) error {
	if d.cols != nil {
		if err := d.send(ctx); err != nil {
			return err
		}
	}
	if err := d.batch.Send(); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	d.done = true
	return nil
}

func (d *driverSink) close() {
	if d.cols != nil {
		d.cols.release()
	}
	if d.batch != nil {
		if !d.done {
			d.batch.Abort()
		}
		d.batch.Close()
	}
}

// obsColumns are the columns of one block of observations.
type obsColumns struct {
	security, field, str, flag, program, jobID []string
	date, snapshotAt                           []time.Time
	num                                        []*float64
	nums                                       []float64 // backing store of num's pointers: never reallocated
	kind                                       []uint8
	version                                    []uint64
	loadedAt                                   []time.Time // blockRows long, all the INSERT's time
}

var obsColumnsPool = sync.Pool{New: func() any {
	return &obsColumns{
		security: make([]string, 0, blockRows), field: make([]string, 0, blockRows),
		str: make([]string, 0, blockRows), flag: make([]string, 0, blockRows),
		program: make([]string, 0, blockRows), jobID: make([]string, 0, blockRows),
		date: make([]time.Time, 0, blockRows), snapshotAt: make([]time.Time, 0, blockRows),
		num:  make([]*float64, 0, blockRows),
		nums: make([]float64, blockRows), kind: make([]uint8, 0, blockRows),
		version: make([]uint64, 0, blockRows), loadedAt: make([]time.Time, blockRows),
	}
}}

// release empties the columns and puts them back in the pool.
func (c *obsColumns) release() {
	c.reset()
	obsColumnsPool.Put(c)
}

// reset empties the columns, dropping the references they held.
func (c *obsColumns) reset() {
	clear(c.security)
	clear(c.field)
	clear(c.str)
	clear(c.flag)
	clear(c.program)
	clear(c.jobID)
	clear(c.num)
	c.security, c.field, c.str, c.flag = c.security[:0], c.field[:0], c.str[:0], c.flag[:0]
	c.program, c.jobID, c.date, c.num = c.program[:0], c.jobID[:0], c.date[:0], c.num[:0]
	c.snapshotAt = c.snapshotAt[:0]
	c.kind, c.version = c.kind[:0], c.version[:0]
}

// add appends the rows of os, which belong to b; the block must have room for them.
func (c *obsColumns) add(b *Batch, os []obs.Observation) {
	for i := range os {
		o := &os[i]
		c.security = append(c.security, o.Security)
		c.field = append(c.field, o.Field)
		c.date = append(c.date, o.Date.Time())
		switch o.Kind {
		case obs.Number:
			j := len(c.num)
			c.nums[j] = o.Num
			c.num = append(c.num, &c.nums[j])
			c.str = append(c.str, "")
		case obs.String, obs.Bulk:
			c.num = append(c.num, nil)
			c.str = append(c.str, o.Str)
		default:
			c.num = append(c.num, nil)
			c.str = append(c.str, "")
		}
		c.kind = append(c.kind, uint8(o.Kind))
		c.flag = append(c.flag, o.Flag)
		c.program = append(c.program, b.Program)
		c.snapshotAt = append(c.snapshotAt, time.Unix(b.SnapshotAt, 0).UTC())
		c.jobID = append(c.jobID, b.JobID)
		c.version = append(c.version, b.Version)
	}
}

// rejectColumns gathers the rejects of an insert's batches.
type rejectColumns struct {
	jobID, raw, reason []string
	line               []uint64
}

func (r *rejectColumns) add(b *Batch) {
	for _, x := range b.Rejects {
		r.jobID = append(r.jobID, b.JobID)
		r.line = append(r.line, uint64(max(x.Line, 0)))
		r.raw = append(r.raw, x.Raw)
		r.reason = append(r.reason, x.Reason)
	}
}

func (s *Store) insertRejects(ctx context.Context, r *rejectColumns, now time.Time) error {
	n := len(r.jobID)
	loadedAt := make([]time.Time, n)
	for i := range loadedAt {
		loadedAt[i] = now
	}
	if err := s.sendColumns(ctx, "rejects", "job_id, line, raw, reason, loaded_at", []any{r.jobID, r.line, r.raw, r.reason, loadedAt}); err != nil {
		return fmt.Errorf("insert %d rejects: %w", n, err)
	}
	return nil
}

// blockRows is how many rows go to the server in one block of an INSERT. The server squashes
// an INSERT's blocks into blocks of about a million rows before it writes parts, so the block
// size sets the client's memory, not the parts: above all the driver's column buffers, which
// keep their capacity from one block to the next. Smaller blocks cost ClickHouse more CPU per
// row (docs/performance.md has the figures of each size).
const blockRows = 50_000

// sendColumns runs one INSERT of whole columns, sent in blocks of blockRows. The column list
// is named: 18.16 answers an INSERT without one with a block of no columns.
func (s *Store) sendColumns(ctx context.Context, table, names string, columns []any) error {
	ctx, done := s.quorumInsert(ctx, table)
	defer done()
	batch, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+s.table(table)+" ("+names+")")
	if err != nil {
		return fmt.Errorf("prepare: %w", err)
	}
	defer batch.Close()
	n := columnLen(columns[0])
	for lo := 0; lo < n; lo += blockRows {
		hi := min(lo+blockRows, n)
		if lo > 0 {
			if err := batch.Flush(); err != nil {
				batch.Abort()
				return fmt.Errorf("send rows %d-%d: %w", lo-blockRows, lo-1, err)
			}
		}
		for i, col := range columns {
			if err := batch.Column(i).Append(slice(col, lo, hi)); err != nil {
				batch.Abort()
				return fmt.Errorf("column %d: %w", i, err)
			}
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	return nil
}

// columnLen returns the length of a column slice built by this package.
func columnLen(col any) int {
	switch c := col.(type) {
	case []string:
		return len(c)
	case []time.Time:
		return len(c)
	case []*float64:
		return len(c)
	case []uint8:
		return len(c)
	case []uint64:
		return len(c)
	}
	panic(fmt.Sprintf("chstore: column of type %T", col))
}

// slice returns col[lo:hi] for a column slice built by this package.
func slice(col any, lo, hi int) any {
	switch c := col.(type) {
	case []string:
		return c[lo:hi]
	case []time.Time:
		return c[lo:hi]
	case []*float64:
		return c[lo:hi]
	case []uint8:
		return c[lo:hi]
	case []uint64:
		return c[lo:hi]
	}
	panic(fmt.Sprintf("chstore: column of type %T", col))
}

// CountObservations counts the rows of the observations table, every run's: as stored (final
// false), which includes a run's duplicate rows not yet merged away, or one per key and run
// (final true).
func (s *Store) CountObservations(ctx context.Context, final bool) (uint64, error) {
	query := "SELECT count() FROM " + s.table("observations")
	if final {
		query += " FINAL"
	}
	var n uint64
	if err := s.conn.QueryRow(ctx, query).Scan(&n); err != nil {
		return 0, fmt.Errorf("count observations: %w", err)
	}
	return n, nil
}

// Rejects returns the rejected lines of a job, by line number, one per line.
func (s *Store) Rejects(ctx context.Context, jobID string) ([]obs.Reject, error) {
	rows, err := s.conn.Query(ctx, "SELECT line, raw, reason FROM "+s.table("rejects")+" FINAL WHERE job_id = ? ORDER BY line", jobID)
	if err != nil {
		return nil, fmt.Errorf("read rejects of %s: %w", jobID, err)
	}
	defer rows.Close()
	var out []obs.Reject
	for rows.Next() {
		var (
			r    obs.Reject
			line uint64
		)
		if err := rows.Scan(&line, &r.Raw, &r.Reason); err != nil {
			return nil, fmt.Errorf("read rejects of %s: %w", jobID, err)
		}
		r.Line = int64(line)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read rejects of %s: %w", jobID, err)
	}
	return out, nil
}
