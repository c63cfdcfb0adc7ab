package vendor_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/vendor"
)

// script is an httptest handler that answers each request with the next step and records
// what it was asked. Catalog discovery is skipped by Config.Account.
type script struct {
	mu    sync.Mutex
	steps []func(w http.ResponseWriter, r *http.Request)
	log   []string // "METHOD path"
}

func (s *script) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.log = append(s.log, r.Method+" "+r.URL.Path)
	var step func(http.ResponseWriter, *http.Request)
	if len(s.steps) > 0 {
		step, s.steps = s.steps[0], s.steps[1:]
	}
	s.mu.Unlock()
	if r.Header.Get("api-version") != "2" {
		http.Error(w, "no api-version", http.StatusBadRequest)
		return
	}
	if step == nil {
		http.Error(w, "script exhausted", http.StatusTeapot)
		return
	}
	step(w, r)
}

func (s *script) calls() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.log...)
}

func status(code int, desc string, hdr ...string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		for i := 0; i+1 < len(hdr); i += 2 {
			w.Header().Set(hdr[i], hdr[i+1])
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"@type":"Status","statusCode":%d,"title":%q,"description":%q}`, code, http.StatusText(code), desc)
	}
}

// reset reads the request, then drops the connection without answering.
func reset(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	conn, _, err := http.NewResponseController(w).Hijack()
	if err == nil {
		conn.Close()
	}
}

func body(s string, hdr ...string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(hdr); i += 2 {
			w.Header().Set(hdr[i], hdr[i+1])
		}
		io.WriteString(w, s)
	}
}

const emptyList = `{"contains":[]}`

func scripted(t *testing.T, cfg vendor.Config, steps ...func(http.ResponseWriter, *http.Request)) (*vendor.Client, *script) {
	t.Helper()
	s := &script{steps: steps}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	cfg.BaseURL = srv.URL + "/eap"
	if cfg.Account == "" {
		cfg.Account = "acct"
	}
	return newClient(t, cfg), s
}

const (
	outputPath = "GET /eap/catalogs/acct/content/responses/"
	postPath   = "POST /eap/catalogs/acct/requests/"
	lookupPath = "GET /eap/catalogs/acct/requests/eod20260105a/"
)

func TestGetRetries(t *testing.T) {
	tests := []struct {
		name      string
		cfg       vendor.Config
		steps     []func(http.ResponseWriter, *http.Request)
		wantErr   func(error) bool
		wantCalls int
		minTime   time.Duration
	}{
		{"429 retry-after seconds", vendor.Config{},
			[]func(http.ResponseWriter, *http.Request){status(429, "slow down", "Retry-After", "1"), body(emptyList)},
			nil, 2, time.Second},
		{"503 retry-after date", vendor.Config{},
			[]func(http.ResponseWriter, *http.Request){
				func(w http.ResponseWriter, r *http.Request) {
					// HTTP dates have whole seconds: 3s ahead is at least 2s of wait.
					status(503, "maintenance", "Retry-After", time.Now().Add(3*time.Second).UTC().Format(http.TimeFormat))(w, r)
				},
				body(emptyList)},
			nil, 2, 2 * time.Second},
		{"5xx backoff", vendor.Config{},
			[]func(http.ResponseWriter, *http.Request){status(500, "boom"), status(502, "bad gw"), status(504, "gw timeout"), body(emptyList)},
			nil, 4, 0},
		{"reset", vendor.Config{},
			[]func(http.ResponseWriter, *http.Request){reset, reset, body(emptyList)}, nil, 3, 0},
		{"permanent 400", vendor.Config{},
			[]func(http.ResponseWriter, *http.Request){status(400, "requestIdentifier is malformed")},
			func(err error) bool {
				var ae *vendor.APIError
				return errors.As(err, &ae) && ae.StatusCode == 400 && !ae.Temporary() &&
					strings.Contains(err.Error(), "requestIdentifier is malformed")
			}, 1, 0},
		{"403 not retried", vendor.Config{},
			[]func(http.ResponseWriter, *http.Request){status(403, "not entitled")},
			func(err error) bool { var ae *vendor.APIError; return errors.As(err, &ae) && ae.StatusCode == 403 }, 1, 0},
		{"retries spent", vendor.Config{MaxRetries: 2},
			[]func(http.ResponseWriter, *http.Request){status(503, "a"), status(503, "b"), status(503, "c"), body(emptyList)},
			func(err error) bool {
				var ae *vendor.APIError
				return errors.As(err, &ae) && ae.StatusCode == 503 && ae.Temporary() && strings.Contains(err.Error(), ": c")
			}, 3, 0},
		{"no retries", vendor.Config{MaxRetries: -1},
			[]func(http.ResponseWriter, *http.Request){status(503, "a"), body(emptyList)},
			func(err error) bool { var ae *vendor.APIError; return errors.As(err, &ae) }, 1, 0},
		{"retry-after beyond cap is the caller's", vendor.Config{MaxRetryAfter: time.Second},
			[]func(http.ResponseWriter, *http.Request){status(429, "quota", "Retry-After", "120"), body(emptyList)},
			func(err error) bool {
				var ae *vendor.APIError
				return errors.As(err, &ae) && ae.RetryAfter == 2*time.Minute
			}, 1, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, s := scripted(t, tc.cfg, tc.steps...)
			start := time.Now()
			out, err := c.Output(context.Background(), "eod20260105a")
			took := time.Since(start)
			switch {
			case tc.wantErr == nil && (err != nil || out != nil):
				t.Fatalf("Output = %v, %v; want nil, nil", out, err)
			case tc.wantErr != nil && !tc.wantErr(err):
				t.Fatalf("Output error %v is not the expected one", err)
			}
			if n := len(s.calls()); n != tc.wantCalls {
				t.Errorf("%d calls %v, want %d", n, s.calls(), tc.wantCalls)
			}
			if took < tc.minTime {
				t.Errorf("took %v, want at least %v (Retry-After)", took, tc.minTime)
			}
		})
	}
}

func TestGetRetryStopsWithContext(t *testing.T) {
	c, _ := scripted(t, vendor.Config{}, status(503, "later", "Retry-After", "30"), body(emptyList))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Output(ctx, "eod20260105a")
	var ae *vendor.APIError
	if !errors.As(err, &ae) || ae.RetryAfter != 30*time.Second {
		t.Fatalf("error %v, want the 503 with its Retry-After", err)
	}
	if time.Since(start) > 150*time.Millisecond {
		t.Errorf("waited %v although the deadline came before the Retry-After", time.Since(start))
	}
}

func TestSubmitNeverBlindlyReposts(t *testing.T) {
	created := status(201, "", "Location", "/eap/catalogs/acct/requests/eod20260105a/")
	tests := []struct {
		name    string
		steps   []func(http.ResponseWriter, *http.Request)
		want    []string
		wantErr bool
	}{
		{"created", []func(http.ResponseWriter, *http.Request){created}, []string{postPath}, false},
		{"409 is ours", []func(http.ResponseWriter, *http.Request){status(409, "already exists")}, []string{postPath}, false},
		{"400 already exists", []func(http.ResponseWriter, *http.Request){status(400, "Request identifier already exists")},
			[]string{postPath}, false},
		{"503 then not found then created", []func(http.ResponseWriter, *http.Request){
			status(503, "overloaded"), status(404, "no such request"), created},
			[]string{postPath, lookupPath, postPath}, false},
		{"reset but created", []func(http.ResponseWriter, *http.Request){reset, body(`{"identifier":"eod20260105a"}`)},
			[]string{postPath, lookupPath}, false},
		{"500 but created", []func(http.ResponseWriter, *http.Request){status(500, "oops"), body(`{}`)},
			[]string{postPath, lookupPath}, false},
		{"429 is definite: re-POST without lookup", []func(http.ResponseWriter, *http.Request){
			status(429, "rate", "Retry-After", "0"), created},
			[]string{postPath, postPath}, false},
		{"lookup retried", []func(http.ResponseWriter, *http.Request){reset, status(503, "x"), status(404, "no"), created},
			[]string{postPath, lookupPath, lookupPath, postPath}, false},
		{"400 permanent", []func(http.ResponseWriter, *http.Request){status(400, "fieldList: unknown mnemonic PX_LSAT")},
			[]string{postPath}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, s := scripted(t, vendor.Config{}, tc.steps...)
			err := c.Submit(context.Background(), histReq)
			if (err != nil) != tc.wantErr {
				t.Fatalf("Submit error %v, want error %v", err, tc.wantErr)
			}
			if got := s.calls(); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("calls %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSubmitSpentRetriesLooksUpOnce(t *testing.T) {
	// Retries are spent on ambiguous failures; a last lookup finds the request was created.
	c, s := scripted(t, vendor.Config{MaxRetries: 1}, reset, status(404, "no"), reset, body(`{}`))
	if err := c.Submit(context.Background(), histReq); err != nil {
		t.Fatalf("Submit: %v", err)
	}
	if want := []string{postPath, lookupPath, postPath, lookupPath}; fmt.Sprint(s.calls()) != fmt.Sprint(want) {
		t.Errorf("calls %v, want %v", s.calls(), want)
	}
}

func gzipped(t *testing.T, data []byte) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write(data)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func digestOf(data []byte) string {
	sum := sha512.Sum512(data)
	return "sha512=" + base64.StdEncoding.EncodeToString(sum[:])
}

// serveBody answers with wire (already encoded as enc) and Content-Length declared, writing only
// the first send bytes before dropping the connection when send < len(wire).
func serveBody(wire []byte, enc string, declared, send int) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			http.Error(w, "want Accept-Encoding: gzip", 400)
			return
		}
		if enc != "" {
			w.Header().Set("Content-Encoding", enc)
		}
		if declared >= 0 {
			w.Header().Set("Content-Length", fmt.Sprint(declared))
		}
		w.WriteHeader(200)
		w.Write(wire[:send])
		if send < len(wire) {
			http.NewResponseController(w).Flush()
			panic(http.ErrAbortHandler)
		}
	}
}

func TestDownloadChecks(t *testing.T) {
	file := bytes.Repeat([]byte("IBM US Equity|01/02/2026|123.4500|\n"), 5000)
	gz := gzipped(t, file)
	tests := []struct {
		name   string
		step   func(http.ResponseWriter, *http.Request)
		digest string
		want   error
	}{
		{"plain ok", serveBody(file, "", len(file), len(file)), digestOf(file), nil},
		{"gzip ok", serveBody(gz, "gzip", len(gz), len(gz)), digestOf(file), nil},
		{"gzip chunked ok", serveBody(gz, "gzip", -1, len(gz)), digestOf(file), nil},
		{"digest from header", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Digest", digestOf(file[1:]))
			w.Write(file)
		}, "", vendor.ErrDigestMismatch},
		{"plain mismatch", serveBody(file, "", len(file), len(file)), digestOf(file[1:]), vendor.ErrDigestMismatch},
		{"gzip mismatch", serveBody(gz, "gzip", len(gz), len(gz)), digestOf(file[1:]), vendor.ErrDigestMismatch},
		{"plain truncated", serveBody(file, "", len(file), len(file)/2), digestOf(file), vendor.ErrTruncated},
		{"gzip truncated", serveBody(gz, "gzip", len(gz), len(gz)/2), digestOf(file), vendor.ErrTruncated},
		{"gzip chunked truncated", serveBody(gz, "gzip", -1, len(gz)/2), digestOf(file), vendor.ErrTruncated},
		{"no digest anywhere", serveBody(file, "", len(file), len(file)), "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := scripted(t, vendor.Config{}, tc.step)
			rc, err := c.Download(context.Background(), "k.20260105.bbg", tc.digest, -1)
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			got, err := io.ReadAll(rc)
			if tc.want == nil {
				if err != nil || !bytes.Equal(got, file) {
					t.Fatalf("read %d bytes, %v", len(got), err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("read error %v, want %v", err, tc.want)
			}
			// The error is sticky: a caller that reads again does not get io.EOF.
			if _, err2 := rc.Read(make([]byte, 1)); !errors.Is(err2, tc.want) {
				t.Errorf("second read error %v, want %v again", err2, tc.want)
			}
		})
	}
}

func TestDownloadBadDigestArgument(t *testing.T) {
	c, s := scripted(t, vendor.Config{})
	for _, d := range []string{"md5=abc", "sha512=notbase64!", "sha512=" + base64.StdEncoding.EncodeToString([]byte("short"))} {
		if _, err := c.Download(context.Background(), "k", d, -1); err == nil {
			t.Errorf("Download with digest %q: no error", d)
		}
	}
	if n := len(s.calls()); n != 0 {
		t.Errorf("%d calls made with an unusable digest", n)
	}
}
