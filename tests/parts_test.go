package tests

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/auth"
	"github.com/marketpipe/marketpipe/pkg/chstore"
	"github.com/marketpipe/marketpipe/pkg/chtest"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/jobspec"
	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/pkg/obs"
	"github.com/marketpipe/marketpipe/pkg/tlstest"
	"github.com/marketpipe/marketpipe/services"
	"github.com/marketpipe/marketpipe/services/vendorsim"
)

// downloadFault passes requests to the simulator, counts the downloads of each output, and
// corrupts the first download of the second output downloaded (one byte changed, so its
// digest does not match): whichever part that is, the collector downloads it again alone.
type downloadFault struct {
	sim       http.Handler
	mu        sync.Mutex
	downloads map[string]int
	order     []string
}

func (f *downloadFault) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, key, ok := strings.Cut(r.URL.Path, "/content/responses/")
	if !ok || key == "" || r.Method != http.MethodGet {
		f.sim.ServeHTTP(w, r)
		return
	}
	f.mu.Lock()
	if f.downloads[key] == 0 {
		f.order = append(f.order, key)
	}
	f.downloads[key]++
	corrupt := len(f.order) == 2 && f.order[1] == key && f.downloads[key] == 1
	f.mu.Unlock()
	if !corrupt {
		f.sim.ServeHTTP(w, r)
		return
	}
	r.Header.Del("Accept-Encoding") // the plain file, so the changed byte is the file's
	f.sim.ServeHTTP(&flipByte{ResponseWriter: w, at: 100}, r)
}

func (f *downloadFault) counts() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int{}
	for k, v := range f.downloads {
		out[k] = v
	}
	return out
}

// flipByte changes the byte at offset at of the body written.
type flipByte struct {
	http.ResponseWriter
	at, written int
}

func (f *flipByte) Write(p []byte) (int, error) {
	if i := f.at - f.written; i >= 0 && i < len(p) {
		q := append([]byte(nil), p...)
		q[i] ^= 0x20
		p = q
	}
	f.written += len(p)
	return f.ResponseWriter.Write(p)
}

// TestJobInParts runs a gethistory job larger than VENDOR_MAX_POINTS_PER_REQUEST through the
// five stages: it becomes four vendor requests (two securities × two date ranges), each posted
// once; the download of one part fails and only that part is downloaded again; the job loads
// once, with exactly the simulator's data for the whole job; status and the dry run show the
// parts.
func TestJobInParts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	natsDir := t.TempDir()
	if _, err := auth.Init(natsDir, services.Identities()); err != nil {
		t.Fatal(err)
	}
	certs := tlstest.New(t, natsDir)
	ns := natstest.StartConf(t, natsDir, "include "+auth.ServerInclude+"\n"+natstest.TLSBlock(certs))
	ch := chtest.Start(t)
	db := chtest.NewDatabase(t, ch)
	runDate := obs.MakeDate(2026, 11, 20)
	sim := vendorsim.NewServer(vendorsim.Options{Account: vendorsim.DefaultAccount, ReadyAfter: 500 * time.Millisecond,
		Seed: simSeed, RunDate: runDate.Time()})
	fault := &downloadFault{sim: sim, downloads: map[string]int{}}
	srv := httptest.NewServer(fault)
	t.Cleanup(srv.Close)
	env := map[string]string{
		"NATS_URL": ns.ClientURL(), "CLICKHOUSE_ADDR": ch.Addr(), "CLICKHOUSE_DATABASE": db,
		credsDirKey: natsDir, "NATS_CA": certs.CA, "NATS_CERT": certs.ClientCert, "NATS_KEY": certs.ClientKey,
		"VENDOR_URL": srv.URL + "/eap", "POLL_INTERVAL": "200ms", "HTTP_ADDR": "127.0.0.1:0",
		// 2 securities × 1 field × 261 weekdays of 2025 = 522 data points; at most 200 a
		// request: one security a request, its year in two ranges.
		"VENDOR_MAX_POINTS_PER_REQUEST": "200",
	}
	for _, p := range []struct{ name, bin string }{
		{"requester", "requester"}, {"poller", "poller"}, {"collector", "collector"},
		{"transformer-1", "transformer"}, {"transformer-2", "transformer"}, {"loader", "loader"},
	} {
		startProc(t, p.name, p.bin, env)
	}
	store, err := chstore.Open(ctx, chstore.Config{Addr: ch.Addr(), Database: db, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })

	secs := securities(2)
	path := writeJob(t, t.TempDir(), "parts.yaml", "name: parts\nprogram: gethistory\nsecurities:\n"+yamlList(secs)+
		"fields: [PX_LAST]\nstart: 2025-01-01\nend: 2025-12-31\n")
	out, stderr, code := runCLI(t, ctx, env, "submit", "--dry-run", path)
	if code != 0 || !strings.Contains(out, "request 4 of 4: gethistory, 1 securities (2 to 2) × 1 fields (1 to 1) × 2025-07-02 to 2025-12-31, 131 dates = 131 data points") ||
		!strings.Contains(out, "in all: 4 vendor requests, 522 data points (at most 200 a request)") {
		t.Errorf("dry run: exit %d\n%s%s", code, out, stderr)
	}
	if n := len(sim.Requests()); n != 0 {
		t.Fatalf("the dry run sent %d requests", n)
	}

	out, stderr, code = runCLI(t, ctx, env, "submit", path, "--wait", "--timeout", "3m")
	if code != 0 {
		t.Fatalf("submit: exit %d: %s%s", code, out, stderr)
	}
	id := strings.TrimSpace(out)

	// Four requests, each posted once, under the identifiers of the job's parts.
	posts := sim.Requests()
	if len(posts) != 4 {
		t.Errorf("vendor requests %v, want 4", posts)
	}
	for i := range 4 {
		if n := posts[jobspec.PartRequestID(id, 0, i)]; n != 1 {
			t.Errorf("part %d: posted %d times, want once", i, n)
		}
	}
	// Every part's output downloaded once, but the one whose download failed, twice.
	downloads := fault.counts()
	if len(downloads) != 4 {
		t.Errorf("downloads %v, want 4 outputs", downloads)
	}
	for key, n := range downloads {
		want := 1
		if key == fault.order[1] {
			want = 2
		}
		if n != want {
			t.Errorf("output %s downloaded %d times, want %d", key, n, want)
		}
	}
	// The parts download at once (collector.PartDownloads), so which one's download failed
	// depends on their order; it must be one of the job's.
	failedPart := -1
	for i := range 4 {
		if strings.HasPrefix(fault.order[1], jobspec.PartRequestID(id, 0, i)+".") {
			failedPart = i
		}
	}
	if failedPart < 0 {
		t.Errorf("the output whose download failed, %s, is none of the job's parts", fault.order[1])
	}

	// One "loaded" event, one chunk task per part's file (each a single security's, not cut).
	js := connectAs(t, env, auth.AdminName)
	for _, c := range []struct {
		stream, subject string
		want            uint64
	}{
		{events.JobsStream, events.JobSubject(id, events.Loaded), 1},
		{events.ChunksStream, events.ChunkSubject(id), 4},
	} {
		s, err := js.Stream(ctx, c.stream)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx, jetstream.WithSubjectFilter(c.subject))
		if err != nil {
			t.Fatal(err)
		}
		if n := info.State.Subjects[c.subject]; n != c.want {
			t.Errorf("%s: %d messages, want %d", c.subject, n, c.want)
		}
	}
	// Loaded once, with the whole job's data row for row.
	spec := events.Spec{Name: "parts", Program: events.GetHistory, Securities: secs, Fields: []string{"PX_LAST"}, Start: "2025-01-01", End: "2025-12-31"}
	want := expected(t, spec, runDate)
	compare(t, loaded(t, ctx, store, id), want)

	var st struct {
		State      string        `json:"state"`
		Generation int           `json:"generation"`
		RowsLoaded int64         `json:"rows_loaded"`
		Parts      []events.Part `json:"parts"`
	}
	// The jobs table follows the job's events a moment later than "loaded".
	waitUntil(t, ctx, "job "+id+" loaded in the jobs table", func() bool {
		out, _, code := runCLI(t, ctx, env, "status", id, "--json")
		st.Parts = nil
		return code == 0 && json.Unmarshal([]byte(out), &st) == nil && st.State == events.Loaded
	})
	if st.State != events.Loaded || st.Generation != 0 || st.RowsLoaded != int64(len(want)) || len(st.Parts) != 4 {
		t.Errorf("status: %s, generation %d, %d rows loaded (want %d), %d parts", st.State, st.Generation, st.RowsLoaded, len(want), len(st.Parts))
	}
	var points int64
	for _, p := range st.Parts {
		points += p.Points
		if p.FileKey == "" || p.FileSize == 0 {
			t.Errorf("part %+v: no stored file", p)
		}
	}
	if points != 522 {
		t.Errorf("parts hold %d data points, want 522", points)
	}
	out, _, code = runCLI(t, ctx, env, "status", id)
	if code != 0 || !strings.Contains(out, "vendor requests: 4 parts, 522 data points in all") {
		t.Errorf("status: exit %d:\n%s", code, out)
	}
	for i := range 4 {
		if !strings.Contains(out, jobspec.PartRequestID(id, 0, i)) {
			t.Errorf("status does not show part %d's request:\n%s", i+1, out)
		}
	}
	t.Logf("status:\n%s", out)
}
