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

	// Pending rows. Flush swaps in the spare arrays, so that the batch it hands out stays
	// valid while the next one fills.
	obs, spareObs         []obs.Observation
	rejects, spareRejects []obs.Reject

	est   sizer   // upper bound of the pending rows' body size
	ratio float64 // compressed size / estimate, of the last batch
	lim   int     // limit() for ratio, computed when ratio changes: Full runs for every row
	enc   *encoder
	out   []byte
	batch Batch
}

// NewBuilder returns a Builder for the batches of one job run.
func NewBuilder(jobID, program string, generation int, version uint64) *Builder {
	b := &Builder{jobID: jobID, program: program, generation: generation, version: version,
		enc: newEncoder(), est: sizer{record: true}}
	b.setRatio(1)
	b.est.reset(b.fixed())
	return b
}

// Reset makes b a Builder for the batches of another job run, as NewBuilder does, but keeps
// its arrays and encoder, and its last compression ratio as the first prediction (Flush
// corrects a prediction that turns out too low). A transformer that parses many chunks reuses
// one Builder instead of growing new arrays for each.
func (b *Builder) Reset(jobID, program string, generation int, version uint64) {
	clear(b.obs[:cap(b.obs)]) // no references to the last run's strings
	clear(b.spareObs[:cap(b.spareObs)])
	clear(b.rejects[:cap(b.rejects)])
	clear(b.spareRejects[:cap(b.spareRejects)])
	b.obs, b.spareObs, b.rejects, b.spareRejects = b.obs[:0], b.spareObs[:0], b.rejects[:0], b.spareRejects[:0]
	b.jobID, b.program, b.generation, b.version, b.seq = jobID, program, generation, version, 0
	b.batch = Batch{}
	b.est.reset(b.fixed())
}

func (b *Builder) fixed() int { return batchOverhead + len(b.jobID) + len(b.program) }

// sizer keeps an upper bound of the body size of a sequence of rows, following the encoder's
// layout: it must never be below the real size, because the bounds rely on it. The
// dictionaries it builds for that are the encoder's (dictIndexes), when the rows' indexes are
// recorded (record).
type sizer struct {
	size                int
	secs, fields, flags dict
	lastDate            obs.Date
	record              bool
	sec, field, flag    []uint32 // with record, each row's indexes
}

func (s *sizer) reset(fixed int) {
	if s.secs.idx == nil {
		s.secs, s.fields, s.flags = newDict(), newDict(), newDict()
	}
	s.secs.reset()
	s.fields.reset()
	s.flags.reset()
	s.size, s.lastDate = fixed, 0
	s.sec, s.field, s.flag = s.sec[:0], s.field[:0], s.flag[:0]
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

func (s *sizer) add(o *obs.Observation) {
	si, fi, fl := s.index(&s.secs, o.Security), s.index(&s.fields, o.Field), s.index(&s.flags, o.Flag)
	if s.record {
		s.sec, s.field, s.flag = append(s.sec, si), append(s.field, fi), append(s.flag, fl)
	}
	d := int64(o.Date) - int64(s.lastDate)
	s.lastDate = o.Date
	s.size += uvarintLen(uint64(d<<1^d>>63)) + 1 // date delta, kind
	switch o.Kind {
	case obs.Number:
		s.size += binary.MaxVarintLen64 // a mantissa delta, or 8 bytes of float
	case obs.String, obs.Bulk:
		s.size += uvarintLen(uint64(len(o.Str))) + len(o.Str)
	}
}

func (s *sizer) addReject(r *obs.Reject) {
	s.size += binary.MaxVarintLen64 + uvarintLen(uint64(len(r.Raw))) + len(r.Raw) +
		uvarintLen(uint64(len(r.Reason))) + len(r.Reason)
}

func uvarintLen(x uint64) int { return (bits.Len64(x|1) + 6) / 7 }

// Add appends a copy of o to the pending rows. It refuses, with ErrTooLarge, an observation
// whose strings exceed MaxObservationBytes (no batch could carry it), and one of an unknown
// Kind.
func (b *Builder) Add(o *obs.Observation) error {
	if o.Kind > obs.Bulk {
		return fmt.Errorf("add observation %s %s %s: unknown kind %d", o.Security, o.Field, o.Date, o.Kind)
	}
	if n := len(o.Security) + len(o.Field) + len(o.Flag) + len(o.Str); n > MaxObservationBytes {
		return fmt.Errorf("add observation %.64q %s %s: %d bytes, limit %d: %w",
			o.Security, o.Field, o.Date, n, MaxObservationBytes, ErrTooLarge)
	}
	b.obs = append(b.obs, *o)
	b.est.add(o)
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
func (b *Builder) Len() int { return len(b.obs) + len(b.rejects) }

// Seq returns the Seq of the next batch: the first Seq (0, or what StartSeq set) plus the
// number of batches handed out.
func (b *Builder) Seq() int { return b.seq }

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
// caller; batch shares the Builder's memory and stays valid until the next Flush.
func (b *Builder) Flush() (batch *Batch, data []byte, err error) {
	nObs, nRej := len(b.obs), len(b.rejects)
	if nObs+nRej == 0 {
		return nil, nil, nil
	}
	if nObs+nRej > MaxBatchRows {
		nObs = min(nObs, MaxBatchRows)
		nRej = MaxBatchRows - nObs
	}
	estimate := -1 // the estimate of the rows tried; -1: not computed
	var pre *dictIndexes
	if nObs == len(b.obs) && nRej == len(b.rejects) {
		// All the pending rows: the sizer's dictionaries are theirs.
		estimate = b.est.size
		pre = &dictIndexes{secs: b.est.secs.list, fields: b.est.fields.list, flags: b.est.flags.list,
			sec: b.est.sec, field: b.est.field, flag: b.est.flag}
	}
	for {
		b.batch = Batch{JobID: b.jobID, Program: b.program, Generation: b.generation,
			Version: b.version, Seq: b.seq, Obs: b.obs[:nObs], Rejects: b.rejects[:nRej]}
		size, err := b.encode(&b.batch, pre)
		pre = nil // a smaller part is encoded with its own dictionaries
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
		nObs, nRej, estimate = o, r, -1
	}
	data = make([]byte, len(b.out))
	copy(data, b.out)
	b.drop(nObs, nRej)
	b.seq++
	return &b.batch, data, nil
}

// encode encodes batch into b.out, with pre's dictionaries if not nil, returning the encoded
// size, or ErrTooLarge with the size when that exceeds MaxMessageBytes.
func (b *Builder) encode(batch *Batch, pre *dictIndexes) (int, error) {
	if err := b.enc.encodeBodyWith(batch, pre); err != nil {
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
	for i := range b.obs[:nObs] {
		s.add(&b.obs[i])
	}
	for i := range b.rejects[:nRej] {
		s.addReject(&b.rejects[i])
	}
	return s.size
}

// drop removes the leading rows, moving the rest to the spare arrays, which become the pending
// ones; the dropped rows' arrays become the spares (and back the batch just handed out).
//
// The spare arrays are not cleared: the rows added next overwrite them, so the strings they
// keep alive are at most one more batch's (Reset clears them). Clearing them took a tenth of
// the Builder's time.
func (b *Builder) drop(nObs, nRej int) {
	restObs := append(b.spareObs[:0], b.obs[nObs:]...)
	restRej := append(b.spareRejects[:0], b.rejects[nRej:]...)
	b.spareObs, b.obs = b.obs, restObs
	b.spareRejects, b.rejects = b.rejects, restRej
	b.est.reset(b.fixed())
	for i := range b.obs {
		b.est.add(&b.obs[i])
	}
	for i := range b.rejects {
		b.est.addReject(&b.rejects[i])
	}
}
