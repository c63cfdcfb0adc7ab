package rawstore

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// s2Object returns file in the S2 layout of plainChunk-byte chunks, as the collector stores it,
// and the headers that describe it.
func s2Object(tb testing.TB, file []byte, plainChunk int) ([]byte, nats.Header) {
	c := NewS2Chunks(bytes.NewReader(file), plainChunk)
	var out bytes.Buffer
	buf := make([]byte, S2ChunkSize(plainChunk))
	for {
		n, err := c.Read(buf)
		out.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			tb.Fatal(err)
		}
	}
	h := nats.Header{}
	SetPlainHeaders(h, plainChunk, c.Size(), c.SHA256())
	return out.Bytes(), h
}

// FuzzPlainReader: whatever the stored bytes and their plain headers, the S2 reader either
// refuses them with an error or yields exactly the recorded size; and each chunk decoded alone
// (OpenObjectAt's way) yields at most the layout's chunk size.
func FuzzPlainReader(f *testing.F) {
	text := bytes.Repeat([]byte("IBM US Equity|0|1|123.45|\n"), 1000)
	obj, h := s2Object(f, text, 4<<10)
	size, _ := strconv.ParseInt(h.Get(PlainSizeHeader), 10, 64)
	f.Add(obj, uint32(4<<10), size)
	f.Add(obj, uint32(4<<10), size+1)
	f.Add(obj[:len(obj)/2], uint32(4<<10), size)
	one, h1 := s2Object(f, text[:100], 4<<10)
	f.Add(one, uint32(4<<10), int64(100))
	_ = h1
	f.Add([]byte{}, uint32(4<<10), int64(0))
	f.Add([]byte("not s2 at all"), uint32(0), int64(-1))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint32, size int64) {
		info := &jetstream.ObjectInfo{ObjectMeta: jetstream.ObjectMeta{Name: "f", Headers: nats.Header{
			ChunkLayoutHeader:    {ChunkLayoutS2},
			PlainChunkSizeHeader: {strconv.FormatUint(uint64(chunk), 10)},
			PlainSizeHeader:      {strconv.FormatInt(size, 10)},
			PlainSHA256Header:    {"0000000000000000000000000000000000000000000000000000000000000000"},
		}}}
		if chunk > 0 && size >= 0 {
			info.Chunks = uint32((uint64(size) + uint64(chunk) - 1) / uint64(chunk))
		}
		r, err := PlainReader(info, bytes.NewReader(data))
		if err != nil {
			return
		}
		const most = 64 << 20
		n, err := io.Copy(io.Discard, io.LimitReader(r, most))
		if err == nil && n < most && n != size {
			t.Fatalf("read %d bytes without an error, the headers say %d", n, size)
		}
		if err != nil && errors.Is(err, io.EOF) {
			t.Fatalf("io.EOF as an error: %v", err)
		}
		lay, err := s2Layout(info)
		if err != nil {
			t.Fatalf("PlainReader accepted a layout s2Layout refuses: %v", err)
		}
		c := newS2Chunk(lay.chunk)
		if got, err := c.decode(data, min(lay.chunk, uint64(size))); err == nil && uint64(len(got)) != min(lay.chunk, uint64(size)) {
			t.Fatalf("decoded %d bytes of a chunk, want %d", len(got), min(lay.chunk, uint64(size)))
		}
	})
}

// A layout whose chunks are larger than an S2 block is refused before a reader allocates one.
func TestS2LayoutRefusesHugeChunks(t *testing.T) {
	for _, chunk := range []uint64{maxS2Block + 1, 1<<32 - 1} {
		info := &jetstream.ObjectInfo{ObjectMeta: jetstream.ObjectMeta{Name: "f", Headers: nats.Header{
			ChunkLayoutHeader:    {ChunkLayoutS2},
			PlainChunkSizeHeader: {strconv.FormatUint(chunk, 10)},
			PlainSizeHeader:      {"10"},
		}}, Chunks: 1}
		if _, err := PlainReader(info, bytes.NewReader(nil)); err == nil {
			t.Errorf("chunks of %d bytes: no error", chunk)
		}
	}
}
