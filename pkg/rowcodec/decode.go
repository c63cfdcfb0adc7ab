package rowcodec

import (
	"encoding/binary"
	"fmt"
	"math"
	"sync"

	"github.com/marketpipe/marketpipe/pkg/obs"
)

// Decode decodes a message made by Encode into b, reusing b's Obs and Rejects arrays. Strings
// in b share one allocation per batch. Any malformed input gives an error wrapping ErrCorrupt
// (ErrVersion for an unknown format version), never a panic; b's contents are then undefined.
func Decode(data []byte, b *Batch) error {
	cb := columnsPool.Get().(*ColumnBatch)
	defer func() {
		cb.clear() // the pool keeps no strings of this batch
		columnsPool.Put(cb)
	}()
	if err := DecodeColumns(data, cb); err != nil {
		return err
	}
	cb.rows(b)
	return nil
}

// rows sets b to the batch in rows, reusing b's arrays.
func (cb *ColumnBatch) rows(b *Batch) {
	b.JobID, b.Program, b.Generation, b.Version, b.Seq = cb.JobID, cb.Program, cb.Generation, cb.Version, cb.Seq
	b.SnapshotAt = cb.SnapshotAt
	b.Obs = grow(b.Obs, cb.Cols.Len())
	for i := range b.Obs {
		b.Obs[i] = cb.Cols.Row(i)
	}
	b.Rejects = append(b.Rejects[:0], cb.Rejects...)
}

var columnsPool = sync.Pool{New: func() any { return new(ColumnBatch) }}

// DecodeColumns decodes a message made by Encode into b, reusing b's arrays: what a consumer
// that stores columns (the loader) uses, as it builds no Observation per row. Strings in b
// share one allocation per batch. It checks the message as Decode does.
func DecodeColumns(data []byte, b *ColumnBatch) error {
	if err := decode(data, b); err != nil {
		return fmt.Errorf("decode row batch: %w", err)
	}
	return nil
}

var bodyPool = sync.Pool{New: func() any { return new([]byte) }}

func decode(data []byte, b *ColumnBatch) error {
	version, zbody, bodyLen, err := split(data)
	if err != nil {
		return err
	}
	bufp := bodyPool.Get().(*[]byte)
	defer bodyPool.Put(bufp)
	if uint64(cap(*bufp)) < bodyLen {
		*bufp = make([]byte, 0, bodyLen)
	}
	body, err := zDecoder().DecodeAll(zbody, (*bufp)[:0:bodyLen])
	if err != nil {
		return fmt.Errorf("decompress: %v: %w", err, ErrCorrupt)
	}
	if uint64(len(body)) != bodyLen {
		return fmt.Errorf("body of %d bytes, header says %d: %w", len(body), bodyLen, ErrCorrupt)
	}
	// One string for the whole body: every string in the batch is a slice of it, so decoding
	// allocates once rather than once per value, and the pooled buffer can be reused.
	r := reader{s: string(body), version: version}
	r.decodeBody(b)
	return r.err
}

// reader reads a body. The first error sticks: later reads return zero values, and callers
// check err at the end (loops are bounded by counts checked against the input's length).
type reader struct {
	s       string
	off     int
	err     error
	version byte // the message's format version
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%s at body offset %d: %w", fmt.Sprintf(format, args...), r.off, ErrCorrupt)
	}
	r.off = len(r.s)
}

func (r *reader) remaining() int { return len(r.s) - r.off }

func (r *reader) uvarint() uint64 {
	if r.off < len(r.s) && r.s[r.off] < 0x80 {
		r.off++
		return uint64(r.s[r.off-1])
	}
	var x uint64
	var shift uint
	for i := 0; i < binary.MaxVarintLen64; i++ {
		if r.off >= len(r.s) {
			r.fail("truncated")
			return 0
		}
		c := r.s[r.off]
		r.off++
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				break
			}
			return x | uint64(c)<<shift
		}
		x |= uint64(c&0x7f) << shift
		shift += 7
	}
	r.fail("varint overflows 64 bits")
	return 0
}

func (r *reader) varint() int64 {
	u := r.uvarint()
	return int64(u>>1) ^ -int64(u&1)
}

// count reads a count of at most limit.
func (r *reader) count(what string, limit int) int {
	n := r.uvarint()
	if n > uint64(limit) {
		r.fail("%s %d, at most %d", what, n, limit)
		return 0
	}
	return int(n)
}

func (r *reader) str() string {
	n := r.uvarint()
	if n > uint64(r.remaining()) {
		r.fail("string of %d bytes, %d left", n, r.remaining())
		return ""
	}
	s := r.s[r.off : r.off+int(n)]
	r.off += int(n)
	return s
}

func (r *reader) bytes(n int) string {
	if n > r.remaining() {
		r.fail("truncated")
		return ""
	}
	s := r.s[r.off : r.off+n]
	r.off += n
	return s
}

// dict reads a dictionary into list's array; it has at most one entry per row that uses it.
func (r *reader) dict(list []string, rows int) []string {
	k := r.count("dictionary size", min(rows, r.remaining()))
	list = grow(list, k)
	for i := range list {
		list[i] = r.str()
	}
	return list
}

// indexes reads n indexes into a dictionary of size entries into idx's array.
func (r *reader) indexes(idx []uint32, n, size int) []uint32 {
	idx = grow(idx, n)
	for i := range idx {
		if r.off < len(r.s) && r.s[r.off] < 0x80 && int(r.s[r.off]) < size {
			idx[i] = uint32(r.s[r.off])
			r.off++
			continue
		}
		idx[i] = uint32(r.index(size))
		if r.err != nil {
			return idx[:0]
		}
	}
	return idx
}

// index reads a dictionary index.
func (r *reader) index(size int) int {
	i := r.uvarint()
	if i >= uint64(size) {
		r.fail("index %d in a dictionary of %d", i, size)
		return 0
	}
	return int(i)
}

// header reads the fields a body starts with.
func (r *reader) header() (h Header) {
	h.JobID = r.str()
	h.Program = r.str()
	h.Generation = r.count("generation", math.MaxInt32)
	h.Version = r.uvarint()
	h.Seq = r.count("seq", math.MaxInt32)
	if r.version >= 2 {
		h.SnapshotAt = r.varint()
	}
	h.Observations = r.count("observations", MaxBatchRows)
	h.Rejects = r.count("rejects", MaxBatchRows-h.Observations)
	return h
}

// grow returns s with length n, reusing its array when it is large enough.
func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

func (r *reader) decodeBody(b *ColumnBatch) {
	h := r.header()
	b.JobID, b.Program, b.Generation, b.Version, b.Seq = h.JobID, h.Program, h.Generation, h.Version, h.Seq
	b.SnapshotAt = h.SnapshotAt
	n, m := h.Observations, h.Rejects
	if r.err == nil && n*minObsBytes+m*minRejectBytes > r.remaining() {
		r.fail("%d observations and %d rejects in %d bytes", n, m, r.remaining())
	}
	if r.err != nil {
		return
	}
	c := &b.Cols
	c.Securities = r.dict(c.Securities, n)
	c.Security = r.indexes(c.Security, n, len(c.Securities))
	c.Fields = r.dict(c.Fields, n)
	exps := r.bytes(len(c.Fields))
	for i := 0; i < len(exps); i++ {
		if exps[i] > maxExp {
			r.fail("decimal exponent %d", exps[i])
			return
		}
	}
	c.Field = r.indexes(c.Field, n, len(c.Fields))
	c.Flags = r.dict(c.Flags, n)
	c.Flag = r.indexes(c.Flag, n, len(c.Flags))
	if r.err != nil {
		return
	}
	c.Date = grow(c.Date, n)
	var date int64
	for i := range c.Date {
		date += r.varint()
		if date < math.MinInt32 || date > math.MaxInt32 {
			r.fail("date out of range")
			return
		}
		c.Date[i] = obs.Date(date)
	}
	kinds := r.bytes(n)
	if r.err != nil {
		return
	}
	c.Kind = grow(c.Kind, n)
	var nFloat int
	for i := range c.Kind {
		switch k := kinds[i]; k {
		case wireNull, wireDecimal, wireString, wireBulk:
			c.Kind[i] = obs.Kind(k)
		case wireFloat:
			c.Kind[i] = obs.Number
			nFloat++
		default:
			r.fail("kind %d", k)
			return
		}
	}
	c.Num = grow(c.Num, n)
	last := make([]int64, len(c.Fields))
	for i := range c.Num {
		c.Num[i] = 0
		if kinds[i] == wireDecimal {
			fi := c.Field[i]
			last[fi] += r.varint()
			c.Num[i] = float64(last[fi]) / pow10[exps[fi]]
		}
	}
	floats := r.bytes(nFloat * 8)
	if r.err != nil {
		return
	}
	c.Str = grow(c.Str, n)
	for i := range c.Str {
		c.Str[i] = ""
		switch kinds[i] {
		case wireFloat:
			c.Num[i] = math.Float64frombits(leUint64(floats))
			floats = floats[8:]
		case wireString, wireBulk:
			c.Str[i] = r.str()
		}
	}
	b.Rejects = grow(b.Rejects, m)
	for i := range b.Rejects {
		b.Rejects[i] = obs.Reject{Line: r.varint(), Raw: r.str(), Reason: r.str()}
	}
	if r.err == nil && r.off != len(r.s) {
		r.fail("%d bytes after the last row", r.remaining())
	}
}

func leUint64(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}
