package collector

import (
	"context"
	"io"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/marketpipe/marketpipe/pkg/service"
)

// newBytesDownloaded is the collector's figure: reply-file bytes read from the vendor.
func newBytesDownloaded(env *service.Env) (prometheus.Counter, error) {
	return service.Register(env, prometheus.NewCounter(prometheus.CounterOpts{Name: "marketpipe_bytes_downloaded_total",
		Help: "Reply-file bytes downloaded from the vendor, after decompression."}))
}

// Counter counts downloaded bytes; a prometheus.Counter is one.
type Counter interface{ Add(float64) }

// countedVendor counts the bytes read from every download as they arrive, so a download cut
// short still counts what it fetched.
type countedVendor struct {
	Vendor
	bytes Counter
}

func (v countedVendor) Download(ctx context.Context, key, digest string, listed int64) (io.ReadCloser, error) {
	body, err := v.Vendor.Download(ctx, key, digest, listed)
	if err != nil {
		return nil, err
	}
	return countingReader{body, v.bytes}, nil
}

type countingReader struct {
	io.ReadCloser
	bytes Counter
}

func (r countingReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	if n > 0 {
		r.bytes.Add(float64(n))
	}
	return n, err
}
