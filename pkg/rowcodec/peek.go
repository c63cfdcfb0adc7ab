package rowcodec

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"
)

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
		var b ColumnBatch
		if err := DecodeColumns(data, &b); err != nil {
			return Header{}, err
		}
		return Header{JobID: b.JobID, Program: b.Program, Generation: b.Generation, Version: b.Version,
			Seq: b.Seq, SnapshotAt: b.SnapshotAt, Observations: b.Cols.Len(), Rejects: len(b.Rejects)}, nil
	}
	if r.err != nil {
		return Header{}, fmt.Errorf("peek row batch: %w", r.err)
	}
	// The strings are slices of buf: copy them so the header does not keep it alive.
	h.JobID, h.Program = strings.Clone(h.JobID), strings.Clone(h.Program)
	return h, nil
}
