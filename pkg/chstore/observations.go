package chstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/marketpipe/marketpipe/pkg/obs"
)

// Batch is what the loader writes for one row batch of one job run.
type Batch struct {
	JobID   string
	Program string
	// Version orders this run's rows against other runs' rows of the same keys (events.Job's
	// Version): the highest wins.
	Version uint64
	Obs     []obs.Observation
	Rejects []obs.Reject
}

// ErrDateOutOfRange is returned (wrapped) by Insert for an observation whose date ClickHouse's
// Date type cannot hold (1970-01-01 to 2149-06-06). Nothing of the call is written.
var ErrDateOutOfRange = errors.New("date outside ClickHouse Date range 1970-01-01..2149-06-06")

// maxDate is the last day a ClickHouse Date (UInt16 days since 1970) holds.
const maxDate = obs.Date(1<<16 - 1)

const observationColumns = "security, field, date, value_num, value_str, value_kind, flag, program, job_id, version, loaded_at"

// Insert writes the observations and rejects of the batches: one columnar INSERT for all
// observations and, if there are any, one for all rejects; loaded_at is now. It returns the
// number of observations written.
//
// Insert is idempotent in effect: writing the same batch again adds rows that FINAL (and in
// time, background merges) collapse with the first ones. If it fails, some or all rows may
// have been written; retrying is safe for the same reason.
func (s *Store) Insert(ctx context.Context, batches []Batch) (rows int, err error) {
	n, nrej := 0, 0
	for i := range batches {
		n += len(batches[i].Obs)
		nrej += len(batches[i].Rejects)
	}
	now := time.Now().UTC().Truncate(time.Second)
	if n > 0 {
		if err := s.insertObservations(ctx, batches, n, now); err != nil {
			return 0, err
		}
	}
	if nrej > 0 {
		if err := s.insertRejects(ctx, batches, nrej, now); err != nil {
			return n, err
		}
	}
	return n, nil
}

// insertObservations sends the rows in blocks of blockRows. Each block's columns are built
// into slices reused from block to block (and, through a pool, from call to call) and appended
// whole: the driver copies them into its column buffers without per-row reflection or
// interface boxing, and the memory of an INSERT is bounded by one block's columns whatever
// its number of rows. Dates are checked before anything is sent.
func (s *Store) insertObservations(ctx context.Context, batches []Batch, n int, now time.Time) error {
	for bi := range batches {
		b := &batches[bi]
		for i := range b.Obs {
			if o := &b.Obs[i]; o.Date < 0 || o.Date > maxDate {
				return fmt.Errorf("insert observations: job %s: %s %s on %s: %w", b.JobID, o.Security, o.Field, o.Date, ErrDateOutOfRange)
			}
		}
	}
	c := obsColumnsPool.Get().(*obsColumns)
	defer obsColumnsPool.Put(c)
	for i := range c.loadedAt {
		c.loadedAt[i] = now
	}
	batch, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+s.table("observations")+" ("+observationColumns+")")
	if err != nil {
		return fmt.Errorf("insert %d observations: prepare: %w", n, err)
	}
	defer batch.Close()
	bi, i, sent := 0, 0, 0
	for sent < n {
		c.reset()
		for len(c.security) < blockRows && bi < len(batches) {
			b := &batches[bi]
			take := min(len(b.Obs)-i, blockRows-len(c.security))
			c.add(b, b.Obs[i:i+take])
			if i += take; i == len(b.Obs) {
				bi, i = bi+1, 0
			}
		}
		rows := len(c.security)
		if sent > 0 {
			if err := batch.Flush(); err != nil {
				batch.Abort()
				return fmt.Errorf("insert %d observations: send rows %d-%d: %w", n, sent-blockRows, sent-1, err)
			}
		}
		columns := [...]any{c.security, c.field, c.date, c.num, c.str, c.kind, c.flag, c.program, c.jobID,
			c.version, c.loadedAt[:rows]}
		for ci, col := range columns {
			if err := batch.Column(ci).Append(col); err != nil {
				batch.Abort()
				return fmt.Errorf("insert %d observations: column %d: %w", n, ci, err)
			}
		}
		sent += rows
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("insert %d observations: send: %w", n, err)
	}
	return nil
}

// obsColumns are the columns of one block of observations.
type obsColumns struct {
	security, field, str, flag, program, jobID []string
	date                                       []time.Time
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
		date: make([]time.Time, 0, blockRows), num: make([]*float64, 0, blockRows),
		nums: make([]float64, blockRows), kind: make([]uint8, 0, blockRows),
		version: make([]uint64, 0, blockRows), loadedAt: make([]time.Time, blockRows),
	}
}}

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
		c.jobID = append(c.jobID, b.JobID)
		c.version = append(c.version, b.Version)
	}
}

func (s *Store) insertRejects(ctx context.Context, batches []Batch, n int, now time.Time) error {
	var (
		jobID    = make([]string, 0, n)
		line     = make([]uint64, 0, n)
		raw      = make([]string, 0, n)
		reason   = make([]string, 0, n)
		loadedAt = make([]time.Time, n)
	)
	for bi := range batches {
		b := &batches[bi]
		for _, r := range b.Rejects {
			jobID = append(jobID, b.JobID)
			line = append(line, uint64(max(r.Line, 0)))
			raw = append(raw, r.Raw)
			reason = append(reason, r.Reason)
		}
	}
	for i := range loadedAt {
		loadedAt[i] = now
	}
	if err := s.sendColumns(ctx, "rejects", "job_id, line, raw, reason, loaded_at", []any{jobID, line, raw, reason, loadedAt}); err != nil {
		return fmt.Errorf("insert %d rejects: %w", n, err)
	}
	return nil
}

// blockRows is how many rows go to the server in one block of an INSERT. The driver's column
// buffers keep their capacity from one block to the next, so a bounded block bounds its memory
// and spares it regrowing the buffers (for one block of a million rows it allocates about
// 1 GB; in blocks of this size, a fraction of that, and inserts faster). The server writes a
// part per block; this is well above the sizes that make for too many parts.
const blockRows = 100_000

// sendColumns runs one INSERT of whole columns, sent in blocks of blockRows. The column list
// is named: 18.16 answers an INSERT without one with a block of no columns.
func (s *Store) sendColumns(ctx context.Context, table, names string, columns []any) error {
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

// Observations calls fn for each current observation (one per key, under FINAL), in key order:
// all of them, or only those whose current row was loaded by jobID. An error from fn stops the
// scan and is returned as is.
func (s *Store) Observations(ctx context.Context, jobID string, fn func(o obs.Observation, program, jobID string, version uint64) error) error {
	query := "SELECT security, field, date, value_num, value_str, value_kind, flag, program, job_id, version FROM " +
		s.table("observations") + " FINAL"
	var args []any
	if jobID != "" {
		query += " WHERE job_id = ?"
		args = append(args, jobID)
	}
	query += " ORDER BY security, field, date"
	// A condition on a non-key column must filter after FINAL has chosen the winning rows. In
	// PREWHERE it filters before (seen on 18.16: a superseded row of the job comes back), and
	// some servers' optimizer moves WHERE conditions there on its own; this integer setting
	// stops it, on old and new servers alike.
	ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"optimize_move_to_prewhere": 0}))
	rows, err := s.conn.Query(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("read observations: %w", err)
	}
	defer rows.Close()
	var (
		o        obs.Observation
		date     time.Time
		num      *float64
		kind     uint8
		program  string
		rowJobID string
		version  uint64
	)
	for rows.Next() {
		if err := rows.Scan(&o.Security, &o.Field, &date, &num, &o.Str, &kind, &o.Flag, &program, &rowJobID, &version); err != nil {
			return fmt.Errorf("read observations: %w", err)
		}
		o.Date = obs.DateOf(date)
		o.Kind = obs.Kind(kind)
		o.Num = 0
		if num != nil {
			o.Num = *num
		}
		if err := fn(o, program, rowJobID, version); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read observations: %w", err)
	}
	return nil
}

// CountObservations counts the rows of the observations table: as stored (final false), which
// includes rows not yet merged away, or one per key (final true).
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
