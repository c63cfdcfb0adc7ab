package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/auth"
	"github.com/marketpipe/marketpipe/pkg/chstore"
	"github.com/marketpipe/marketpipe/pkg/chtest"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/pkg/obs"
	"github.com/marketpipe/marketpipe/pkg/simdata"
	"github.com/marketpipe/marketpipe/pkg/stage"
	"github.com/marketpipe/marketpipe/pkg/tlstest"
	"github.com/marketpipe/marketpipe/services"
	"github.com/marketpipe/marketpipe/services/vendorsim"
)

const simSeed = 7

// pipeline is a running set of stage processes with their servers.
type pipeline struct {
	env     map[string]string
	store   *chstore.Store
	runDate obs.Date
	simURL  string // the vendor simulator's base URL (POST /sim/revision revises its data)
	sim     *vendorsim.Server
}

func startPipeline(t *testing.T, ctx context.Context) *pipeline {
	t.Helper()
	// NATS with the credentials of `marketpipe auth init` and mutual TLS: every process runs
	// with its own identity (processEnv), as a deployment does.
	natsDir := t.TempDir()
	if _, err := auth.Init(natsDir, services.Identities()); err != nil {
		t.Fatal(err)
	}
	certs := tlstest.New(t, natsDir)
	ns := natstest.StartConf(t, natsDir, "include "+auth.ServerInclude+"\n"+natstest.TLSBlock(certs))
	ch := chtest.Start(t)
	db := chtest.NewDatabase(t, ch)
	runDate := obs.MakeDate(2026, 11, 20)
	simSrv := vendorsim.NewServer(vendorsim.Options{
		Account: vendorsim.DefaultAccount, ReadyAfter: 500 * time.Millisecond, Seed: simSeed, RunDate: runDate.Time(),
	})
	sim := httptest.NewServer(simSrv)
	t.Cleanup(sim.Close)
	env := map[string]string{
		"NATS_URL": ns.ClientURL(), "CLICKHOUSE_ADDR": ch.Addr(), "CLICKHOUSE_DATABASE": db,
		credsDirKey: natsDir, "NATS_CA": certs.CA, "NATS_CERT": certs.ClientCert, "NATS_KEY": certs.ClientKey,
		"VENDOR_URL": sim.URL + "/eap", "POLL_INTERVAL": "200ms", "HTTP_ADDR": "127.0.0.1:0",
		"LOG_LEVEL": "debug",
		// Chunks of 256 KiB: the history job's file (a few MB) is split at the collector's marks
		// into chunk tasks that both transformer processes share; the getdata job's stays in
		// one piece.
		"TRANSFORMER_CHUNK_BYTES": "262144",
	}
	// Two replicas of transformer and loader: they share their stage's durable consumer.
	for _, p := range []struct{ name, bin string }{
		{"requester", "requester"}, {"poller", "poller"}, {"collector", "collector"},
		{"transformer-1", "transformer"}, {"transformer-2", "transformer"},
		{"loader-1", "loader"}, {"loader-2", "loader"},
	} {
		startProc(t, p.name, p.bin, env)
	}
	store, err := chstore.Open(ctx, chstore.Config{Addr: ch.Addr(), Database: db, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return &pipeline{env: env, store: store, runDate: runDate, simURL: sim.URL, sim: simSrv}
}

func writeJob(t *testing.T, dir, name, body string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func securities(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("SEC%03d US Equity", i)
	}
	return out
}

func yamlList(items []string) string {
	var b strings.Builder
	for _, s := range items {
		fmt.Fprintf(&b, "  - %s\n", s)
	}
	return b.String()
}

func TestEndToEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	p := startPipeline(t, ctx)
	dir := t.TempDir()

	histSecs := append(securities(50), "BAD0 US Equity") // BAD… gets return code 10 from the simulator
	histFields := []string{"PX_LAST", "PX_OPEN", "PX_HIGH", "PX_LOW", "PX_VOLUME"}
	dataSecs := securities(20)
	dataFields := []string{"PX_LAST", "NAME", "CRNCY", "EQY_SH_OUT", "CUR_MKT_CAP", "PX_BID", "PX_ASK", "VOLUME"}
	jobs := []struct {
		file string
		spec events.Spec
	}{
		{writeJob(t, dir, "history.yaml", "name: e2e-history\nprogram: gethistory\nsecurities:\n"+yamlList(histSecs)+
			"fields: ["+strings.Join(histFields, ", ")+"]\nstart: 2025-01-01\nend: 2025-12-31\n"),
			events.Spec{Name: "e2e-history", Program: "gethistory", Securities: histSecs, Fields: histFields, Start: "2025-01-01", End: "2025-12-31"}},
		{writeJob(t, dir, "data.yaml", "name: e2e-data\nprogram: getdata\nsecurities:\n"+yamlList(dataSecs)+
			"fields: ["+strings.Join(dataFields, ", ")+"]\n"),
			events.Spec{Name: "e2e-data", Program: "getdata", Securities: dataSecs, Fields: dataFields}},
	}

	// Both jobs at once, each through the CLI as a user would: submit --wait.
	ids := make([]string, len(jobs))
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stdout, stderr, code := runCLI(t, ctx, p.env, "submit", j.file, "--wait", "--timeout", "4m")
			if code != 0 {
				t.Errorf("submit %s: exit %d\nstdout: %s\nstderr: %s", j.file, code, stdout, stderr)
				return
			}
			ids[i] = strings.TrimSpace(strings.SplitN(stdout, "\n", 2)[0])
			if !strings.Contains(stderr, "loaded") {
				t.Errorf("submit --wait shows no progress up to loaded:\n%s", stderr)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	// The history job went through the chunk tasks, the getdata job did not.
	js := connectAs(t, p.env, auth.AdminName)
	for i, want := range []bool{true, false} {
		s, err := js.Stream(ctx, events.ChunksStream)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx, jetstream.WithSubjectFilter(events.ChunkSubject(ids[i])))
		if err != nil {
			t.Fatal(err)
		}
		if n := info.State.Subjects[events.ChunkSubject(ids[i])]; (n >= 2) != want {
			t.Errorf("%s: %d chunk tasks", ids[i], n)
		}
		if !want {
			continue
		}
		// Cut at the marks the collector recorded, so each chunk read only its part.
		m, err := s.GetLastMsgForSubject(ctx, events.ChunkSubject(ids[i]))
		if err != nil {
			t.Fatal(err)
		}
		task, err := events.DecodeChunkTask(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		if !task.AtMarks() || len(task.FileMarks) == 0 {
			t.Errorf("%s: chunk task %d of %d not cut at marks (%d marks)", ids[i], task.Chunk, task.Chunks, len(task.FileMarks))
		}
	}

	for i, j := range jobs {
		t.Run(j.spec.Program, func(t *testing.T) {
			want := expected(t, j.spec, p.runDate)
			got := loaded(t, ctx, p.store, ids[i])
			compare(t, got, want)

			job, ok, err := p.store.Job(ctx, ids[i])
			if err != nil || !ok {
				t.Fatalf("jobs table: %v, found %v", err, ok)
			}
			if job.State != events.Loaded || job.RowsLoaded != int64(len(want)) || job.FileSHA256 == "" || job.VendorRequestID == "" {
				t.Errorf("jobs row: state %q rows_loaded %d (want %d) sha256 %q request %q",
					job.State, job.RowsLoaded, len(want), job.FileSHA256, job.VendorRequestID)
			}
			out, stderr, code := runCLI(t, ctx, p.env, "status", ids[i])
			if code != 0 || !strings.Contains(out, "loaded") || !strings.Contains(out, fmt.Sprint(len(want))) {
				t.Errorf("status %s: exit %d\n%s%s", ids[i], code, out, stderr)
			}
		})
	}
	if len(jobs[0].spec.Securities)*len(jobs[0].spec.Fields) < 250 {
		t.Fatal("the history job must be at least 50 securities × 5 fields")
	}

	// Replays: the history job from its stored raw file, the getdata job from a new vendor
	// request. Each is a new generation whose rows supersede the old ones.
	// The replays from the requester come after the vendor revised its data (a correction): the
	// getdata replay then makes a second snapshot, the history replay changes every value of
	// the same keys.
	for _, r := range []struct {
		job      int
		from     string
		revision uint64 // the simulator's revision for the replay; 0: unchanged
		gen      int
	}{{0, "transformer", 0, 1}, {1, "requester", 1, 1}, {0, "requester", 2, 2}} {
		i, from := r.job, r.from
		t.Run(fmt.Sprintf("replay %s from %s", jobs[i].spec.Program, from), func(t *testing.T) {
			before, _, _ := p.store.Job(ctx, ids[i])
			old := expected(t, jobs[i].spec, p.runDate)
			beforeReplay := time.Now()
			seed := uint64(simSeed)
			if r.revision > 0 {
				resp, err := http.Post(p.simURL+"/sim/revision", "text/plain", nil)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				seed = simdata.RevisedSeed(simSeed, r.revision)
			}
			out, stderr, code := runCLI(t, ctx, p.env, "replay", "--job", ids[i], "--from", from, "--wait")
			if code != 0 || !strings.Contains(out, fmt.Sprintf("as generation %d", r.gen)) || !strings.Contains(stderr, "loaded") {
				t.Fatalf("replay: exit %d\n%s%s", code, out, stderr)
			}
			want := expectedSeed(t, jobs[i].spec, p.runDate, seed)
			if r.revision > 0 && slices.EqualFunc(old, want, func(a, b obs.Observation) bool { return a.Equal(&b) }) {
				t.Fatal("the simulator's revision did not change the data: the test would show nothing")
			}
			compare(t, loaded(t, ctx, p.store, ids[i]), want)
			// As of before the replay, readers see the first run's values (a backtest sees no
			// later correction); now, the replay's.
			sec := jobs[i].spec.Securities[0]
			for _, c := range []struct {
				args []string
				want []obs.Observation
			}{
				{[]string{"--as-of", beforeReplay.UTC().Format(time.RFC3339Nano)}, old},
				{nil, want},
			} {
				args := append([]string{"query", "--security", sec, "--format", "jsonl"}, c.args...)
				out, stderr, code := runCLI(t, ctx, p.env, args...)
				if code != 0 {
					t.Fatalf("query %v: exit %d: %s", args, code, stderr)
				}
				compare(t, parseQueryJSONL(t, out, ids[i], jobs[i].spec.Program), onlySecurity(c.want, sec))
			}
			var after events.Job
			waitUntil(t, ctx, fmt.Sprintf("the jobs table at generation %d", r.gen), func() bool {
				after, _, _ = p.store.Job(ctx, ids[i])
				return after.Generation == r.gen && after.State == events.Loaded
			})
			if runs, err := p.store.JobRuns(ctx, ids[i]); err != nil || len(runs) != r.gen+1 || runs[0].State != events.Loaded {
				t.Errorf("the jobs table keeps %d runs of %s (%v), want %d, each in its own state", len(runs), ids[i], err, r.gen+1)
			}
			// Every history row is the replay's; a snapshot replayed from a new vendor request
			// is a new snapshot beside the first.
			versions := map[uint64]int{}
			p.store.Query(ctx, chstore.Filter{Securities: jobs[i].spec.Securities}, func(r *chstore.Row) error {
				if r.JobID == ids[i] {
					versions[r.Version]++
				}
				return nil
			})
			wantRuns := 1
			if jobs[i].spec.Program == events.GetData && r.revision > 0 {
				wantRuns = 2
			}
			if len(versions) != wantRuns || versions[after.Version] != len(want) || after.Version <= before.Version {
				t.Errorf("versions after replay %v; replay version %d, first run %d", versions, after.Version, before.Version)
			}
			if from == "requester" && after.VendorRequestID == before.VendorRequestID {
				t.Errorf("replay from the requester reused vendor request %s", after.VendorRequestID)
			}
		})
	}
	// A reply with an unknown field and a security answered with a return code loads with
	// warnings, which submit --wait and status say; the same job strict fails, and nothing of
	// it becomes visible.
	t.Run("warnings and strict", func(t *testing.T) {
		body := "program: getdata\nsecurities:\n  - SEC900 US Equity\n  - BAD9 US Equity\nfields: [PX_LAST, NOSUCH_FLD]\n"
		lenient := writeJob(t, dir, "warn.yaml", "name: e2e-warn\n"+body)
		stdout, stderr, code := runCLI(t, ctx, p.env, "submit", lenient, "--wait", "--timeout", "2m")
		want := "1 unknown field (NOSUCH_FLD); 1 security with return codes (RC=10: 1)"
		if code != 0 || !strings.Contains(stderr, "loaded with warnings") || !strings.Contains(stderr, want) {
			t.Fatalf("submit --wait of a job with warnings: exit %d\n%s", code, stderr)
		}
		id := strings.TrimSpace(stdout)
		if got := loaded(t, ctx, p.store, id); len(got) == 0 {
			t.Error("a lenient run with warnings loaded nothing")
		}
		waitUntil(t, ctx, "the jobs table to show the warnings", func() bool {
			out, _, _ := runCLI(t, ctx, p.env, "status", id, "--json")
			return strings.Contains(out, `"outcome": "loaded with warnings"`) && strings.Contains(out, `"RC=10": 1`)
		})
		if out, _, _ := runCLI(t, ctx, p.env, "status", id); !strings.Contains(out, want) {
			t.Errorf("status does not show the warnings:\n%s", out)
		}
		// By its name, the latest job of that name; times in UTC, to the second the table keeps.
		if out, _, code := runCLI(t, ctx, p.env, "status", "e2e-warn"); code != 0 || !strings.Contains(out, id) ||
			!strings.Contains(out, " UTC (+") || strings.Contains(out, ".000") {
			t.Errorf("status e2e-warn: exit %d\n%s", code, out)
		}

		strict := writeJob(t, dir, "strict.yaml", "name: e2e-strict\nstrict: true\n"+body)
		stdout, stderr, code = runCLI(t, ctx, p.env, "submit", strict, "--wait", "--timeout", "2m")
		if code != 1 || !strings.Contains(stderr, "strict: the reply file has warnings: "+want) {
			t.Fatalf("submit --wait of a strict job with warnings: exit %d\n%s", code, stderr)
		}
		if got := loaded(t, ctx, p.store, strings.TrimSpace(stdout)); len(got) != 0 {
			t.Errorf("a strict run that failed is visible: %d observations", len(got))
		}
	})

	if _, stderr, code := runCLI(t, ctx, p.env, "replay", "--job", "no-such-job"); code == 0 || !strings.Contains(stderr, "no stored") {
		t.Errorf("replay of an unknown job: exit %d, %s", code, stderr)
	}

	for _, tc := range []struct {
		name string
		spec events.Spec
		want string
	}{
		{"vendor 4xx fails the job with the vendor's description",
			events.Spec{Name: "e2e-refused", Program: "getdata", Securities: []string{"IBM US Equity"}, Fields: []string{"PX LAST"}},
			`mnemonic "PX LAST" is not a field mnemonic`},
		{"a request the client will not send fails the job",
			events.Spec{Name: "e2e-invalid", Program: "gethistory", Securities: []string{"IBM US Equity"},
				Fields: []string{"PX_LAST"}, Start: "2025-02-01", End: "2025-01-01"},
			"end 2025-01-01 before start 2025-02-01"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A submitter that skipped the CLI's validation.
			now := time.Now().UTC()
			j := events.Job{ID: tc.spec.Name + "-" + fmt.Sprint(now.UnixNano()), Version: uint64(now.UnixNano()),
				Deadline: now.Add(time.Minute), Spec: tc.spec}
			j = j.Advance(events.Submitted, now)
			if err := stage.NewPublisher(js).PublishJob(ctx, &j); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(time.Minute)
			for {
				out, _, _ := runCLI(t, ctx, p.env, "status", j.ID)
				if strings.Contains(out, "failed") {
					if !strings.Contains(out, tc.want) {
						t.Errorf("status does not show %q:\n%s", tc.want, out)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("job not failed within a minute; status:\n%s", out)
				}
				time.Sleep(300 * time.Millisecond)
			}
		})
	}
}

// expected is what the simulator generated for spec, in (security, field, date) order.
func expected(t *testing.T, spec events.Spec, runDate obs.Date) []obs.Observation {
	t.Helper()
	return expectedSeed(t, spec, runDate, simSeed)
}

// expectedSeed is expected for the simulator's data of seed (simdata.RevisedSeed).
func expectedSeed(t *testing.T, spec events.Spec, runDate obs.Date, seed uint64) []obs.Observation {
	t.Helper()
	var out []obs.Observation
	err := simdata.Observations(spec, runDate, seed, func(o *obs.Observation) error {
		out = append(out, *o)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(out, cmpKey)
	return out
}

func cmpKey(a, b obs.Observation) int {
	if c := strings.Compare(a.Security, b.Security); c != 0 {
		return c
	}
	if c := strings.Compare(a.Field, b.Field); c != 0 {
		return c
	}
	return int(a.Date - b.Date)
}

// loaded is what readers see of one job's observations: observations_current's rows (no
// FINAL) that the job's latest committed run loaded.
func loaded(t *testing.T, ctx context.Context, st *chstore.Store, jobID string) []obs.Observation {
	t.Helper()
	var out []obs.Observation
	var top uint64
	err := st.Query(ctx, chstore.Filter{}, func(r *chstore.Row) error {
		if r.JobID != jobID || r.Version < top {
			return nil
		}
		if r.Version > top {
			// A replayed snapshot is a snapshot of its own, beside the first: the latest run's.
			top, out = r.Version, nil
		}
		out = append(out, r.Observation)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(out, cmpKey)
	return out
}

// parseQueryJSONL reads `marketpipe query --format jsonl`'s observations of the job's latest
// run there (its highest version: a replayed snapshot is a snapshot of its own, beside the
// first), in key order.
func parseQueryJSONL(t *testing.T, out, jobID, program string) []obs.Observation {
	t.Helper()
	var got []obs.Observation
	var top uint64
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var r struct {
			Security, Field, Date, Flag string
			Value                       json.RawMessage
			JobID                       string `json:"job_id"`
			Program                     string
			Version                     uint64
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("query output %q: %v", line, err)
		}
		if r.JobID != jobID || r.Program != program || r.Version < top {
			continue
		}
		if r.Version > top {
			top, got = r.Version, nil
		}
		d, err := obs.ParseDate(r.Date)
		if err != nil {
			t.Fatal(err)
		}
		o := obs.Observation{Security: r.Security, Field: r.Field, Date: d, Flag: r.Flag}
		switch v := string(r.Value); {
		case v == "null":
		case strings.HasPrefix(v, `"`):
			o.Kind = obs.String
			json.Unmarshal(r.Value, &o.Str)
		case strings.HasPrefix(v, `[`):
			o.Kind, o.Str = obs.Bulk, v
		default:
			o.Kind = obs.Number
			json.Unmarshal(r.Value, &o.Num)
		}
		got = append(got, o)
	}
	slices.SortFunc(got, cmpKey)
	return got
}

func onlySecurity(all []obs.Observation, sec string) []obs.Observation {
	var out []obs.Observation
	for _, o := range all {
		if o.Security == sec {
			out = append(out, o)
		}
	}
	return out
}

func compare(t *testing.T, got, want []obs.Observation) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("loaded %d observations, the simulator generated %d", len(got), len(want))
	}
	diffs := 0
	for i := range min(len(got), len(want)) {
		if !got[i].Equal(&want[i]) {
			if diffs < 10 {
				t.Errorf("row %d: loaded %+v, generated %+v", i, got[i], want[i])
			}
			diffs++
		}
	}
	if diffs > 0 {
		t.Errorf("%d rows differ", diffs)
	}
	t.Logf("%d observations compared row for row", len(want))
}
