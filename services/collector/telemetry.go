package collector

import (
	"context"
	"io"
)

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
