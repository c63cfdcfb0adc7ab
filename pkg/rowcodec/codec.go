// Package rowcodec encodes the row batches that carry observations from the transformer to the
// loader on mp.rows.<job id>.
//
// A batch is compact and bounded: the transformer splits a reply file into batches of at most
// MaxBatchRows rows whose encoded message never exceeds MaxMessageBytes (JetStream's default
// max_payload is 1 MB), and the loader decodes many of them into one large ClickHouse insert.
// Builder makes the batches and DecodeColumns reads them; Encode and Decode are the same format
// in rows, for tests and examples.
//
// # Format, version 2
//
// A message is a small uncompressed header and a zstd frame:
//
//	"MPRB" | version byte (2) | uvarint body length | zstd(body)
//
// The body is columnar, because a reply file's columns are each very regular (one security for
// hundreds of rows, a handful of fields cycling, dates stepping by one) and zstd finds that
// regularity far better in a column than spread across rows:
//
//	str job id | str program | uvarint generation | uvarint version | uvarint seq
//	zigzag varint snapshot time (Unix seconds; absent in version 1)
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
	"encoding/binary"
	"errors"
	"fmt"
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

// Batch is one row batch in rows: part of the observations and rejects of one job run. It is
// the codec's reference form (Encode, Decode), kept for the tests and examples that make and
// read messages; the pipeline goes through Builder and DecodeColumns, building no row.
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
