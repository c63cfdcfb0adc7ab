// Package rowcodec encodes the row batches that carry observations from the transformer to the
// loader on mp.rows.<job id>.
//
// A batch is compact and bounded: the transformer splits a reply file into batches of at most
// MaxBatchRows rows whose encoded message never exceeds MaxMessageBytes (JetStream's default
// max_payload is 1 MB), and the loader decodes many of them into one large ClickHouse insert.
// Builder does the splitting; Encode and Decode are the format.
//
// # Format, version 1
//
// A message is a small uncompressed header and a zstd frame:
//
//	"MPRB" | version byte (1) | uvarint body length | zstd(body)
//
// The body is columnar, because a reply file's columns are each very regular (one security for
// hundreds of rows, a handful of fields cycling, dates stepping by one) and zstd finds that
// regularity far better in a column than spread across rows:
//
//	str job id | str program | uvarint generation | uvarint version | uvarint seq
//	uvarint observations (n) | uvarint rejects (m)
//	securities: uvarint k, k × str, n × uvarint index
//	fields:     uvarint k, k × str, k × exponent byte, n × uvarint index
//	flags:      uvarint k, k × str, n × uvarint index
//	dates:      n × zigzag varint delta from the previous row's date (the first from 0)
//	kinds:      n bytes: 0 null, 1 decimal number, 2 string, 3 bulk, 4 float number
//	decimals:   for each decimal row, zigzag varint delta of its mantissa from the previous
//	            mantissa of the same field; the value is mantissa / 10^exponent(field)
//	floats:     for each float row, 8 bytes little-endian IEEE 754
//	strings:    for each string or bulk row, str
//	rejects:    m × (zigzag varint line, str raw, str reason)
//
// where str is a uvarint byte length and the bytes. Vendor numbers are decimal text, so most
// float64 values are exactly m/10^e for a small e; sending m as a delta takes about 2 bytes per
// number after compression, against about 3.6 for the raw float64 (XOR with the previous value
// of the field, Gorilla-style, measured no better than raw: the low mantissa bits of decimal
// fractions look random). A number that is not such a decimal (NaN, ±Inf, -0, 1/3, very large)
// is sent as its raw float64, so every value round-trips bit for bit.
//
// Only the members an observation's Kind says are meaningful travel: Num for Number, Str for
// String and Bulk. Decode sets the others to zero.
package rowcodec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/marketpipe/marketpipe/pkg/obs"
)

const (
	// MaxMessageBytes bounds an encoded batch: the default max_payload of a NATS server.
	MaxMessageBytes = 1 << 20
	// MaxBatchRows bounds the observations plus rejects in one batch. About 100k rows keep a
	// decoded batch around 10 MB, and are enough for the loader, which assembles many batches
	// into one insert. Decode refuses more, so a hostile message cannot make it allocate more.
	MaxBatchRows = 100_000
	// MaxBodyBytes bounds a batch's uncompressed body, which is what Decode allocates; zstd
	// compresses repetitive text well over 10:1, and this keeps such a message's memory bounded.
	MaxBodyBytes = 16 << 20
)

const (
	magic = "MPRB"
	// formatVersion 2 added SnapshotAt after Seq; Decode and Peek still read version 1
	// (SnapshotAt 0), so batches published by the release before stay loadable.
	formatVersion = 2
	headerMax     = len(magic) + 1 + binary.MaxVarintLen32
	// maxExp is the largest decimal exponent: 10^9 and every mantissa below 2^53 are exact in a
	// float64, which is what makes m / 10^e round-trip.
	maxExp = 9
	// minObsBytes and minRejectBytes are the fewest body bytes a row can take; Decode checks
	// counts against them before allocating.
	minObsBytes    = 5 // three dictionary indexes, a date delta and a kind
	minRejectBytes = 3 // a line and two lengths
)

// Wire kinds: obs.Kind values, plus floatNum for numbers that are not short decimals.
const (
	wireNull    = byte(obs.Null)
	wireDecimal = byte(obs.Number)
	wireString  = byte(obs.String)
	wireBulk    = byte(obs.Bulk)
	wireFloat   = 4
)

var pow10 = [maxExp + 1]float64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9}

// Errors. Decode's errors wrap ErrCorrupt or ErrVersion; Encode's and the Builder's wrap
// ErrTooLarge when a batch or a single row does not fit.
var (
	// ErrCorrupt: the message is not a valid row batch. Redelivering it will not help.
	ErrCorrupt = errors.New("corrupt row batch")
	// ErrVersion: the message is a row batch of a format version this build does not know,
	// presumably from a newer transformer; a newer loader can read it.
	ErrVersion = errors.New("unsupported row batch format version")
	// ErrTooLarge: the batch, or one row on its own, does not fit the bounds.
	ErrTooLarge = errors.New("row batch too large")
)

// Batch is one row batch: part of the observations and rejects of one job run.
type Batch struct {
	JobID      string
	Program    string
	Generation int
	// Version orders this run's rows against other runs' (the observations table is a
	// ReplacingMergeTree on it).
	Version uint64
	// Seq numbers the job's batches from 0 in the reply file's order; with JobID and
	// Generation it identifies the batch for deduplication.
	Seq int
	// SnapshotAt is when a snapshot (getdata) file's data was taken, in Unix seconds; 0 for
	// history, whose rows are dated by their own dates. It is part of the observations' key.
	SnapshotAt int64
	Obs        []obs.Observation
	Rejects    []obs.Reject
}

// Shared zstd state: both are safe for concurrent EncodeAll/DecodeAll, and building them is
// costly, so one of each serves the whole process.
var (
	zEncoder = sync.OnceValue(func() *zstd.Encoder {
		// SpeedDefault: a little smaller than SpeedFastest for little more time beside
		// parsing the reply file, where SpeedBetterCompression doubles the time
		// (BenchmarkLevels). A 1 MiB window: bodies are about a megabyte, and the default
		// (8 MiB) makes each of the encoder's GOMAXPROCS states keep a history of twice that.
		e, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault),
			zstd.WithEncoderCRC(true), zstd.WithWindowSize(1<<20))
		if err != nil {
			panic(fmt.Sprintf("rowcodec: zstd encoder with constant options: %v", err))
		}
		return e
	})
	zDecoder = sync.OnceValue(func() *zstd.Decoder {
		// The memory limit and the cap limit make a message that claims, or expands to, more
		// than MaxBodyBytes fail instead of allocating it.
		d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0),
			zstd.WithDecoderMaxMemory(MaxBodyBytes), zstd.WithDecodeAllCapLimit(true))
		if err != nil {
			panic(fmt.Sprintf("rowcodec: zstd decoder with constant options: %v", err))
		}
		return d
	})
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

// ColumnBatch is a row batch as DecodeColumns gives it: its observations column by column,
// as the body holds them.
type ColumnBatch struct {
	JobID      string
	Program    string
	Generation int
	Version    uint64
	Seq        int
	SnapshotAt int64
	Cols       obs.Columns
	Rejects    []obs.Reject
}

// clear drops b's references to the strings of the last batch decoded into it.
func (b *ColumnBatch) clear() {
	c := &b.Cols
	clear(c.Securities)
	clear(c.Fields)
	clear(c.Flags)
	clear(c.Str)
	clear(b.Rejects)
	b.JobID, b.Program = "", ""
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

// split checks a message's header and returns its format version, its compressed body and the
// body's length.
func split(data []byte) (version byte, zbody []byte, bodyLen uint64, err error) {
	if len(data) < len(magic)+2 || string(data[:len(magic)]) != magic {
		return 0, nil, 0, fmt.Errorf("no row batch header: %w", ErrCorrupt)
	}
	if version = data[len(magic)]; version < 1 || version > formatVersion {
		return 0, nil, 0, fmt.Errorf("version %d (this build reads 1 to %d): %w", version, formatVersion, ErrVersion)
	}
	rest := data[len(magic)+1:]
	bodyLen, n := binary.Uvarint(rest)
	if n <= 0 || bodyLen > MaxBodyBytes {
		return 0, nil, 0, fmt.Errorf("bad body length: %w", ErrCorrupt)
	}
	return version, rest[n:], bodyLen, nil
}

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

// Header is what identifies a row batch and how many rows it holds.
type Header struct {
	JobID, Program        string
	Generation            int
	Version               uint64
	Seq                   int
	SnapshotAt            int64
	Observations, Rejects int
}

// peekBytes is how much of a body Peek decompresses: the header fields come first, and a job
// id and program name are short.
const peekBytes = 16 << 10

// peekDecoders are streaming zstd decoders for Peek; with concurrency 1 they run no goroutines,
// so the pool may drop them without Close.
var peekDecoders = sync.Pool{New: func() any {
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxMemory(MaxBodyBytes))
	if err != nil {
		panic(fmt.Sprintf("rowcodec: zstd decoder with constant options: %v", err))
	}
	return d
}}

// Peek reads the header of an encoded batch without decoding its rows: it decompresses only the
// first peekBytes of the body (a batch whose header is longer is decoded whole). It checks
// what it reads as Decode does; a batch Peek accepts may still fail Decode further on.
func Peek(data []byte) (Header, error) {
	version, zbody, bodyLen, err := split(data)
	if err != nil {
		return Header{}, fmt.Errorf("peek row batch: %w", err)
	}
	d := peekDecoders.Get().(*zstd.Decoder)
	defer peekDecoders.Put(d)
	if err := d.Reset(bytes.NewReader(zbody)); err != nil {
		return Header{}, fmt.Errorf("peek row batch: decompress: %v: %w", err, ErrCorrupt)
	}
	buf := make([]byte, min(bodyLen, peekBytes))
	if _, err := io.ReadFull(d, buf); err != nil {
		return Header{}, fmt.Errorf("peek row batch: decompress: %v: %w", err, ErrCorrupt)
	}
	r := reader{s: string(buf), version: version}
	h := r.header()
	if r.err != nil && bodyLen > peekBytes {
		var b Batch
		if err := Decode(data, &b); err != nil {
			return Header{}, err
		}
		return Header{JobID: b.JobID, Program: b.Program, Generation: b.Generation, Version: b.Version,
			Seq: b.Seq, SnapshotAt: b.SnapshotAt, Observations: len(b.Obs), Rejects: len(b.Rejects)}, nil
	}
	if r.err != nil {
		return Header{}, fmt.Errorf("peek row batch: %w", r.err)
	}
	// The strings are slices of buf: copy them so the header does not keep it alive.
	h.JobID, h.Program = strings.Clone(h.JobID), strings.Clone(h.Program)
	return h, nil
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
