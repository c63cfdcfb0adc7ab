package vendorsim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/dlformat"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/obs"
	"github.com/marketpipe/marketpipe/pkg/simdata"
	"github.com/marketpipe/marketpipe/pkg/vendor"
)

func TestChooseLayout(t *testing.T) {
	all := simdata.Layouts()
	data := events.Spec{Program: events.GetData, Securities: []string{"IBM US Equity"}, Fields: []string{"PX_LAST"}}
	comma := events.Spec{Program: events.GetData, Securities: []string{"ACME, INC"}, Fields: []string{"PX_LAST"}}
	hist := events.Spec{Program: events.GetHistory, Securities: []string{"IBM US Equity"}, Fields: []string{"PX_LAST"},
		Start: "2026-01-02", End: "2026-01-05"}
	only := func(names ...string) []simdata.Layout {
		ls, err := simdata.ParseLayouts(strings.Join(names, ","))
		if err != nil {
			t.Fatal(err)
		}
		return ls
	}
	tests := []struct {
		name    string
		layouts []simdata.Layout
		spec    events.Spec
		want    []string // the names the identifiers may get; all of them must be seen
	}{
		{"getdata among all", all, data, []string{"getdata", "getdata-columnheader", "getdata-padded", "getdata-delimiter"}},
		{"gethistory among all", all, hist, []string{"gethistory", "gethistory-horizontal", "gethistory-rest"}},
		{"defaults", only("getdata", "gethistory"), hist, []string{"gethistory"}},
		{"no layout for the program falls back to the plain one", only("gethistory-rest"), data, []string{"getdata"}},
		{"a delimiter inside a security rules its layout out", only("getdata-delimiter", "getdata-padded"), comma,
			[]string{"getdata-padded"}},
		{"nothing fits", only("getdata-delimiter"), comma, []string{"getdata"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			seen := map[string]bool{}
			for i := range 200 {
				id := fmt.Sprintf("req%d", i)
				got := ChooseLayout(tc.layouts, id, tc.spec)
				if again := ChooseLayout(tc.layouts, id, tc.spec); again.Name != got.Name {
					t.Fatalf("%s: %s then %s", id, got.Name, again.Name)
				}
				if !slices.Contains(tc.want, got.Name) {
					t.Fatalf("%s: layout %s, want one of %v", id, got.Name, tc.want)
				}
				seen[got.Name] = true
			}
			if len(seen) != len(tc.want) {
				t.Errorf("200 identifiers got layouts %v, want all of %v", seen, tc.want)
			}
		})
	}
}

// identifierFor finds a request identifier (prefix + a number) that ChooseLayout gives layout.
func identifierFor(t testing.TB, layouts []simdata.Layout, prefix string, spec events.Spec, layout string) string {
	t.Helper()
	for i := range 10000 {
		id := fmt.Sprintf("%s%d", prefix, i)
		if ChooseLayout(layouts, id, spec).Name == layout {
			return id
		}
	}
	t.Fatalf("no identifier gets layout %s", layout)
	return ""
}

// TestServesEveryLayout creates one request per layout (getactions layouts with an
// ActionsRequest) through the HAPI client (JWT auth,
// gzip, digest checked) and checks that each download is in its layout and holds exactly
// simdata.Observations' records.
func TestServesEveryLayout(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	creds := &vendor.Credentials{ClientID: "layouts", ClientSecret: "00112233445566778899aabbccddeeff",
		ExpirationDate: time.Now().Add(24 * time.Hour).UnixMilli()}
	all := append(simdata.Layouts(), simdata.ActionLayouts()...)
	runDate := obs.MakeDate(2026, 1, 5)
	sim := NewServer(Options{Layouts: all, Seed: 5, RunDate: runDate.Time(), Credentials: creds})
	srv := serve(t, sim)
	c, err := vendor.New(vendor.Config{BaseURL: srv.URL + Prefix, Credentials: creds})
	if err != nil {
		t.Fatal(err)
	}
	secs := []string{"IBM US Equity", "BAD X Equity", "RC11 R Equity", "RC995 Z Equity", "AAPL US Equity"}
	fields := []string{"PX_LAST", "NAME", "DVD_EX_DT", "LAST_UPDATE_TIME", "INDX_MEMBERS", "PEER_LIST", "NOSUCH_FIELD"}
	for i, l := range all {
		t.Run(l.Name, func(t *testing.T) {
			spec := events.Spec{Program: l.Program, Securities: secs, Fields: fields}
			switch l.Program {
			case events.GetHistory:
				spec.Start, spec.End = "2025-12-01", "2026-01-02"
			case simdata.GetActions:
				// Action mnemonics; RC300 has the 4-column row.
				spec.Securities = append(slices.Clone(secs), "RC300 N Equity")
				spec.Fields = []string{"DVD_CASH", "STOCK_SPLT", "ACQUIS"}
				spec.Start, spec.End = "2025-06-01", "2026-01-02"
			}
			id := identifierFor(t, all, fmt.Sprintf("lay%dx", i), spec, l.Name)
			if err := c.Submit(ctx, vendor.Request{Identifier: id, Program: spec.Program, Securities: spec.Securities,
				Fields: spec.Fields, Start: spec.Start, End: spec.End}); err != nil {
				t.Fatalf("submit: %v", err)
			}
			if got, ok := sim.Layout(id); !ok || got != l.Name {
				t.Fatalf("Server.Layout(%s) = %q, %v; want %s", id, got, ok, l.Name)
			}
			out, err := c.Output(ctx, id)
			if err != nil || out == nil {
				t.Fatalf("output: %+v, %v", out, err)
			}
			body, err := c.Download(ctx, out.Key, out.Digest, out.ContentLength)
			if err != nil {
				t.Fatalf("download: %v", err)
			}
			defer body.Close()
			r, err := dlformat.NewReader(body)
			if err != nil {
				t.Fatal(err)
			}
			var rejects []obs.Reject
			r.OnReject = func(rj obs.Reject) error { rejects = append(rejects, rj); return nil }
			var got, want []obs.Observation
			for {
				o, err := r.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatalf("parse: %v", err)
				}
				got = append(got, *o)
			}
			if err := simdata.Observations(spec, runDate, 5, func(o *obs.Observation) error {
				want = append(want, *o)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			key := func(a, b obs.Observation) int {
				return strings.Compare(a.Security+"\x00"+a.Field+"\x00"+a.Date.String(), b.Security+"\x00"+b.Field+"\x00"+b.Date.String())
			}
			slices.SortFunc(got, key)
			slices.SortFunc(want, key)
			if len(want) < 2*len(spec.Securities) {
				t.Errorf("only %d observations in layout %s: the spec exercises too little", len(want), l.Name)
			}
			if !slices.EqualFunc(got, want, func(a, b obs.Observation) bool { return a.Equal(&b) }) {
				t.Errorf("downloaded file has %d observations, Observations %d, or they differ", len(got), len(want))
			}
			if len(rejects) != l.Rejects() || (len(rejects) > 0 && rejects[0].Raw != simdata.MalformedLine) {
				t.Errorf("rejects %+v, want %d of %q", rejects, l.Rejects(), simdata.MalformedLine)
			}
			hdr := r.Header()
			switch l.Name {
			case "gethistory-horizontal":
				if v, _ := hdr.Get("HIST_FORMAT"); v != "horizontal" {
					t.Errorf("HIST_FORMAT = %q", v)
				}
			case "getdata-delimiter":
				if v, _ := hdr.Get("DELIMITER"); v != "," {
					t.Errorf("DELIMITER = %q", v)
				}
			}
		})
	}
}

// TestLargeDownloadConstantMemory downloads a 2 GiB reply through the HAPI client, digest
// checked, while sampling the process's heap: the simulator prepares the file on disk and
// decodes it as it sends it, and the client hashes it as it reads, so the heap must stay small
// whatever the file size.
func TestLargeDownloadConstantMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 2 GiB; skipped with -short")
	}
	const (
		wantBytes = 2 << 30
		heapLimit = 64 << 20
	)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// About 40 bytes per observation in the vertical layout: 1100 securities × 5 fields ×
	// 10,436 weekdays (1986-2025) ≈ 57 million rows ≈ 2.3 GB.
	spec := events.Spec{Program: events.GetHistory, Fields: []string{"PX_LAST", "PX_OPEN", "PX_HIGH", "PX_LOW", "PX_VOLUME"},
		Start: "1986-01-01", End: "2025-12-31"}
	for i := range 1100 {
		spec.Securities = append(spec.Securities, fmt.Sprintf("SEC%04d US Equity", i))
	}
	srv := start(t, Options{RunDate: time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)})
	// Plain transfer: gzip would measure the compressor's speed, not the streaming.
	c, err := vendor.New(vendor.Config{BaseURL: srv.URL + Prefix,
		HTTPClient: &http.Client{Transport: noGzip{&http.Transport{DisableCompression: true}}}})
	if err != nil {
		t.Fatal(err)
	}

	runtime.GC()
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	start := time.Now()
	if err := c.Submit(ctx, vendor.Request{Identifier: "big1", Program: spec.Program, Securities: spec.Securities,
		Fields: spec.Fields, Start: spec.Start, End: spec.End}); err != nil {
		t.Fatalf("submit: %v", err)
	}
	var out *vendor.Output
	for out == nil {
		if out, err = c.Output(ctx, "big1"); err != nil {
			t.Fatalf("output: %v", err)
		}
		if out == nil {
			time.Sleep(100 * time.Millisecond)
		}
	}
	listed := time.Since(start)
	body, err := c.Download(ctx, out.Key, out.Digest, out.ContentLength)
	if err != nil {
		t.Fatalf("download: %v", err)
	}
	n, err := io.CopyBuffer(io.Discard, body, make([]byte, 256<<10))
	body.Close()
	close(stop)
	<-sampled
	if err != nil {
		t.Fatalf("download after %d bytes: %v", n, err)
	}
	took := time.Since(start)
	t.Logf("%d bytes (%.2f GiB): listed (prepared once) in %v, downloaded and digest-checked in %v (%.0f MB/s); peak heap in use %.1f MiB",
		n, float64(n)/(1<<30), listed.Round(time.Millisecond), (took - listed).Round(time.Millisecond),
		float64(n)/1e6/(took-listed).Seconds(), float64(peak.Load())/(1<<20))
	if n < wantBytes || n != out.ContentLength {
		t.Errorf("downloaded %d bytes, listing says %d; want at least %d", n, out.ContentLength, int64(wantBytes))
	}
	if p := peak.Load(); p > heapLimit {
		t.Errorf("peak heap in use %d MiB while streaming, want under %d MiB", p>>20, heapLimit>>20)
	}
}

// noGzip removes the client's Accept-Encoding, so the simulator answers plain.
type noGzip struct{ rt http.RoundTripper }

func (s noGzip) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Del("Accept-Encoding")
	return s.rt.RoundTrip(r)
}
