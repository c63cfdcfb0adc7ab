package tests

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/chserver"
	"github.com/marketpipe/marketpipe/pkg/chstore"
	"github.com/marketpipe/marketpipe/pkg/chtest"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/pkg/natsx"
	"github.com/marketpipe/marketpipe/pkg/obs"
	"github.com/marketpipe/marketpipe/services/collector"
	"github.com/marketpipe/marketpipe/services/loader"
	"github.com/marketpipe/marketpipe/services/poller"
	"github.com/marketpipe/marketpipe/services/requester"
	"github.com/marketpipe/marketpipe/services/transformer"
	"github.com/marketpipe/marketpipe/services/vendorsim"
)

// natsNode is one nats-server process of a test cluster, restartable on the same ports and
// store.
type natsNode struct {
	name, conf string
	clientPort int
	p          *proc
}

// startNATSCluster runs n nats-server processes (the module's nats-server, built like the
// stages), routed to each other on loopback, each with JetStream in a directory of its own and
// the pipeline's max_payload.
func startNATSCluster(t *testing.T, ctx context.Context, n int) []*natsNode {
	t.Helper()
	routes := make([]string, n)
	clusterPorts := make([]int, n)
	for i := range n {
		clusterPorts[i] = freePort(t)
		routes[i] = fmt.Sprintf("nats-route://127.0.0.1:%d", clusterPorts[i])
	}
	nodes := make([]*natsNode, n)
	for i := range n {
		node := &natsNode{name: fmt.Sprintf("n%d", i+1), clientPort: freePort(t)}
		node.conf = filepath.Join(t.TempDir(), node.name+".conf")
		conf := fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:%d
max_payload: %d
jetstream { store_dir: %q }
cluster {
  name: marketpipe-test
  listen: 127.0.0.1:%d
  routes: [%s]
}
`, node.name, node.clientPort, events.MaxPayload, filepath.Join(t.TempDir(), "js"), clusterPorts[i], strings.Join(routes, ", "))
		if err := os.WriteFile(node.conf, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		nodes[i] = node
		node.start(t, ctx)
	}
	return nodes
}

func (n *natsNode) start(t *testing.T, ctx context.Context) {
	t.Helper()
	n.p = startProc(t, "nats-"+n.name, "nats-server", nil, "-c", n.conf)
	waitUntil(t, ctx, "nats-server "+n.name+" listening", func() bool {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(n.clientPort))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

func (n *natsNode) url() string { return "nats://127.0.0.1:" + strconv.Itoa(n.clientPort) }

// clusterPipeline is the pipeline on a 3-node NATS cluster with NATS_REPLICAS=3: three
// nats-server processes, ClickHouse, the simulator and the five stages as processes, and the
// history jobs submitted to it.
type clusterPipeline struct {
	t       *testing.T
	ctx     context.Context
	start   time.Time
	nodes   []*natsNode
	js      jetstream.JetStream
	env     map[string]string
	ch      *chserver.Server
	db      string
	runDate obs.Date
	jobs    *historyJobs
}

// startClusterPipeline starts it; its jobs are named name-NN.
func startClusterPipeline(t *testing.T, ctx context.Context, name, prefix string) *clusterPipeline {
	t.Helper()
	c := &clusterPipeline{t: t, ctx: ctx, start: time.Now(), runDate: obs.MakeDate(2026, 11, 20)}
	c.nodes = startNATSCluster(t, ctx, 3)
	urls := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		urls[i] = n.url()
	}
	natsURL := strings.Join(urls, ",")
	_, c.js = natstest.ConnectURL(t, natsURL)
	waitUntil(t, ctx, "a JetStream meta leader", func() bool {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := c.js.AccountInfo(actx)
		return err == nil
	})
	c.ch = chtest.Start(t)
	c.db = chtest.NewDatabase(t, c.ch)
	sim := httptest.NewServer(vendorsim.NewServer(vendorsim.Options{
		Account: vendorsim.DefaultAccount, ReadyAfter: time.Second, Seed: simSeed, RunDate: c.runDate.Time(),
	}))
	t.Cleanup(sim.Close)
	c.env = map[string]string{
		"NATS_URL": natsURL, "NATS_REPLICAS": "3", "CLICKHOUSE_ADDR": c.ch.Addr(), "CLICKHOUSE_DATABASE": c.db,
		"VENDOR_URL": sim.URL + "/eap", "POLL_INTERVAL": "300ms", "HTTP_ADDR": "127.0.0.1:0", "LOG_LEVEL": "debug",
		// Deliveries held by a consumer whose leader died come back quickly.
		"ACK_WAIT": "5s",
		// Each job's file is cut into a few chunk tasks, so MP_CHUNKS and mp_chunks work too.
		"COLLECTOR_MARK_BYTES": "65536", "TRANSFORMER_CHUNK_BYTES": "131072",
	}
	for _, b := range []string{"requester", "poller", "collector", "transformer", "loader"} {
		startProc(t, b, b, c.env)
	}
	c.jobs = &historyJobs{t: t, ctx: ctx, env: c.env, dir: t.TempDir(), name: name, prefix: prefix, secs: 10,
		args: []string{"--timeout", "60s"}}
	return c
}

// since is the time since the pipeline started, for the logs.
func (c *clusterPipeline) since() time.Duration {
	return time.Since(c.start).Round(100 * time.Millisecond)
}

// jobsInfo reads MP_JOBS's info. Every JetStream request of the tests has a deadline of its own:
// in a cluster, a request about a stream whose leader just died is not answered until a new
// one is elected, and would otherwise wait for the test's whole deadline.
func (c *clusterPipeline) jobsInfo(opts ...jetstream.StreamInfoOpt) (*jetstream.StreamInfo, error) {
	ctx, cancel := context.WithTimeout(c.ctx, 3*time.Second)
	defer cancel()
	s, err := c.js.Stream(ctx, events.JobsStream)
	if err != nil {
		return nil, err
	}
	return s.Info(ctx, opts...)
}

// count is the number of jobs with the event; -1 when MP_JOBS does not answer.
func (c *clusterPipeline) count(event string) int {
	info, err := c.jobsInfo(jetstream.WithSubjectFilter(events.JobFilter(event)))
	if err != nil {
		return -1
	}
	return len(info.State.Subjects)
}

// loadedExactly waits for every job to end, describing the unended ones when the test's time
// runs out, then requires each loaded, equal to the simulator's data row for row, and no dead
// letter. It returns the observations compared.
func (c *clusterPipeline) loadedExactly() int {
	t := c.t
	t.Helper()
	for c.count(events.Loaded)+c.count(events.Failed) < len(c.jobs.jobs) {
		select {
		case <-c.ctx.Done():
			describeUnended(t, c.js, c.env, c.jobs.jobs)
			t.Fatal("timed out waiting for every job to load or fail")
		case <-time.After(200 * time.Millisecond):
		}
	}
	t.Logf("all %d jobs ended at %s", len(c.jobs.jobs), c.since())
	if n := c.count(events.Failed); n != 0 {
		for _, j := range c.jobs.jobs {
			if ev, ok, err := natsx.LastJobEvent(c.ctx, c.js, j.id); err == nil && ok && ev.State == events.Failed {
				t.Errorf("job %s failed: %s", j.id, ev.Error)
			}
		}
		t.Fatalf("%d jobs failed", n)
	}
	store, err := chstore.Open(c.ctx, chstore.Config{Addr: c.ch.Addr(), Database: c.db, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	total := 0
	for _, j := range c.jobs.jobs {
		want := expected(t, j.spec, c.runDate)
		compare(t, loaded(t, c.ctx, store, j.id), want)
		total += len(want)
	}
	for _, d := range listDLQ(t, c.ctx, c.env) {
		t.Errorf("dead letter: %+v", d)
	}
	return total
}

// TestThreeNodeCluster runs the pipeline on a 3-node NATS cluster with NATS_REPLICAS=3: while
// jobs run, the node leading MP_JOBS is killed with SIGKILL, more jobs are submitted while it
// is down, and it is started again while two more run. Every job must load, observations_current
// must equal the simulator's data, nothing may be dead-lettered, and the restarted node must
// catch up.
func TestThreeNodeCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("the cluster test runs in `make test`, not with -short")
	}
	bin(t, "nats-server") // builds every binary before the clock starts
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := startClusterPipeline(t, ctx, "cluster", "C")
	c.jobs.submit(4)
	// Every stream, bucket and the object store is R3.
	for _, name := range []string{events.JobsStream, events.RowsStream, events.DLQStream, events.ChunksStream,
		natsx.ObjectStream(events.RawBucket), natsx.KVStream(events.LedgerBucket), natsx.KVStream(events.ChunksBucket)} {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		s, err := c.js.Stream(sctx, name)
		cancel()
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		if r := s.CachedInfo().Config.Replicas; r != 3 {
			t.Errorf("%s: %d replicas; want 3 (NATS_REPLICAS)", name, r)
		}
	}
	// In the middle of the jobs: some requested, none loaded yet.
	waitUntil(t, ctx, "a job requested", func() bool { return c.count(events.Requested) > 0 })
	loadedBefore := c.count(events.Loaded)
	if loadedBefore == len(c.jobs.jobs) {
		t.Fatalf("all %d jobs loaded before the kill: the test would kill nothing in flight", loadedBefore)
	}
	si, err := c.jobsInfo()
	if err != nil {
		t.Fatal(err)
	}
	if si.Cluster == nil || si.Cluster.Leader == "" {
		t.Fatalf("%s has no cluster leader: %+v", events.JobsStream, si.Cluster)
	}
	var victim *natsNode
	for _, n := range c.nodes {
		if n.name == si.Cluster.Leader {
			victim = n
		}
	}
	if victim == nil {
		t.Fatalf("%s's leader %q is none of the nodes", events.JobsStream, si.Cluster.Leader)
	}
	victim.p.kill()
	t.Logf("killed %s, leader of %s, at %s with %d of %d jobs loaded", victim.name, events.JobsStream,
		c.since(), loadedBefore, len(c.jobs.jobs))

	// The remaining two elect a new leader and the pipeline goes on: more jobs, loaded while
	// the node is down.
	c.jobs.submit(3)
	waitUntil(t, ctx, "a job loaded while "+victim.name+" is down", func() bool { return c.count(events.Loaded) > 0 })
	if si, err := c.jobsInfo(); err != nil || si.Cluster == nil || si.Cluster.Leader == victim.name || si.Cluster.Leader == "" {
		t.Errorf("%s's leader while %s is down: %+v, %v", events.JobsStream, victim.name, si.Cluster, err)
	}
	victim.start(t, ctx)
	t.Logf("restarted %s at %s with %d of %d jobs loaded", victim.name, c.since(), c.count(events.Loaded), len(c.jobs.jobs))
	c.jobs.submit(2) // work while the node rejoins
	total := c.loadedExactly()

	// The restarted node catches up: it is a current replica of MP_JOBS again.
	waitUntil(t, ctx, victim.name+" current in "+events.JobsStream, func() bool {
		si, err := c.jobsInfo()
		if err != nil || si.Cluster == nil {
			return false
		}
		for _, r := range si.Cluster.Replicas {
			if r.Name == victim.name && r.Current && !r.Offline {
				return true
			}
		}
		return si.Cluster.Leader == victim.name
	})
	t.Logf("cluster test: %d jobs, %d observations, %s", len(c.jobs.jobs), total, c.since())
}

// chaosEnv runs TestClusterChaos (`make chaos`): 3 to 4 minutes, too long for every `make test`.
const chaosEnv = "MARKETPIPE_CHAOS"

// TestClusterChaos kills a random node of the 3-node cluster with SIGKILL ten times while jobs
// keep coming (two while it is down, one after its restart), each node down for 0.5 to 2.5 s:
// every job must still load exactly, with no dead letter.
func TestClusterChaos(t *testing.T) {
	if os.Getenv(chaosEnv) == "" {
		t.Skipf("the chaos test runs with `make chaos` (%s=1)", chaosEnv)
	}
	bin(t, "nats-server")
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	c := startClusterPipeline(t, ctx, "chaos", "X")
	c.jobs.submit(2)
	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	for round := range 10 {
		time.Sleep(time.Duration(1000+rnd.IntN(3000)) * time.Millisecond)
		v := c.nodes[rnd.IntN(len(c.nodes))]
		v.p.kill()
		t.Logf("round %d: killed %s at %s", round, v.name, c.since())
		c.jobs.submit(2)
		time.Sleep(time.Duration(500+rnd.IntN(2000)) * time.Millisecond)
		v.start(t, ctx)
		t.Logf("round %d: restarted %s at %s", round, v.name, c.since())
		c.jobs.submit(1)
	}
	total := c.loadedExactly()
	t.Logf("chaos test: %d jobs, %d observations, 10 kills, %s", len(c.jobs.jobs), total, c.since())
}

// describeUnended logs, for each job that has not ended, where it stands: its last event, the
// row batches on its subject in MP_ROWS against those in the load ledger; then every stage's
// consumer and the dead letters: what a job stuck after a node's loss needs to be understood.
func describeUnended(t *testing.T, js jetstream.JetStream, env map[string]string, jobs []submittedJob) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, j := range jobs {
		last, ok, err := natsx.LastJobEvent(ctx, js, j.id)
		if err != nil || !ok || last.Finished() {
			continue
		}
		batches := -1
		if s, err := js.Stream(ctx, events.RowsStream); err == nil {
			if info, err := s.Info(ctx, jetstream.WithSubjectFilter(events.RowsSubject(j.id))); err == nil {
				batches = int(info.State.Msgs)
			}
		}
		ledger, err := natsx.LoadedBatches(ctx, js, j.id, last.Generation)
		t.Logf("job %s: %s (batches %d), %d row batches in %s, %d in the ledger (%v)",
			j.id, last.State, last.Batches, batches, events.RowsStream, ledger, err)
	}
	for _, c := range []struct{ stream, name string }{
		{events.JobsStream, requester.Name}, {events.JobsStream, poller.Name}, {events.JobsStream, collector.Name},
		{events.JobsStream, transformer.Name}, {events.ChunksStream, transformer.ChunkName},
		{events.RowsStream, loader.Name}, {events.JobsStream, loader.CompleteName},
	} {
		cons, err := js.Consumer(ctx, c.stream, c.name)
		if err != nil {
			t.Logf("consumer %s: %v", c.name, err)
			continue
		}
		info, err := cons.Info(ctx)
		if err != nil {
			t.Logf("consumer %s: %v", c.name, err)
			continue
		}
		t.Logf("consumer %s: pending %d, ack pending %d, redelivered %d, waiting %d, delivered %d, ack floor %d, cluster %+v",
			c.name, info.NumPending, info.NumAckPending, info.NumRedelivered, info.NumWaiting,
			info.Delivered.Stream, info.AckFloor.Stream, info.Cluster)
	}
	out, stderr, code := runCLI(t, ctx, env, "dlq", "list")
	t.Logf("dlq list (exit %d):\n%s%s", code, out, stderr)
}
