package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/services"
)

// runRoot runs the CLI with env as the whole environment and returns what it printed.
func runRoot(t *testing.T, env map[string]string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	root := newRootCmd(func(k string) (string, bool) { v, ok := env[k]; return v, ok }, &out, &out)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	return out.String(), err
}

// TestMigrateDeclaresNATS: `migrate --only nats` declares every stage's consumer (the services
// only bind them), and again without change.
func TestMigrateDeclaresNATS(t *testing.T) {
	srv := natstest.Start(t)
	env := map[string]string{"NATS_URL": srv.ClientURL()}
	for range 2 {
		if out, err := runRoot(t, env, "migrate", "--only", "nats"); err != nil {
			t.Fatalf("migrate: %v\n%s", err, out)
		}
	}
	_, js := natstest.Connect(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, s := range services.All {
		for _, c := range s.Uses.Consumers {
			if _, err := js.Consumer(ctx, c.Stream, c.Name); err != nil {
				t.Errorf("%s: consumer %s on %s: %v", s.Name, c.Name, c.Stream, err)
			}
		}
	}
}

// TestMigrateReplicasAboveOneOnASingleServer: NATS_REPLICAS=3 against a server that is not in
// a cluster stops migrate at once, saying what to change, instead of waiting for ever.
func TestMigrateReplicasAboveOneOnASingleServer(t *testing.T) {
	srv := natstest.Start(t)
	start := time.Now()
	out, err := runRoot(t, map[string]string{"NATS_URL": srv.ClientURL(), "NATS_REPLICAS": "3"}, "migrate", "--only", "nats")
	if err == nil || !strings.Contains(err.Error(), "NATS_REPLICAS=3: the NATS server is not in a cluster") {
		t.Fatalf("migrate: %v\n%s, want the NATS_REPLICAS error", err, out)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("migrate took %v", d)
	}
}
