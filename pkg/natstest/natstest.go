// Package natstest starts a real NATS server with JetStream inside the test process, on a free
// port and a temporary store directory.
package natstest

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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
		MaxPayload: 4 << 20, NoSigs: true, NoLog: true,
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

type notReady struct{}

func (notReady) Error() string { return "nats-server not ready within 10s" }

var errNotReady error = notReady{}

// Connect returns a connection and JetStream context to s, closed when the test ends.
func Connect(tb testing.TB, s *server.Server) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	nc, err := nats.Connect(s.ClientURL())
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

// ConnectURL is Connect for a server known only by its URL (another process's, say).
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
