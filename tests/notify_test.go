package tests

import (
	"context"
	"maps"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/auth"
	"github.com/marketpipe/marketpipe/pkg/chstore"
	"github.com/marketpipe/marketpipe/pkg/chtest"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/pkg/obs"
	"github.com/marketpipe/marketpipe/pkg/tlstest"
	"github.com/marketpipe/marketpipe/services"
	"github.com/marketpipe/marketpipe/services/vendorsim"
)

// startNotifyPipeline runs one process of each stage but the poller, which has two replicas
// (each listens to the notification stream with sse), with their own identities and mutual TLS,
// against sim; extra adds to the environment.
func startNotifyPipeline(t *testing.T, ctx context.Context, sim *vendorsim.Server, runDate obs.Date, extra map[string]string) *pipeline {
	t.Helper()
	natsDir := t.TempDir()
	if _, err := auth.Init(natsDir, services.Identities()); err != nil {
		t.Fatal(err)
	}
	certs := tlstest.New(t, natsDir)
	ns := natstest.StartConf(t, natsDir, "include "+auth.ServerInclude+"\n"+natstest.TLSBlock(certs))
	ch := chtest.Start(t)
	db := chtest.NewDatabase(t, ch)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	env := map[string]string{
		"NATS_URL": ns.ClientURL(), "CLICKHOUSE_ADDR": ch.Addr(), "CLICKHOUSE_DATABASE": db,
		credsDirKey: natsDir, "NATS_CA": certs.CA, "NATS_CERT": certs.ClientCert, "NATS_KEY": certs.ClientKey,
		"VENDOR_URL": srv.URL + "/eap", "HTTP_ADDR": "127.0.0.1:0", "LOG_LEVEL": "debug",
	}
	maps.Copy(env, extra)
	for _, p := range []struct{ name, bin string }{
		{"requester", "requester"}, {"poller-1", "poller"}, {"poller-2", "poller"}, {"collector", "collector"},
		{"transformer", "transformer"}, {"loader", "loader"},
	} {
		startProc(t, p.name, p.bin, env)
	}
	store, err := chstore.Open(ctx, chstore.Config{Addr: ch.Addr(), Database: db, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return &pipeline{env: env, store: store, runDate: runDate, simURL: srv.URL}
}

// notifyJobs are the jobs both runs load.
var notifyJobs = []struct {
	name string
	spec events.Spec
}{
	{"ntf-history", events.Spec{Program: "gethistory", Securities: securities(6), Fields: []string{"PX_LAST", "PX_VOLUME"},
		Start: "2025-01-01", End: "2025-03-31"}},
	{"ntf-data", events.Spec{Program: "getdata", Securities: securities(4), Fields: []string{"PX_LAST", "NAME", "CRNCY"}}},
	{"ntf-dropped", events.Spec{Program: "gethistory", Securities: securities(3), Fields: []string{"PX_LAST"},
		Start: "2025-06-01", End: "2025-06-30"}},
}

func notifyJobFile(t *testing.T, dir string, name string, spec events.Spec) string {
	t.Helper()
	body := "name: " + name + "\nprogram: " + spec.Program + "\nsecurities:\n" + yamlList(spec.Securities) +
		"fields: [" + strings.Join(spec.Fields, ", ") + "]\n"
	if spec.Start != "" {
		body += "start: " + spec.Start + "\nend: " + spec.End + "\n"
	}
	return writeJob(t, dir, name+".yaml", body)
}

// TestNotificationsEndToEnd: with VENDOR_NOTIFICATIONS=sse and a poll interval of ten minutes,
// jobs become ready and load within seconds of their outputs' publication, which only the
// notification stream can do, even though the simulator sends every event twice and adds stale
// ones; an output published while the stream is down (paused: the connections dropped, new ones
// refused) is loaded once it comes back, from the events replayed after Last-Event-ID. With
// polling only, the same jobs load the same data.
func TestNotificationsEndToEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	runDate := obs.MakeDate(2026, 11, 20)
	results := map[string]map[string][]obs.Observation{} // mode → job name → loaded

	for _, mode := range []string{"sse", "poll"} {
		t.Run(mode, func(t *testing.T) {
			sim := vendorsim.NewServer(vendorsim.Options{Account: vendorsim.DefaultAccount, ReadyAfter: time.Second,
				Seed: simSeed, RunDate: runDate.Time(), Heartbeat: time.Second,
				Faults: vendorsim.Faults{DuplicateEvents: true, StaleEvents: true}})
			t.Cleanup(func() { sim.Close() })
			extra := map[string]string{"VENDOR_NOTIFICATIONS": mode, "POLL_INTERVAL": "10m"}
			if mode == "poll" {
				extra["POLL_INTERVAL"] = "300ms"
			}
			p := startNotifyPipeline(t, ctx, sim, runDate, extra)
			dir := t.TempDir()
			if mode == "sse" {
				waitUntil(t, ctx, "both pollers listening", func() bool { return sim.NotificationStreams() == 2 })
			}
			got := map[string][]obs.Observation{}
			results[mode] = got
			ids := map[string]string{}
			// The first two with submit --wait, bounded well under the poll interval.
			for _, j := range notifyJobs[:2] {
				start := time.Now()
				stdout, stderr, code := runCLI(t, ctx, p.env, "submit", notifyJobFile(t, dir, j.name, j.spec), "--wait", "--timeout", "90s")
				if code != 0 {
					t.Fatalf("submit %s: exit %d\nstdout: %s\nstderr: %s", j.name, code, stdout, stderr)
				}
				ids[j.name] = strings.TrimSpace(strings.SplitN(stdout, "\n", 2)[0])
				t.Logf("%s: %s loaded %.1fs after its submission", mode, j.name, time.Since(start).Seconds())
			}

			// The third is published while the notification stream is down.
			j := notifyJobs[2]
			before := sim.Requests()
			if mode == "sse" {
				sim.PauseNotifications(true)
			}
			stdout, stderr, code := runCLI(t, ctx, p.env, "submit", notifyJobFile(t, dir, j.name, j.spec))
			if code != 0 {
				t.Fatalf("submit %s: exit %d\nstdout: %s\nstderr: %s", j.name, code, stdout, stderr)
			}
			ids[j.name] = strings.TrimSpace(stdout)
			var vendorID string
			waitUntil(t, ctx, "the vendor request of "+j.name, func() bool {
				for id := range sim.Requests() {
					if _, old := before[id]; !old {
						vendorID = id
						return true
					}
				}
				return false
			})
			if mode == "sse" {
				waitUntil(t, ctx, "its output published", func() bool { _, ok := sim.Published(vendorID); return ok })
				time.Sleep(2 * time.Second)
				if job, ok, err := p.store.Job(ctx, ids[j.name]); err == nil && ok && job.State == events.Loaded {
					t.Fatalf("%s loaded while the notification stream was down and the poll interval is 10m", j.name)
				}
				sim.PauseNotifications(false)
			}
			resumed := time.Now()
			loadedCtx, cancelLoaded := context.WithTimeout(ctx, 60*time.Second)
			defer cancelLoaded()
			waitUntil(t, loadedCtx, j.name+" loaded", func() bool {
				job, ok, err := p.store.Job(ctx, ids[j.name])
				return err == nil && ok && job.State == events.Loaded
			})
			t.Logf("%s: %s loaded %.1fs after the stream came back (sse) or its output was published (poll)", mode, j.name, time.Since(resumed).Seconds())

			for _, j := range notifyJobs {
				spec := j.spec
				spec.Name = j.name
				want := expected(t, spec, runDate)
				got[j.name] = loaded(t, ctx, p.store, ids[j.name])
				compare(t, got[j.name], want)
			}
			if mode == "poll" && sim.NotificationStreams() != 0 {
				t.Errorf("%d notification streams open with VENDOR_NOTIFICATIONS=poll", sim.NotificationStreams())
			}
		})
	}
	if t.Failed() {
		return
	}
	for _, j := range notifyJobs {
		if !slices.EqualFunc(results["sse"][j.name], results["poll"][j.name], func(a, b obs.Observation) bool { return a.Equal(&b) }) {
			t.Errorf("%s: the sse and poll runs loaded different data", j.name)
		}
	}
}
