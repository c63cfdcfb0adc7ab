// Package natstest starts a real NATS server with JetStream inside the test process, on a free
// port and a temporary store directory.
package natstest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natsx"
	"github.com/marketpipe/marketpipe/pkg/rawstore"
	"github.com/marketpipe/marketpipe/pkg/stage"
)

// Start runs a JetStream-enabled server until the test ends. It listens on 127.0.0.1 and a
// random free port, so other processes (the stages under test) can reach it at URL().
func Start(tb testing.TB) *server.Server {
	tb.Helper()
	s, err := Run(tb.TempDir(), -1)
	if err != nil {
		tb.Fatalf("start nats-server: %v", err)
	}
	tb.Cleanup(s.Shutdown)
	return s
}

// Run starts a server storing JetStream state in dir, listening on port (-1: random).
func Run(dir string, port int) (*server.Server, error) {
	opts := &server.Options{
		Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir,
		MaxPayload: events.MaxPayload, NoSigs: true, NoLog: true,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, err
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, errNotReady
	}
	return s, nil
}

// StartConf runs a JetStream server configured by a nats-server configuration file, written
// into dir, made of the test's listen address and store directory followed by extra (an
// include of `marketpipe auth init`'s nats-auth.conf, relative to dir as nats-server wants
// includes; a tls block), until the test ends.
func StartConf(tb testing.TB, dir, extra string) *server.Server {
	tb.Helper()
	conf := fmt.Sprintf("listen: \"127.0.0.1:-1\"\nmax_payload: %d\njetstream { store_dir: %q }\n%s\n",
		events.MaxPayload, tb.TempDir(), extra)
	path := filepath.Join(dir, "nats-test.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		tb.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		tb.Fatalf("nats-server configuration: %v\n%s", err, conf)
	}
	opts.NoSigs, opts.NoLog = true, true
	s, err := server.NewServer(opts)
	if err != nil {
		tb.Fatalf("nats-server: %v", err)
	}
	go s.Start()
	tb.Cleanup(s.Shutdown)
	if !s.ReadyForConnections(10 * time.Second) {
		tb.Fatal(errNotReady)
	}
	return s
}

// StartCluster runs n JetStream servers in this process, routed to each other on 127.0.0.1,
// until the test ends, and waits for their JetStream meta leader. A client may connect to any
// of them (ClusterURL lists them all).
func StartCluster(tb testing.TB, n int) []*server.Server {
	tb.Helper()
	ports := make([]int, n)
	routes := make([]*url.URL, n)
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		ports[i] = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		routes[i] = &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", ports[i])}
	}
	servers := make([]*server.Server, n)
	for i := range servers {
		s, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprintf("n%d", i+1), Host: "127.0.0.1", Port: -1,
			JetStream: true, StoreDir: tb.TempDir(), MaxPayload: events.MaxPayload, NoSigs: true, NoLog: true,
			Cluster: server.ClusterOpts{Name: "marketpipe-test", Host: "127.0.0.1", Port: ports[i]},
			Routes:  routes,
		})
		if err != nil {
			tb.Fatalf("nats-server n%d: %v", i+1, err)
		}
		go s.Start()
		tb.Cleanup(s.Shutdown)
		servers[i] = s
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, s := range servers {
		if !s.ReadyForConnections(time.Until(deadline)) {
			tb.Fatalf("nats-server %s not ready", s.Name())
		}
	}
	for {
		for _, s := range servers {
			if s.JetStreamIsLeader() {
				return servers
			}
		}
		if time.Now().After(deadline) {
			tb.Fatal("the cluster elected no JetStream meta leader within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ClusterURL is the client URL of every server of a cluster, comma-separated, as NATS_URL
// takes them.
func ClusterURL(servers []*server.Server) string {
	urls := make([]string, len(servers))
	for i, s := range servers {
		urls[i] = s.ClientURL()
	}
	return strings.Join(urls, ",")
}

type notReady struct{}

func (notReady) Error() string { return "nats-server not ready within 10s" }

var errNotReady error = notReady{}

// Connect returns a connection and JetStream context to s, closed when the test ends.
func Connect(tb testing.TB, s *server.Server) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	return ConnectURL(tb, s.ClientURL())
}

// ConnectURL connects to the server at url (another process's, say), until the test ends.
func ConnectURL(tb testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		tb.Fatalf("connect: %v", err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatalf("jetstream: %v", err)
	}
	return nc, js
}

// Env is a server with the pipeline's streams declared, for handler tests.
type Env struct {
	tb      testing.TB
	Server  *server.Server
	JS      jetstream.JetStream
	Streams *natsx.Streams
}

// NewEnv starts a server and declares the pipeline's streams, object store and ledger on it.
func NewEnv(tb testing.TB) *Env {
	tb.Helper()
	s := Start(tb)
	_, js := Connect(tb, s)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := natsx.Setup(ctx, js, natsx.Retention{})
	if err != nil {
		tb.Fatalf("declare streams: %v", err)
	}
	return &Env{tb: tb, Server: s, JS: js, Streams: st}
}

// Deliver publishes data on subject and returns it as a stage handler receives it (a real
// delivery from an ephemeral consumer), so a test can call a Handler directly.
func (e *Env) Deliver(stream, subject string, data []byte) *stage.Message {
	e.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := e.JS.Publish(ctx, subject, data)
	if err != nil {
		e.tb.Fatalf("publish %s: %v", subject, err)
	}
	cons, err := e.JS.CreateConsumer(ctx, stream, jetstream.ConsumerConfig{
		FilterSubject: subject, DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: ack.Sequence,
		AckPolicy: jetstream.AckExplicitPolicy, InactiveThreshold: time.Minute,
	})
	if err != nil {
		e.tb.Fatalf("consumer: %v", err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		e.tb.Fatalf("fetch %s: %v", subject, err)
	}
	return stage.NewMessage(msg)
}

// DeliverJob is Deliver of a job event under the job's current state.
func (e *Env) DeliverJob(j *events.Job) *stage.Message {
	e.tb.Helper()
	data, err := j.Encode()
	if err != nil {
		e.tb.Fatal(err)
	}
	return e.Deliver(events.JobsStream, events.JobSubject(j.ID, j.State), data)
}

// LastJob returns the latest event of a job on the jobs stream.
func (e *Env) LastJob(jobID string) (events.Job, bool) {
	e.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := e.JS.Stream(ctx, events.JobsStream)
	if err != nil {
		e.tb.Fatalf("jobs stream: %v", err)
	}
	m, err := s.GetLastMsgForSubject(ctx, events.JobSubject(jobID, "*"))
	if err != nil {
		return events.Job{}, false
	}
	j, err := events.Decode(m.Data)
	if err != nil {
		e.tb.Fatalf("decode: %v", err)
	}
	return j, true
}

// Count returns how many messages of stream match subject (wildcards allowed).
func (e *Env) Count(stream, subject string) int {
	e.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := e.JS.Stream(ctx, stream)
	if err != nil {
		e.tb.Fatalf("stream %s: %v", stream, err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		e.tb.Fatalf("stream %s: %v", stream, err)
	}
	n := 0
	for _, c := range info.State.Subjects {
		n += int(c)
	}
	return n
}

// RawFile returns the file stored in the raw store as name, decoded (rawstore.PlainReader).
func (e *Env) RawFile(name string) []byte {
	e.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o, err := e.Streams.Raw.Get(ctx, name)
	if err != nil {
		e.tb.Fatalf("raw file %s: %v", name, err)
	}
	defer o.Close()
	info, err := o.Info()
	if err != nil {
		e.tb.Fatalf("raw file %s: %v", name, err)
	}
	r, err := rawstore.PlainReader(info, o)
	if err != nil {
		e.tb.Fatalf("raw file %s: %v", name, err)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		e.tb.Fatalf("read raw file %s: %v", name, err)
	}
	return b
}
