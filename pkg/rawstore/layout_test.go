package rawstore_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/rawstore"
)

// testPlainChunk is the plain chunk size of the S2 test objects: S2's smallest block.
const testPlainChunk = 4 << 10

// putS2 stores data in the S2 layout as the collector does: compressed chunk by chunk, then the
// plain headers. It returns the object's info as a reader gets it.
func (e *objEnv) putS2(t *testing.T, name string, data []byte) *jetstream.ObjectInfo {
	t.Helper()
	meta := jetstream.ObjectMeta{Name: name,
		Headers: map[string][]string{rawstore.ChunkLayoutHeader: {rawstore.ChunkLayoutS2}},
		Opts:    &jetstream.ObjectMetaOptions{ChunkSize: uint32(rawstore.S2ChunkSize(testPlainChunk))}}
	file := rawstore.NewS2Chunks(bytes.NewReader(data), testPlainChunk)
	if _, err := e.raw.Put(e.ctx, meta, file); err != nil {
		t.Fatalf("put %s: %v", name, err)
	}
	rawstore.SetPlainHeaders(meta.Headers, testPlainChunk, file.Size(), file.SHA256())
	if err := e.raw.UpdateMeta(e.ctx, name, meta); err != nil {
		t.Fatalf("update meta of %s: %v", name, err)
	}
	info, err := e.raw.GetInfo(e.ctx, name)
	if err != nil {
		t.Fatalf("info %s: %v", name, err)
	}
	return info
}

// readWhole reads the object from its start through Get and PlainReader.
func (e *objEnv) readWhole(t *testing.T, name string) ([]byte, error) {
	t.Helper()
	o, err := e.raw.Get(e.ctx, name)
	if err != nil {
		t.Fatalf("get %s: %v", name, err)
	}
	defer o.Close()
	info, err := o.Info()
	if err != nil {
		t.Fatalf("info of %s: %v", name, err)
	}
	r, err := rawstore.PlainReader(info, o)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

// textBytes returns n bytes of reply-file-like lines, which compress well.
func textBytes(n int) []byte {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "S%04d US Equity|0|3|PX_LAST|2025-01-%02d|%d.%02d|\n", i%700, i%28+1, 100+i%97, i%100)
	}
	return []byte(b.String()[:n])
}

// A file stored in the S2 layout is compressed, and reads back whole and from any offset as the
// file; PlainFile gives its size and SHA-256.
func TestS2LayoutReads(t *testing.T) {
	e := newObjEnv(t)
	e.put(t, fullMeta("before"), randomBytes(3*testChunkSize, 1)) // chunks not from sequence 1

	const c = testPlainChunk
	mixed := append(textBytes(3*c+c/3), randomBytes(2*c+c/5, 7)...) // text, then incompressible
	files := []struct {
		name string
		data []byte
	}{
		{"text-five-and-a-half", textBytes(5*c + c/2)},
		{"mixed", mixed},
		{"four-exactly", textBytes(4 * c)},
		{"one-byte", []byte("x")},
		{"empty", nil},
	}
	for _, f := range files {
		info := e.putS2(t, f.name, f.data)
		size := len(f.data)
		if want := uint32((size + c - 1) / c); info.Chunks != want {
			t.Fatalf("%s: %d chunks, want %d", f.name, info.Chunks, want)
		}
		if f.name == "text-five-and-a-half" && info.Size*2 > uint64(size) {
			t.Errorf("%s: %d bytes stored for %d: not compressed", f.name, info.Size, size)
		}
		gotSize, sha, compressed, err := rawstore.PlainFile(info)
		sum := sha256.Sum256(f.data)
		if err != nil || gotSize != int64(size) || sha != hex.EncodeToString(sum[:]) || !compressed {
			t.Errorf("%s: PlainFile = %d, %s, %v, %v; want %d, %x, true", f.name, gotSize, sha, compressed, err, size, sum)
		}
		whole, err := e.readWhole(t, f.name)
		if err != nil || !bytes.Equal(whole, f.data) {
			t.Errorf("%s: read whole: %d bytes, %v; want the file's %d", f.name, len(whole), err, size)
		}
		for _, off := range []int{0, 1, c - 1, c, c + 1, 2*c + 100, 3 * c, size - c, size - c/2 - 1, size - 1, size} {
			if off < 0 || off > size {
				continue
			}
			if got := e.readAt(t, info, int64(off)); !bytes.Equal(got, f.data[off:]) {
				t.Errorf("%s from %d: got %d bytes, not the %d from the offset", f.name, off, len(got), size-off)
			}
		}
	}
	// An offset past the file's end, though inside the compressed object's bytes, is refused.
	info := e.putS2(t, "past", textBytes(2*c))
	if _, _, err := rawstore.OpenObjectAt(e.ctx, e.js, info, 2*c+1); err == nil {
		t.Error("OpenObjectAt past the file's end: no error")
	}
	if n := len(e.consumers(t)); n != 0 {
		t.Errorf("%d consumers left after the readers were closed, want 0", n)
	}
}

// An S2 object without its plain headers was not completely stored: every reader refuses it.
func TestS2LayoutIncomplete(t *testing.T) {
	e := newObjEnv(t)
	meta := jetstream.ObjectMeta{Name: "half",
		Headers: map[string][]string{rawstore.ChunkLayoutHeader: {rawstore.ChunkLayoutS2}},
		Opts:    &jetstream.ObjectMetaOptions{ChunkSize: uint32(rawstore.S2ChunkSize(testPlainChunk))}}
	if _, err := e.raw.Put(e.ctx, meta, rawstore.NewS2Chunks(bytes.NewReader(textBytes(3*testPlainChunk)), testPlainChunk)); err != nil {
		t.Fatal(err)
	}
	info, err := e.raw.GetInfo(e.ctx, "half")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := rawstore.PlainFile(info); err == nil || !strings.Contains(err.Error(), rawstore.PlainSizeHeader) {
		t.Errorf("PlainFile = %v, want an error naming %s", err, rawstore.PlainSizeHeader)
	}
	if _, err := e.readWhole(t, "half"); err == nil {
		t.Error("PlainReader: no error")
	}
	if _, _, err := rawstore.OpenObjectAt(e.ctx, e.js, info, 10); err == nil {
		t.Error("OpenObjectAt: no error")
	}
}

// Headers that do not match the chunks (a wrong size, chunks that are not S2) make reads fail
// instead of returning short or wrong data.
func TestS2LayoutMismatch(t *testing.T) {
	e := newObjEnv(t)
	const c = testPlainChunk
	data := textBytes(2*c + 100)
	info := e.putS2(t, "file", data)

	// One byte more than stored, in the same number of chunks.
	meta := jetstream.ObjectMeta{Name: "file", Headers: info.Headers}
	rawstore.SetPlainHeaders(meta.Headers, c, int64(len(data)+1), info.Headers.Get(rawstore.PlainSHA256Header))
	if err := e.raw.UpdateMeta(e.ctx, "file", meta); err != nil {
		t.Fatal(err)
	}
	info, err := e.raw.GetInfo(e.ctx, "file")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := e.readWhole(t, "file"); err == nil {
		t.Errorf("read whole with a wrong size: %d bytes, no error", len(got))
	}
	r, ok, err := rawstore.OpenObjectAt(e.ctx, e.js, info, 2*c)
	if err != nil || !ok {
		t.Fatalf("OpenObjectAt = %v, %v", ok, err)
	}
	if got, err := io.ReadAll(r); err == nil {
		t.Errorf("read at an offset with a wrong size: %d bytes, no error", len(got))
	}
	r.Close()

	// Plain chunks under S2 headers.
	plain := fullMeta("plain")
	plain.Opts.ChunkSize = c
	rawstore.SetPlainHeaders(plain.Headers, c, int64(len(data)), "00")
	e.put(t, plain, data)
	info, err = e.raw.GetInfo(e.ctx, "plain")
	if err != nil {
		t.Fatal(err)
	}
	r, ok, err = rawstore.OpenObjectAt(e.ctx, e.js, info, c+5)
	if err != nil || !ok {
		t.Fatalf("OpenObjectAt = %v, %v", ok, err)
	}
	if got, err := io.ReadAll(r); err == nil || !strings.Contains(err.Error(), rawstore.ChunkLayoutS2) {
		t.Errorf("read plain chunks as S2: %d bytes, %v; want an error naming the layout", len(got), err)
	}
	r.Close()
	if got, err := e.readWhole(t, "plain"); err == nil {
		t.Errorf("read whole plain chunks as S2: %d bytes, no error", len(got))
	}
}

// Each Read of S2Chunks is one whole S2 stream of a plain chunk, and a buffer that cannot hold
// one is refused.
func TestS2ChunksReads(t *testing.T) {
	const c = testPlainChunk
	data := append(textBytes(c), randomBytes(c+10, 3)...)
	file := rawstore.NewS2Chunks(bytes.NewReader(data), c)
	if _, err := file.Read(make([]byte, c)); err == nil {
		t.Fatal("a buffer smaller than S2ChunkSize: no error")
	}
	file = rawstore.NewS2Chunks(bytes.NewReader(data), c)
	buf := make([]byte, rawstore.S2ChunkSize(c))
	var sizes []int
	for {
		n, err := file.Read(buf)
		if n > 0 {
			sizes = append(sizes, n)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(sizes) != 3 || sizes[0] >= c/2 || sizes[1] != rawstore.S2ChunkSize(c) || sizes[2] > 10+18 {
		t.Errorf("chunk sizes %v: want a compressed text chunk, a stored random one of %d, and a short last",
			sizes, rawstore.S2ChunkSize(c))
	}
	sum := sha256.Sum256(data)
	if file.Size() != int64(len(data)) || file.SHA256() != hex.EncodeToString(sum[:]) {
		t.Errorf("Size, SHA256 = %d, %s; want %d, %x", file.Size(), file.SHA256(), len(data), sum)
	}
}
