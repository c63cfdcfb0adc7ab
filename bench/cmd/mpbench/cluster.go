package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/chstore"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natsx"
	"github.com/marketpipe/marketpipe/pkg/stage"
	"github.com/marketpipe/marketpipe/services"
	"github.com/marketpipe/marketpipe/services/vendorsim"
)

// cluster is one leg's servers: a fresh embedded NATS server, the vendor simulator, a fresh
// ClickHouse database, and the stage processes the leg starts.
type cluster struct {
	b       *bench
	leg     string
	dir     string
	natsP   *proc // the NATS server's process
	natsURL string
	nc      *nats.Conn
	js      jetstream.JetStream
	streams *natsx.Streams
	pub     *stage.Publisher
	db      string
	httpSrv *http.Server
	simURL  string
	sim     *vendorsim.Server
	polls   atomic.Int64 // output listings served by the simulator
	env     map[string]string
	procs   []*proc

	mu      sync.Mutex
	waiters map[string]chan events.Job // job id → its events
}

func (b *bench) newCluster(ctx context.Context, leg string, readyAfter time.Duration, simOpts ...func(*vendorsim.Options)) (*cluster, error) {
	c := &cluster{b: b, leg: leg, dir: filepath.Join(b.tmp, leg), db: "bench_" + leg, waiters: map[string]chan events.Job{}}
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return nil, err
	}
	var err error
	// NATS in a process of its own, as in production: the harness's simulator and GC do not
	// share its threads.
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	var natsEnv map[string]string
	if b.profile != "" {
		natsEnv = map[string]string{"MPBENCH_CPUPROFILE": filepath.Join(b.profile, leg+"-nats-server.pprof")}
	}
	if c.natsP, err = startProc(c.dir, "nats-server", b.svc, natsEnv, "nats", filepath.Join(c.dir, "nats"), strconv.Itoa(port)); err != nil {
		return nil, err
	}
	c.natsURL = fmt.Sprintf("nats://127.0.0.1:%d", port)
	for start := time.Now(); ; {
		if c.nc, err = nats.Connect(c.natsURL); err == nil {
			break
		}
		if time.Since(start) > 20*time.Second || c.natsP.exited() {
			c.close()
			return nil, fmt.Errorf("nats-server: %v\n%s", err, c.natsP.logTail(2000))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if c.js, err = jetstream.New(c.nc); err != nil {
		c.close()
		return nil, err
	}
	// As the admin (`marketpipe migrate`): the stage processes only bind.
	if c.streams, err = services.Setup(ctx, c.js, natsx.Retention{}, 0); err != nil {
		c.close()
		return nil, err
	}
	c.pub = stage.NewPublisher(c.js)
	// Every job event, routed to the job's waiter.
	if _, err := c.nc.Subscribe("mp.job.>", c.onEvent); err != nil {
		c.close()
		return nil, err
	}
	so := vendorsim.Options{Account: vendorsim.DefaultAccount, ReadyAfter: readyAfter, Seed: simSeed, RunDate: runDate.Time()}
	for _, o := range simOpts {
		o(&so)
	}
	sim := vendorsim.NewServer(so)
	c.sim = sim
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.close()
		return nil, err
	}
	c.httpSrv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/content/responses/") {
			c.polls.Add(1)
		}
		sim.ServeHTTP(w, r)
	}), ReadHeaderTimeout: 10 * time.Second}
	go c.httpSrv.Serve(ln)
	c.simURL = "http://" + ln.Addr().String() + vendorsim.Prefix
	c.env = map[string]string{
		"NATS_URL": c.natsURL, "CLICKHOUSE_ADDR": b.ch.Addr(), "CLICKHOUSE_DATABASE": c.db,
		"VENDOR_URL": c.simURL, "POLL_INTERVAL": "100ms", "HTTP_ADDR": "127.0.0.1:0",
		"LOG_LEVEL": "warn", "LOG_FORMAT": "json", "CLICKHOUSE_COMPRESSION": b.res.CHCompression,
		"LOADER_MIGRATE": "true",
	}
	return c, nil
}

func (c *cluster) close() {
	for _, p := range c.procs {
		if err := p.stop(); err != nil && !strings.Contains(err.Error(), "signal: killed") {
			log.Printf("%s/%s: %v\n%s", c.leg, p.name, err, p.logTail(2000))
		}
	}
	if c.httpSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = c.httpSrv.Shutdown(ctx)
		cancel()
	}
	if c.nc != nil {
		c.nc.Close()
	}
	if c.natsP != nil {
		if err := c.natsP.stop(); err != nil {
			log.Printf("%s/nats-server: %v", c.leg, err)
		}
	}
	// The leg's NATS store can be large (a 1 GB file and its batches): free the disk now.
	os.RemoveAll(filepath.Join(c.dir, "nats"))
}

// start runs one stage process (bin = the stage's name) with the cluster's environment.
func (c *cluster) start(name, stageName string, extra map[string]string) (*proc, error) {
	env := map[string]string{}
	for k, v := range c.env {
		env[k] = v
	}
	for k, v := range extra {
		env[k] = v
	}
	// MPSVC_<VAR>=v in the harness's environment sets VAR=v for every service: settings to try
	// (MPSVC_LOADER_INSERTS=1, MPSVC_GOGC=50) without editing the harness.
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "MPSVC_") {
			env[strings.TrimPrefix(k, "MPSVC_")] = v
		}
	}
	if c.b.profile != "" {
		env["MPBENCH_CPUPROFILE"] = filepath.Join(c.b.profile, c.leg+"-"+name+".pprof")
		env["MPBENCH_HEAPPROFILE"] = filepath.Join(c.b.profile, c.leg+"-"+name+".heap")
	}
	p, err := startProc(c.dir, name, c.b.svc, env, stageName)
	if err != nil {
		return nil, err
	}
	c.procs = append(c.procs, p)
	return p, nil
}

func (c *cluster) onEvent(m *nats.Msg) {
	id, _, ok := events.ParseJobSubject(m.Subject)
	if !ok {
		return
	}
	c.mu.Lock()
	ch := c.waiters[id]
	c.mu.Unlock()
	if ch == nil {
		return
	}
	j, err := events.Decode(m.Data)
	if err != nil {
		return
	}
	select {
	case ch <- j:
	default: // a waiter that stopped listening
	}
}

// watch starts collecting id's events.
func (c *cluster) watch(id string) <-chan events.Job {
	ch := make(chan events.Job, 64)
	c.mu.Lock()
	c.waiters[id] = ch
	c.mu.Unlock()
	return ch
}

func (c *cluster) unwatch(id string) {
	c.mu.Lock()
	delete(c.waiters, id)
	c.mu.Unlock()
}

// waitEvent waits for id's event (or a failure), with the time it was received.
func waitEvent(ctx context.Context, ch <-chan events.Job, event string, timeout time.Duration) (events.Job, time.Time, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case j := <-ch:
			if j.State == event {
				return j, time.Now(), nil
			}
			if j.State == events.Failed {
				return j, time.Now(), fmt.Errorf("job %s failed: %s", j.ID, j.Error)
			}
		case <-t.C:
			return events.Job{}, time.Time{}, fmt.Errorf("no %q event within %s", event, timeout)
		case <-ctx.Done():
			return events.Job{}, time.Time{}, ctx.Err()
		}
	}
}

// submit publishes a job's "submitted" event as `marketpipe submit` does.
func (c *cluster) submit(ctx context.Context, id string, spec events.Spec) (events.Job, error) {
	now := time.Now().UTC()
	j := events.Job{ID: id, Spec: spec, Version: uint64(now.UnixNano()), Deadline: now.Add(6 * time.Hour)}
	j = j.Advance(events.Submitted, now)
	return j, c.pub.PublishJob(ctx, &j)
}

// store opens the leg's ClickHouse database, creating the schema.
func (c *cluster) store(ctx context.Context) (*chstore.Store, error) { return c.b.openStore(ctx, c.db) }

// startPipeline starts the five stages, one process each.
func (c *cluster) startPipeline() (map[string]*proc, error) {
	ps := map[string]*proc{}
	for _, s := range []string{"requester", "poller", "collector", "transformer", "loader"} {
		p, err := c.start(s, s, nil)
		if err != nil {
			return nil, err
		}
		ps[s] = p
	}
	return ps, nil
}

// waitConsumers waits until the named durable consumers exist on stream, each with at least
// `waiting` pull requests outstanding (replicas ready to take work).
func (c *cluster) waitConsumers(ctx context.Context, stream string, waiting int, names ...string) error {
	deadline := time.Now().Add(60 * time.Second)
	for _, n := range names {
		for {
			ci, err := c.js.Consumer(ctx, stream, n)
			if err == nil {
				info, err := ci.Info(ctx)
				if err == nil && info.NumWaiting >= waiting {
					break
				}
			}
			if time.Now().After(deadline) {
				c.dumpLogs()
				return fmt.Errorf("consumer %s/%s not ready within 60s", stream, n)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	return nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func (c *cluster) dumpLogs() {
	for _, p := range c.procs {
		log.Printf("---- log of %s/%s ----\n%s", c.leg, p.name, p.logTail(3000))
	}
}
