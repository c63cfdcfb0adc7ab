// Package collector is the third stage: it streams the vendor's output file into the raw store
// (the JetStream object store mp_raw), checking the vendor's digest on the way, and publishes
// "collected". The file never sits whole in memory. Its consumer reads mp.job.*.ready.
package collector

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"time"

	"github.com/klauspost/readahead"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/bounds"
	"github.com/marketpipe/marketpipe/pkg/chunk"
	"github.com/marketpipe/marketpipe/pkg/config"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natsx"
	"github.com/marketpipe/marketpipe/pkg/service"
	"github.com/marketpipe/marketpipe/pkg/stage"
	"github.com/marketpipe/marketpipe/pkg/vendor"
)

// Name is the stage's consumer and service name.
const Name = "collector"

// Vendor downloads output files.
type Vendor interface {
	// Output lists the request's output file: its size bounds the download.
	Output(ctx context.Context, identifier string) (*vendor.Output, error)
	// Download streams the decoded file; its Read fails at the end if the digest differs or the
	// body was cut short, and as soon as the file grows past what its listed size allows
	// (bounds.ErrExceeded).
	Download(ctx context.Context, key, digest string, listed int64) (io.ReadCloser, error)
}

// RawStore keeps downloaded files.
type RawStore interface {
	ObjectPutter
	GetInfo(ctx context.Context, name string, opts ...jetstream.GetObjectInfoOpt) (*jetstream.ObjectInfo, error)
}

// Publisher stores job events durably.
type Publisher interface {
	PublishJob(ctx context.Context, j *events.Job) error
}

// Handler downloads one ready job's file.
type Handler struct {
	Vendor Vendor
	Raw    RawStore
	Pub    Publisher
	Now    func() time.Time
	// MarkBytes is the first spacing of the marks recorded for the transformer
	// (COLLECTOR_MARK_BYTES, default DefaultMarkBytes).
	MarkBytes int64
}

// FileKey is the raw-store name of a job run's file.
func FileKey(j *events.Job) string {
	return fmt.Sprintf("%s/g%d/%s", j.ID, j.Generation, j.ResponseKey)
}

// Handle implements stage.Handler. A redelivery after the file was stored (but before
// "collected" was acknowledged) reuses the stored file instead of downloading it again.
func (h *Handler) Handle(ctx context.Context, m *stage.Message) error {
	j, err := events.Decode(m.Data())
	if err != nil {
		return stage.Permanent(err)
	}
	key := FileKey(&j)
	info, err := h.Raw.GetInfo(ctx, key)
	if err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		return fmt.Errorf("look up raw file %s: %w", key, err)
	}
	// A file stored by an earlier delivery is reused: it has no marks, so the transformer finds
	// its chunks by scanning it. One stored for another digest, or not completely (without its
	// plain headers), is downloaded again.
	var (
		marks []events.FileMark
		size  int64
		sum   string
	)
	if err == nil && info.Headers.Get(hdrVendorDigest) == j.ResponseDigest {
		size, sum, _, err = natsx.PlainFile(info)
	}
	if info == nil || info.Headers.Get(hdrVendorDigest) != j.ResponseDigest || err != nil {
		info, marks, err = h.download(ctx, &j, key)
		if err != nil {
			// A refused download or a file past the bounds every reader of vendor bytes keeps
			// (pkg/bounds) cannot succeed later: the job fails, and nothing of it is stored.
			var apiErr *vendor.APIError
			switch {
			case errors.Is(err, bounds.ErrExceeded):
				failed := j.Fail(err.Error(), h.Now())
				return h.Pub.PublishJob(ctx, &failed)
			case errors.As(err, &apiErr) && !apiErr.Temporary():
				failed := j.Fail(fmt.Sprintf("download %s: %v", j.ResponseKey, err), h.Now())
				return h.Pub.PublishJob(ctx, &failed)
			}
			return err
		}
		if size, sum, _, err = natsx.PlainFile(info); err != nil {
			return fmt.Errorf("raw file %s: %w", key, err)
		}
	}
	next := j.Advance(events.Collected, h.Now())
	next.FileKey, next.FileSHA256, next.FileSize = key, sum, size
	next.FileMarks = marks
	return h.Pub.PublishJob(ctx, &next)
}

// listedSize is the size the vendor's listing gave j's output: the ready event's, or, for an
// event from before it carried one, the listing's, asked again. A listing that no longer shows
// the file, or is refused, gives -1, which leaves the absolute bound (the download then says
// what the vendor has); one that fails for a while is retried.
func (h *Handler) listedSize(ctx context.Context, j *events.Job) (int64, error) {
	if j.ResponseSize > 0 {
		return j.ResponseSize, nil
	}
	out, err := h.Vendor.Output(ctx, j.VendorRequestID)
	var apiErr *vendor.APIError
	if err != nil && !(errors.As(err, &apiErr) && !apiErr.Temporary()) {
		return 0, fmt.Errorf("download %s: look up its listed size: %w", j.ResponseKey, err)
	}
	if out != nil && out.Key == j.ResponseKey {
		return out.ContentLength, nil
	}
	return -1, nil
}

// hdrVendorDigest records on the stored object the vendor digest it was checked against.
const hdrVendorDigest = "Vendor-Digest"

// download streams j's file into the raw store as key and returns what was stored with the
// file's marks (pkg/chunk), found on the way.
func (h *Handler) download(ctx context.Context, j *events.Job, key string) (*jetstream.ObjectInfo, []events.FileMark, error) {
	listed, err := h.listedSize(ctx, j)
	if err != nil {
		return nil, nil, err
	}
	body, err := h.Vendor.Download(ctx, j.ResponseKey, j.ResponseDigest, listed)
	if err != nil {
		return nil, nil, fmt.Errorf("download %s: %w", j.ResponseKey, err)
	}
	defer body.Close()
	meta := jetstream.ObjectMeta{Name: key, Description: "vendor reply file of job " + j.ID,
		Headers: map[string][]string{hdrVendorDigest: {j.ResponseDigest}, "Job-Id": {j.ID}}}
	info, marks, err := Store(ctx, h.Raw, meta, body, h.MarkBytes)
	if err != nil {
		if errors.Is(err, bounds.ErrExceeded) {
			return nil, nil, fmt.Errorf("download %s: %w", j.ResponseKey, unwrapBound(err))
		}
		return nil, nil, fmt.Errorf("store %s as %s: %w", j.ResponseKey, key, err)
	}
	return info, marks, nil
}

// unwrapBound returns the *bounds.Error in err: its reason says all, without the layers of
// readers that passed it on.
func unwrapBound(err error) error {
	var b *bounds.Error
	if errors.As(err, &b) {
		return b
	}
	return err
}

// ObjectPutter stores objects.
type ObjectPutter interface {
	Put(ctx context.Context, meta jetstream.ObjectMeta, r io.Reader) (*jetstream.ObjectInfo, error)
	UpdateMeta(ctx context.Context, name string, meta jetstream.ObjectMeta) error
	Delete(ctx context.Context, name string) error
}

// Store stores the file that r yields in raw as meta says, compressed in the S2 layout
// (natsx.ChunkLayoutS2: chunks of ChunkSize plain bytes, each compressed alone, so that a chunk
// of the transformer can read from an offset with natsx.OpenObjectAt), and returns what was
// stored with the file's marks (pkg/chunk's Marks every markBytes, 0 for DefaultMarkBytes),
// found on the way. The object's plain headers (the file's size and SHA-256) are added once it
// is stored: an object without them is incomplete (natsx.PlainFile). Put reads r until EOF; a
// read error (a digest mismatch, a truncated download, a bound of pkg/bounds) fails the store,
// and Put then removes the partial object. A line longer than bounds.MaxLineBytes, found by
// Marks, fails the store the same way (an error matching bounds.ErrExceeded), and if Put had
// already finished, the object is deleted.
func Store(ctx context.Context, raw ObjectPutter, meta jetstream.ObjectMeta, r io.Reader, markBytes int64) (*jetstream.ObjectInfo, []events.FileMark, error) {
	meta.Opts = &jetstream.ObjectMetaOptions{ChunkSize: uint32(natsx.S2ChunkSize(ChunkSize))}
	meta.Headers = maps.Clone(meta.Headers)
	if meta.Headers == nil {
		meta.Headers = nats.Header{}
	}
	meta.Headers.Set(natsx.ChunkLayoutHeader, natsx.ChunkLayoutS2)
	// Reading r (for a download: inflating and the vendor's SHA-512) runs ahead in a goroutine
	// of its own, two chunks at most, while the file is hashed, compressed and published:
	// about a core each.
	ra, err := readahead.NewReaderSize(fullReader{r}, 2, ChunkSize)
	if err != nil {
		return nil, nil, err
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
		ms, err := chunk.Marks(pr, cmp.Or(markBytes, DefaultMarkBytes), events.MaxFileMarks)
		pr.CloseWithError(err)
		found <- marksResult{ms, err}
	}()
	file := natsx.NewS2Chunks(io.TeeReader(ra, pw), ChunkSize)
	info, err := raw.Put(ctx, meta, file)
	pw.CloseWithError(err) // nil: Marks reads EOF
	m := <-found
	if err == nil && errors.Is(m.err, bounds.ErrExceeded) {
		// Marks failed on the last bytes, after Put had them all.
		if derr := raw.Delete(ctx, meta.Name); derr != nil {
			return nil, nil, fmt.Errorf("%w (and deleting the stored object: %v)", m.err, derr)
		}
		err = m.err
	}
	if err != nil {
		// The read-ahead may be blocked in r's Read until the caller closes r: stop it in the
		// background.
		go ra.Close()
		return nil, nil, err
	}
	ms := m.ms
	ra.Close() // r is at its end: returns at once
	natsx.SetPlainHeaders(meta.Headers, ChunkSize, file.Size(), file.SHA256())
	if err := raw.UpdateMeta(ctx, meta.Name, meta); err != nil {
		return nil, nil, fmt.Errorf("record the plain size and digest of %s: %w", meta.Name, err)
	}
	info.Headers = meta.Headers
	marks := make([]events.FileMark, len(ms))
	for i, m := range ms {
		marks[i] = events.FileMark(m)
	}
	return info, marks, nil
}

// DefaultMarkBytes is the first spacing of a file's marks, doubled as often as needed to keep
// at most events.MaxFileMarks: 1 MiB, so that a file of a few MB has marks too, and a large one
// has about a hundred, evenly spread, whatever the transformer's chunk size. After each
// multiple, Marks reads lines one by one to the next boundary (up to a security's lines), so a
// smaller spacing costs the collector more.
const DefaultMarkBytes = 1 << 20

// ChunkSize is the plain bytes of each of the raw store's chunks, one JetStream message each,
// compressed (natsx.ChunkLayoutS2). Four times the object store's 128 KiB default: a file is a
// quarter as many messages for nats-server to store and the transformer to read. Compressed or
// not (a chunk that does not compress), it stays well under the default 1 MB max_payload.
const ChunkSize = 512 << 10

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

// Summary is what the collector does, for -h.
const Summary = "downloads each ready vendor output into the raw store"

// Settings are the collector's own variables (pkg/config reads them); the default is
// DefaultMarkBytes.
type Settings struct {
	MarkBytes int `env:"COLLECTOR_MARK_BYTES" default:"1048576" shown:"1048576 (1 MiB)" help:"first spacing of the record boundaries noted in a file for the transformer's chunks (doubled as needed to keep at most 128)"`
}

// Stage returns the collector stage on env's JetStream.
func Stage(env *service.Env, v Vendor) (*stage.Stage, error) {
	counters, err := env.Counters()
	if err != nil {
		return nil, err
	}
	var s Settings
	if err := config.Read(env.Lookup, &s); err != nil {
		return nil, err
	}
	tracer := env.Tracing.Provider.Tracer("github.com/marketpipe/marketpipe/services/collector")
	h := &Handler{Vendor: countedVendor{v, counters.BytesDownloaded}, Raw: tracedRaw{env.Streams.Raw, tracer},
		Pub: env.Publisher(), Now: time.Now, MarkBytes: int64(s.MarkBytes)}
	return stage.New(env.JS, stage.Config{
		Name: Name, Stream: events.JobsStream, Filters: []string{events.JobFilter(events.Ready)},
		MaxBytes:    events.MaxJobEventBytes,
		Concurrency: 4, AckWait: time.Minute, MaxDeliver: 10,
	}, h, env.StageOptions())
}

// Build is the service's wiring.
func Build(ctx context.Context, env *service.Env) ([]service.Runner, error) {
	v, err := env.Vendor()
	if err != nil {
		return nil, err
	}
	return service.Only(Stage(env, v))
}
