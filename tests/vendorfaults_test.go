package tests

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/chstore"
	"github.com/marketpipe/marketpipe/pkg/chtest"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/jobspec"
	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/pkg/obs"
	"github.com/marketpipe/marketpipe/pkg/simdata"
	"github.com/marketpipe/marketpipe/pkg/stage"
	"github.com/marketpipe/marketpipe/pkg/vendor"
	"github.com/marketpipe/marketpipe/services/vendorsim"
)

// TestVendorFaults runs the five stages as separate processes against a simulator with every
// fault on (429 and 503 with Retry-After, connection resets, truncated and corrupt downloads,
// slow bodies) and per-request JWTs required, serving every reply-file layout. Each job gets the
// layout it was made for (its identifier is chosen so), and its files hold every marker, text,
// dates, bulk cells and return codes 10, 11 and 995; two layouts add a malformed line. Every job
// must load, with FINAL equal to simdata's observations row for row, the jobs table's counts
// right and exactly the malformed lines in the rejects table.
func TestVendorFaults(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	start := time.Now()

	ns := natstest.Start(t)
	ch := chtest.Start(t)
	db := chtest.NewDatabase(t, ch)
	runDate := obs.MakeDate(2026, 11, 20)

	creds := &vendor.Credentials{ClientID: "marketpipe-vf", ClientSecret: "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
		ExpirationDate: time.Now().Add(24 * time.Hour).UnixMilli()}
	credPath := filepath.Join(t.TempDir(), "vendor-credentials.json")
	// By hand: Credentials' MarshalJSON leaves the secret out, so that logging one is safe.
	credJSON := fmt.Sprintf(`{"client_id":%q,"client_secret":%q,"expiration_date":%d}`,
		creds.ClientID, creds.ClientSecret, creds.ExpirationDate)
	if err := os.WriteFile(credPath, []byte(credJSON), 0o600); err != nil {
		t.Fatal(err)
	}

	layouts := simdata.Layouts()
	sim := vendorsim.NewServer(vendorsim.Options{
		Account: vendorsim.DefaultAccount, ReadyAfter: 500 * time.Millisecond, Seed: simSeed, RunDate: runDate.Time(),
		Credentials: creds, Layouts: layouts,
		Faults: vendorsim.Faults{Rate429: 0.08, Rate503: 0.08, RetryAfter: time.Second, ResetRate: 0.05,
			TruncateRate: 0.3, CorruptRate: 0.3, SlowBody: 2 * time.Millisecond,
			// Half the downloads are bad; unbounded, one job of nine met eight bad ones in a
			// row in a CI run, and the collector's backoff (1 s doubling to 1 min) took it past
			// the test's deadline. After four, a file downloads clean: 15 s of backoff at most.
			MaxBadDownloads: 4},
	})
	var counts vfCounter
	srv := httptest.NewServer(counts.wrap(sim))
	t.Cleanup(srv.Close)

	env := map[string]string{
		"NATS_URL": ns.ClientURL(), "CLICKHOUSE_ADDR": ch.Addr(), "CLICKHOUSE_DATABASE": db,
		"VENDOR_URL": srv.URL + "/eap", "VENDOR_CREDENTIALS": credPath, "POLL_INTERVAL": "200ms",
		"HTTP_ADDR": "127.0.0.1:0", "LOG_LEVEL": "debug",
	}
	var procs []*proc
	for _, name := range []string{"requester", "poller", "collector", "transformer", "loader"} {
		procs = append(procs, startProc(t, name, name, env))
	}
	// exited fails the test at once when a stage process has died (its log is printed).
	exited := func() {
		for _, p := range procs {
			select {
			case err := <-p.done:
				p.exited = true
				t.Fatalf("%s exited: %v", p.name, err)
			default:
			}
		}
	}
	store, err := chstore.Open(ctx, chstore.Config{Addr: ch.Addr(), Database: db, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })

	// One job per layout, two for the plain ones; modest sizes (about 35,000 observations).
	// Each job has securities of its own: observations are keyed by (security, field, date)
	// whatever the job, so jobs sharing keys would replace each other's rows under FINAL.
	dataFields := []string{"PX_LAST", "NAME", "CRNCY", "PX_BID", "DVD_EX_DT", "LAST_UPDATE_TIME", "INDX_MEMBERS",
		"DVD_SCHEDULE", "PEER_LIST", "NOSUCH_FIELD", "PX_VOLUME"}
	histFields := []string{"PX_LAST", "PX_OPEN", "SECURITY_NAME", "NXT_CPN_DT", "INDX_MEMBERS", "NOSUCH_HIST", "PX_VOLUME"}
	jobSecs := func(job, n int) []string {
		secs := []string{fmt.Sprintf("BAD%d US Equity", job), fmt.Sprintf("RC11 R%d Equity", job),
			fmt.Sprintf("RC995 Z%d Equity", job), fmt.Sprintf("VG%d A:00_0_R Index", job)}
		for i := range n {
			secs = append(secs, fmt.Sprintf("J%d S%03d US Equity", job, i))
		}
		return secs
	}
	type vfJob struct {
		layout  string
		rejects int // lines the reader must reject (simdata.Layout.Rejects)
		spec    events.Spec
		id      string
	}
	var jobs []*vfJob
	for i, l := range append(layouts, mustLayout(t, "getdata"), mustLayout(t, "gethistory")) {
		spec := events.Spec{Program: l.Program, Securities: jobSecs(i, 36), Fields: dataFields}
		if l.Program == events.GetHistory {
			spec = events.Spec{Program: l.Program, Securities: jobSecs(i, 18), Fields: histFields,
				Start: "2026-06-01", End: "2026-08-31"}
		}
		jobs = append(jobs, &vfJob{layout: l.Name, rejects: l.Rejects(), spec: spec})
	}
	// Job ids chosen so that the vendor request identifier derived from each gets its layout.
	now := time.Now().UTC()
	_, js := natstest.ConnectURL(t, ns.ClientURL())
	pub := stage.NewPublisher(js)
	for i, j := range jobs {
		for n := 0; j.id == ""; n++ {
			if n > 10000 {
				t.Fatalf("no job id gets layout %s", j.layout)
			}
			j.spec.Name = fmt.Sprintf("vf%d-%d", i, n)
			id := jobspec.NewJobID(j.spec.Name, now)
			if vendorsim.ChooseLayout(layouts, jobspec.VendorRequestID(id, 0), j.spec).Name == j.layout {
				j.id = id
			}
		}
		ev := events.Job{ID: j.id, Spec: j.spec, Version: uint64(now.UnixNano()) + uint64(i), Deadline: now.Add(10 * time.Minute)}
		ev = ev.Advance(events.Submitted, now)
		if err := pub.PublishJob(ctx, &ev); err != nil {
			t.Fatal(err)
		}
	}

	// Every job must end loaded; a failed one fails the test at once with its reason.
	final := make([]events.Job, len(jobs))
	for i, j := range jobs {
		for {
			got, ok, err := store.Job(ctx, j.id)
			if err == nil && ok && (got.State == events.Loaded || got.State == events.Failed) {
				final[i] = got
				break
			}
			exited()
			if ctx.Err() != nil {
				t.Fatalf("job %s (layout %s) not loaded in time: state %q, error %v; vendor %s", j.id, j.layout, got.State,
					err, counts.String())
			}
			time.Sleep(250 * time.Millisecond)
		}
		if final[i].State == events.Failed {
			t.Errorf("job %s (layout %s) failed: %s", j.id, j.layout, final[i].Error)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	loadedAt := time.Since(start)

	total := 0
	for i, j := range jobs {
		t.Run(fmt.Sprintf("job %d %s", i, j.layout), func(t *testing.T) {
			want := expected(t, j.spec, runDate)
			total += len(want)
			compare(t, loaded(t, ctx, store, j.id), want)
			job := final[i]
			if job.RowsLoaded != int64(len(want)) || job.RowsRejected != int64(j.rejects) {
				t.Errorf("jobs row: rows loaded %d rejected %d, want %d and %d", job.RowsLoaded, job.RowsRejected, len(want), j.rejects)
			}
			if got, ok := sim.Layout(job.VendorRequestID); !ok || got != j.layout {
				t.Errorf("vendor request %s was written as %q (known %v), want layout %s", job.VendorRequestID, got, ok, j.layout)
			}
			rejects, err := store.Rejects(ctx, j.id)
			if err != nil || len(rejects) != j.rejects {
				t.Errorf("rejects %+v, %v; want %d", rejects, err, j.rejects)
			}
			for _, rj := range rejects {
				if rj.Raw != simdata.MalformedLine || rj.Line < 1 || rj.Reason == "" {
					t.Errorf("reject %+v, want line %q with its number and a reason", rj, simdata.MalformedLine)
				}
			}
		})
	}

	// The faults must really have been met: injected statuses, dropped connections, and more
	// downloads than jobs (truncated and corrupt ones fetched again). With a 51% chance of a
	// bad download, nine clean first downloads have a 0.16% chance.
	c := counts.snapshot()
	t.Logf("%d jobs, %d observations loaded in %v (all checked in %v); vendor: %s",
		len(jobs), total, loadedAt.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), counts.String())
	if c.status[http.StatusTooManyRequests]+c.status[http.StatusServiceUnavailable] == 0 || c.aborted == 0 ||
		c.status[http.StatusUnauthorized] != 0 || c.downloads <= len(jobs) {
		t.Errorf("faults not met or auth refused: %s", counts.String())
	}
}

func mustLayout(t *testing.T, name string) simdata.Layout {
	t.Helper()
	l, ok := simdata.LookupLayout(name)
	if !ok {
		t.Fatalf("no layout %s", name)
	}
	return l
}

// vfCounter counts what the simulator answered: statuses, aborted connections (resets and
// truncations), and download attempts.
type vfCounter struct {
	mu        sync.Mutex
	status    map[int]int
	aborted   int
	downloads int
}

type vfCounts struct {
	status             map[int]int
	aborted, downloads int
}

func (c *vfCounter) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &vfStatusWriter{ResponseWriter: w, code: http.StatusOK}
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/content/responses/") &&
			!strings.HasSuffix(r.URL.Path, "/content/responses/") {
			c.mu.Lock()
			c.downloads++
			c.mu.Unlock()
		}
		defer func() {
			if p := recover(); p != nil {
				c.mu.Lock()
				c.aborted++
				c.mu.Unlock()
				panic(p)
			}
			c.mu.Lock()
			if c.status == nil {
				c.status = map[int]int{}
			}
			c.status[sw.code]++
			c.mu.Unlock()
		}()
		h.ServeHTTP(sw, r)
	})
}

func (c *vfCounter) snapshot() vfCounts {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := vfCounts{status: map[int]int{}, aborted: c.aborted, downloads: c.downloads}
	for k, v := range c.status {
		s.status[k] = v
	}
	return s
}

func (c *vfCounter) String() string {
	s := c.snapshot()
	return fmt.Sprintf("statuses %v, aborted connections %d, download attempts %d", s.status, s.aborted, s.downloads)
}

type vfStatusWriter struct {
	http.ResponseWriter
	code int
}

func (w *vfStatusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

// Flush lets slow downloads trickle through the wrapper.
func (w *vfStatusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
