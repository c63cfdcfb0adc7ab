package rowcodec

import (
	"encoding/binary"
	"fmt"
	"math"
	"sync"

	"github.com/marketpipe/marketpipe/pkg/obs"
)

// Encode appends the encoded batch to dst. It fails, leaving dst as it was, when the batch
// has more than MaxBatchRows rows, an observation of an unknown Kind, a negative Generation
// or Seq, or does not fit MaxBodyBytes or MaxMessageBytes (ErrTooLarge). Builder produces
// batches that always fit.
func Encode(dst []byte, b *Batch) ([]byte, error) {
	e := encoderPool.Get().(*encoder)
	defer encoderPool.Put(e)
	if err := e.encodeBody(b); err != nil {
		return dst, fmt.Errorf("encode row batch %d of %s: %w", b.Seq, b.JobID, err)
	}
	start := len(dst)
	dst = e.appendMessage(dst)
	if n := len(dst) - start; n > MaxMessageBytes {
		return dst[:start], fmt.Errorf("encode row batch %d of %s: %d bytes encoded, limit %d: %w",
			b.Seq, b.JobID, n, MaxMessageBytes, ErrTooLarge)
	}
	return dst, nil
}

var encoderPool = sync.Pool{New: func() any { return newEncoder() }}

// encoder holds the scratch memory of encoding, reused across batches.
type encoder struct {
	secs, fields, flags dict
	cols                obs.Columns // Encode's batch, gathered into columns
	fieldExp            []uint8
	// mantissas found in the first pass, and the exponent they were found at: most are still
	// valid at the field's final exponent, which saves computing them again.
	mants        []int64
	mantExps     []uint8
	lastMant     []int64
	mant, floats []byte
	body         []byte
}

func newEncoder() *encoder {
	return &encoder{secs: newDict(), fields: newDict(), flags: newDict()}
}

// dict assigns indexes to the distinct strings of a column.
type dict struct {
	idx  map[string]uint32
	list []string
	// The last string looked up: columns come in long runs, and comparing with the previous
	// value is much cheaper than hashing.
	last    string
	lastIdx uint32
	hasLast bool
}

func newDict() dict { return dict{idx: make(map[string]uint32)} }

func (d *dict) reset() {
	clear(d.idx)
	clear(d.list) // drop references to the batch's strings
	d.list = d.list[:0]
	d.last, d.hasLast = "", false
}

// id returns s's index, adding it if new.
func (d *dict) id(s string) uint32 {
	if d.hasLast && s == d.last {
		return d.lastIdx
	}
	i, ok := d.lookup(s)
	if !ok {
		i = uint32(len(d.list))
		d.idx[s] = i
		d.list = append(d.list, s)
	}
	d.last, d.lastIdx, d.hasLast = s, i, true
	return i
}

// lookup finds s. A few fields cycling row after row are the common case, and scanning a
// short list is cheaper than hashing (strings from one parser usually share their bytes, so
// most comparisons stop at the pointer).
func (d *dict) lookup(s string) (uint32, bool) {
	if len(d.list) <= 8 {
		for i, v := range d.list {
			if v == s {
				return uint32(i), true
			}
		}
		return 0, false
	}
	i, ok := d.idx[s]
	return i, ok
}

// decimalAt returns v's mantissa at exponent e when v is exactly mantissa/10^e, computed the
// way Decode will compute it, so that only values that round-trip bit for bit are sent as
// decimals.
func decimalAt(v float64, e uint8) (int64, bool) {
	m := math.Round(v * pow10[e])
	if !(math.Abs(m) < 1<<53) { // also false for NaN and ±Inf
		return 0, false
	}
	mi := int64(m)
	return mi, math.Float64bits(float64(mi)/pow10[e]) == math.Float64bits(v)
}

// encodeBody writes b's body into e.body: it gathers b's observations into columns, with
// the dictionaries in the order of first use, and encodes those (encodeColumns).
func (e *encoder) encodeBody(b *Batch) error {
	if n := len(b.Obs) + len(b.Rejects); n > MaxBatchRows {
		return fmt.Errorf("%d rows, limit %d: %w", n, MaxBatchRows, ErrTooLarge)
	}
	e.secs.reset()
	e.fields.reset()
	e.flags.reset()
	c := &e.cols
	c.Security, c.Field, c.Flag = c.Security[:0], c.Field[:0], c.Flag[:0]
	c.Date, c.Kind, c.Num, c.Str = c.Date[:0], c.Kind[:0], c.Num[:0], c.Str[:0]
	for i := range b.Obs {
		o := &b.Obs[i]
		appendRow(c, e.secs.id(o.Security), e.fields.id(o.Field), e.flags.id(o.Flag), o)
	}
	c.Securities, c.Fields, c.Flags = e.secs.list, e.fields.list, e.flags.list
	cb := ColumnBatch{JobID: b.JobID, Program: b.Program, Generation: b.Generation, Version: b.Version,
		Seq: b.Seq, SnapshotAt: b.SnapshotAt, Cols: *c, Rejects: b.Rejects}
	err := e.encodeColumns(&cb)
	clear(c.Str) // no references to the batch's strings in the pooled encoder
	return err
}

// appendRow appends o to c, with the given dictionary indexes.
func appendRow(c *obs.Columns, sec, field, flag uint32, o *obs.Observation) {
	c.Security, c.Field, c.Flag = append(c.Security, sec), append(c.Field, field), append(c.Flag, flag)
	c.Date, c.Kind, c.Num, c.Str = append(c.Date, o.Date), append(c.Kind, o.Kind), append(c.Num, o.Num), append(c.Str, o.Str)
}

// encodeColumns writes b's body into e.body. b's dictionaries must list each value once, in
// the order of the rows' first use of it (as encodeBody and the Builder make them), for the
// encoding of a batch to be one and the same whoever made it.
func (e *encoder) encodeColumns(b *ColumnBatch) error {
	if b.Generation < 0 || b.Seq < 0 {
		return fmt.Errorf("negative generation %d or seq %d", b.Generation, b.Seq)
	}
	c := &b.Cols
	nObs := c.Len()
	if n := nObs + len(b.Rejects); n > MaxBatchRows {
		return fmt.Errorf("%d rows, limit %d: %w", n, MaxBatchRows, ErrTooLarge)
	}
	e.fieldExp = grow(e.fieldExp[:0], len(c.Fields))
	clear(e.fieldExp)
	e.mants, e.mantExps = e.mants[:0], e.mantExps[:0]

	// Pass 1: for each field, the exponent that makes its numbers decimals.
	for i, k := range c.Kind {
		if k > obs.Bulk {
			return fmt.Errorf("observation %d: unknown kind %d", i, k)
		}
		if k == obs.Number {
			fi, v := c.Field[i], c.Num[i]
			ex := e.fieldExp[fi]
			m, ok := decimalAt(v, ex)
			for x := ex + 1; !ok && x <= maxExp; x++ {
				if m, ok = decimalAt(v, x); ok {
					ex = x
					e.fieldExp[fi] = x
				}
			}
			if !ok {
				ex = 0xff // not a decimal at any exponent
			}
			e.mants = append(e.mants, m)
			e.mantExps = append(e.mantExps, ex)
		}
	}

	body := e.body[:0]
	body = appendStr(body, b.JobID)
	body = appendStr(body, b.Program)
	body = binary.AppendUvarint(body, uint64(b.Generation))
	body = binary.AppendUvarint(body, b.Version)
	body = binary.AppendUvarint(body, uint64(b.Seq))
	body = binary.AppendVarint(body, b.SnapshotAt)
	body = binary.AppendUvarint(body, uint64(nObs))
	body = binary.AppendUvarint(body, uint64(len(b.Rejects)))

	body = appendDict(body, c.Securities)
	body = appendIndexes(body, c.Security)
	body = appendDict(body, c.Fields)
	body = append(body, e.fieldExp...)
	body = appendIndexes(body, c.Field)
	body = appendDict(body, c.Flags)
	body = appendIndexes(body, c.Flag)

	var prev int64
	for _, d := range c.Date {
		body = binary.AppendVarint(body, int64(d)-prev)
		prev = int64(d)
	}

	// Kinds, with the numbers' streams gathered on the side.
	if cap(e.lastMant) < len(e.fieldExp) {
		e.lastMant = make([]int64, len(e.fieldExp))
	}
	last := e.lastMant[:len(e.fieldExp)]
	clear(last)
	mant, floats := e.mant[:0], e.floats[:0]
	j := 0 // index in e.mants
	for i, kind := range c.Kind {
		k := byte(kind)
		if kind == obs.Number {
			fi := c.Field[i]
			m, ok := e.mants[j], true
			if ex := e.fieldExp[fi]; e.mantExps[j] != ex {
				m, ok = decimalAt(c.Num[i], ex)
			}
			j++
			if ok {
				mant = binary.AppendVarint(mant, m-last[fi])
				last[fi] = m
			} else {
				k = wireFloat
				floats = binary.LittleEndian.AppendUint64(floats, math.Float64bits(c.Num[i]))
			}
		}
		body = append(body, k)
	}
	body = append(body, mant...)
	body = append(body, floats...)
	e.mant, e.floats = mant, floats

	for i, k := range c.Kind {
		if k == obs.String || k == obs.Bulk {
			body = appendStr(body, c.Str[i])
		}
	}
	for i := range b.Rejects {
		r := &b.Rejects[i]
		body = binary.AppendVarint(body, r.Line)
		body = appendStr(body, r.Raw)
		body = appendStr(body, r.Reason)
	}
	e.body = body
	if len(body) > MaxBodyBytes {
		return fmt.Errorf("%d bytes before compression, limit %d: %w", len(body), MaxBodyBytes, ErrTooLarge)
	}
	return nil
}

// appendMessage appends the header and the compressed body.
func (e *encoder) appendMessage(dst []byte) []byte {
	dst = append(dst, magic...)
	dst = append(dst, formatVersion)
	dst = binary.AppendUvarint(dst, uint64(len(e.body)))
	return zEncoder().EncodeAll(e.body, dst)
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendDict(b []byte, list []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(list)))
	for _, s := range list {
		b = appendStr(b, s)
	}
	return b
}

func appendIndexes(b []byte, idx []uint32) []byte {
	for _, i := range idx {
		if i < 0x80 {
			b = append(b, byte(i))
		} else {
			b = binary.AppendUvarint(b, uint64(i))
		}
	}
	return b
}
