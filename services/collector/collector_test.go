package collector_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/chunk"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/pkg/rawstore"
	"github.com/marketpipe/marketpipe/pkg/stage"
	"github.com/marketpipe/marketpipe/pkg/vendor"
	"github.com/marketpipe/marketpipe/services/collector"
	"github.com/marketpipe/marketpipe/services/vendorsim"
)

// readyJob creates a small request at the simulator and returns the job as the poller leaves it.
func readyJob(t *testing.T, v *vendor.Client, id string) events.Job {
	t.Helper()
	return readyRequest(t, v, vendor.Request{Identifier: id, Program: "gethistory", Securities: []string{"IBM US Equity", "AAPL US Equity"},
		Fields: []string{"PX_LAST", "PX_VOLUME"}, Start: "2026-01-01", End: "2026-03-31"})
}

// readyRequest creates req at the simulator and returns the job as the poller leaves it.
func readyRequest(t *testing.T, v *vendor.Client, req vendor.Request) events.Job {
	t.Helper()
	ctx := context.Background()
	id := req.Identifier
	if err := v.Submit(ctx, req); err != nil {
		t.Fatal(err)
	}
	var out *vendor.Output
	for out == nil {
		var err error
		if out, err = v.Output(ctx, id); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	j := events.Job{ID: "job-" + id, VendorRequestID: id, ResponseKey: out.Key, ResponseDigest: out.Digest}
	return j.Advance(events.Ready, time.Now())
}

func newClient(t *testing.T, faults vendorsim.Faults, downloads *atomic.Int64) *vendor.Client {
	t.Helper()
	sim := httptest.NewServer(vendorsim.NewServer(vendorsim.Options{Account: vendorsim.DefaultAccount,
		ReadyAfter: time.Millisecond, Faults: faults}))
	t.Cleanup(sim.Close)
	v, err := vendor.New(vendor.Config{BaseURL: sim.URL + "/eap", MaxRetries: -1,
		ObserveCall: func(op string, status int, d time.Duration) {
			if op == "download" {
				downloads.Add(1)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestCollectorStoresTheFile(t *testing.T) {
	env := natstest.NewEnv(t)
	var downloads atomic.Int64
	v := newClient(t, vendorsim.Faults{}, &downloads)
	h := stage.Jobs(stage.NewPublisher(env.JS), events.Decode, &collector.Handler{Vendor: v, Raw: &rawstore.Store{Objects: env.Streams.Raw}, Now: time.Now})
	ctx := context.Background()
	j := readyJob(t, v, "mpcollect1")
	m := env.DeliverJob(&j)
	if err := h.Handle(ctx, m); err != nil {
		t.Fatal(err)
	}
	got, _ := env.LastJob(j.ID)
	if got.State != events.Collected || got.FileKey != collector.FileKey(&j) {
		t.Fatalf("collected event: %+v", got)
	}
	// The stored bytes are the vendor's file, and the event's sha256 and size describe them.
	body, err := v.Download(ctx, j.ResponseKey, j.ResponseDigest, -1)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := io.ReadAll(body)
	body.Close()
	stored := env.RawFile(got.FileKey)
	sum := sha256.Sum256(want)
	if string(stored) != string(want) || got.FileSHA256 != hex.EncodeToString(sum[:]) || got.FileSize != int64(len(want)) {
		t.Errorf("stored %d bytes sha256 %s; vendor file %d bytes sha256 %x", got.FileSize, got.FileSHA256, len(want), sum)
	}

	// A redelivery (the ack of "collected" was lost) reuses the stored file.
	before := downloads.Load()
	if err := h.Handle(ctx, m); err != nil {
		t.Fatal(err)
	}
	if downloads.Load() != before {
		t.Errorf("redelivery downloaded the file again")
	}
}

// A file of several raw-store chunks is stored compressed, in chunks of rawstore.ChunkSize
// plain bytes (rawstore.ChunkLayoutS2), although the gzip download hands the collector far smaller
// reads, and reads from an offset.
func TestCollectorStoresS2Chunks(t *testing.T) {
	env := natstest.NewEnv(t)
	var downloads atomic.Int64
	v := newClient(t, vendorsim.Faults{}, &downloads)
	pub := &lastPublished{JobHandler: &collector.Handler{Vendor: v,
		Raw: &rawstore.Store{Objects: env.Streams.Raw, MarkBytes: 64 << 10}, Now: time.Now}}
	h := stage.Jobs(stage.NewPublisher(env.JS), events.Decode, pub)
	ctx := context.Background()
	var secs []string
	for i := range 60 {
		secs = append(secs, fmt.Sprintf("S%03d US Equity", i))
	}
	j := readyRequest(t, v, vendor.Request{Identifier: "mpcollectbig", Program: "gethistory", Securities: secs,
		Fields: []string{"PX_LAST", "PX_VOLUME", "PX_OPEN", "PX_HIGH", "PX_LOW"}, Start: "2025-01-01", End: "2025-12-31"})
	m := env.DeliverJob(&j)
	if err := h.Handle(ctx, m); err != nil {
		t.Fatal(err)
	}
	got, _ := env.LastJob(j.ID)
	info, err := env.Streams.Raw.GetInfo(ctx, collector.FileKey(&j))
	if err != nil {
		t.Fatal(err)
	}
	size := uint64(got.FileSize)
	if size < 3*rawstore.ChunkSize {
		t.Fatalf("the file is %d bytes; the test wants at least 3 chunks of %d", size, rawstore.ChunkSize)
	}
	want := (size + rawstore.ChunkSize - 1) / rawstore.ChunkSize
	if uint64(info.Chunks) != want {
		t.Errorf("%d bytes stored in %d chunks, want %d of %d bytes", size, info.Chunks, want, rawstore.ChunkSize)
	}
	if info.Headers.Get(rawstore.ChunkLayoutHeader) != rawstore.ChunkLayoutS2 || info.Size*2 > size {
		t.Errorf("headers %v, %d bytes stored for a file of %d: not compressed in the S2 layout", info.Headers, info.Size, size)
	}
	file := env.RawFile(got.FileKey)
	if uint64(len(file)) != size {
		t.Fatalf("the stored file decodes to %d bytes, the event says %d", len(file), size)
	}
	off := int64(rawstore.ChunkSize + 12345)
	r, ok, err := rawstore.OpenObjectAt(ctx, env.JS, info, off)
	if err != nil || !ok {
		t.Fatalf("OpenObjectAt = %v, %v", ok, err)
	}
	part, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(part, file[off:]) {
		t.Errorf("read from %d: %d bytes, %v; want the file's %d from there", off, len(part), err, len(file[off:]))
	}

	// The event carries the file's marks, as pkg/chunk finds them in the stored file.
	ms, err := chunk.Marks(bytes.NewReader(file), 64<<10, events.MaxFileMarks)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) < 10 || len(got.FileMarks) != len(ms) {
		t.Fatalf("%d marks in the event, %d in the file", len(got.FileMarks), len(ms))
	}
	for i, m := range ms {
		if events.FileMark(m) != got.FileMarks[i] {
			t.Fatalf("mark %d: %+v in the event, %+v in the file", i, got.FileMarks[i], m)
		}
	}

	// The marks are kept with the stored file: a redelivery that reuses it (no download) sends
	// them on too.
	if info.Headers.Get(rawstore.MarksHeader) == "" {
		t.Errorf("no header %s on the stored file", rawstore.MarksHeader)
	}
	before := downloads.Load()
	if err := h.Handle(ctx, m); err != nil {
		t.Fatal(err)
	}
	// JetStream drops the redelivery's event as a duplicate: the one published is compared.
	again := pub.last
	if downloads.Load() != before || again.State != events.Collected || !slices.Equal(again.FileMarks, got.FileMarks) {
		t.Errorf("redelivery: %d downloads, %d marks in the event; want none and the %d marks stored",
			downloads.Load()-before, len(again.FileMarks), len(got.FileMarks))
	}
}

// lastPublished keeps the last job event its handler returned for publishing.
type lastPublished struct {
	stage.JobHandler[events.Job]
	last events.Job
}

func (p *lastPublished) HandleJob(ctx context.Context, j events.Job, m *stage.Message) (*events.Job, error) {
	next, err := p.JobHandler.HandleJob(ctx, j, m)
	if next != nil {
		p.last = *next
	}
	return next, err
}

func TestCollectorRefusesBadDownloads(t *testing.T) {
	for _, tc := range []struct {
		name   string
		faults vendorsim.Faults
	}{
		{"corrupt", vendorsim.Faults{CorruptRate: 1}},
		{"truncated", vendorsim.Faults{TruncateRate: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := natstest.NewEnv(t)
			var downloads atomic.Int64
			clean := newClient(t, vendorsim.Faults{}, &downloads)
			j := readyJob(t, clean, "mpbad1")
			// The same request at a simulator that spoils every download.
			bad := newClient(t, tc.faults, &downloads)
			_ = readyJob(t, bad, "mpbad1")
			h := stage.Jobs(stage.NewPublisher(env.JS), events.Decode, &collector.Handler{Vendor: bad, Raw: &rawstore.Store{Objects: env.Streams.Raw}, Now: time.Now})
			err := h.Handle(context.Background(), env.DeliverJob(&j))
			if err == nil || stage.IsPermanent(err) {
				t.Fatalf("Handle = %v, want a transient error (fetched again on redelivery)", err)
			}
			if _, err := env.Streams.Raw.GetInfo(context.Background(), collector.FileKey(&j)); !errors.Is(err, jetstream.ErrObjectNotFound) {
				t.Errorf("a bad download was stored: %v", err)
			}
			if got, _ := env.LastJob(j.ID); got.State != events.Ready {
				t.Errorf("state %q, want still ready", got.State)
			}
		})
	}
}

// TestCollectorParts: each part of a job of several vendor requests is stored under its own
// key; a part whose download fails makes the delivery fail, and the redelivery downloads that
// part alone, reusing the parts already stored.
func TestCollectorParts(t *testing.T) {
	env := natstest.NewEnv(t)
	sim := vendorsim.NewServer(vendorsim.Options{Account: vendorsim.DefaultAccount, ReadyAfter: time.Millisecond})
	var mu sync.Mutex
	downloads := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if key, ok := strings.CutPrefix(r.URL.Path, "/eap/catalogs/"+vendorsim.DefaultAccount+"/content/responses/"); ok && key != "" {
			mu.Lock()
			downloads[key]++
			n := downloads[key]
			mu.Unlock()
			if strings.HasPrefix(key, "mpparts1.") && n == 1 { // part 1's first download fails
				http.Error(w, "injected", http.StatusServiceUnavailable)
				return
			}
		}
		sim.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	v, err := vendor.New(vendor.Config{BaseURL: srv.URL + "/eap", MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	raw := &rawstore.Store{Objects: env.Streams.Raw}
	h := stage.Jobs(stage.NewPublisher(env.JS), events.Decode, &collector.Handler{Vendor: v, Raw: raw, Now: time.Now})
	ctx := context.Background()
	secs := []string{"IBM US Equity", "AAPL US Equity", "MSFT US Equity"}
	j := events.Job{ID: "job-parts"}
	for i, sec := range secs {
		p := readyRequest(t, v, vendor.Request{Identifier: fmt.Sprintf("mpparts%d", i), Program: "gethistory",
			Securities: []string{sec}, Fields: []string{"PX_LAST"}, Start: "2026-01-01", End: "2026-03-31"})
		j.Parts = append(j.Parts, events.Part{SecFrom: i, SecTo: i + 1, FieldTo: 1, VendorRequestID: p.VendorRequestID,
			ResponseKey: p.ResponseKey, ResponseDigest: p.ResponseDigest})
	}
	j = j.Advance(events.Ready, time.Now())
	m := env.DeliverJob(&j)
	if err := h.Handle(ctx, m); err == nil || stage.IsPermanent(err) {
		t.Fatalf("first delivery: %v, want a transient error (part 1's download failed)", err)
	}
	if err := h.Handle(ctx, m); err != nil {
		t.Fatal(err)
	}
	got, _ := env.LastJob(j.ID)
	if got.State != events.Collected || len(got.Parts) != 3 {
		t.Fatalf("state %q (%s) with %d parts", got.State, got.Error, len(got.Parts))
	}
	for i, p := range got.Parts {
		if want := 1 + btoi(i == 1); downloads[p.ResponseKey] != want {
			t.Errorf("part %d downloaded %d times, want %d", i, downloads[p.ResponseKey], want)
		}
		if p.FileKey != collector.PartFileKey(&got, i) || p.FileSize <= 0 || len(p.FileSHA256) != 64 {
			t.Errorf("part %d: %+v", i, p)
		}
		f, err := raw.Open(ctx, p.FileKey)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(f)
		f.Close()
		if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != p.FileSHA256 || !bytes.Contains(data, []byte(secs[i])) {
			t.Errorf("part %d: stored file is not its output", i)
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
