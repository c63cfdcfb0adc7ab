package rowcodec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"unicode/utf8"

	"github.com/marketpipe/marketpipe/pkg/obs"
)

const (
	// safeBodyBytes is a body size that always fits MaxMessageBytes once compressed, however
	// badly it compresses: zstd adds at most a few bytes per 128 KiB block plus a frame header
	// and checksum to incompressible input, and the message header is at most headerMax.
	safeBodyBytes = MaxMessageBytes - 4<<10
	// targetMessageBytes is what the Builder aims at when it predicts a batch's compressed size
	// from the previous batch's ratio; the margin absorbs batches that compress a little
	// worse than the last one without a re-encode.
	targetMessageBytes = MaxMessageBytes * 7 / 8

	// MaxRejectRawBytes and MaxRejectReasonBytes bound what a reject carries: AddReject
	// truncates longer lines (and says so in the reason), so that a garbage line of megabytes
	// is still recorded rather than failing the job.
	MaxRejectRawBytes    = 64 << 10
	MaxRejectReasonBytes = 4 << 10

	// rowOverhead bounds what a row adds besides its strings: three dictionary indexes and a
	// date delta (a varint each), a kind byte, a number (varint or 8 bytes), three string
	// lengths and a field's exponent byte.
	rowOverhead = 4*binary.MaxVarintLen64 + 1 + binary.MaxVarintLen64 + 3*binary.MaxVarintLen32 + 1
	// batchOverhead bounds a body's fixed part besides the job id and program.
	batchOverhead = 5*binary.MaxVarintLen64 + 2*binary.MaxVarintLen32 + 3*binary.MaxVarintLen32
	// maxRejectCost bounds a reject's body size after truncation.
	maxRejectCost = MaxRejectRawBytes + MaxRejectReasonBytes + len(truncNote) + 20 + 3*binary.MaxVarintLen64
	// MaxObservationBytes bounds the strings of one observation (security, field, flag and
	// value together); Add refuses a larger one with ErrTooLarge. It leaves room for a reject
	// beside it, so that any one observation and one reject fit a message together.
	MaxObservationBytes = safeBodyBytes - batchOverhead - rowOverhead - maxRejectCost - 1<<10
)

const truncNote = " (line truncated from %d bytes)"

// Builder cuts the observations and rejects of one job run into batches in order, each
// encoding to at most MaxMessageBytes and holding at most MaxBatchRows rows. Use it as
//
//	for each observation { b.Add(&o); if b.Full() { publish(b.Flush()) } }
//	for b.Len() > 0 { publish(b.Flush()) }
//
// It predicts each batch's compressed size from its uncompressed size and the previous
// batch's compression ratio, starting from the assumption that nothing compresses, so the
// first batch is always small enough. The prediction only decides when Full reports true:
// Flush encodes, checks the real size and, if the batch came out too large after all (the
// data turned incompressible), hands out a smaller leading part and keeps the rest.
//
// A Builder is not safe for concurrent use.
type Builder struct {
	jobID, program string
	generation     int
	version        uint64
	seq            int
	snapshotAt     int64 // Unix seconds of a snapshot file's data (SetSnapshotAt)

	// Pending rows: the observations column by column, with their indexes into the sizer's
	// dictionaries, and the rejects. Flush swaps in the spare columns, dictionaries and
	// rejects, so that the batch it hands out stays valid while the next one fills.
	cols, spareCols       obs.Columns
	spareDicts            [3]dict // the sizer's secs, fields and flags of the last batch
	rejects, spareRejects []obs.Reject
	part                  obs.Columns // a leading part of the pending rows, when they do not fit
	partDicts             [3]dict

	est   sizer   // upper bound of the pending rows' body size; its dictionaries are theirs
	ratio float64 // compressed size / estimate, of the last batch
	lim   int     // limit() for ratio, computed when ratio changes: Full runs for every row
	enc   *encoder
	out   []byte
	batch ColumnBatch
}

// NewBuilder returns a Builder for the batches of one job run.
func NewBuilder(jobID, program string, generation int, version uint64) *Builder {
	b := &Builder{jobID: jobID, program: program, generation: generation, version: version, enc: newEncoder(),
		spareDicts: [3]dict{newDict(), newDict(), newDict()}, partDicts: [3]dict{newDict(), newDict(), newDict()}}
	b.setRatio(1)
	b.est.reset(b.fixed())
	return b
}

// Reset makes b a Builder for the batches of another job run, as NewBuilder does, but keeps
// its arrays and encoder, and its last compression ratio as the first prediction (Flush
// corrects a prediction that turns out too low). A transformer that parses many chunks reuses
// one Builder instead of growing new arrays for each.
func (b *Builder) Reset(jobID, program string, generation int, version uint64) {
	// No references to the last run's strings.
	for _, c := range []*obs.Columns{&b.cols, &b.spareCols, &b.part} {
		clear(c.Str[:cap(c.Str)])
		truncColumns(c)
	}
	for i := range 3 {
		b.spareDicts[i].reset()
		b.partDicts[i].reset()
	}
	clear(b.rejects[:cap(b.rejects)])
	clear(b.spareRejects[:cap(b.spareRejects)])
	b.rejects, b.spareRejects = b.rejects[:0], b.spareRejects[:0]
	b.jobID, b.program, b.generation, b.version, b.seq = jobID, program, generation, version, 0
	b.snapshotAt = 0
	b.batch = ColumnBatch{}
	b.est.reset(b.fixed())
}

// truncColumns empties c, keeping its arrays.
func truncColumns(c *obs.Columns) {
	c.Securities, c.Fields, c.Flags = nil, nil, nil
	c.Security, c.Field, c.Flag = c.Security[:0], c.Field[:0], c.Flag[:0]
	c.Date, c.Kind, c.Num, c.Str = c.Date[:0], c.Kind[:0], c.Num[:0], c.Str[:0]
}

func (b *Builder) fixed() int { return batchOverhead + len(b.jobID) + len(b.program) }

// sizer keeps an upper bound of the body size of a sequence of rows, following the encoder's
// layout: it must never be below the real size, because the bounds rely on it. The
// dictionaries it builds for that are the encoder's: each value once, in the order of first
// use.
type sizer struct {
	size                int
	secs, fields, flags dict
	lastDate            obs.Date
}

func (s *sizer) reset(fixed int) {
	if s.secs.idx == nil {
		s.secs, s.fields, s.flags = newDict(), newDict(), newDict()
	}
	s.secs.reset()
	s.fields.reset()
	s.flags.reset()
	s.size, s.lastDate = fixed, 0
}

// index adds v's dictionary entry if new (length, bytes and, for fields, the exponent byte),
// and its index in the column, and returns the index.
func (s *sizer) index(d *dict, v string) uint32 {
	n := len(d.list)
	i := d.id(v)
	if i == uint32(n) { // new
		s.size += uvarintLen(uint64(len(v))) + len(v) + 1
	}
	s.size += uvarintLen(uint64(len(d.list)))
	return i
}

// add adds o and returns its security's, field's and flag's indexes in the dictionaries.
func (s *sizer) add(o *obs.Observation) (sec, field, flag uint32) {
	sec, field, flag = s.index(&s.secs, o.Security), s.index(&s.fields, o.Field), s.index(&s.flags, o.Flag)
	d := int64(o.Date) - int64(s.lastDate)
	s.lastDate = o.Date
	s.size += uvarintLen(uint64(d<<1^d>>63)) + 1 // date delta, kind
	switch o.Kind {
	case obs.Number:
		s.size += binary.MaxVarintLen64 // a mantissa delta, or 8 bytes of float
	case obs.String, obs.Bulk:
		s.size += uvarintLen(uint64(len(o.Str))) + len(o.Str)
	}
	return sec, field, flag
}

func (s *sizer) addReject(r *obs.Reject) {
	s.size += binary.MaxVarintLen64 + uvarintLen(uint64(len(r.Raw))) + len(r.Raw) +
		uvarintLen(uint64(len(r.Reason))) + len(r.Reason)
}

func uvarintLen(x uint64) int { return (bits.Len64(x|1) + 6) / 7 }

// Add appends o to the pending rows, column by column. It refuses, with ErrTooLarge, an
// observation whose strings exceed MaxObservationBytes (no batch could carry it), and one of
// an unknown Kind.
func (b *Builder) Add(o *obs.Observation) error {
	if o.Kind > obs.Bulk {
		return fmt.Errorf("add observation %s %s %s: unknown kind %d", o.Security, o.Field, o.Date, o.Kind)
	}
	if n := len(o.Security) + len(o.Field) + len(o.Flag) + len(o.Str); n > MaxObservationBytes {
		return fmt.Errorf("add observation %.64q %s %s: %d bytes, limit %d: %w",
			o.Security, o.Field, o.Date, n, MaxObservationBytes, ErrTooLarge)
	}
	sec, field, flag := b.est.add(o)
	appendRow(&b.cols, sec, field, flag, o)
	return nil
}

// AddReject appends a copy of r to the pending rows, truncating a Raw longer than
// MaxRejectRawBytes (the reason then says so) and a Reason longer than MaxRejectReasonBytes.
func (b *Builder) AddReject(r *obs.Reject) {
	c := *r
	if len(c.Reason) > MaxRejectReasonBytes {
		c.Reason = truncUTF8(c.Reason, MaxRejectReasonBytes)
	}
	if len(c.Raw) > MaxRejectRawBytes {
		c.Reason += fmt.Sprintf(truncNote, len(c.Raw))
		c.Raw = truncUTF8(c.Raw, MaxRejectRawBytes)
	}
	b.rejects = append(b.rejects, c)
	b.est.addReject(&c)
}

// truncUTF8 cuts s to at most n bytes without splitting a UTF-8 sequence (in text that is not
// UTF-8 it backs up at most 3 bytes).
func truncUTF8(s string, n int) string {
	if n >= len(s) {
		return s
	}
	for i := 0; i < utf8.UTFMax-1 && n > 0 && !utf8.RuneStart(s[n]); i++ {
		n--
	}
	return s[:n]
}

// Len returns the number of pending rows (observations and rejects).
func (b *Builder) Len() int { return b.cols.Len() + len(b.rejects) }

// Seq returns the Seq of the next batch: the first Seq (0, or what StartSeq set) plus the
// number of batches handed out.
func (b *Builder) Seq() int { return b.seq }

// SetSnapshotAt sets the SnapshotAt of the batches flushed from now on (Unix seconds; 0 for
// history). Reset sets it back to 0.
func (b *Builder) SetSnapshotAt(unix int64) { b.snapshotAt = unix }

// StartSeq makes the next batch's Seq seq and numbers the following ones from there, so that
// builders of different parts of one job run (the transformer's chunks) hand out distinct
// sequence numbers. Call it before the first Flush.
func (b *Builder) StartSeq(seq int) { b.seq = seq }

// Full reports whether the pending rows make a batch: MaxBatchRows rows, or as many as are
// predicted to compress to about MaxMessageBytes. Rows added after Full reports true are
// kept for later batches.
func (b *Builder) Full() bool {
	return b.Len() >= MaxBatchRows || b.est.size >= b.lim
}

// setRatio records the last batch's compression ratio, and the limit it gives.
func (b *Builder) setRatio(r float64) {
	b.ratio = r
	b.lim = b.limit()
}

// limit is the estimated body size predicted to fill a message: never below what fits however
// poorly it compresses, never above what Encode accepts.
func (b *Builder) limit() int {
	lim := float64(targetMessageBytes) / max(b.ratio, 1e-3)
	return int(min(max(lim, safeBodyBytes), MaxBodyBytes))
}

// Flush encodes the leading pending rows as the next batch and returns it with its encoding.
// It returns a nil batch when nothing is pending. data is newly allocated and belongs to the
// caller; batch shares the Builder's memory and stays valid until the next Flush or Reset.
func (b *Builder) Flush() (batch *ColumnBatch, data []byte, err error) {
	nObs, nRej := b.cols.Len(), len(b.rejects)
	if nObs+nRej == 0 {
		return nil, nil, nil
	}
	if nObs+nRej > MaxBatchRows {
		nObs = min(nObs, MaxBatchRows)
		nRej = MaxBatchRows - nObs
	}
	for {
		all := nObs == b.cols.Len() && nRej == len(b.rejects)
		b.batch = ColumnBatch{JobID: b.jobID, Program: b.program, Generation: b.generation,
			Version: b.version, Seq: b.seq, SnapshotAt: b.snapshotAt, Rejects: b.rejects[:nRej]}
		estimate := -1 // the estimate of the rows tried; -1: not computed
		if all {
			// All the pending rows: the sizer's dictionaries are theirs.
			b.batch.Cols = b.pending()
			estimate = b.est.size
		} else {
			// A leading part, with dictionaries of its own.
			src := b.pending()
			rowsInto(&b.part, &b.partDicts, &src, 0, nObs)
			b.batch.Cols = b.part
		}
		size, err := b.encode(&b.batch)
		if err == nil {
			if estimate < 0 {
				estimate = b.estimate(nObs, nRej)
			}
			b.setRatio(float64(size) / float64(estimate))
			break
		}
		if !errors.Is(err, ErrTooLarge) {
			return nil, nil, fmt.Errorf("flush row batch %d of %s: %w", b.seq, b.jobID, err)
		}
		if nObs+nRej <= 1 {
			// Add's bounds make this impossible; drop the row rather than loop forever.
			b.drop(nObs, nRej)
			return nil, nil, fmt.Errorf("flush row batch %d of %s: a single row: %w", b.seq, b.jobID, err)
		}
		// Shrink towards what should fit, by at least half.
		f := 0.5
		if size > 0 {
			f = min(f, float64(targetMessageBytes)/float64(size))
		}
		o, r := int(float64(nObs)*f), int(float64(nRej)*f)
		if o+r == 0 {
			if nObs > 0 {
				o = 1
			} else {
				r = 1
			}
		}
		nObs, nRej = o, r
	}
	data = make([]byte, len(b.out))
	copy(data, b.out)
	b.drop(nObs, nRej)
	b.seq++
	return &b.batch, data, nil
}

// pending returns the pending observations with their dictionaries.
func (b *Builder) pending() obs.Columns {
	c := b.cols
	c.Securities, c.Fields, c.Flags = b.est.secs.list, b.est.fields.list, b.est.flags.list
	return c
}

// rowsInto makes dst rows [from, to) of src, with dictionaries of their own built in dicts
// (each value once, in the order of first use).
func rowsInto(dst *obs.Columns, dicts *[3]dict, src *obs.Columns, from, to int) {
	for i := range dicts {
		dicts[i].reset()
	}
	truncColumns(dst)
	for i := from; i < to; i++ {
		o := src.Row(i)
		appendRow(dst, dicts[0].id(o.Security), dicts[1].id(o.Field), dicts[2].id(o.Flag), &o)
	}
	dst.Securities, dst.Fields, dst.Flags = dicts[0].list, dicts[1].list, dicts[2].list
}

// encode encodes batch into b.out, returning the encoded size, or ErrTooLarge with the size
// when that exceeds MaxMessageBytes.
func (b *Builder) encode(batch *ColumnBatch) (int, error) {
	if err := b.enc.encodeColumns(batch); err != nil {
		return 0, err
	}
	b.out = b.enc.appendMessage(b.out[:0])
	if len(b.out) > MaxMessageBytes {
		return len(b.out), fmt.Errorf("%d bytes encoded: %w", len(b.out), ErrTooLarge)
	}
	return len(b.out), nil
}

// estimate returns the size estimate of the leading rows.
func (b *Builder) estimate(nObs, nRej int) int {
	var s sizer
	s.reset(b.fixed())
	c := b.pending()
	for i := range nObs {
		o := c.Row(i)
		s.add(&o)
	}
	for i := range b.rejects[:nRej] {
		s.addReject(&b.rejects[i])
	}
	return s.size
}

// drop removes the leading rows. When they are all the pending rows (the common case), the
// pending columns, dictionaries and rejects become the spares, which back the batch just
// handed out, and the spares, emptied, become the pending ones. Otherwise the rest is gathered
// again, with dictionaries of its own, in the spare arrays, which then become the pending ones.
//
// The spare arrays are not cleared: the rows added next overwrite them, so the strings they
// keep alive are at most one more batch's (Reset clears them).
func (b *Builder) drop(nObs, nRej int) {
	restRej := append(b.spareRejects[:0], b.rejects[nRej:]...)
	b.spareRejects, b.rejects = b.rejects, restRej
	if nObs == b.cols.Len() {
		b.cols, b.spareCols = b.spareCols, b.cols
		truncColumns(&b.cols)
		b.est.secs, b.spareDicts[0] = b.spareDicts[0], b.est.secs
		b.est.fields, b.spareDicts[1] = b.spareDicts[1], b.est.fields
		b.est.flags, b.spareDicts[2] = b.spareDicts[2], b.est.flags
		b.est.reset(b.fixed())
	} else {
		// Rare: a batch came out too large. The rest is copied out, then added again to the
		// emptied sizer and columns (the part handed out has arrays of its own).
		src := b.pending()
		var rest obs.Columns
		restDicts := [3]dict{newDict(), newDict(), newDict()}
		rowsInto(&rest, &restDicts, &src, nObs, src.Len())
		b.est.reset(b.fixed())
		truncColumns(&b.cols)
		for i := range rest.Len() {
			o := rest.Row(i)
			sec, field, flag := b.est.add(&o)
			appendRow(&b.cols, sec, field, flag, &o)
		}
	}
	for i := range b.rejects {
		b.est.addReject(&b.rejects[i])
	}
}
