package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/chstore"
	"github.com/marketpipe/marketpipe/pkg/chtest"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/jobspec"
	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/pkg/natsx"
	"github.com/marketpipe/marketpipe/pkg/obs"
	"github.com/marketpipe/marketpipe/services/vendorsim"
)

// TestScheduleUnderFaults applies a schedule firing every minute with `marketpipe schedule
// apply` to two replicas of every stage, restarts NATS and kills a requester replica between
// firings, and deletes the schedule after its third firing: there must be exactly one job per
// firing, each loaded, and exactly one vendor request per job.
func TestScheduleUnderFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for more than three minutes of firings; `make test` runs it")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()

	natsURL, startNATS := restartableNATS(t, ctx, "schedule-test")
	natsProc := startNATS()
	ch := chtest.Start(t)
	db := chtest.NewDatabase(t, ch)
	sim := vendorsim.NewServer(vendorsim.Options{Account: vendorsim.DefaultAccount, ReadyAfter: time.Second,
		Seed: simSeed, RunDate: obs.MakeDate(2026, 11, 20).Time()})
	simHTTP := httptest.NewServer(sim)
	t.Cleanup(simHTTP.Close)
	env := map[string]string{
		"NATS_URL": natsURL, "CLICKHOUSE_ADDR": ch.Addr(), "CLICKHOUSE_DATABASE": db,
		"VENDOR_URL": simHTTP.URL + "/eap", "POLL_INTERVAL": "500ms", "HTTP_ADDR": "127.0.0.1:0", "ACK_WAIT": "4s",
	}
	procs := map[string]*proc{}
	for _, bin := range []string{"requester", "poller", "collector", "transformer", "loader"} {
		for i := 1; i <= 2; i++ {
			name := fmt.Sprintf("%s-%d", bin, i)
			procs[name] = startProc(t, name, bin, env)
		}
	}
	dir := t.TempDir()
	path := writeJob(t, dir, "every-minute.yaml", "name: every-minute\nprogram: getdata\nsecurities:\n"+
		yamlList([]string{"IBM US Equity", "AAPL US Equity", "VOD LN Equity"})+"fields: [PX_LAST, PX_VOLUME]\n"+
		"schedule: \"* * * * *\"\ndeadline: 5m\n")
	if out, stderr, code := runCLI(t, ctx, env, "schedule", "apply", path); code != 0 || !strings.Contains(out, "every-minute: created") {
		t.Fatalf("schedule apply: exit %d: %s%s", code, out, stderr)
	}
	if out, _, code := runCLI(t, ctx, env, "schedule", "apply", path); code != 0 || !strings.Contains(out, "every-minute: unchanged") {
		t.Fatalf("schedule apply again: exit %d: %s", code, out)
	}
	if _, stderr, code := runCLI(t, ctx, env, "submit", path); code != 2 || !strings.Contains(stderr, "schedule apply") {
		t.Errorf("submit of a scheduled file: exit %d: %s", code, stderr)
	}

	_, js := natstest.ConnectURL(t, natsURL)
	jobsSoFar := func() map[string]events.Job {
		out := map[string]events.Job{}
		cons, err := js.OrderedConsumer(ctx, events.JobsStream, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{events.JobFilter(events.Submitted)}})
		if err != nil {
			return out
		}
		for {
			m, err := cons.Next(jetstream.FetchMaxWait(time.Second))
			if err != nil {
				return out
			}
			if j, err := events.Decode(m.Data()); err == nil {
				out[j.ID] = j
			}
		}
	}
	waitFirings := func(n int) {
		t.Helper()
		waitUntil(t, ctx, fmt.Sprintf("%d firings", n), func() bool { return len(jobsSoFar()) >= n })
	}
	waitFirings(1)
	t.Logf("first firing at %s", time.Now().Format(time.TimeOnly))
	time.Sleep(15 * time.Second)
	natsProc.stop(t)
	natsProc = startNATS()
	t.Log("nats-server restarted")
	procs["requester-1"].kill()
	t.Log("requester-1 killed")
	waitFirings(2)
	procs["requester-1"] = startProc(t, "requester-1", "requester", env)
	waitFirings(3)
	if out, stderr, code := runCLI(t, ctx, env, "schedule", "delete", "every-minute"); code != 0 {
		t.Fatalf("schedule delete: exit %d: %s%s", code, out, stderr)
	}

	// Every job loads; exactly three, at three consecutive minutes, one vendor request each.
	var jobs map[string]events.Job
	waitUntil(t, ctx, "the scheduled jobs loaded", func() bool {
		jobs = jobsSoFar()
		for id := range jobs {
			if j, ok, err := natsx.LastJobEvent(ctx, js, id); err != nil || !ok || j.State != events.Loaded {
				return false
			}
		}
		return true
	})
	time.Sleep(3 * time.Second) // a firing after the delete would show now
	jobs = jobsSoFar()
	ids := slices.Sorted(maps.Keys(jobs))
	if len(ids) != 3 {
		t.Fatalf("%d jobs, want 3 (one per firing): %v", len(ids), ids)
	}
	var times []time.Time
	for _, id := range ids {
		j := jobs[id]
		times = append(times, j.ScheduledFor)
		if j.Schedule != "every-minute" || id != jobspec.ScheduledJobID("every-minute", j.ScheduledFor) || j.ScheduledFor.Second() != 0 {
			t.Errorf("job %s: schedule %q for %s", id, j.Schedule, j.ScheduledFor)
		}
		if n := sim.Requests()[jobspec.VendorRequestID(id, 0)]; n != 1 {
			t.Errorf("job %s: %d vendor requests, want 1", id, n)
		}
	}
	if len(sim.Requests()) != 3 {
		t.Errorf("vendor requests: %v, want 3", sim.Requests())
	}
	if times[1].Sub(times[0]) != time.Minute || times[2].Sub(times[1]) != time.Minute {
		t.Errorf("firing times %v are not three consecutive minutes", times)
	}
	out, _, code := runCLI(t, ctx, env, "status", ids[0], "--json")
	var st struct {
		Schedule     string `json:"schedule"`
		ScheduledFor string `json:"scheduled_for"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.Schedule != "every-minute" || st.ScheduledFor != times[0].Format(time.RFC3339) {
		t.Errorf("status --json: exit %d: %s", code, out)
	}
	if out, _, _ := runCLI(t, ctx, env, "schedule", "list"); !strings.Contains(out, "no schedules") {
		t.Errorf("schedule list after delete: %s", out)
	}
}

// TestCancelAndDuplicates cancels a job in each state it can wait in (stages started one by
// one), then checks that none of them loads, that polling stopped, and that a finished job
// cannot be cancelled; and that an identical file is refused while its job is in flight or
// loaded, unless --again.
func TestCancelAndDuplicates(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	ns := natstest.Start(t)
	ch := chtest.Start(t)
	db := chtest.NewDatabase(t, ch)
	sim := vendorsim.NewServer(vendorsim.Options{Account: vendorsim.DefaultAccount, ReadyAfter: 500 * time.Millisecond,
		Seed: simSeed, RunDate: obs.MakeDate(2026, 11, 20).Time()})
	simHTTP := httptest.NewServer(sim)
	t.Cleanup(simHTTP.Close)
	env := map[string]string{
		"NATS_URL": ns.ClientURL(), "CLICKHOUSE_ADDR": ch.Addr(), "CLICKHOUSE_DATABASE": db,
		"VENDOR_URL": simHTTP.URL + "/eap", "POLL_INTERVAL": "200ms", "HTTP_ADDR": "127.0.0.1:0",
	}
	_, js := natstest.ConnectURL(t, ns.ClientURL())
	path := writeJob(t, t.TempDir(), "c.yaml", "name: cancel-me\nprogram: getdata\nsecurities:\n"+
		yamlList([]string{"CXL1 US Equity", "CXL2 US Equity"})+"fields: [PX_LAST]\n")
	submit := func(args ...string) (string, string, int) {
		out, stderr, code := runCLI(t, ctx, env, append([]string{"submit", path}, args...)...)
		return strings.TrimSpace(out), stderr, code
	}
	state := func(id string) string {
		j, ok, err := natsx.LastJobEvent(ctx, js, id)
		if err != nil || !ok {
			return ""
		}
		return j.State
	}
	var cancelled []string
	for _, step := range []struct{ start, wait string }{
		{"", events.Submitted}, {"requester", events.Requested}, {"poller", events.Ready},
		{"collector", events.Collected}, {"transformer", events.Transformed},
	} {
		if step.start != "" {
			startProc(t, step.start, step.start, env)
		}
		id, stderr, code := submit()
		if code != 0 {
			t.Fatalf("submit: exit %d: %s", code, stderr)
		}
		waitUntil(t, ctx, id+" "+step.wait, func() bool { return state(id) == step.wait })
		// In flight: an identical file is refused with the job's id and state.
		if _, stderr, code := submit(); code != 3 || !strings.Contains(stderr, id) || !strings.Contains(stderr, step.wait) {
			t.Errorf("duplicate of a %s job: exit %d: %s", step.wait, code, stderr)
		}
		if out, stderr, code := runCLI(t, ctx, env, "cancel", id); code != 0 || !strings.Contains(out, "cancelled job "+id) {
			t.Fatalf("cancel %s (%s): exit %d: %s%s", id, step.wait, code, out, stderr)
		}
		if got := state(id); got != events.Cancelled {
			t.Errorf("%s after cancel: %s", id, got)
		}
		cancelled = append(cancelled, id)
	}
	polls := sim.Polls(jobspec.VendorRequestID(cancelled[1], 0))
	startProc(t, "loader", "loader", env)

	// A cancelled job can be submitted again; this one loads, and then cannot be cancelled.
	id, stderr, code := submit("--wait", "--timeout", "2m")
	if code != 0 {
		t.Fatalf("submit after the cancels: exit %d: %s", code, stderr)
	}
	if _, stderr, code := submit(); code != 3 || !strings.Contains(stderr, id) || !strings.Contains(stderr, "loaded") {
		t.Errorf("duplicate of a loaded job: exit %d: %s", code, stderr)
	}
	if out, _, code := submit("--again"); code != 0 || out == id || out == "" {
		t.Errorf("submit --again: exit %d: %q", code, out)
	}
	if out, stderr, code := runCLI(t, ctx, env, "cancel", id); code == 0 || !strings.Contains(stderr, "already loaded") {
		t.Errorf("cancel of a loaded job: exit %d: %s%s", code, out, stderr)
	}
	if _, stderr, code := runCLI(t, ctx, env, "cancel", "no-such-job"); code == 0 || !strings.Contains(stderr, "no job no-such-job") {
		t.Errorf("cancel of an unknown job: exit %d: %s", code, stderr)
	}

	// The cancelled jobs: cancelled in status, never committed, and the requested one's
	// request no longer polled.
	store, err := chstore.Open(ctx, chstore.Config{Addr: ch.Addr(), Database: db, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for _, cid := range cancelled {
		waitUntil(t, ctx, cid+" cancelled in the jobs table", func() bool {
			j, ok, err := store.Job(ctx, cid)
			return err == nil && ok && j.State == events.Cancelled && j.CancelledBy != ""
		})
		out, _, _ := runCLI(t, ctx, env, "status", cid)
		if !strings.Contains(out, "cancelled") || !strings.Contains(out, "by ") {
			t.Errorf("status %s: %s", cid, out)
		}
	}
	err = store.Query(ctx, chstore.Filter{}, func(r *chstore.Row) error {
		if slices.Contains(cancelled, r.JobID) {
			return fmt.Errorf("a row of cancelled job %s is visible", r.JobID)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	time.Sleep(time.Second)
	if now := sim.Polls(jobspec.VendorRequestID(cancelled[1], 0)); now != polls {
		t.Errorf("the cancelled requested job was polled %d more times", now-polls)
	}
}
