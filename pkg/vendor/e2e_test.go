package vendor_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/chtest"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/obs"
	"github.com/marketpipe/marketpipe/pkg/simdata"
	"github.com/marketpipe/marketpipe/pkg/vendor"
	"github.com/marketpipe/marketpipe/services/vendorsim"
)

// These tests run the client against the simulator over real HTTP on 127.0.0.1.

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

var runDate = time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)

func startSim(t *testing.T, opts vendorsim.Options) *httptest.Server {
	t.Helper()
	if opts.RunDate.IsZero() {
		opts.RunDate = runDate
	}
	srv := httptest.NewServer(newSim(t, opts))
	t.Cleanup(srv.Close)
	return srv
}

// newSim returns a simulator that is closed (its prepared files removed) when the test ends.
func newSim(tb testing.TB, opts vendorsim.Options) *vendorsim.Server {
	sim := vendorsim.NewServer(opts)
	tb.Cleanup(func() { sim.Close() })
	return sim
}

func newClient(t *testing.T, cfg vendor.Config) *vendor.Client {
	t.Helper()
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff, cfg.MaxBackoff = time.Millisecond, 5*time.Millisecond
	}
	c, err := vendor.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var histReq = vendor.Request{Identifier: "eod20260105a", Program: vendor.ProgramGetHistory,
	Securities: []string{"IBM US Equity", "BAD X Equity", "AAPL US Equity"}, Fields: []string{"PX_LAST", "PX_VOLUME"},
	Start: "2025-12-01", End: "2026-01-02"}

func wantReply(t *testing.T, r vendor.Request, seed uint64) []byte {
	t.Helper()
	var b bytes.Buffer
	spec := events.Spec{Program: r.Program, Securities: r.Securities, Fields: r.Fields, Start: r.Start, End: r.End}
	layout, _ := simdata.LookupLayout(spec.Program)
	layout.Started = simdata.StartedFor(r.Identifier) // the simulator's time for this request
	if err := simdata.WriteReplyLayout(&b, spec, obs.DateOf(runDate), seed, layout); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// stripGzip is a RoundTripper that removes Accept-Encoding, so the simulator answers plain.
type stripGzip struct{ rt http.RoundTripper }

func (s stripGzip) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Del("Accept-Encoding")
	return s.rt.RoundTrip(r)
}

func TestEndToEnd(t *testing.T) {
	ctx := context.Background()
	clk := &clock{t: time.Date(2026, 1, 5, 21, 0, 0, 0, time.UTC)}
	sim := startSim(t, vendorsim.Options{ReadyAfter: time.Minute, Seed: 7, Now: clk.Now})
	c := newClient(t, vendor.Config{BaseURL: sim.URL + "/eap"})

	acct, err := c.Account(ctx)
	if err != nil || acct != vendorsim.DefaultAccount {
		t.Fatalf("Account = %q, %v", acct, err)
	}
	if err := c.Submit(ctx, histReq); err != nil {
		t.Fatalf("Submit: %v", err)
	}
	if err := c.Submit(ctx, histReq); err != nil {
		t.Fatalf("second Submit of the same identifier: %v, want success (409 is ours)", err)
	}
	if ok, err := c.RequestExists(ctx, histReq.Identifier); !ok || err != nil {
		t.Fatalf("RequestExists = %v, %v", ok, err)
	}
	if ok, err := c.RequestExists(ctx, "neverMade"); ok || err != nil {
		t.Fatalf("RequestExists(unknown) = %v, %v", ok, err)
	}
	out, err := c.Output(ctx, histReq.Identifier)
	if out != nil || err != nil {
		t.Fatalf("Output before ready = %+v, %v; want nil, nil", out, err)
	}
	clk.Advance(time.Minute)
	out, err = c.Output(ctx, histReq.Identifier)
	if err != nil || out == nil {
		t.Fatalf("Output after ready = %v, %v", out, err)
	}
	want := wantReply(t, histReq, 7)
	if out.Key != histReq.Identifier+".20260105.bbg" || out.ContentLength != int64(len(want)) ||
		!strings.HasPrefix(out.Digest, "sha512=") || out.ContentType != vendor.MediaTypeDL ||
		out.LastModified.IsZero() || out.Metadata["DL_REQUEST_ID"] != histReq.Identifier {
		t.Errorf("Output = %+v", out)
	}

	plain := newClient(t, vendor.Config{BaseURL: sim.URL + "/eap",
		HTTPClient: &http.Client{Transport: stripGzip{http.DefaultTransport}}})
	for _, tc := range []struct {
		name string
		c    *vendor.Client
	}{{"gzip", c}, {"plain", plain}} {
		t.Run("download "+tc.name, func(t *testing.T) {
			rc, err := tc.c.Download(ctx, out.Key, out.Digest, out.ContentLength)
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			got, err := io.ReadAll(rc)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("read %d bytes, %v; want the %d-byte reply", len(got), err, len(want))
			}
		})
	}
	t.Run("wrong digest", func(t *testing.T) {
		other := "sha512=" + strings.Repeat("A", 86) + "=="
		rc, err := c.Download(ctx, out.Key, other, out.ContentLength)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		if _, err := io.ReadAll(rc); !errors.Is(err, vendor.ErrDigestMismatch) {
			t.Fatalf("read error %v, want ErrDigestMismatch", err)
		}
	})
	t.Run("unknown key", func(t *testing.T) {
		_, err := c.Download(ctx, "nope.20260105.bbg", "", -1)
		if !errors.Is(err, vendor.ErrNotFound) {
			t.Fatalf("error %v, want ErrNotFound", err)
		}
	})
}

func TestSubmitRefused(t *testing.T) {
	sim := startSim(t, vendorsim.Options{})
	c := newClient(t, vendor.Config{BaseURL: sim.URL + "/eap"})
	bad := histReq
	bad.Identifier, bad.Fields = "badFields1", []string{"PX LAST"} // the client does not vet mnemonics
	err := c.Submit(context.Background(), bad)
	var ae *vendor.APIError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusBadRequest || ae.Temporary() ||
		!strings.Contains(ae.Description, `mnemonic "PX LAST"`) || !strings.Contains(err.Error(), `mnemonic "PX LAST"`) {
		t.Fatalf("Submit error %v, want a permanent 400 APIError with the vendor's description", err)
	}

	// Refused before sending: nothing reaches the server.
	bad = histReq
	bad.Identifier = "has-dash"
	if err := c.Submit(context.Background(), bad); !errors.Is(err, vendor.ErrInvalidRequest) {
		t.Fatalf("Submit error %v, want ErrInvalidRequest", err)
	}
}

func TestJWTAgainstSimulator(t *testing.T) {
	creds := &vendor.Credentials{ClientID: "cid", ClientSecret: "00112233445566778899aabbccddeeff"}
	sim := startSim(t, vendorsim.Options{Credentials: creds})
	ctx := context.Background()
	tests := []struct {
		name  string
		creds *vendor.Credentials
		want  string // "" = accepted; else part of the 401's description
	}{
		{"accepted", creds, ""},
		{"wrong secret", &vendor.Credentials{ClientID: "cid", ClientSecret: "ffeeddccbbaa99887766554433221100"}, "signature"},
		{"wrong client", &vendor.Credentials{ClientID: "other", ClientSecret: creds.ClientSecret}, "invalid JWT"},
		{"no credentials", nil, "missing JWT"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, vendor.Config{BaseURL: sim.URL + "/eap", Credentials: tc.creds})
			r := histReq
			r.Identifier = "jwt" + strings.ReplaceAll(tc.name, " ", "")
			err := c.Submit(ctx, r)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Submit: %v", err)
				}
				out, err := c.Output(ctx, r.Identifier)
				if err != nil || out == nil {
					t.Fatalf("Output: %v, %v", out, err)
				}
				rc, err := c.Download(ctx, out.Key, out.Digest, out.ContentLength)
				if err != nil {
					t.Fatal(err)
				}
				defer rc.Close()
				if _, err := io.ReadAll(rc); err != nil {
					t.Fatal(err)
				}
				return
			}
			var ae *vendor.APIError
			if !errors.As(err, &ae) || ae.StatusCode != http.StatusUnauthorized || !strings.Contains(ae.Description, tc.want) {
				t.Fatalf("Submit error %v, want 401 mentioning %q", err, tc.want)
			}
		})
	}
}

// TestSimulatorFaults runs the whole flow against a simulator that answers 429/503 and drops
// connections (after acting on POSTs) on a share of requests.
func TestSimulatorFaults(t *testing.T) {
	sim := startSim(t, vendorsim.Options{Seed: 3, Faults: vendorsim.Faults{Rate429: 0.15, Rate503: 0.15, ResetRate: 0.2}})
	var mu sync.Mutex
	calls := map[string]int{}
	c := newClient(t, vendor.Config{BaseURL: sim.URL + "/eap", MaxRetries: 20,
		ObserveCall: func(op string, status int, _ time.Duration) {
			mu.Lock()
			calls[op+" "+http.StatusText(status)]++
			mu.Unlock()
		}})
	ctx := context.Background()
	defer func() {
		// The faults must have been hit, including a reset POST resolved by a lookup.
		if calls["submit "]+calls["submit Too Many Requests"]+calls["submit Service Unavailable"] == 0 || calls["lookup OK"] == 0 {
			t.Errorf("calls %v: faults not exercised", calls)
		}
	}()
	for i := range 10 {
		r := histReq
		r.Identifier = "fault" + string(rune('a'+i))
		if err := c.Submit(ctx, r); err != nil {
			t.Fatalf("Submit %s: %v", r.Identifier, err)
		}
		out, err := c.Output(ctx, r.Identifier)
		if err != nil || out == nil {
			t.Fatalf("Output %s: %v, %v", r.Identifier, out, err)
		}
		rc, err := c.Download(ctx, out.Key, out.Digest, out.ContentLength)
		if err != nil {
			t.Fatalf("Download %s: %v", out.Key, err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, wantReply(t, r, 3)) {
			t.Fatalf("Download %s: %d bytes, %v", out.Key, len(got), err)
		}
	}
}

func TestSimulatorDownloadFaults(t *testing.T) {
	tests := []struct {
		name   string
		faults vendorsim.Faults
		plain  bool
		want   error
	}{
		{"truncated gzip", vendorsim.Faults{TruncateRate: 1}, false, vendor.ErrTruncated},
		{"truncated plain", vendorsim.Faults{TruncateRate: 1}, true, vendor.ErrTruncated},
		{"corrupt gzip", vendorsim.Faults{CorruptRate: 1}, false, vendor.ErrDigestMismatch},
		{"corrupt plain", vendorsim.Faults{CorruptRate: 1}, true, vendor.ErrDigestMismatch},
		{"slow", vendorsim.Faults{SlowBody: time.Millisecond}, false, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sim := startSim(t, vendorsim.Options{Faults: tc.faults})
			cfg := vendor.Config{BaseURL: sim.URL + "/eap"}
			if tc.plain {
				cfg.HTTPClient = &http.Client{Transport: stripGzip{http.DefaultTransport}}
			}
			c := newClient(t, cfg)
			ctx := context.Background()
			if err := c.Submit(ctx, histReq); err != nil {
				t.Fatal(err)
			}
			out, err := c.Output(ctx, histReq.Identifier)
			if err != nil || out == nil {
				t.Fatalf("Output: %v, %v", out, err)
			}
			rc, err := c.Download(ctx, out.Key, out.Digest, out.ContentLength)
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			_, err = io.ReadAll(rc)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("read error %v, want %v", err, tc.want)
			}
		})
	}
}

// BenchmarkDownload5M downloads a gethistory reply of about 5 million observations from the
// simulator, gzip and digest-checked, as the collector does. cpu-ms/op is this process's CPU
// per download: inflating and the SHA-512, as the simulator only copies its stored file:
// go test -run '^$' -bench Download5M -benchmem ./pkg/vendor/
func BenchmarkDownload5M(b *testing.B) {
	sim := httptest.NewServer(newSim(b, vendorsim.Options{RunDate: runDate}))
	defer sim.Close()
	c, err := vendor.New(vendor.Config{BaseURL: sim.URL + "/eap"})
	if err != nil {
		b.Fatal(err)
	}
	r := vendor.Request{Identifier: "bench5m", Program: vendor.ProgramGetHistory,
		Fields: []string{"PX_LAST", "PX_OPEN", "PX_HIGH", "PX_LOW"}, Start: "2016-01-01", End: "2025-07-31"}
	for i := range 500 {
		r.Securities = append(r.Securities, fmt.Sprintf("SEC%d US Equity", i))
	}
	ctx := context.Background()
	if err := c.Submit(ctx, r); err != nil {
		b.Fatal(err)
	}
	out, err := c.Output(ctx, r.Identifier) // hashes the file once, in the simulator
	if err != nil || out == nil {
		b.Fatal(out, err)
	}
	b.SetBytes(out.ContentLength)
	cpu0 := chtest.ProcessCPU(b)
	for b.Loop() {
		rc, err := c.Download(ctx, out.Key, out.Digest, out.ContentLength)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			b.Fatal(err)
		}
		rc.Close()
	}
	b.ReportMetric(float64((chtest.ProcessCPU(b)-cpu0).Milliseconds())/float64(b.N), "cpu-ms/op")
}
