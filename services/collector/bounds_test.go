package collector_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/hostile"
	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/pkg/rawstore"
	"github.com/marketpipe/marketpipe/pkg/stage"
	"github.com/marketpipe/marketpipe/pkg/vendor"
	"github.com/marketpipe/marketpipe/services/collector"
)

// hostileVendor serves one output file, key, at a vendor (HAPI paths, account "acct"): body
// yields what the download sends (gzip: as Content-Encoding gzip), listed is the listing's
// Content-Length. served counts the body bytes written.
func hostileVendor(t *testing.T, key string, listed int64, gzip bool, body func() io.Reader) (v *vendor.Client, served *atomic.Int64) {
	t.Helper()
	served = new(atomic.Int64)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /eap/catalogs/acct/content/responses/{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"contains":[{"key":%q,"headers":{"Content-Length":"%d"}}]}`, key, listed)
	})
	mux.HandleFunc("GET /eap/catalogs/acct/content/responses/{key}", func(w http.ResponseWriter, r *http.Request) {
		if gzip {
			w.Header().Set("Content-Encoding", "gzip")
		}
		c := &hostile.Counter{R: body()}
		defer func() { served.Store(c.N.Load()) }()
		io.Copy(w, c) // ends when the client goes away
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	v, err := vendor.New(vendor.Config{BaseURL: srv.URL + "/eap", Account: "acct", MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	return v, served
}

// A file past one of pkg/bounds' limits fails its job with the limit it broke, once the
// collector has read little more than the limit, and leaves nothing in the raw store.
func TestCollectorBounds(t *testing.T) {
	const huge = 1 << 30
	// A gzip stream may hold several members: the bomb is one of 100 MiB, sent without end.
	bomb, err := hostile.GzipBytes(hostile.ManyLinesFile(4 << 20))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		listed   int64
		gzip     bool
		body     func() io.Reader
		reason   string
		maxBytes int64 // served before the failure, at most
	}{
		{"long line", hostile.Size(huge), false, func() io.Reader { return hostile.LongLineFile(huge) },
			fmt.Sprintf("line %d longer than 16 MiB", hostile.LongLine), 64 << 20},
		{"gzip bomb", -1, true, func() io.Reader { return hostile.Cycle(bomb) },
			"gzip inflated past 200x the compressed size", 64 << 20},
		{"larger than listed", 4 << 20, false, func() io.Reader { return hostile.ManyLinesFile(huge / 26) },
			"file larger than its listed 4 MiB + margin (5.25 MiB)", 64 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := natstest.NewEnv(t)
			const key = "hostile1.20260105.bbg"
			v, served := hostileVendor(t, key, tc.listed, tc.gzip, tc.body)
			h := stage.Jobs(stage.NewPublisher(env.JS), events.Decode, &collector.Handler{Vendor: v, Raw: &rawstore.Store{Objects: env.Streams.Raw}, Now: time.Now})
			j := events.Job{ID: "job-hostile1", VendorRequestID: "hostile1", ResponseKey: key}
			j = j.Advance(events.Ready, time.Now())
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if err := h.Handle(ctx, env.DeliverJob(&j)); err != nil {
				t.Fatalf("Handle = %v, want the job failed", err)
			}
			got, _ := env.LastJob(j.ID)
			if want := "download " + key + ": " + tc.reason; got.State != events.Failed || !strings.HasPrefix(got.Error, want) {
				t.Errorf("job %s: %q, want failed: %q", got.State, got.Error, want)
			}
			if _, err := env.Streams.Raw.GetInfo(ctx, collector.FileKey(&j)); !errors.Is(err, jetstream.ErrObjectNotFound) {
				t.Errorf("raw file after the failure: %v, want none", err)
			}
			if n := env.Count("OBJ_"+events.RawBucket, ">"); n != 0 {
				t.Errorf("%d messages left in the raw store, want none", n)
			}
			// The server stops writing when the client goes away; give it a moment to notice.
			deadline := time.Now().Add(10 * time.Second)
			for served.Load() == 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if n := served.Load(); n == 0 || n > tc.maxBytes {
				t.Errorf("the vendor served %d bytes before the failure, want at most %d", n, tc.maxBytes)
			}
		})
	}
}
