// Package collector is the third stage: it streams the vendor's output file into the raw store
// (the JetStream object store mp_raw), checking the vendor's digest on the way, and publishes
// "collected". The file never sits whole in memory. Its consumer reads mp.job.*.ready.
package collector

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/service"
	"github.com/marketpipe/marketpipe/pkg/stage"
	"github.com/marketpipe/marketpipe/pkg/vendor"
)

// Name is the stage's consumer and service name.
const Name = "collector"

// Vendor downloads output files.
type Vendor interface {
	// Download streams the decoded file; its Read fails at the end if the digest differs or the
	// body was cut short.
	Download(ctx context.Context, key, digest string) (io.ReadCloser, error)
}

// RawStore keeps downloaded files.
type RawStore interface {
	Put(ctx context.Context, meta jetstream.ObjectMeta, r io.Reader) (*jetstream.ObjectInfo, error)
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
	if err != nil || info.Headers.Get(hdrVendorDigest) != j.ResponseDigest {
		if err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			return fmt.Errorf("look up raw file %s: %w", key, err)
		}
		info, err = h.download(ctx, &j, key)
		if err != nil {
			var apiErr *vendor.APIError
			if errors.As(err, &apiErr) && !apiErr.Temporary() {
				failed := j.Fail(fmt.Sprintf("download %s: %v", j.ResponseKey, err), h.Now())
				return h.Pub.PublishJob(ctx, &failed)
			}
			return err
		}
	}
	sum, err := sha256Hex(info.Digest)
	if err != nil {
		return fmt.Errorf("raw file %s: %w", key, err)
	}
	next := j.Advance(events.Collected, h.Now())
	next.FileKey, next.FileSHA256, next.FileSize = key, sum, int64(info.Size)
	return h.Pub.PublishJob(ctx, &next)
}

// hdrVendorDigest records on the stored object the vendor digest it was checked against.
const hdrVendorDigest = "Vendor-Digest"

func (h *Handler) download(ctx context.Context, j *events.Job, key string) (*jetstream.ObjectInfo, error) {
	body, err := h.Vendor.Download(ctx, j.ResponseKey, j.ResponseDigest)
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", j.ResponseKey, err)
	}
	defer body.Close()
	meta := jetstream.ObjectMeta{Name: key, Description: "vendor reply file of job " + j.ID,
		Opts: &jetstream.ObjectMetaOptions{ChunkSize: ChunkSize}}
	meta.Headers = map[string][]string{hdrVendorDigest: {j.ResponseDigest}, "Job-Id": {j.ID}}
	// Put reads until EOF; a digest mismatch or truncation surfaces as a read error, and Put
	// then removes the partial object, so a bad download is never recorded as collected.
	info, err := h.Raw.Put(ctx, meta, fullReader{body})
	if err != nil {
		return nil, fmt.Errorf("store %s as %s: %w", j.ResponseKey, key, err)
	}
	return info, nil
}

// ChunkSize is the size of the raw store's chunks, one JetStream message each. Four times the
// object store's 128 KiB default: a file is a quarter as many messages for nats-server to store
// and the transformer to read. It stays well under the default 1 MB max_payload.
const ChunkSize = 512 << 10

// fullReader fills each Read's buffer unless the stream ends or fails first. The object store
// sends what one Read returns as one chunk, and a gzip download returns at most 32 KiB per
// Read, so without it chunks would be that small whatever the chunk size.
type fullReader struct{ r io.Reader }

func (f fullReader) Read(p []byte) (n int, err error) {
	for n < len(p) && err == nil {
		var k int
		k, err = f.r.Read(p[n:])
		n += k
	}
	return n, err
}

// sha256Hex turns the object store's "SHA-256=<base64url>" digest into hex.
func sha256Hex(digest string) (string, error) {
	b64, ok := strings.CutPrefix(digest, "SHA-256=")
	if !ok {
		return "", fmt.Errorf("unexpected object digest %q", digest)
	}
	raw, err := base64.URLEncoding.DecodeString(b64)
	if err != nil {
		return "", fmt.Errorf("object digest %q: %w", digest, err)
	}
	return hex.EncodeToString(raw), nil
}

// Stage returns the collector stage on env's JetStream.
func Stage(env *service.Env, v Vendor) (*stage.Stage, error) {
	counters, err := env.Counters()
	if err != nil {
		return nil, err
	}
	tracer := env.Tracing.Provider.Tracer("github.com/marketpipe/marketpipe/services/collector")
	h := &Handler{Vendor: countedVendor{v, counters.BytesDownloaded}, Raw: tracedRaw{env.Streams.Raw, tracer},
		Pub: env.Publisher(), Now: time.Now}
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
