package vendorsim

import (
	"bytes"
	"compress/gzip"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/obs"
	"github.com/marketpipe/marketpipe/pkg/simdata"
	"github.com/marketpipe/marketpipe/pkg/vendor"
)

// clock is a settable clock shared by a test and the server.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func newClock() *clock { return &clock{t: time.Date(2026, 1, 5, 21, 0, 0, 0, time.UTC)} }

// plainTransport does not ask for gzip behind the test's back, so tests see what they asked for.
var plainTransport = &http.Transport{DisableCompression: true}

const base = Prefix + "/catalogs/" + DefaultAccount

func start(t *testing.T, opts Options) *httptest.Server {
	t.Helper()
	return serve(t, NewServer(opts))
}

// serve serves sim until the test ends, then closes it.
func serve(t *testing.T, sim *Server) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(sim)
	t.Cleanup(func() {
		srv.Close()
		if err := sim.Close(); err != nil {
			t.Errorf("closing the simulator: %v", err)
		}
	})
	return srv
}

// do sends one request with api-version 2 and returns status, headers and body.
func do(t *testing.T, method, url, body string, hdr map[string]string) (int, http.Header, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("api-version", "2")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := plainTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.ContentLength >= 0 { // net/http moves it out of the header map
		resp.Header.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	}
	return resp.StatusCode, resp.Header, data
}

func history(id string) string {
	return `{"@type":"HistoryRequest","identifier":"` + id + `","title":"t",
	 "universe":{"@type":"Universe","contains":[
	   {"@type":"Identifier","identifierType":"TICKER","identifierValue":"IBM US Equity"},
	   {"@type":"Identifier","identifierType":"TICKER","identifierValue":"BAD X Equity"}]},
	 "fieldList":{"@type":"HistoryFieldList","contains":[{"mnemonic":"PX_LAST"},{"mnemonic":"PX_VOLUME"}]},
	 "trigger":{"@type":"SubmitTrigger"},
	 "runtimeOptions":{"@type":"HistoryRuntimeOptions",
	   "dateRange":{"@type":"IntervalDateRange","startDate":"2026-01-02","endDate":"2026-01-31"}},
	 "formatting":{"@type":"MediaType","outputMediaType":"text/vnd.blp.dl.std"}}`
}

func statusOf(t *testing.T, body []byte) map[string]any {
	t.Helper()
	var st map[string]any
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatalf("error body %q is not JSON: %v", body, err)
	}
	if st["@type"] != "Status" {
		t.Fatalf("error body %s is not a Status", body)
	}
	return st
}

func TestCreateValidation(t *testing.T) {
	srv := start(t, Options{})
	valid := history("ok1")
	tests := []struct {
		name     string
		body     string
		wantDesc string
	}{
		{"not json", `{"@type":`, "not a request JSON"},
		{"unknown type", strings.Replace(valid, "HistoryRequest", "FooRequest", 1), "unknown @type"},
		{"actions without a date range", `{"@type":"ActionsRequest","identifier":"x1","universe":{"contains":[{"identifierValue":"IBM US Equity"}]}}`, "ActionsRequest needs runtimeOptions.dateRange"},
		{"bad identifier", strings.Replace(valid, `"ok1"`, `"has-dash"`, 1), "1 to 21 letters or digits"},
		{"long identifier", strings.Replace(valid, `"ok1"`, `"a234567890123456789012"`, 1), "1 to 21"},
		{"empty universe", `{"@type":"DataRequest","identifier":"x1","universe":{"contains":[]},"fieldList":{"contains":[{"mnemonic":"PX_LAST"}]}}`, "universe is empty"},
		{"universe reference", `{"@type":"DataRequest","identifier":"x1","universe":"/eap/catalogs/a/universes/u/","fieldList":{"contains":[{"mnemonic":"PX_LAST"}]}}`, "references are not supported"},
		{"no fields", `{"@type":"DataRequest","identifier":"x1","universe":{"contains":[{"identifierValue":"IBM US Equity"}]}}`, "no fields"},
		{"bad mnemonic", strings.Replace(valid, "PX_VOLUME", "PX VOLUME", 1), `mnemonic "PX VOLUME"`},
		{"no date range", `{"@type":"HistoryRequest","identifier":"x1","universe":{"contains":[{"identifierValue":"IBM US Equity"}]},"fieldList":{"contains":[{"mnemonic":"PX_LAST"}]}}`, "needs runtimeOptions.dateRange"},
		{"bad date", strings.Replace(valid, "2026-01-31", "31/01/2026", 1), "must be YYYY-MM-DD"},
		{"end before start", strings.Replace(valid, "2026-01-31", "2025-12-31", 1), "before startDate"},
		{"pipe in security", strings.Replace(valid, "IBM US Equity", "IBM|US", 1), "contains '|'"},
		{"other media type", strings.Replace(valid, "text/vnd.blp.dl.std", "application/json", 1), "outputMediaType"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, body := do(t, "POST", srv.URL+base+"/requests/", tc.body, nil)
			if code != http.StatusBadRequest {
				t.Fatalf("status %d (%s), want 400", code, body)
			}
			if st := statusOf(t, body); !strings.Contains(st["description"].(string), tc.wantDesc) {
				t.Errorf("description %q lacks %q", st["description"], tc.wantDesc)
			}
		})
	}
}

func TestRequestLifecycle(t *testing.T) {
	clk := newClock()
	srv := start(t, Options{ReadyAfter: time.Minute, Seed: 4, Now: clk.Now})

	code, hdr, body := do(t, "POST", srv.URL+base+"/requests/", history("life1"), nil)
	if code != http.StatusCreated || hdr.Get("Location") != base+"/requests/life1/" {
		t.Fatalf("create: %d Location %q %s", code, hdr.Get("Location"), body)
	}
	if code, _, body = do(t, "POST", srv.URL+base+"/requests/", history("life1"), nil); code != http.StatusConflict {
		t.Fatalf("duplicate: %d %s, want 409", code, body)
	}
	if code, _, body = do(t, "GET", srv.URL+base+"/requests/life1/", "", nil); code != http.StatusOK ||
		!strings.Contains(string(body), `"identifier":"life1"`) {
		t.Fatalf("get request: %d %s", code, body)
	}
	if code, _, body = do(t, "GET", srv.URL+base+"/requests/nope/", "", nil); code != http.StatusNotFound {
		t.Fatalf("get unknown request: %d %s, want 404", code, body)
	}
	if code, _, body = do(t, "GET", srv.URL+Prefix+"/catalogs/other/requests/life1/", "", nil); code != http.StatusNotFound {
		t.Fatalf("other account: %d %s, want 404", code, body)
	}

	list := func() []map[string]any {
		code, _, body := do(t, "GET", srv.URL+base+"/content/responses/?requestIdentifier=life1", "", nil)
		if code != http.StatusOK {
			t.Fatalf("list: %d %s", code, body)
		}
		var l struct{ Contains []map[string]any }
		if err := json.Unmarshal(body, &l); err != nil {
			t.Fatal(err)
		}
		return l.Contains
	}
	if items := list(); len(items) != 0 {
		t.Fatalf("listed before ready: %v", items)
	}
	key := "life1.20260105.bbg"
	if code, _, _ := do(t, "GET", srv.URL+base+"/content/responses/"+key, "", nil); code != http.StatusNotFound {
		t.Fatalf("download before ready: %d, want 404", code)
	}
	clk.Advance(time.Minute)
	items := list()
	if len(items) != 1 || items[0]["key"] != key {
		t.Fatalf("listing %v, want one item %s", items, key)
	}
	headers := items[0]["headers"].(map[string]any)

	var want bytes.Buffer
	spec := events.Spec{Name: "life1", Program: events.GetHistory, Securities: []string{"IBM US Equity", "BAD X Equity"},
		Fields: []string{"PX_LAST", "PX_VOLUME"}, Start: "2026-01-02", End: "2026-01-31"}
	layout, _ := simdata.LookupLayout(spec.Program)
	layout.Started = simdata.StartedFor("life1")
	if err := simdata.WriteReplyLayout(&want, spec, obs.MakeDate(2026, 1, 5), 4, layout); err != nil {
		t.Fatal(err)
	}
	sum := sha512.Sum512(want.Bytes())
	wantDigest := "sha512=" + base64.StdEncoding.EncodeToString(sum[:])
	if headers["Digest"] != wantDigest || headers["Content-Length"] != itoa(want.Len()) ||
		headers["Content-Type"] != MediaType {
		t.Errorf("listing headers %v, want digest %s length %d", headers, wantDigest, want.Len())
	}

	t.Run("plain", func(t *testing.T) {
		code, hdr, body := do(t, "GET", srv.URL+base+"/content/responses/"+key, "", nil)
		if code != http.StatusOK || !bytes.Equal(body, want.Bytes()) {
			t.Fatalf("download: %d, %d bytes, want the %d-byte reply", code, len(body), want.Len())
		}
		if hdr.Get("Content-Length") != itoa(want.Len()) || hdr.Get("Digest") != wantDigest {
			t.Errorf("headers %v", hdr)
		}
	})
	t.Run("gzip", func(t *testing.T) {
		code, hdr, body := do(t, "GET", srv.URL+base+"/content/responses/"+key, "", map[string]string{"Accept-Encoding": "gzip"})
		if code != http.StatusOK || hdr.Get("Content-Encoding") != "gzip" {
			t.Fatalf("download: %d, encoding %q", code, hdr.Get("Content-Encoding"))
		}
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(zr)
		if err != nil || !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("decoded %d bytes (%v), want the %d-byte reply", len(got), err, want.Len())
		}
	})
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestAPIVersionRequired(t *testing.T) {
	srv := start(t, Options{})
	resp, err := http.Get(srv.URL + Prefix + "/catalogs/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "api-version") {
		t.Errorf("without api-version: %d %s", resp.StatusCode, body)
	}
}

func TestJWTVerification(t *testing.T) {
	clk := newClock()
	creds := &vendor.Credentials{ClientID: "cid", ClientSecret: "00112233445566778899aabbccddeeff"}
	key := []byte{0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}
	srv := start(t, Options{Credentials: creds, Now: clk.Now})
	path := Prefix + "/catalogs/"
	sign := func(k []byte, edit func(jwt.MapClaims)) string {
		now := clk.Now().Unix()
		c := jwt.MapClaims{"iss": "cid", "iat": now, "nbf": now - 25, "exp": now + 25, "jti": "j" + itoa(int(time.Now().UnixNano())),
			"method": "GET", "path": path, "host": "127.0.0.1", "region": "default"}
		if edit != nil {
			edit(c)
		}
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	replayed := sign(key, nil)
	if code, _, body := do(t, "GET", srv.URL+path, "", map[string]string{"JWT": replayed}); code != http.StatusOK {
		t.Fatalf("valid JWT: %d %s", code, body)
	}
	tests := []struct {
		name, token, want string
	}{
		{"missing", "", "missing JWT"},
		{"wrong key", sign([]byte("other"), nil), "signature"},
		{"expired", sign(key, func(c jwt.MapClaims) { c["exp"] = clk.Now().Unix() - 60 }), "expired"},
		{"other issuer", sign(key, func(c jwt.MapClaims) { c["iss"] = "x" }), "invalid JWT"},
		{"other path", sign(key, func(c jwt.MapClaims) { c["path"] = "/eap/other/" }), "for path"},
		{"other method", sign(key, func(c jwt.MapClaims) { c["method"] = "POST" }), "for method"},
		{"replayed", replayed, "already used"},
		{"garbage", "a.b.c", "invalid JWT"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tc.token != "" {
				hdr["JWT"] = tc.token
			}
			code, _, body := do(t, "GET", srv.URL+path, "", hdr)
			if code != http.StatusUnauthorized {
				t.Fatalf("status %d %s, want 401", code, body)
			}
			if d := statusOf(t, body)["description"].(string); !strings.Contains(d, tc.want) {
				t.Errorf("description %q lacks %q", d, tc.want)
			}
		})
	}
}

func TestRegisterFlags(t *testing.T) {
	dir := t.TempDir()
	credPath := filepath.Join(dir, "creds.json")
	if err := os.WriteFile(credPath, []byte(`{"client_id":"id1","client_secret":"abcd","expiration_date":1900000000000}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		check   func(*Options) bool
		wantErr bool
	}{
		{"defaults", nil, func(o *Options) bool {
			return o.ReadyAfter == DefaultReadyAfter && o.Account == DefaultAccount && o.RunDate.IsZero() && o.Credentials == nil
		}, false},
		{"all", []string{"-ready-after", "5s", "-seed", "9", "-run-date", "2026-02-03", "-credentials", credPath,
			"-fault-429", "0.1", "-fault-truncate", "0.5", "-fault-max-bad-downloads", "3", "-slow-body", "1ms"}, func(o *Options) bool {
			return o.ReadyAfter == 5*time.Second && o.Seed == 9 && o.RunDate.Equal(time.Date(2026, 2, 3, 0, 0, 0, 0, time.UTC)) &&
				o.Credentials != nil && o.Credentials.ClientID == "id1" && o.Faults.Rate429 == 0.1 &&
				o.Faults.TruncateRate == 0.5 && o.Faults.MaxBadDownloads == 3 && o.Faults.SlowBody == time.Millisecond
		}, false},
		{"layouts", []string{"-layouts", "gethistory-rest,getdata-padded"}, func(o *Options) bool {
			return len(o.Layouts) == 2 && o.Layouts[0].Name == "gethistory-rest" && o.Layouts[1].Name == "getdata-padded"
		}, false},
		{"all layouts", []string{"-layouts", "all"}, func(o *Options) bool { return len(o.Layouts) == len(simdata.Layouts())+len(simdata.ActionLayouts()) }, false},
		{"token ttl", []string{"-token-ttl", "45s"}, func(o *Options) bool { return o.TokenTTL == 45*time.Second }, false},
		{"dir", []string{"-dir", dir}, func(o *Options) bool { return o.Dir == dir }, false},
		{"dir not a directory", []string{"-dir", credPath}, nil, true},
		{"missing dir", []string{"-dir", filepath.Join(dir, "none")}, nil, true},
		{"unknown layout", []string{"-layouts", "getdata,sideways"}, nil, true},
		{"bad date", []string{"-run-date", "03/02/2026"}, nil, true},
		{"bad seed", []string{"-seed", "-1"}, nil, true},
		{"missing credentials", []string{"-credentials", filepath.Join(dir, "none.json")}, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var o Options
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			o.RegisterFlags(fs)
			err := fs.Parse(tc.args)
			if (err != nil) != tc.wantErr {
				t.Fatalf("Parse: %v, want error %v", err, tc.wantErr)
			}
			if err == nil && !tc.check(&o) {
				t.Errorf("options %+v", o)
			}
		})
	}
}

// MaxBadDownloads ends a reply file's faults: with every download drawn bad, the first two are
// and the third is clean.
func TestMaxBadDownloads(t *testing.T) {
	srv, want := faultServer(t, Faults{TruncateRate: 1, CorruptRate: 1, MaxBadDownloads: 2})
	for i, wantClean := range []bool{false, false, true, true} {
		resp := getReply(t, srv, false)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if clean := err == nil && bytes.Equal(body, want); clean != wantClean {
			t.Errorf("download %d: clean %v (%d bytes, %v), want clean %v", i+1, clean, len(body), err, wantClean)
		}
	}
}

// faultServer starts a simulator with faults that has request f1 created, and returns it with
// the reply file f1 has.
func faultServer(t *testing.T, faults Faults) (*httptest.Server, []byte) {
	t.Helper()
	srv := start(t, Options{Faults: faults, RunDate: time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)})
	if code, _, body := do(t, "POST", srv.URL+base+"/requests/", history("f1"), nil); code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, body)
	}
	return srv, historyReply(t, "f1")
}

// historyReply is the reply file of the request made with history(id), run on 2026-01-05.
func historyReply(t *testing.T, id string) []byte {
	t.Helper()
	var want bytes.Buffer
	spec := events.Spec{Program: events.GetHistory, Securities: []string{"IBM US Equity", "BAD X Equity"},
		Fields: []string{"PX_LAST", "PX_VOLUME"}, Start: "2026-01-02", End: "2026-01-31"}
	layout, _ := simdata.LookupLayout(spec.Program)
	layout.Started = simdata.StartedFor(id)
	if err := simdata.WriteReplyLayout(&want, spec, obs.MakeDate(2026, 1, 5), 0, layout); err != nil {
		t.Fatal(err)
	}
	return want.Bytes()
}

// getReply downloads f1's reply file from srv, asking for gzip if gz.
func getReply(t *testing.T, srv *httptest.Server, gz bool) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", srv.URL+base+"/content/responses/f1.20260105.bbg", nil)
	req.Header.Set("api-version", "2")
	if gz {
		req.Header.Set("Accept-Encoding", "gzip")
	}
	resp, err := plainTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestDownloadFaults(t *testing.T) {
	tests := []struct {
		name   string
		faults Faults
		gzip   bool
		check  func(t *testing.T, body []byte, err error, want []byte)
	}{
		{"truncate plain", Faults{TruncateRate: 1}, false, func(t *testing.T, body []byte, err error, want []byte) {
			if !errors.Is(err, io.ErrUnexpectedEOF) || len(body) != len(want)/2 {
				t.Errorf("read %d of %d bytes, err %v: want half and unexpected EOF", len(body), len(want), err)
			}
		}},
		{"truncate gzip", Faults{TruncateRate: 1}, true, func(t *testing.T, body []byte, err error, want []byte) {
			if err == nil {
				t.Errorf("gzip download read to the end without error")
			}
		}},
		{"corrupt", Faults{CorruptRate: 1}, false, func(t *testing.T, body []byte, err error, want []byte) {
			if err != nil || len(body) != len(want) || bytes.Equal(body, want) {
				t.Errorf("err %v, %d bytes, equal %v: want a full body that differs", err, len(body), bytes.Equal(body, want))
			}
		}},
		{"slow", Faults{SlowBody: time.Millisecond}, true, func(t *testing.T, body []byte, err error, want []byte) {
			if err != nil {
				t.Errorf("slow download: %v", err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, want := faultServer(t, tc.faults)
			resp := getReply(t, srv, tc.gzip)
			defer resp.Body.Close()
			var r io.Reader = resp.Body
			if tc.gzip {
				zr, err := gzip.NewReader(resp.Body)
				if err != nil {
					t.Fatal(err)
				}
				r = zr
			}
			body, err := io.ReadAll(r)
			tc.check(t, body, err, want)
		})
	}
}

func TestInjectedStatusFaults(t *testing.T) {
	srv := start(t, Options{Faults: Faults{Rate429: 1, RetryAfter: 1500 * time.Millisecond}})
	code, hdr, body := do(t, "GET", srv.URL+Prefix+"/catalogs/", "", nil)
	if code != http.StatusTooManyRequests || hdr.Get("Retry-After") != "2" {
		t.Errorf("got %d Retry-After %q (%s), want 429 with Retry-After 2", code, hdr.Get("Retry-After"), body)
	}

	// A reset POST has created the request: the client must find it by lookup.
	srv = start(t, Options{Faults: Faults{ResetRate: 1}})
	req, _ := http.NewRequest("POST", srv.URL+base+"/requests/", strings.NewReader(history("r1")))
	req.Header.Set("api-version", "2")
	if resp, err := plainTransport.RoundTrip(req); err == nil {
		resp.Body.Close()
		t.Fatalf("reset POST answered %d", resp.StatusCode)
	}
	s := srv.Config.Handler.(*Server)
	if s.lookup("r1") == nil {
		t.Errorf("reset POST did not create the request")
	}
}

// TestPreparedOnce checks that an output is stored once, gzipped, in Options.Dir, that gzip
// downloads are that file as it is (with its length), plain ones and HEAD its decoded form, and
// that Close removes the file.
func TestPreparedOnce(t *testing.T) {
	dir := t.TempDir()
	sim := NewServer(Options{Dir: dir, RunDate: time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)})
	srv := httptest.NewServer(sim)
	defer srv.Close()
	if code, _, body := do(t, "POST", srv.URL+base+"/requests/", history("p1"), nil); code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, body)
	}
	want := historyReply(t, "p1")
	stored := func() []string {
		t.Helper()
		names, err := filepath.Glob(filepath.Join(dir, "*"))
		if err != nil {
			t.Fatal(err)
		}
		return names
	}
	url := srv.URL + base + "/content/responses/p1.20260105.bbg"
	gzipped := map[string]string{"Accept-Encoding": "gzip"}
	for range 3 {
		code, hdr, body := do(t, "GET", url, "", gzipped)
		names := stored()
		if code != http.StatusOK || len(names) != 1 || !strings.HasSuffix(names[0], ".gz") {
			t.Fatalf("gzip download: %d; stored %v, want one .gz file", code, names)
		}
		file, err := os.ReadFile(names[0])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(body, file) || hdr.Get("Content-Length") != itoa(len(file)) || hdr.Get("Content-Encoding") != "gzip" {
			t.Fatalf("gzip download: %d bytes, headers %v; want the %d-byte stored file", len(body), hdr, len(file))
		}
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := io.ReadAll(zr); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("decoded %d bytes (%v), want the %d-byte reply", len(got), err, len(want))
		}
	}
	if code, _, body := do(t, "GET", url, "", nil); code != http.StatusOK || !bytes.Equal(body, want) {
		t.Fatalf("plain download: %d, %d bytes; want the %d-byte reply", code, len(body), len(want))
	}
	code, hdr, body := do(t, "HEAD", url, "", nil)
	if code != http.StatusOK || len(body) != 0 || hdr.Get("Content-Length") != itoa(len(want)) {
		t.Fatalf("HEAD: %d, %d bytes, headers %v", code, len(body), hdr)
	}
	if err := sim.Close(); err != nil {
		t.Fatal(err)
	}
	if names := stored(); len(names) != 0 {
		t.Errorf("after Close: %v left in the directory", names)
	}
	if code, _, _ := do(t, "GET", url, "", gzipped); code != http.StatusInternalServerError {
		t.Errorf("download after Close: %d, want 500", code)
	}
}

// TestTemporaryDir checks that the default directory is made for the first output and removed
// by Close.
func TestTemporaryDir(t *testing.T) {
	sim := NewServer(Options{})
	srv := httptest.NewServer(sim)
	defer srv.Close()
	if code, _, body := do(t, "POST", srv.URL+base+"/requests/", history("t1"), nil); code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, body)
	}
	if code, _, body := do(t, "GET", srv.URL+base+"/content/responses/?requestIdentifier=t1", "", nil); code != http.StatusOK ||
		!strings.Contains(string(body), `"key"`) {
		t.Fatalf("list: %d %s", code, body)
	}
	dir := sim.files.dir
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Fatalf("temporary directory %q: %v", dir, err)
	}
	if err := sim.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary directory %s after Close: %v, want it removed", dir, err)
	}
}

// TestRequestsOfOneDayDifferAndRevisions: each request gets a file started at a time of its own
// (two snapshots of a day are two snapshots), and POST
// /sim/revision changes the values of the requests created after it.
func TestRequestsOfOneDayDifferAndRevisions(t *testing.T) {
	srv := start(t, Options{RunDate: time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC), ReadyAfter: time.Millisecond})
	var files []string
	for i, revise := range []bool{false, false, true} {
		if revise {
			if code, _, body := do(t, "POST", srv.URL+"/sim/revision", "", nil); code != http.StatusOK || string(body) != "1\n" {
				t.Fatalf("revision: %d %q", code, body)
			}
		}
		id := fmt.Sprintf("day%d", i)
		if code, _, body := do(t, "POST", srv.URL+base+"/requests/", history(id), nil); code != http.StatusCreated {
			t.Fatalf("create %s: %d %s", id, code, body)
		}
		time.Sleep(20 * time.Millisecond)
		code, _, body := do(t, "GET", srv.URL+base+"/content/responses/"+id+".20260105.bbg", "", nil)
		if code != http.StatusOK {
			t.Fatalf("download %s: %d %s", id, code, body)
		}
		files = append(files, string(body))
	}
	for i, f := range files {
		want := "TIMESTARTED=" + time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC).Add(simdata.StartedFor(fmt.Sprintf("day%d", i))).Format("Mon Jan _2 15:04:05 MST 2006")
		if !strings.Contains(f, want) {
			t.Errorf("request %d: no %q in\n%s", i, want, f)
		}
		if i > 0 && strings.Contains(files[i-1], want) {
			t.Errorf("requests %d and %d of one day have the same TIMESTARTED", i-1, i)
		}
	}
	data := func(f string) string { return f[strings.Index(f, "START-OF-DATA"):] }
	if data(files[0]) != data(files[1]) || data(files[1]) == data(files[2]) {
		t.Errorf("the data of the first two requests should match and the revised third differ:\n%s\n%s\n%s",
			data(files[0]), data(files[1]), data(files[2]))
	}
}
