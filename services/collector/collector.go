// Package collector is the third stage: it streams the vendor's output file into the raw store
// (pkg/rawstore, the JetStream object store mp_raw), checking the vendor's digest on the way,
// and publishes "collected". The file never sits whole in memory. Its consumer reads mp.job.*.ready.
package collector

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/marketpipe/marketpipe/pkg/auth"
	"github.com/marketpipe/marketpipe/pkg/bounds"
	"github.com/marketpipe/marketpipe/pkg/config"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/rawstore"
	"github.com/marketpipe/marketpipe/pkg/service"
	"github.com/marketpipe/marketpipe/pkg/stage"
	"github.com/marketpipe/marketpipe/pkg/vendor"
	"golang.org/x/sync/errgroup"
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

// Handler downloads one ready job's file.
type Handler struct {
	Vendor Vendor
	// Raw keeps the files, with their marks (its MarkBytes is COLLECTOR_MARK_BYTES).
	Raw *rawstore.Store
	Now func() time.Time
}

// FileKey is the raw-store name of a job run's file.
func FileKey(j *events.Job) string {
	return fmt.Sprintf("%s/g%d/%s", j.ID, j.Generation, j.ResponseKey)
}

// PartFileKey is the raw-store name of the file of part i of a job run of several parts.
func PartFileKey(j *events.Job, i int) string {
	return fmt.Sprintf("%s/g%d/p%d/%s", j.ID, j.Generation, i, j.Parts[i].ResponseKey)
}

// HandleJob implements stage.JobHandler: it returns "collected", or "failed" for a download
// that cannot succeed. A redelivery after the file was stored (but before "collected" was
// acknowledged) reuses the stored file instead of downloading it again. A job of several
// parts has its parts' files stored, PartDownloads at once; a redelivery reuses the parts stored, so a part
// whose download failed is downloaded again alone.
func (h *Handler) HandleJob(ctx context.Context, j events.Job, _ *stage.Message) (*events.Job, error) {
	if len(j.Parts) > 0 {
		return h.collectParts(ctx, j)
	}
	key := FileKey(&j)
	info, failed, err := h.store(ctx, &j, key)
	if failed != nil || err != nil {
		return failed, err
	}
	next := j.Advance(events.Collected, h.Now())
	// The marks travel in the event too, for transformers of earlier versions; the stored
	// file is their source.
	next.FileKey, next.FileSHA256, next.FileSize, next.FileMarks = key, info.SHA256, info.Size, info.Marks
	return &next, nil
}

// collectParts stores the file of every part of j.
func (h *Handler) collectParts(ctx context.Context, j events.Job) (*events.Job, error) {
	parts := slices.Clone(j.Parts)
	// A part that fails for a while leaves the others to finish, so that the redelivery
	// downloads it alone; one that cannot succeed stops them, as the job fails anyway.
	gctx, stop := context.WithCancel(ctx)
	defer stop()
	var g errgroup.Group
	g.SetLimit(PartDownloads)
	var (
		mu         sync.Mutex
		failed     *events.Job // the failure of the first part, by index, that cannot succeed
		failedPart int
	)
	for i := range parts {
		p := &parts[i] // each goroutine writes its own part only
		g.Go(func() error {
			// The part seen as a job of one request, for the download and its messages.
			pj := j
			pj.Parts, pj.VendorRequestID = nil, p.VendorRequestID
			pj.ResponseKey, pj.ResponseDigest, pj.ResponseSize = p.ResponseKey, p.ResponseDigest, p.ResponseSize
			key := PartFileKey(&j, i)
			info, fail, err := h.store(gctx, &pj, key)
			if fail != nil {
				mu.Lock()
				if failed == nil || i < failedPart {
					f := j.Fail(fmt.Sprintf("part %d of %d (request %s): %s", i+1, len(parts), p.VendorRequestID, fail.Error), h.Now())
					failed, failedPart = &f, i
				}
				mu.Unlock()
				stop()
				return nil
			}
			if err != nil {
				return fmt.Errorf("part %d of %d (request %s): %w", i+1, len(parts), p.VendorRequestID, err)
			}
			p.FileKey, p.FileSHA256, p.FileSize = key, info.SHA256, info.Size
			return nil
		})
	}
	err := g.Wait()
	if failed != nil {
		return failed, nil
	}
	if err != nil {
		return nil, err
	}
	next := j.Advance(events.Collected, h.Now())
	next.Parts = parts
	return &next, nil
}

// PartDownloads bounds the parts of one job downloaded at once: a job in parts is collected in
// about the time of its largest parts rather than of their sum, and a job of a thousand parts
// does not open a thousand downloads.
const PartDownloads = 4

// store returns what the raw store holds of j's output as key: the file an earlier delivery
// stored, or else the file downloaded now. A download that cannot succeed gives j's "failed"
// event.
func (h *Handler) store(ctx context.Context, j *events.Job, key string) (*rawstore.Info, *events.Job, error) {
	info, err := h.Raw.Stat(ctx, key)
	switch {
	case err == nil && info.Headers.Get(hdrVendorDigest) == j.ResponseDigest:
		// Stored by an earlier delivery, with its marks: reused.
		return info, nil, nil
	case err == nil || errors.Is(err, rawstore.ErrNotFound) || errors.Is(err, rawstore.ErrDamaged):
		// None, one stored for another digest, or one not completely stored: downloaded again.
		info, err = h.download(ctx, j, key)
		if err != nil {
			// A refused download or a file past the bounds every reader of vendor bytes keeps
			// (pkg/bounds) cannot succeed later: the job fails, and nothing of it is stored.
			var apiErr *vendor.APIError
			switch {
			case errors.Is(err, bounds.ErrExceeded):
				failed := j.Fail(err.Error(), h.Now())
				return nil, &failed, nil
			case errors.As(err, &apiErr) && !apiErr.Temporary():
				failed := j.Fail(fmt.Sprintf("download %s: %v", j.ResponseKey, err), h.Now())
				return nil, &failed, nil
			}
			return nil, nil, err
		}
		return info, nil, nil
	default:
		return nil, nil, err
	}
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

// download streams j's file into the raw store as key and returns what was stored.
func (h *Handler) download(ctx context.Context, j *events.Job, key string) (*rawstore.Info, error) {
	listed, err := h.listedSize(ctx, j)
	if err != nil {
		return nil, err
	}
	body, err := h.Vendor.Download(ctx, j.ResponseKey, j.ResponseDigest, listed)
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", j.ResponseKey, err)
	}
	defer body.Close()
	meta := rawstore.Meta{Description: "vendor reply file of job " + j.ID,
		Headers: map[string][]string{hdrVendorDigest: {j.ResponseDigest}, "Job-Id": {j.ID}}}
	info, err := h.Raw.Put(ctx, key, meta, body)
	if err != nil {
		if errors.Is(err, bounds.ErrExceeded) {
			return nil, fmt.Errorf("download %s: %w", j.ResponseKey, unwrapBound(err))
		}
		return nil, fmt.Errorf("store %s as %s: %w", j.ResponseKey, key, err)
	}
	return info, nil
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

// Summary is what the collector does, for -h.
const Summary = "downloads each ready vendor output into the raw store"

// Settings are the collector's own variables (pkg/config reads them); the default is
// rawstore.DefaultMarkBytes.
type Settings struct {
	MarkBytes int `env:"COLLECTOR_MARK_BYTES" default:"1048576" shown:"1048576 (1 MiB)" help:"first spacing of the record boundaries noted in a file for the transformer's chunks (doubled as needed to keep at most 128)"`
}

// Stage returns the collector stage on env's JetStream.
func Stage(env *service.Env, v Vendor) (*stage.Stage, error) {
	downloaded, err := newBytesDownloaded(env)
	if err != nil {
		return nil, err
	}
	var s Settings
	if err := config.Read(env.Lookup, &s); err != nil {
		return nil, err
	}
	tracer := env.Tracing.Provider.Tracer("github.com/marketpipe/marketpipe/services/collector")
	raw := &rawstore.Store{Objects: env.Streams.Raw, Tracer: tracer, MarkBytes: int64(s.MarkBytes)}
	h := &Handler{Vendor: countedVendor{v, downloaded}, Raw: raw, Now: time.Now}
	return stage.NewJobs(env.JS, Consumer, events.Decode, h, env.StageOptions())
}

// Consumer is the collector's stage: "ready" events.
var Consumer = stage.Config{
	Name: Name, Stream: events.JobsStream, Filters: []string{events.JobFilter(events.Ready)},
	MaxBytes:    events.MaxJobEventBytes,
	Concurrency: 4, AckWait: time.Minute, MaxDeliver: 10,
}

// Uses is what the collector does on NATS (its identity's permissions): it writes the raw
// files and publishes "collected" or "failed".
var Uses = auth.Uses{
	Consumers: []stage.Config{Consumer},
	Publishes: []string{events.JobFilter(events.Collected), events.JobFilter(events.Failed)},
	ObjWrite:  []string{events.RawBucket},
}

// Build is the service's wiring.
func Build(ctx context.Context, env *service.Env) ([]service.Runner, error) {
	v, err := env.Vendor()
	if err != nil {
		return nil, err
	}
	return service.Only(Stage(env, v))
}
