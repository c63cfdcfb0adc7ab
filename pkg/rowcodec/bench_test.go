package rowcodec

import (
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/marketpipe/marketpipe/pkg/obs"
)

// benchBatch is gethistory-like: 50 securities × 5 fields × 250 dates, about 3% N.A.
func benchBatch() *Batch {
	return &Batch{JobID: "eod-prices-20261125t045724z-k3qa", Program: "gethistory", Version: 1,
		Obs: historyObs(50, 250, 1)}
}

func report(b *testing.B, rows, size int) {
	b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "obs/s")
	b.ReportMetric(float64(size)/float64(rows), "B/obs")
}

func BenchmarkEncode(b *testing.B) {
	batch := benchBatch()
	var data []byte
	var err error
	b.ReportAllocs()
	for b.Loop() {
		data, err = Encode(data[:0], batch)
		if err != nil {
			b.Fatal(err)
		}
	}
	report(b, len(batch.Obs), len(data))
}

func BenchmarkDecode(b *testing.B) {
	batch := benchBatch()
	data, err := Encode(nil, batch)
	if err != nil {
		b.Fatal(err)
	}
	var out Batch
	b.ReportAllocs()
	for b.Loop() {
		if err := Decode(data, &out); err != nil {
			b.Fatal(err)
		}
	}
	report(b, len(batch.Obs), len(data))
}

// BenchmarkDecodeColumns is the loader's decoding: compare with BenchmarkDecode, which also
// builds an Observation per row.
func BenchmarkDecodeColumns(b *testing.B) {
	batch := benchBatch()
	data, err := Encode(nil, batch)
	if err != nil {
		b.Fatal(err)
	}
	var out ColumnBatch
	b.ReportAllocs()
	for b.Loop() {
		if err := DecodeColumns(data, &out); err != nil {
			b.Fatal(err)
		}
	}
	report(b, len(batch.Obs), len(data))
}

// BenchmarkPeek is the loader's look at a batch's identity before it queues the batch for an
// insert; compare with BenchmarkDecode.
func BenchmarkPeek(b *testing.B) {
	data, err := Encode(nil, benchBatch())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Peek(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBuilder is the transformer's side: Add, Full and Flush over 250k observations.
func BenchmarkBuilder(b *testing.B) {
	rows := historyObs(200, 250, 5)
	var total int
	b.ReportAllocs()
	for b.Loop() {
		total = buildAll(b, NewBuilder("j", "gethistory", 0, 1), rows)
	}
	report(b, len(rows), total)
}

// BenchmarkBuilderReuse is the transformer's steady state: one Builder, Reset for each of its
// chunks, over 250k observations per chunk.
func BenchmarkBuilderReuse(b *testing.B) {
	rows := historyObs(200, 250, 5)
	bl := NewBuilder("j", "gethistory", 0, 1)
	var total int
	b.ReportAllocs()
	for b.Loop() {
		bl.Reset("j", "gethistory", 0, 1)
		total = buildAll(b, bl, rows)
	}
	report(b, len(rows), total)
}

// buildAll runs the Builder protocol over rows and returns the bytes of the batches.
func buildAll(b *testing.B, bl *Builder, rows []obs.Observation) (total int) {
	flush := func() {
		_, data, err := bl.Flush()
		if err != nil {
			b.Fatal(err)
		}
		total += len(data)
	}
	for i := range rows {
		if err := bl.Add(&rows[i]); err != nil {
			b.Fatal(err)
		}
		if bl.Full() {
			flush()
		}
	}
	for bl.Len() > 0 {
		flush()
	}
	return total
}

// BenchmarkLevels compares zstd levels on the same body, to choose the encoder's level.
func BenchmarkLevels(b *testing.B) {
	e := newEncoder()
	batch := benchBatch()
	if err := e.encodeBody(batch); err != nil {
		b.Fatal(err)
	}
	for _, l := range []zstd.EncoderLevel{zstd.SpeedFastest, zstd.SpeedDefault, zstd.SpeedBetterCompression} {
		b.Run(l.String(), func(b *testing.B) {
			z, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(l))
			if err != nil {
				b.Fatal(err)
			}
			var out []byte
			for b.Loop() {
				out = z.EncodeAll(e.body, out[:0])
			}
			report(b, len(batch.Obs), len(out))
			b.ReportMetric(float64(len(e.body))/float64(len(batch.Obs)), "raw-B/obs")
		})
	}
}
