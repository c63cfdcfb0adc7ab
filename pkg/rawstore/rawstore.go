// Package rawstore owns the stored vendor reply files (the JetStream object store mp_raw): how a
// file is laid out (S2 chunks, ChunkLayoutS2: layout.go), how it is read from an offset
// (OpenObjectAt: objrange.go), its plain size and SHA-256, and its record boundaries ("marks",
// pkg/chunk), all kept with the object, so that whoever finds the file stored (a redelivery, a
// replay) finds them too. The collector writes files with Store.Put; the transformer reads them
// with Store.Open and Store.OpenAt.
package rawstore

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"time"

	"github.com/klauspost/readahead"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/marketpipe/marketpipe/pkg/bounds"
	"github.com/marketpipe/marketpipe/pkg/chunk"
	"github.com/marketpipe/marketpipe/pkg/events"
)

// Objects is the object store that holds the files: a jetstream.ObjectStore is one.
type Objects interface {
	Put(ctx context.Context, meta jetstream.ObjectMeta, r io.Reader) (*jetstream.ObjectInfo, error)
	UpdateMeta(ctx context.Context, name string, meta jetstream.ObjectMeta) error
	Delete(ctx context.Context, name string) error
	Get(ctx context.Context, name string, opts ...jetstream.GetObjectOpt) (jetstream.ObjectResult, error)
	GetInfo(ctx context.Context, name string, opts ...jetstream.GetObjectInfoOpt) (*jetstream.ObjectInfo, error)
}

// MarksHeader is the object header that holds the file's marks, a JSON array of
// events.FileMark (at most events.MaxFileMarks). It is set with the plain headers once the whole
// file is stored; files stored by earlier versions have none.
const MarksHeader = "File-Marks"

// ChunkSize is the plain bytes of each of the raw store's chunks, one JetStream message each,
// compressed (ChunkLayoutS2). Four times the object store's 128 KiB default: a file is a
// quarter as many messages for nats-server to store and the transformer to read. Compressed or
// not (a chunk that does not compress), it stays well under the default 1 MB max_payload.
const ChunkSize = 512 << 10

// DefaultMarkBytes is the first spacing of a file's marks, doubled as often as needed to keep
// at most events.MaxFileMarks: 1 MiB, so that a file of a few MB has marks too, and a large one
// has about a hundred, evenly spread, whatever the transformer's chunk size. After each
// multiple, chunk.Marks reads lines one by one to the next boundary (up to a security's lines),
// so a smaller spacing costs the writer more.
const DefaultMarkBytes = 1 << 20

// ErrNotFound is the error of a key with no file stored.
var ErrNotFound = jetstream.ErrObjectNotFound

// ErrDamaged is the error of an object that is not a complete stored file: stored partly (no
// plain headers), or with headers that do not describe it.
var ErrDamaged = errors.New("not a completely stored file")

// Store keeps reply files in Objects.
type Store struct {
	Objects Objects
	// JS lets OpenAt read only the chunks from an offset on (OpenObjectAt); nil: OpenAt
	// reads the file from its start and skips.
	JS jetstream.JetStream
	// Tracer makes each call on the object store a span of the caller's trace (nil: none).
	Tracer trace.Tracer
	// ChunkSize is the plain bytes of each stored chunk (0: ChunkSize); MarkBytes the first
	// spacing of the marks (0: DefaultMarkBytes).
	ChunkSize int
	MarkBytes int64
}

// Info describes a stored file.
type Info struct {
	Key string
	// Size and SHA256 (hex) are the file's, decoded.
	Size   int64
	SHA256 string
	// Marks are record boundaries spread over the file (pkg/chunk's Marks); nil for a file
	// stored by an earlier version, which recorded none.
	Marks []events.FileMark
	// Headers are the object's headers, those given to Put among them.
	Headers nats.Header

	object *jetstream.ObjectInfo
}

// Meta is what the caller records with a file.
type Meta struct {
	Description string
	Headers     nats.Header
}

func (s *Store) objects() Objects {
	if s.Tracer == nil {
		return s.Objects
	}
	return tracedObjects{s.Objects, s.Tracer}
}

func (s *Store) chunkSize() int { return cmp.Or(s.ChunkSize, ChunkSize) }

// Stat describes the file stored as key: ErrNotFound if there is none, ErrDamaged if the object
// there is not a complete file.
func (s *Store) Stat(ctx context.Context, key string) (*Info, error) {
	oi, err := s.objects().GetInfo(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("look up raw file %s: %w", key, err)
	}
	return describe(oi)
}

// describe reads a stored file's description from its object's info.
func describe(oi *jetstream.ObjectInfo) (*Info, error) {
	size, sum, _, err := PlainFile(oi)
	if err != nil {
		return nil, fmt.Errorf("raw file %s: %w: %w", oi.Name, ErrDamaged, err)
	}
	info := &Info{Key: oi.Name, Size: size, SHA256: sum, Headers: oi.Headers, object: oi}
	if info.Marks, err = parseMarks(oi.Headers.Get(MarksHeader), size); err != nil {
		return nil, fmt.Errorf("raw file %s: %w: header %s: %w", oi.Name, ErrDamaged, MarksHeader, err)
	}
	return info, nil
}

// parseMarks reads a MarksHeader value: "" gives none.
func parseMarks(v string, size int64) ([]events.FileMark, error) {
	if v == "" {
		return nil, nil
	}
	var ms []events.FileMark
	if err := json.Unmarshal([]byte(v), &ms); err != nil {
		return nil, err
	}
	if len(ms) > events.MaxFileMarks {
		return nil, fmt.Errorf("%d marks, more than %d", len(ms), events.MaxFileMarks)
	}
	var prev events.FileMark
	for i, m := range ms {
		if m.Offset <= prev.Offset || m.Offset >= size || m.Line <= prev.Line {
			return nil, fmt.Errorf("mark %d (offset %d, line %d) does not follow the one before it within the file's %d bytes",
				i, m.Offset, m.Line, size)
		}
		prev = m
	}
	return ms, nil
}

// Put stores the file that r yields as key, compressed in the S2 layout (ChunkLayoutS2:
// chunks of ChunkSize plain bytes, each compressed alone, so that OpenAt reads from an offset),
// with its marks, found on the way, and returns what was stored. The plain headers and the marks
// are added once the file is stored: an object without them is incomplete (ErrDamaged). Put
// reads r until EOF; a read error (a digest mismatch, a truncated download, a bound of
// pkg/bounds) fails the store, and the partial object is removed. A line longer than
// bounds.MaxLineBytes, found by chunk.Marks, fails it the same way (an error matching
// bounds.ErrExceeded), and the object is deleted if it was already stored.
func (s *Store) Put(ctx context.Context, key string, meta Meta, r io.Reader) (*Info, error) {
	objects := s.objects()
	chunkSize := s.chunkSize()
	om := jetstream.ObjectMeta{Name: key, Description: meta.Description, Headers: maps.Clone(meta.Headers),
		Opts: &jetstream.ObjectMetaOptions{ChunkSize: uint32(S2ChunkSize(chunkSize))}}
	if om.Headers == nil {
		om.Headers = nats.Header{}
	}
	om.Headers.Set(ChunkLayoutHeader, ChunkLayoutS2)
	// Reading r (for a download: inflating and the vendor's SHA-512) runs ahead in a goroutine
	// of its own, two chunks at most, while the file is hashed, compressed and published:
	// about a core each.
	ra, err := readahead.NewReaderSize(fullReader{r}, 2, chunkSize)
	if err != nil {
		return nil, err
	}
	// The marks are found in a copy of the stream as it is stored: chunk.Marks reads its input
	// to the end unless it fails (the stream's error, or a line too long), so the copy never
	// blocks the store. Its failure fails the copy, and so the store.
	pr, pw := io.Pipe()
	type marksResult struct {
		ms  []chunk.Mark
		err error
	}
	found := make(chan marksResult, 1)
	go func() {
		ms, err := chunk.Marks(pr, cmp.Or(s.MarkBytes, DefaultMarkBytes), events.MaxFileMarks)
		pr.CloseWithError(err)
		found <- marksResult{ms, err}
	}()
	file := NewS2Chunks(io.TeeReader(ra, pw), chunkSize)
	oi, err := objects.Put(ctx, om, file)
	pw.CloseWithError(err) // nil: Marks reads EOF
	m := <-found
	if err == nil && errors.Is(m.err, bounds.ErrExceeded) {
		// Marks failed on the last bytes, after Put had them all.
		if derr := objects.Delete(ctx, key); derr != nil {
			return nil, fmt.Errorf("%w (and deleting the stored object: %v)", m.err, derr)
		}
		err = m.err
	}
	if err != nil {
		// The read-ahead may be blocked in r's Read until the caller closes r: stop it in the
		// background.
		go ra.Close()
		return nil, err
	}
	ra.Close() // r is at its end: returns at once
	marks := make([]events.FileMark, len(m.ms))
	for i, mk := range m.ms {
		marks[i] = events.FileMark(mk)
	}
	SetPlainHeaders(om.Headers, chunkSize, file.Size(), file.SHA256())
	if len(marks) > 0 {
		v, err := json.Marshal(marks)
		if err != nil {
			return nil, fmt.Errorf("encode the marks of %s: %w", key, err)
		}
		om.Headers.Set(MarksHeader, string(v))
	}
	if err := objects.UpdateMeta(ctx, key, om); err != nil {
		return nil, fmt.Errorf("record the plain size, digest and marks of %s: %w", key, err)
	}
	oi.Headers = om.Headers
	return &Info{Key: key, Size: file.Size(), SHA256: file.SHA256(), Marks: marks, Headers: om.Headers, object: oi}, nil
}

// File is a stored file open for reading.
type File struct {
	Info   *Info
	r      io.Reader
	obj    io.Closer
	cancel context.CancelFunc // ends the object's read (getObject); nil: none
}

// Read returns the file's next bytes, decoded; at its end, an error if the file is not of the
// size recorded.
func (f *File) Read(p []byte) (int, error) { return f.r.Read(p) }

// Close stops reading the object.
func (f *File) Close() error {
	err := f.obj.Close()
	if f.cancel != nil {
		f.cancel()
	}
	return err
}

// OpenTimeout bounds how long opening a stored file may take (not reading it): in a cluster
// whose object-store stream lost its leader, nats.go's Get was seen waiting for minutes; an
// error instead lets the stage retry the delivery once the stream has a leader again.
var OpenTimeout = 30 * time.Second

// StallTimeout bounds how long reading a stored file waits for its next bytes. In a cluster
// whose object-store stream lost its leader, the consumer delivering the chunks usually
// recovers by itself; one that does not would hold the read until its deadline, an hour in the
// transformer. The error instead lets the
// stage retry the delivery.
var StallTimeout = 30 * time.Second

// stallReader ends a read that gets no bytes for StallTimeout, or whose ctx ended. It reads
// nats.go's object reader given a context without deadline: that one then gives up a Read
// after 5 seconds without a chunk, with a timeout error (net.Error) that asking again cures,
// instead of blocking until the context's deadline.
type stallReader struct {
	r   io.Reader
	ctx context.Context
}

func (s stallReader) Read(p []byte) (int, error) {
	start := time.Now()
	for {
		n, err := s.r.Read(p)
		var timeout net.Error
		if n == 0 && errors.As(err, &timeout) && timeout.Timeout() {
			err = nil
		}
		if n > 0 || err != nil || len(p) == 0 {
			return n, err
		}
		if err := s.ctx.Err(); err != nil {
			return 0, err
		}
		if time.Since(start) >= StallTimeout {
			return 0, fmt.Errorf("no bytes for %s (the object store's stream may have lost its leader)", StallTimeout)
		}
	}
}

// getObject is Get, given at most OpenTimeout to answer. Reading the object ends when ctx does
// or when the returned cancel is called; nats.go gets a context without deadline, for
// stallReader.
func (s *Store) getObject(ctx context.Context, key string) (jetstream.ObjectResult, context.CancelFunc, error) {
	rctx, cancelGet := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, cancelGet)
	cancel := func() { stop(); cancelGet() }
	type got struct {
		o   jetstream.ObjectResult
		err error
	}
	done := make(chan got, 1)
	go func() {
		o, err := s.objects().Get(rctx, key)
		done <- got{o, err}
	}()
	t := time.NewTimer(OpenTimeout)
	defer t.Stop()
	select {
	case g := <-done:
		if g.err != nil {
			cancel()
			return nil, nil, g.err
		}
		return g.o, cancel, nil
	case <-t.C:
		cancel()
		if g := <-done; g.err == nil {
			g.o.Close()
		}
		return nil, nil, fmt.Errorf("no answer within %s (the object store's stream may be electing a leader)", OpenTimeout)
	}
}

// Open opens the file stored as key from its start: ErrNotFound if there is none, ErrDamaged if
// the object there is not a complete file. Files stored plain by earlier versions (the full
// layout, or none) are read as they are. ctx bounds the whole read, and each wait for its
// next bytes is bounded by StallTimeout.
func (s *Store) Open(ctx context.Context, key string) (*File, error) {
	o, cancel, err := s.getObject(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("open raw file %s: %w", key, err)
	}
	fail := func(err error) (*File, error) {
		o.Close()
		cancel()
		return nil, err
	}
	oi, err := o.Info()
	if err != nil {
		return fail(fmt.Errorf("open raw file %s: %w", key, err))
	}
	info, err := describe(oi)
	if err != nil {
		return fail(err)
	}
	r, err := PlainReader(oi, stallReader{o, ctx})
	if err != nil {
		return fail(fmt.Errorf("open raw file %s: %w: %w", key, ErrDamaged, err))
	}
	return &File{Info: info, r: r, obj: o, cancel: cancel}, nil
}

// OpenAt opens the stored file info describes (as Stat or Open found it) from byte offset on:
// reading only the chunks from the one holding offset when it can (OpenObjectAt), else
// reading from the start and dropping what comes before offset. ctx bounds the whole read.
func (s *Store) OpenAt(ctx context.Context, info *Info, offset int64) (io.ReadCloser, error) {
	if s.JS != nil && info.object != nil {
		r, ok, err := s.openObjectAt(ctx, info.object, offset)
		if err != nil {
			return nil, fmt.Errorf("open raw file %s at %d: %w", info.Key, offset, err)
		}
		if ok {
			return r, nil
		}
	}
	f, err := s.Open(ctx, info.Key)
	if err != nil {
		return nil, err
	}
	if _, err := io.CopyN(io.Discard, f, offset); err != nil {
		f.Close()
		return nil, fmt.Errorf("read raw file %s to %d: %w", info.Key, offset, err)
	}
	return f, nil
}

// fullReader fills each Read's buffer unless the stream ends or fails first: a gzip download
// returns at most 32 KiB per Read, and the read-ahead hands on what one Read returned.
type fullReader struct{ r io.Reader }

func (f fullReader) Read(p []byte) (n int, err error) {
	for n < len(p) && err == nil {
		var k int
		k, err = f.r.Read(p[n:])
		n += k
	}
	return n, err
}
