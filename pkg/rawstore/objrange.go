package rawstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ChunkLayoutHeader is the object header that says how an object's bytes are split into
// chunks. ChunkLayoutFull means every chunk but the last holds exactly the object's chunk size,
// so the chunk holding any byte offset is known without reading the chunks before it.
const (
	ChunkLayoutHeader = "Chunk-Layout"
	ChunkLayoutFull   = "full"
)

// defaultObjectChunkSize is the chunk size nats.go's object store uses when an object's meta
// gives none (its objDefaultChunkSize). Put records the size it used, so this only matters for
// objects written by clients that do not.
const defaultObjectChunkSize = 128 << 10

// objectPrefetchBytes bounds, roughly, the chunk bytes an object reader asks the server for
// ahead of its caller: a batch is this many bytes of chunks, and never fewer than one chunk.
const objectPrefetchBytes = 4 << 20

// objectConsumerDeleteTimeout bounds Close's removal of the reader's consumer.
const objectConsumerDeleteTimeout = 5 * time.Second

// errObjectReaderClosed is returned by Read after Close.
var errObjectReaderClosed = errors.New("object reader closed")

// OpenObjectAt returns a reader of the file stored as object info from offset to its end,
// reading only the chunks from the one holding offset. The object is in the full layout
// (ChunkLayoutFull: the file itself, in chunks of info.Opts' chunk size, nats.go's 128 KiB
// default when none is recorded) or the S2 layout (ChunkLayoutS2: each chunk compressed alone;
// offsets and sizes are then the decoded file's, and each chunk is decoded and checked). ok is
// false (and the reader nil, err nil) when the object cannot be read that way: it has another
// layout, or its chunk messages are not contiguous in the stream (another object's Put
// interleaved with it), or it is deleted / has no chunks. Then the caller reads the object from
// its start and skips. The caller closes the reader. ctx bounds the whole read (give it a
// deadline).
//
// An offset equal to the file's size gives an empty reader whatever the object's layout, as
// nothing has to be read; an offset outside [0, size] is an error, as is an S2 object without
// its plain headers. A reader whose chunks turn out not to match the layout (a chunk of the
// wrong size, a chunk missing because the object was replaced meanwhile) fails its Read with an
// error rather than return wrong or short data. Read and Close must not be called
// concurrently: cancel ctx to end a blocked Read.
func OpenObjectAt(ctx context.Context, js jetstream.JetStream, info *jetstream.ObjectInfo, offset int64) (r io.ReadCloser, ok bool, err error) {
	if info == nil {
		return nil, false, errors.New("open object at offset: no object info")
	}
	// size and chunkSize are the file's: for the S2 layout, decoded.
	size, chunkSize := info.Size, uint64(defaultObjectChunkSize)
	layout := info.Headers.Get(ChunkLayoutHeader)
	var s2c *s2Chunk
	if layout == ChunkLayoutS2 && !info.Deleted {
		lay, err := s2Layout(info)
		if err != nil {
			return nil, false, fmt.Errorf("open object %s at %d: %w", info.Name, offset, err)
		}
		size, chunkSize, s2c = uint64(lay.size), lay.chunk, newS2Chunk(lay.chunk)
	} else if info.Opts != nil && info.Opts.ChunkSize != 0 {
		chunkSize = uint64(info.Opts.ChunkSize)
	}
	if offset < 0 || uint64(offset) > size {
		return nil, false, fmt.Errorf("open object %s at %d: offset outside the file's %d bytes",
			info.Name, offset, size)
	}
	if info.Deleted || info.NUID == "" || (info.Opts != nil && info.Opts.Link != nil) {
		return nil, false, nil
	}
	if uint64(offset) == size {
		return io.NopCloser(strings.NewReader("")), true, nil
	}
	if layout != ChunkLayoutFull && layout != ChunkLayoutS2 {
		return nil, false, nil
	}
	chunks := uint64(info.Chunks)
	// In these layouts the chunk count follows from the size; if it does not, the header is
	// wrong and the offset cannot be mapped to a chunk.
	if chunks == 0 || (chunks-1)*chunkSize >= size || size > chunks*chunkSize {
		return nil, false, nil
	}

	streamName := "OBJ_" + info.Bucket
	subject := "$O." + info.Bucket + ".C." + info.NUID
	stream, err := js.Stream(ctx, streamName)
	if err != nil {
		return nil, false, fmt.Errorf("open object %s at %d: stream %s: %w", info.Name, offset, streamName, err)
	}
	first, err := stream.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(subject))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, false, nil // the chunks are gone: the object was deleted or replaced
	}
	if err != nil {
		return nil, false, fmt.Errorf("open object %s at %d: first chunk: %w", info.Name, offset, err)
	}
	last, err := stream.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("open object %s at %d: last chunk: %w", info.Name, offset, err)
	}
	if last.Sequence < first.Sequence || last.Sequence-first.Sequence+1 != chunks {
		return nil, false, nil // another Put's messages lie between the object's chunks
	}

	k := uint64(offset) / chunkSize
	left := chunks - k // chunk messages to read
	cons, err := js.OrderedConsumer(ctx, streamName, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    first.Sequence + k,
	})
	if err != nil {
		return nil, false, fmt.Errorf("open object %s at %d: consumer: %w", info.Name, offset, err)
	}
	batch := max(1, min(objectPrefetchBytes/chunkSize, left))
	msgs, err := cons.Messages(jetstream.PullMaxMessages(batch), jetstream.StopAfter(left))
	if err != nil {
		deleteObjectConsumer(ctx, js, streamName, cons)
		return nil, false, fmt.Errorf("open object %s at %d: consume chunks: %w", info.Name, offset, err)
	}
	return &objectReader{
		ctx: ctx, js: js, stream: streamName, cons: cons, msgs: msgs, name: info.Name,
		chunk: k, next: first.Sequence + k, last: last.Sequence,
		chunkSize: chunkSize, lastSize: size - (chunks-1)*chunkSize,
		skip: uint64(offset) % chunkSize, left: size - uint64(offset), s2: s2c,
	}, true, nil
}

// objectReader reads an object's chunk messages in stream order, from the one holding its
// start offset, through an ordered consumer.
type objectReader struct {
	ctx    context.Context
	js     jetstream.JetStream
	stream string
	cons   jetstream.Consumer
	msgs   jetstream.MessagesContext
	name   string

	chunk     uint64 // index in the object of the next chunk to receive
	next      uint64 // stream sequence of the next chunk
	last      uint64 // stream sequence of the object's last chunk
	chunkSize uint64
	lastSize  uint64   // bytes of the object's last chunk
	skip      uint64   // bytes to drop from the next chunk (the first one received)
	left      uint64   // bytes still to return
	buf       []byte   // received bytes not returned yet
	s2        *s2Chunk // decodes each chunk of the S2 layout; nil: the full layout
	stopped   bool     // msgs is stopped
	err       error    // sticky: io.EOF or the error that ended the read
}

// Read returns the object's next bytes, receiving the next chunk when it has none left.
func (r *objectReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if err := r.ctx.Err(); err != nil {
		r.err = fmt.Errorf("read object %s: %w", r.name, err)
		return 0, r.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	for len(r.buf) == 0 {
		if r.left == 0 {
			r.err = io.EOF
			return 0, r.err
		}
		if err := r.receive(); err != nil {
			r.err = fmt.Errorf("read object %s: %w", r.name, err)
			return 0, r.err
		}
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	r.left -= uint64(n)
	return n, nil
}

// receive waits for the next chunk message and checks that it is the one expected, of the
// size the full layout gives it, before buffering its bytes.
func (r *objectReader) receive() error {
	ctx, cancel := context.WithTimeout(r.ctx, StallTimeout)
	msg, err := r.msgs.Next(jetstream.NextContext(ctx))
	cancel()
	if err != nil {
		if ctxErr := r.ctx.Err(); ctxErr != nil {
			return fmt.Errorf("chunk %d: %w", r.chunk, ctxErr)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("chunk %d: none for %s (the object store's stream may have lost its leader)", r.chunk, StallTimeout)
		}
		return fmt.Errorf("chunk %d: %w", r.chunk, err)
	}
	meta, err := msg.Metadata()
	if err != nil {
		return fmt.Errorf("chunk %d: %w", r.chunk, err)
	}
	if meta.Sequence.Stream != r.next {
		return fmt.Errorf("chunk %d: received stream sequence %d, want %d (chunks removed meanwhile?)",
			r.chunk, meta.Sequence.Stream, r.next)
	}
	data := msg.Data()
	want := r.chunkSize
	if r.next == r.last {
		want = r.lastSize
	}
	if r.s2 != nil {
		if data, err = r.s2.decode(data, want); err != nil {
			return fmt.Errorf("chunk %d: %w: the object's chunks are not in the %s layout", r.chunk, err, ChunkLayoutS2)
		}
	} else if uint64(len(data)) != want {
		return fmt.Errorf("chunk %d has %d bytes, want %d: the object's chunks are not in the %s layout",
			r.chunk, len(data), want, ChunkLayoutFull)
	}
	if r.next != r.last && meta.NumPending == 0 {
		return fmt.Errorf("chunk %d: no chunks follow it of the %d stored up to sequence %d (chunks removed meanwhile?)",
			r.chunk, r.last-r.next, r.last)
	}
	data = data[r.skip:]
	r.skip = 0
	if uint64(len(data)) > r.left {
		return fmt.Errorf("chunk %d: %d bytes, more than the %d left of the object", r.chunk, len(data), r.left)
	}
	r.buf = data
	r.chunk++
	r.next++
	if r.next > r.last {
		r.stop()
	}
	return nil
}

// stop ends the delivery of chunk messages.
func (r *objectReader) stop() {
	if !r.stopped {
		r.stopped = true
		r.msgs.Stop()
	}
}

// Close stops the delivery of chunks and removes the reader's consumer from the server. Its
// removal is best effort: the server removes an inactive consumer itself after a few minutes.
func (r *objectReader) Close() error {
	if errors.Is(r.err, errObjectReaderClosed) {
		return nil
	}
	r.stop()
	r.buf = nil
	r.err = fmt.Errorf("read object %s: %w", r.name, errObjectReaderClosed)
	deleteObjectConsumer(r.ctx, r.js, r.stream, r.cons)
	return nil
}

// deleteObjectConsumer removes an ordered consumer's current server consumer, even when ctx is
// done, for a few seconds at most. Errors are ignored: the consumer expires when inactive.
func deleteObjectConsumer(ctx context.Context, js jetstream.JetStream, stream string, cons jetstream.Consumer) {
	info := cons.CachedInfo()
	if info == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), objectConsumerDeleteTimeout)
	defer cancel()
	_ = js.DeleteConsumer(ctx, stream, info.Name)
}
