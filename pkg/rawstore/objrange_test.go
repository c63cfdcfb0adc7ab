package rawstore_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/pkg/rawstore"
)

// testChunkSize is the chunk size of the test objects: small, so an object is many chunks.
const testChunkSize = 1 << 10

// objEnv is a server with the pipeline's raw object store, and a context bounding the test.
type objEnv struct {
	ctx context.Context
	js  jetstream.JetStream
	raw jetstream.ObjectStore
}

func newObjEnv(t *testing.T) *objEnv {
	t.Helper()
	env := natstest.NewEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return &objEnv{ctx: ctx, js: env.JS, raw: env.Streams.Raw}
}

// randomBytes returns n bytes of a fixed pseudo-random sequence.
func randomBytes(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// fullMeta is the meta of an object put in full chunks of testChunkSize.
func fullMeta(name string) jetstream.ObjectMeta {
	return jetstream.ObjectMeta{Name: name,
		Headers: map[string][]string{rawstore.ChunkLayoutHeader: {rawstore.ChunkLayoutFull}},
		Opts:    &jetstream.ObjectMetaOptions{ChunkSize: testChunkSize}}
}

// put stores data (through bytes.Reader, which fills every Read) under meta.
func (e *objEnv) put(t *testing.T, meta jetstream.ObjectMeta, data []byte) *jetstream.ObjectInfo {
	t.Helper()
	info, err := e.raw.Put(e.ctx, meta, bytes.NewReader(data))
	if err != nil {
		t.Fatalf("put %s: %v", meta.Name, err)
	}
	// Read the info back as a reader of the object would have it.
	info, err = e.raw.GetInfo(e.ctx, meta.Name)
	if err != nil {
		t.Fatalf("info %s: %v", meta.Name, err)
	}
	return info
}

// readAt opens info at offset, requires ok, and returns all the reader's bytes.
func (e *objEnv) readAt(t *testing.T, info *jetstream.ObjectInfo, offset int64) []byte {
	t.Helper()
	r, ok, err := rawstore.OpenObjectAt(e.ctx, e.js, info, offset)
	if err != nil {
		t.Fatalf("open %s at %d: %v", info.Name, offset, err)
	}
	if !ok {
		t.Fatalf("open %s at %d: ok = false, want true", info.Name, offset)
	}
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read %s from %d: %v", info.Name, offset, err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("close %s: %v", info.Name, err)
	}
	return got
}

// consumers returns the consumers of the raw store's stream.
func (e *objEnv) consumers(t *testing.T) []*jetstream.ConsumerInfo {
	t.Helper()
	s, err := e.js.Stream(e.ctx, "OBJ_"+events.RawBucket)
	if err != nil {
		t.Fatalf("raw stream: %v", err)
	}
	var infos []*jetstream.ConsumerInfo
	l := s.ListConsumers(e.ctx)
	for ci := range l.Info() {
		infos = append(infos, ci)
	}
	if err := l.Err(); err != nil {
		t.Fatalf("list consumers: %v", err)
	}
	return infos
}

// firstChunkSeq returns the stream sequence of the first chunk message of an object.
func (e *objEnv) firstChunkSeq(t *testing.T, info *jetstream.ObjectInfo) uint64 {
	t.Helper()
	s, err := e.js.Stream(e.ctx, "OBJ_"+info.Bucket)
	if err != nil {
		t.Fatalf("raw stream: %v", err)
	}
	m, err := s.GetMsg(e.ctx, 1, jetstream.WithGetMsgSubject("$O."+info.Bucket+".C."+info.NUID))
	if err != nil {
		t.Fatalf("first chunk of %s: %v", info.Name, err)
	}
	return m.Sequence
}

// An object in full chunks reads, from any offset, as its bytes from that offset.
func TestOpenObjectAtOffsets(t *testing.T) {
	e := newObjEnv(t)
	// Another object first, so the chunks of those under test do not start at sequence 1.
	e.put(t, fullMeta("before"), randomBytes(3*testChunkSize, 1))

	const c = testChunkSize
	objects := []struct {
		name string
		size int
	}{
		{"five-and-a-half", 5*c + c/2},
		{"four-exactly", 4 * c},
		{"one-byte", 1},
	}
	for i, o := range objects {
		data := randomBytes(o.size, uint64(i+2))
		info := e.put(t, fullMeta(o.name), data)
		if want := uint32((o.size + c - 1) / c); info.Chunks != want {
			t.Fatalf("%s: %d chunks, want %d", o.name, info.Chunks, want)
		}
		offsets := []int{0, 1, c / 2, c - 1, c, c + 1, 2*c + 100, 3 * c, o.size - c, o.size - c/2 - 1,
			o.size - 1, o.size}
		for _, off := range offsets {
			if off < 0 || off > o.size {
				continue
			}
			got := e.readAt(t, info, int64(off))
			if !bytes.Equal(got, data[off:]) {
				t.Errorf("%s from %d: got %d bytes, not the %d from the offset", o.name, off, len(got), o.size-off)
			}
		}
	}
	if n := len(e.consumers(t)); n != 0 {
		t.Errorf("%d consumers left after the readers were closed, want 0", n)
	}
}

// A read from the last chunk receives that chunk alone: the consumer starts at its sequence and
// delivers one message.
func TestOpenObjectAtReadsOnlyNeededChunks(t *testing.T) {
	e := newObjEnv(t)
	e.put(t, fullMeta("before"), randomBytes(2*testChunkSize+7, 1))
	data := randomBytes(5*testChunkSize+testChunkSize/2, 2)
	info := e.put(t, fullMeta("obj"), data)
	first := e.firstChunkSeq(t, info)

	for _, tc := range []struct{ offset, chunk int }{
		{5*testChunkSize + 100, 5},
		{2*testChunkSize + 3, 2},
	} {
		r, ok, err := rawstore.OpenObjectAt(e.ctx, e.js, info, int64(tc.offset))
		if err != nil || !ok {
			t.Fatalf("open at %d: ok %v, err %v", tc.offset, ok, err)
		}
		head := make([]byte, 10)
		if _, err := io.ReadFull(r, head); err != nil {
			t.Fatalf("read at %d: %v", tc.offset, err)
		}
		if !bytes.Equal(head, data[tc.offset:tc.offset+10]) {
			t.Errorf("first bytes from %d: %x, want %x", tc.offset, head, data[tc.offset:tc.offset+10])
		}
		cons := e.consumers(t)
		if len(cons) != 1 {
			t.Fatalf("%d consumers during the read, want 1", len(cons))
		}
		if want := first + uint64(tc.chunk); cons[0].Config.OptStartSeq != want {
			t.Errorf("offset %d: consumer starts at sequence %d, want %d (chunk %d)",
				tc.offset, cons[0].Config.OptStartSeq, want, tc.chunk)
		}
		rest, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("read rest at %d: %v", tc.offset, err)
		}
		if !bytes.Equal(rest, data[tc.offset+10:]) {
			t.Errorf("rest from %d: %d bytes, want %d equal", tc.offset, len(rest), len(data)-tc.offset-10)
		}
		ci, err := e.js.Consumer(e.ctx, "OBJ_"+events.RawBucket, cons[0].Name)
		if err != nil {
			t.Fatalf("consumer: %v", err)
		}
		cinfo, err := ci.Info(e.ctx)
		if err != nil {
			t.Fatalf("consumer info: %v", err)
		}
		if want := uint64(int(info.Chunks) - tc.chunk); cinfo.Delivered.Consumer != want {
			t.Errorf("offset %d: %d chunk messages delivered, want %d", tc.offset, cinfo.Delivered.Consumer, want)
		}
		if err := r.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		if n := len(e.consumers(t)); n != 0 {
			t.Errorf("%d consumers after Close, want 0", n)
		}
		if _, err := r.Read(head); err == nil {
			t.Error("read after Close succeeded")
		}
	}
}

// gateReader returns its data in full Reads and, before the Read after the first `after` bytes,
// signals reached and waits for release.
type gateReader struct {
	r                io.Reader
	after, n         int
	reached, release chan struct{}
	signaled         bool
}

func (g *gateReader) Read(p []byte) (int, error) {
	if g.n >= g.after && !g.signaled {
		g.signaled = true
		close(g.reached)
		<-g.release
	}
	n, err := g.r.Read(p)
	g.n += n
	return n, err
}

// An object whose Put another Put interleaved with cannot be read from an offset; the one put
// in between can.
func TestOpenObjectAtInterleaved(t *testing.T) {
	e := newObjEnv(t)
	dataA := randomBytes(4*testChunkSize+10, 1)
	dataB := randomBytes(3*testChunkSize+20, 2)
	g := &gateReader{r: bytes.NewReader(dataA), after: 2 * testChunkSize,
		reached: make(chan struct{}), release: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := e.raw.Put(e.ctx, fullMeta("a"), g)
		done <- err
	}()
	select {
	case <-g.reached:
	case <-e.ctx.Done():
		t.Fatal("Put of a never reached its third chunk")
	}
	// Two chunks of a are published (the same connection keeps them ahead of b's); b goes
	// between them and a's third.
	infoB := e.put(t, fullMeta("b"), dataB)
	close(g.release)
	if err := <-done; err != nil {
		t.Fatalf("put a: %v", err)
	}
	infoA, err := e.raw.GetInfo(e.ctx, "a")
	if err != nil {
		t.Fatalf("info a: %v", err)
	}
	if infoA.Chunks != 5 {
		t.Fatalf("a has %d chunks, want 5", infoA.Chunks)
	}
	if e.firstChunkSeq(t, infoB) != e.firstChunkSeq(t, infoA)+2 {
		t.Fatalf("b's chunks start at %d, a's at %d: not interleaved as the test wants",
			e.firstChunkSeq(t, infoB), e.firstChunkSeq(t, infoA))
	}

	for _, off := range []int64{0, testChunkSize + 5, 3 * testChunkSize} {
		r, ok, err := rawstore.OpenObjectAt(e.ctx, e.js, infoA, off)
		if err != nil || ok || r != nil {
			t.Errorf("interleaved a at %d: reader %v, ok %v, err %v; want nil, false, nil", off, r, ok, err)
		}
	}
	if got := e.readAt(t, infoB, testChunkSize+1); !bytes.Equal(got, dataB[testChunkSize+1:]) {
		t.Errorf("b from %d: %d bytes, want the %d from the offset", testChunkSize+1, len(got), len(dataB)-testChunkSize-1)
	}
}

// Objects not marked as in full chunks, deleted ones and links are not read from an offset;
// offsets outside the object are errors; the end of any object is an empty reader.
func TestOpenObjectAtNotReadable(t *testing.T) {
	e := newObjEnv(t)
	data := randomBytes(3*testChunkSize+5, 1)

	plain := fullMeta("plain")
	plain.Headers = map[string][]string{"Job-Id": {"j1"}}
	lower := fullMeta("lower-case-header") // object headers are case-sensitive
	lower.Headers = map[string][]string{"chunk-layout": {rawstore.ChunkLayoutFull}}
	other := fullMeta("other-layout")
	other.Headers = map[string][]string{rawstore.ChunkLayoutHeader: {"any"}}
	for _, meta := range []jetstream.ObjectMeta{plain, lower, other} {
		info := e.put(t, meta, data)
		r, ok, err := rawstore.OpenObjectAt(e.ctx, e.js, info, testChunkSize+1)
		if err != nil || ok || r != nil {
			t.Errorf("%s: reader %v, ok %v, err %v; want nil, false, nil", meta.Name, r, ok, err)
		}
		if got := e.readAt(t, info, int64(len(data))); len(got) != 0 {
			t.Errorf("%s at its end: %d bytes, want none", meta.Name, len(got))
		}
	}

	info := e.put(t, fullMeta("deleted"), data)
	if err := e.raw.Delete(e.ctx, "deleted"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	// The info read before the delete: its chunks are gone.
	if r, ok, err := rawstore.OpenObjectAt(e.ctx, e.js, info, 10); err != nil || ok || r != nil {
		t.Errorf("deleted, old info: reader %v, ok %v, err %v; want nil, false, nil", r, ok, err)
	}
	deleted, err := e.raw.GetInfo(e.ctx, "deleted", jetstream.GetObjectInfoShowDeleted())
	if err != nil {
		t.Fatalf("info of deleted: %v", err)
	}
	if r, ok, err := rawstore.OpenObjectAt(e.ctx, e.js, deleted, 0); err != nil || ok || r != nil {
		t.Errorf("deleted: reader %v, ok %v, err %v; want nil, false, nil", r, ok, err)
	}

	// Chunks fewer or more than the size needs in full chunks: the header is wrong.
	short := fullMeta("short-reads")
	info, err = e.raw.Put(e.ctx, short, &chunkedReader{data: data, sizes: []int{100}})
	if err != nil {
		t.Fatalf("put short-reads: %v", err)
	}
	if info.Chunks == 4 {
		t.Fatalf("short-reads stored in %d chunks, as if full", info.Chunks)
	}
	if r, ok, err := rawstore.OpenObjectAt(e.ctx, e.js, info, 10); err != nil || ok || r != nil {
		t.Errorf("short-reads: reader %v, ok %v, err %v; want nil, false, nil", r, ok, err)
	}
}

// chunkedReader returns data in Reads of sizes (the last size repeating), at most the buffer.
type chunkedReader struct {
	data  []byte
	sizes []int
}

func (c *chunkedReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := c.sizes[0]
	if len(c.sizes) > 1 {
		c.sizes = c.sizes[1:]
	}
	n = min(n, len(p), len(c.data))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

// An object marked as in full chunks whose chunks are not fails its Read rather than return
// wrong data, when its chunk count happens to match its size.
func TestOpenObjectAtWrongLayout(t *testing.T) {
	e := newObjEnv(t)
	const c = testChunkSize
	data := randomBytes(c-24+c+100, 1) // chunks of c-24, c and 100 bytes: 3, as if full
	info, err := e.raw.Put(e.ctx, fullMeta("liar"), &chunkedReader{data: data, sizes: []int{c - 24, c, 100}})
	if err != nil {
		t.Fatalf("put: %v", err)
	}
	if info.Chunks != 3 {
		t.Fatalf("%d chunks, want 3", info.Chunks)
	}
	for _, off := range []int64{0, c + 10} {
		r, ok, err := rawstore.OpenObjectAt(e.ctx, e.js, info, off)
		if err != nil || !ok {
			t.Fatalf("open at %d: ok %v, err %v", off, ok, err)
		}
		got, err := io.ReadAll(r)
		if err == nil {
			t.Errorf("read from %d: %d bytes and no error, want an error", off, len(got))
		}
		r.Close()
	}
}

// A read ends with the context: an error wrapping the context's.
func TestOpenObjectAtContext(t *testing.T) {
	e := newObjEnv(t)
	data := randomBytes(4*testChunkSize, 1)
	info := e.put(t, fullMeta("obj"), data)

	ctx, cancel := context.WithCancel(e.ctx)
	r, ok, err := rawstore.OpenObjectAt(ctx, e.js, info, 10)
	if err != nil || !ok {
		t.Fatalf("open: ok %v, err %v", ok, err)
	}
	defer r.Close()
	buf := make([]byte, 100)
	if _, err := io.ReadFull(r, buf); err != nil {
		t.Fatalf("read: %v", err)
	}
	if !bytes.Equal(buf, data[10:110]) {
		t.Errorf("first bytes differ")
	}
	cancel()
	_, err = r.Read(buf)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("read after cancel: %v, want an error wrapping %v", err, context.Canceled)
	}

	// A deadline that passes while a Read waits for a chunk that never comes: the object's
	// chunks are purged under the reader once it has its first. Chunks of 1 MiB, so the reader
	// asks for a few at a time and the later ones are gone when it asks for them.
	big := randomBytes(8<<20, 2)
	meta := fullMeta("purged")
	meta.Opts.ChunkSize = 1 << 20
	info = e.put(t, meta, big)
	ctx, cancel = context.WithTimeout(e.ctx, 3*time.Second)
	defer cancel()
	r2, ok, err := rawstore.OpenObjectAt(ctx, e.js, info, 0)
	if err != nil || !ok {
		t.Fatalf("open purged: ok %v, err %v", ok, err)
	}
	defer r2.Close()
	if _, err := io.ReadFull(r2, buf); err != nil {
		t.Fatalf("read purged: %v", err)
	}
	s, err := e.js.Stream(e.ctx, "OBJ_"+info.Bucket)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	if err := s.Purge(e.ctx, jetstream.WithPurgeSubject("$O."+info.Bucket+".C."+info.NUID)); err != nil {
		t.Fatalf("purge: %v", err)
	}
	start := time.Now()
	got, err := io.ReadAll(r2)
	if err == nil {
		t.Fatalf("read of purged chunks: %d bytes and no error", len(buf)+len(got))
	}
	t.Logf("read of purged chunks: %d bytes, then after %v: %v", len(buf)+len(got),
		time.Since(start).Round(time.Millisecond), err)
	if !bytes.Equal(got, big[len(buf):len(buf)+len(got)]) {
		t.Error("the bytes read before the error differ from the object's")
	}
}

// An object put without a chunk size is in nats.go's default chunks of 128 KiB, which an info
// without the recorded size is read with.
func TestOpenObjectAtDefaultChunkSize(t *testing.T) {
	e := newObjEnv(t)
	data := randomBytes(300<<10, 1)
	meta := fullMeta("default")
	meta.Opts = nil
	info := e.put(t, meta, data)
	if info.Opts == nil || info.Opts.ChunkSize != 128<<10 {
		t.Fatalf("recorded options %+v, want chunk size %d", info.Opts, 128<<10)
	}
	info.Opts = nil
	for _, off := range []int{0, 128<<10 + 1, 256 << 10, len(data) - 1} {
		if got := e.readAt(t, info, int64(off)); !bytes.Equal(got, data[off:]) {
			t.Errorf("from %d: got %d bytes, not the %d from the offset", off, len(got), len(data)-off)
		}
	}
}
