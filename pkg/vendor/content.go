package vendor

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/gzip"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/marketpipe/marketpipe/pkg/bounds"
)

// Output is a prepared reply file, as the responses listing describes it.
type Output struct {
	Key           string // the file's name at the vendor; opaque
	ContentType   string
	ContentLength int64  // of the decoded file; -1 when not given
	Digest        string // "sha512=<base64>" of the decoded file, as given
	LastModified  time.Time
	Metadata      map[string]string // DL_REQUEST_ID, DL_REQUEST_TYPE, DL_SNAPSHOT_START_TIME, ...
}

// Output asks whether the output of the request is ready (GET
// /catalogs/{account}/content/responses/?requestIdentifier=id). It returns nil, nil while it is
// not; when several files are listed, the most recently modified.
func (c *Client) Output(ctx context.Context, identifier string) (out *Output, err error) {
	ctx, span := c.startSpan(ctx, "vendor.Output", attribute.String("vendor.request_id", identifier))
	defer func() { endSpan(span, err) }()
	acct, err := c.Account(ctx)
	if err != nil {
		return nil, fmt.Errorf("output of %s: %w", identifier, err)
	}
	resp, err := c.get(ctx, &call{op: "output", path: "/catalogs/" + escape(acct) + "/content/responses/",
		query: url.Values{"requestIdentifier": {identifier}}, header: jsonAccept})
	if err != nil {
		return nil, fmt.Errorf("output of %s: %w", identifier, err)
	}
	defer resp.Body.Close()
	outs, err := parseListing(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("output of %s: %w", identifier, err)
	}
	if len(outs) == 0 {
		return nil, nil
	}
	sort.SliceStable(outs, func(i, j int) bool { return outs[i].LastModified.After(outs[j].LastModified) })
	span.SetAttributes(attribute.String("vendor.key", outs[0].Key))
	return outs[0], nil
}

// maxListingBytes bounds the responses listing read.
const maxListingBytes = 16 << 20

// parseListing reads a responses listing: the files it lists (entries without a key are
// skipped), in the listing's order. A Content-Length that is not a size is left at -1 (not
// listed), an unreadable Last-Modified at zero.
func parseListing(r io.Reader) ([]*Output, error) {
	var list struct {
		Contains []struct {
			Key      string                     `json:"key"`
			Headers  map[string]json.RawMessage `json:"headers"`
			Metadata map[string]json.RawMessage `json:"metadata"`
		} `json:"contains"`
	}
	if err := json.NewDecoder(io.LimitReader(r, maxListingBytes)).Decode(&list); err != nil {
		return nil, fmt.Errorf("decode listing: %w", err)
	}
	var outs []*Output
	for _, it := range list.Contains {
		if it.Key == "" {
			continue
		}
		h := stringMap(it.Headers)
		o := &Output{Key: it.Key, ContentType: header(h, "Content-Type"), Digest: header(h, "Digest"),
			ContentLength: -1, Metadata: stringMap(it.Metadata)}
		if n, err := strconv.ParseInt(header(h, "Content-Length"), 10, 64); err == nil && n >= 0 {
			o.ContentLength = n
		}
		if t, err := http.ParseTime(header(h, "Last-Modified")); err == nil {
			o.LastModified = t
		}
		outs = append(outs, o)
	}
	return outs, nil
}

// stringMap flattens JSON values to strings: the listing gives numbers either as JSON numbers or
// as strings, depending on the field.
func stringMap(m map[string]json.RawMessage) map[string]string {
	out := make(map[string]string, len(m))
	for k, raw := range m {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			out[k] = s
		} else {
			out[k] = strings.TrimSpace(string(raw))
		}
	}
	return out
}

// header looks a header up case-insensitively, as HTTP header names are.
func header(h map[string]string, name string) string {
	if v, ok := h[name]; ok {
		return v
	}
	for k, v := range h {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return ""
}

// Download streams the file key (GET /catalogs/{account}/content/responses/{key}), asking for
// gzip and decoding it. The caller must Close the result.
//
// listed is the file's size as the listing gives it (Output.ContentLength; -1 when unknown).
// Read fails with an error matching bounds.ErrExceeded as soon as the decoded file grows past
// bounds.FileLimit(listed), or a gzip body inflates past bounds.MaxInflateRatio times what
// was received: such a file is refused, not retried.
//
// expectDigest is the listing's Digest ("sha512=<base64>"); when empty, the response's Digest
// header is used, if any. At the end of the stream Read verifies the SHA-512 of the decoded
// bytes and returns ErrDigestMismatch (wrapped) instead of io.EOF when it differs; a body cut
// short gives ErrTruncated. Only the request is retried here: a download that fails mid-stream
// is the caller's to restart, since it has consumed part of it.
func (c *Client) Download(ctx context.Context, key, expectDigest string, listed int64) (rc io.ReadCloser, err error) {
	ctx, span := c.startSpan(ctx, "vendor.Download", attribute.String("vendor.key", key))
	defer func() {
		if err != nil {
			endSpan(span, err) // otherwise the reader ends it
		}
	}()
	var want []byte
	if expectDigest != "" {
		if want, err = parseDigest(expectDigest); err != nil {
			return nil, fmt.Errorf("download %s: %w", key, err)
		}
	}
	acct, err := c.Account(ctx)
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", key, err)
	}
	resp, err := c.get(ctx, &call{op: "download", path: "/catalogs/" + escape(acct) + "/content/responses/" + escape(key),
		header: http.Header{"Accept-Encoding": {"gzip"}}})
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", key, err)
	}
	if want == nil {
		if d := resp.Header.Get("Digest"); d != "" {
			if want, err = parseDigest(d); err != nil {
				resp.Body.Close()
				return nil, fmt.Errorf("download %s: response header: %w", key, err)
			}
		}
	}
	d := &download{key: key, body: resp.Body, span: span, want: want, listed: listed}
	d.src = d.body
	// Setting Accept-Encoding ourselves turns off net/http's transparent decoding.
	gz := strings.EqualFold(resp.Header.Get("Content-Encoding"), "gzip")
	if gz {
		// klauspost/compress's gzip, a drop-in for compress/gzip that inflates about 1.4 times as
		// fast on our reply files: inflating was the largest CPU cost of a download.
		var g bounds.InflateGuard
		zr, err := gzip.NewReader(g.Compressed(resp.Body))
		if err != nil {
			resp.Body.Close()
			return nil, fmt.Errorf("download %s: %w", key, truncatedOr(err))
		}
		d.src = g.Plain(zr)
	}
	if want != nil {
		d.h = newBackgroundHash(sha512.New())
	}
	span.SetAttributes(attribute.Bool("vendor.gzip", gz), attribute.Bool("vendor.digest_checked", want != nil))
	return d, nil
}

// parseDigest reads "sha512=<base64>" (also "sha-512=", and picks it from a comma-separated
// list of digests).
func parseDigest(s string) ([]byte, error) {
	for part := range strings.SplitSeq(s, ",") {
		alg, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			continue
		}
		switch strings.ToLower(alg) {
		case "sha512", "sha-512":
			sum, err := base64.StdEncoding.DecodeString(val)
			if err != nil || len(sum) != sha512.Size {
				return nil, fmt.Errorf("digest %q: want sha512=<base64 of 64 bytes>", s)
			}
			return sum, nil
		}
	}
	return nil, fmt.Errorf("digest %q: no sha512 digest", s)
}

// truncatedOr maps an early end of stream (from net/http's Content-Length check or gzip) to
// ErrTruncated.
func truncatedOr(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: %v", ErrTruncated, err)
	}
	return err
}

// download is the reader Download returns: it decodes, hashes and checks at EOF.
type download struct {
	key  string
	body io.ReadCloser   // the HTTP body
	src  io.Reader       // body, or a gzip reader over it
	h    *backgroundHash // nil when no digest is known
	want []byte
	// n counts the decoded bytes read, and ended is set once Read has its final error: Close,
	// which may run while a Read is still under way in another goroutine (a store that gave up
	// before its reader did), reads both.
	n     atomic.Int64
	ended atomic.Bool
	// listed is the listing's size of the decoded file (-1: unknown), which bounds n.
	listed int64
	err    error // sticky final error
	span   trace.Span
	once   sync.Once
}

func (d *download) Read(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	n, err := d.src.Read(p)
	total := d.n.Add(int64(n))
	if berr := bounds.CheckFileSize(total, d.listed); berr != nil {
		n, err = 0, berr
	}
	if d.h != nil {
		d.h.Write(p[:n])
	}
	switch {
	case errors.Is(err, bounds.ErrExceeded):
		err = fmt.Errorf("download %s: %w", d.key, err)
	case err == nil:
		return n, nil
	case err == io.EOF:
		if d.h != nil {
			if got := d.h.Sum(); !bytes.Equal(got, d.want) {
				err = fmt.Errorf("download %s: %w: got sha512=%s, want sha512=%s", d.key, ErrDigestMismatch,
					base64.StdEncoding.EncodeToString(got), base64.StdEncoding.EncodeToString(d.want))
			}
		}
	default:
		err = fmt.Errorf("download %s after %d bytes: %w", d.key, total, truncatedOr(err))
	}
	d.err = err
	d.ended.Store(true)
	d.finish(err)
	return n, err
}

func (d *download) finish(err error) {
	d.once.Do(func() {
		d.span.SetAttributes(attribute.Int64("vendor.bytes", d.n.Load()))
		if err == io.EOF {
			err = nil
		}
		endSpan(d.span, err)
	})
}

// Close releases the connection; closing before EOF abandons the download.
func (d *download) Close() error {
	err := d.body.Close()
	if d.h != nil {
		d.h.Stop()
	}
	if !d.ended.Load() {
		d.finish(errors.New("closed before the end of the file"))
	}
	return err
}

// backgroundHash computes a hash in a goroutine of its own, so that the vendor's SHA-512 of a
// download runs beside its inflating rather than after it in the same goroutine (they were
// the two largest costs of the collector's reading goroutine, which bounded how fast a file
// is stored). Write copies what it is given into buffers of hashChunk bytes, at most
// hashBuffers of them queued. Write and Sum are for the reading goroutine; Stop, which
// abandons the hash, for any.
type backgroundHash struct {
	h    hash.Hash
	cur  []byte
	ch   chan []byte // buffers to hash; nil: the end, Sum waits
	free chan []byte
	quit chan struct{}
	done chan struct{}
	stop sync.Once
}

const (
	hashChunk   = 256 << 10
	hashBuffers = 4
)

func newBackgroundHash(h hash.Hash) *backgroundHash {
	// At most hashBuffers queued, one being hashed and one being filled exist at once, so
	// returning a buffer to free never blocks.
	b := &backgroundHash{h: h, ch: make(chan []byte, hashBuffers), free: make(chan []byte, hashBuffers+2),
		quit: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(b.done)
		for {
			select {
			case buf := <-b.ch:
				if buf == nil {
					return
				}
				b.h.Write(buf)
				b.free <- buf[:0]
			case <-b.quit:
				return
			}
		}
	}()
	return b
}

// send queues buf, unless the hash was stopped.
func (b *backgroundHash) send(buf []byte) {
	select {
	case b.ch <- buf:
	case <-b.quit:
	}
}

// Write queues p for hashing.
func (b *backgroundHash) Write(p []byte) {
	for len(p) > 0 {
		if b.cur == nil {
			select {
			case b.cur = <-b.free:
			default:
				b.cur = make([]byte, 0, hashChunk)
			}
		}
		k := copy(b.cur[len(b.cur):cap(b.cur)], p)
		b.cur, p = b.cur[:len(b.cur)+k], p[k:]
		if len(b.cur) == cap(b.cur) {
			b.send(b.cur)
			b.cur = nil
		}
	}
}

// Sum waits for everything written to be hashed and returns the hash.
func (b *backgroundHash) Sum() []byte {
	if len(b.cur) > 0 {
		b.send(b.cur)
		b.cur = nil
	}
	b.send(nil)
	<-b.done
	return b.h.Sum(nil)
}

// Stop abandons the hash: its goroutine ends.
func (b *backgroundHash) Stop() { b.stop.Do(func() { close(b.quit) }) }
