package rawstore_test

import (
	"bytes"
	"io"
	"testing"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"

	"github.com/marketpipe/marketpipe/pkg/obs"
	"github.com/marketpipe/marketpipe/pkg/rawstore"
	"github.com/marketpipe/marketpipe/pkg/simdata"
)

// BenchmarkRawCompression compresses a simulated gethistory reply file (400 securities × 10
// fields × 250 days, about 41 MB) in the collector's 512 KiB chunks: "s2-chunks" is what the
// collector does (rawstore.S2Chunks: S2 streams, with their CRCs, and the file's SHA-256),
// "s2-block" S2's compression alone, the others what it could do instead. ratio is compressed / plain bytes; MB/s counts plain bytes.
//
//	go test ./pkg/rawstore -run '^$' -bench BenchmarkRawCompression -benchtime 5x
func BenchmarkRawCompression(b *testing.B) {
	spec := simdata.History("bench", 400, 250)
	var file bytes.Buffer
	if err := simdata.WriteReply(&file, spec, obs.MakeDate(2026, 11, 20), 7); err != nil {
		b.Fatal(err)
	}
	plain := file.Bytes()
	const chunk = 512 << 10
	zenc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	if err != nil {
		b.Fatal(err)
	}
	chunked := func(compress func(dst, src []byte) []byte) func() int {
		return func() int {
			var dst []byte
			n := 0
			for i := 0; i < len(plain); i += chunk {
				dst = compress(dst[:0], plain[i:min(i+chunk, len(plain))])
				n += len(dst)
			}
			return n
		}
	}
	for _, v := range []struct {
		name string
		run  func() int // returns the compressed bytes
	}{
		{"s2-chunks", func() int {
			c := rawstore.NewS2Chunks(bytes.NewReader(plain), chunk)
			buf := make([]byte, rawstore.S2ChunkSize(chunk))
			n := 0
			for {
				k, err := c.Read(buf)
				n += k
				if err == io.EOF {
					return n
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		}},
		{"s2-block", chunked(func(dst, src []byte) []byte { return s2.Encode(dst[:cap(dst)], src) })},
		{"s2-better", chunked(func(dst, src []byte) []byte { return s2.EncodeBetter(dst[:cap(dst)], src) })},
		{"zstd-fastest", chunked(func(dst, src []byte) []byte { return zenc.EncodeAll(src, dst) })},
		{"none", chunked(func(dst, src []byte) []byte { return append(dst, src...) })},
	} {
		b.Run(v.name, func(b *testing.B) {
			var n int
			b.SetBytes(int64(len(plain)))
			for b.Loop() {
				n = v.run()
			}
			b.ReportMetric(float64(n)/float64(len(plain)), "ratio")
		})
	}
}
