package tests

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/chstore"
	"github.com/marketpipe/marketpipe/pkg/chtest"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/pkg/obs"
	"github.com/marketpipe/marketpipe/pkg/stage"
	"github.com/marketpipe/marketpipe/services/vendorsim"
)

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestFaults is the delivery-guarantee test: while jobs run, a random stage replica is killed
// with SIGKILL every second and started again, the NATS server restarts once, and ClickHouse is
// down for ten seconds; the vendor simulator injects 429s, 503s, resets, truncated and corrupt
// downloads. At the end every job must be loaded, SELECT ... FINAL must equal the simulator's
// data exactly, and the dead-letter stream must hold only the poison injected on purpose.
func TestFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("the fault test runs in `make test`, not with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()

	// NATS as its own process with file storage, so it can be restarted.
	natsURL, startNATS := restartableNATS(t, ctx, "fault-test")
	natsProc := startNATS()

	ch := chtest.StartPrivate(t)
	db := chtest.NewDatabase(t, ch)
	runDate := obs.MakeDate(2026, 11, 20)
	sim := httptest.NewServer(vendorsim.NewServer(vendorsim.Options{
		Account: vendorsim.DefaultAccount, ReadyAfter: time.Second, Seed: simSeed, RunDate: runDate.Time(),
		Faults: vendorsim.Faults{Rate429: 0.05, Rate503: 0.05, RetryAfter: time.Second, ResetRate: 0.03,
			TruncateRate: 0.15, CorruptRate: 0.15},
	}))
	t.Cleanup(sim.Close)
	env := map[string]string{
		"NATS_URL": natsURL, "CLICKHOUSE_ADDR": ch.Addr(), "CLICKHOUSE_DATABASE": db,
		"VENDOR_URL": sim.URL + "/eap", "POLL_INTERVAL": "500ms", "HTTP_ADDR": "127.0.0.1:0",
		"ACK_WAIT": "4s",
		// Each job's file (about 1 MB) is cut at marks into about four chunk tasks, so that
		// kills and the NATS restart also meet chunks read from their offset.
		"COLLECTOR_MARK_BYTES": "65536", "TRANSFORMER_CHUNK_BYTES": "262144",
	}

	// Two replicas of every stage, each a separate process.
	// Each replica keeps its own HTTP port across restarts, picked now: a port the kernel
	// handed out at each restart could be one of ClickHouse's while it is down, which its
	// restart then cannot bind.
	type replica struct {
		name, bin string
		env       map[string]string
		p         *proc
	}
	var replicas []*replica
	for _, bin := range []string{"requester", "poller", "collector", "transformer", "loader"} {
		for i := 1; i <= 2; i++ {
			r := &replica{name: fmt.Sprintf("%s-%d", bin, i), bin: bin, env: maps.Clone(env)}
			r.env["HTTP_ADDR"] = "127.0.0.1:" + strconv.Itoa(freePort(t))
			r.p = startProc(t, r.name, r.bin, r.env)
			replicas = append(replicas, r)
		}
	}

	// Poison, injected on purpose: an undecodable job event and an undecodable row batch.
	_, js := natstest.ConnectURL(t, natsURL)
	pub := stage.NewPublisher(js)
	for _, subj := range []string{events.JobSubject("poison", events.Submitted), events.RowsSubject("poison")} {
		if err := pub.Publish(ctx, subj, "poison."+subj, []byte("\x00not a message"), nil); err != nil {
			t.Fatal(err)
		}
	}

	// Every second a random replica is killed with SIGKILL (three times in four) or stopped with
	// SIGTERM (a rolling restart), and started again, until the end.
	var mu sync.Mutex
	kills, restarts := 0, 0
	stopChaos := make(chan struct{})
	chaosDone := make(chan struct{})
	go func() {
		defer close(chaosDone)
		rng := rand.New(rand.NewPCG(1, 2))
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stopChaos:
				return
			case <-tick.C:
			}
			r := replicas[rng.IntN(len(replicas))]
			graceful := rng.IntN(4) == 0
			if graceful {
				r.p.stop(t) // a rolling restart: SIGTERM, and the exit must be clean
			} else {
				r.p.kill()
			}
			r.p = startProc(t, r.name, r.bin, r.env)
			mu.Lock()
			if graceful {
				restarts++
			} else {
				kills++
			}
			mu.Unlock()
		}
	}()
	defer func() {
		select {
		case <-stopChaos:
		default:
			close(stopChaos)
		}
		<-chaosDone
	}()

	// 20 jobs over disjoint securities (20 securities × 5 fields × 261 weekdays each), in three
	// waves so that every fault meets work in flight.
	hj := &historyJobs{t: t, ctx: ctx, env: env, dir: t.TempDir(), name: "fault", prefix: "F", secs: 20}
	submit := hj.submit
	sleepUntil := func(d time.Duration) {
		select {
		case <-time.After(time.Until(start.Add(d))):
		case <-ctx.Done():
		}
	}
	submit(7)
	sleepUntil(8 * time.Second)
	natsProc.stop(t)
	natsProc = startNATS()
	t.Logf("nats-server restarted at %s", time.Since(start).Round(time.Second))
	submit(7)
	sleepUntil(16 * time.Second)
	if err := ch.Stop(); err != nil {
		t.Fatalf("stop clickhouse: %v", err)
	}
	t.Logf("clickhouse stopped at %s", time.Since(start).Round(time.Second))
	submit(6) // their row batches wait for ClickHouse
	time.Sleep(10 * time.Second)
	if err := ch.Restart(ctx); err != nil {
		t.Fatalf("restart clickhouse: %v", err)
	}
	t.Logf("clickhouse back at %s", time.Since(start).Round(time.Second))

	loadedCount := func() int {
		s, err := js.Stream(ctx, events.JobsStream)
		if err != nil {
			return 0
		}
		info, err := s.Info(ctx, jetstream.WithSubjectFilter(events.JobFilter(events.Loaded)))
		if err != nil {
			return 0
		}
		return len(info.State.Subjects)
	}
	for loadedCount() < len(hj.jobs) {
		if ctx.Err() != nil {
			t.Fatalf("only %d of %d jobs loaded within the time limit", loadedCount(), len(hj.jobs))
		}
		time.Sleep(500 * time.Millisecond)
	}
	close(stopChaos)
	<-chaosDone
	t.Logf("all %d jobs loaded at %s", len(hj.jobs), time.Since(start).Round(time.Second))

	store, err := chstore.Open(ctx, chstore.Config{Addr: ch.Addr(), Database: db, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	total := 0
	for _, j := range hj.jobs {
		want := expected(t, j.spec, runDate)
		got := loaded(t, ctx, store, j.id)
		compare(t, got, want)
		total += len(want)
	}
	if total < 500_000 {
		t.Errorf("only %d observations: the test must move at least 500,000", total)
	}
	// Every file went through chunk tasks, and the files collected in one delivery were cut at
	// marks (one stored by an earlier, killed delivery has none and is cut by scanning).
	atMarks := 0
	cs, err := js.Stream(ctx, events.ChunksStream)
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range hj.jobs {
		si, err := cs.Info(ctx, jetstream.WithSubjectFilter(events.ChunkSubject(j.id)))
		if err != nil {
			t.Fatal(err)
		}
		if n := si.State.Subjects[events.ChunkSubject(j.id)]; n < 2 {
			t.Errorf("%s: %d chunk tasks", j.id, n)
			continue
		}
		m, err := cs.GetLastMsgForSubject(ctx, events.ChunkSubject(j.id))
		if err != nil {
			t.Fatal(err)
		}
		if task, err := events.DecodeChunkTask(m.Data); err == nil && task.AtMarks() {
			atMarks++
		}
	}
	if atMarks < len(hj.jobs)/2 {
		t.Errorf("only %d of %d jobs cut at marks", atMarks, len(hj.jobs))
	}

	// Only the injected poison is dead-lettered, once by each stage that consumes it: the job
	// event reaches the requester and the jobs recorder, the row batch the loader.
	wantDL := map[string]bool{
		"requester " + events.JobSubject("poison", events.Submitted): true,
		"jobs " + events.JobSubject("poison", events.Submitted):      true,
		"loader " + events.RowsSubject("poison"):                     true,
	}
	dls := listDLQ(t, ctx, env)
	for _, d := range dls {
		if !wantDL[d.Stage+" "+d.Subject] {
			t.Errorf("unexpected dead letter: %+v", d)
		}
		delete(wantDL, d.Stage+" "+d.Subject)
	}
	for k := range wantDL {
		t.Errorf("injected poison not dead-lettered: %s", k)
	}

	all, _ := store.CountObservations(ctx, false)
	final, _ := store.CountObservations(ctx, true)
	mu.Lock()
	defer mu.Unlock()
	t.Logf("fault test: %d jobs (%d cut at marks), %d observations, %d kills, %d graceful restarts, redeliveries %s, %d duplicate rows stored, which readers never see (%d rows, %d once each run's duplicates collapse), %s",
		len(hj.jobs), atMarks, total, kills, restarts, redeliveries(t, ctx, js), all-final, all, final, time.Since(start).Round(time.Second))
}

// redeliveries reports, per stage that does not wait on purpose, deliveries beyond the first
// of each message.
func redeliveries(t *testing.T, ctx context.Context, js jetstream.JetStream) string {
	var parts []string
	for _, c := range []struct{ stream, consumer, filter string }{
		{events.JobsStream, "requester", events.JobFilter(events.Submitted)},
		{events.JobsStream, "collector", events.JobFilter(events.Ready)},
		{events.JobsStream, "transformer", events.JobFilter(events.Collected)},
		{events.ChunksStream, "transformer-chunk", events.ChunkSubjects},
		{events.RowsStream, "loader", events.RowsSubjects},
		{events.JobsStream, "jobs", events.JobsSubjects},
	} {
		cons, err := js.Consumer(ctx, c.stream, c.consumer)
		if err != nil {
			continue
		}
		ci, err := cons.Info(ctx)
		if err != nil {
			continue
		}
		s, _ := js.Stream(ctx, c.stream)
		si, err := s.Info(ctx, jetstream.WithSubjectFilter(c.filter))
		if err != nil {
			continue
		}
		var msgs uint64
		for _, n := range si.State.Subjects {
			msgs += n
		}
		parts = append(parts, fmt.Sprintf("%s=%d", c.consumer, int64(ci.Delivered.Consumer)-int64(msgs)))
	}
	return strings.Join(parts, " ")
}
