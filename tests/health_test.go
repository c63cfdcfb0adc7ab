package tests

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/chtest"
	"github.com/marketpipe/marketpipe/pkg/natstest"
)

// TestReadinessFollowsDependencies runs a loader process and takes its dependencies away:
// /readyz must answer 503 naming ClickHouse while ClickHouse is down, and naming NATS while
// NATS is down, and 200 again once they are back; /healthz stays 200 (the process is alive,
// restarting it would not help). SIGTERM must still end it cleanly.
func TestReadinessFollowsDependencies(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	natsDir := t.TempDir()
	ns, err := natstest.Run(natsDir, freePort(t))
	if err != nil {
		t.Fatal(err)
	}
	port := ns.ClientURL()[strings.LastIndex(ns.ClientURL(), ":")+1:]
	ch := chtest.StartPrivate(t)
	db := chtest.NewDatabase(t, ch)
	httpAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	loader := startProc(t, "loader", "loader", map[string]string{
		"NATS_URL": ns.ClientURL(), "CLICKHOUSE_ADDR": ch.Addr(), "CLICKHOUSE_DATABASE": db, "HTTP_ADDR": httpAddr,
	})

	get := func(path string) (int, string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	expect := func(what string, path string, code int, contains string) {
		t.Helper()
		var got int
		var body string
		waitUntil(t, ctx, what, func() bool {
			got, body = get(path)
			return got == code && strings.Contains(body, contains)
		})
	}

	expect("ready", "/readyz", 200, "clickhouse: ok")
	// GOMEMLIMIT unset: the service runs under the default soft memory limit (200 MiB).
	expect("default memory limit", "/metrics", 200, "go_gc_gomemlimit_bytes 2.097152e+08")
	if err := ch.Stop(); err != nil {
		t.Fatal(err)
	}
	expect("not ready without ClickHouse", "/readyz", 503, "clickhouse: ")
	expect("alive without ClickHouse", "/healthz", 200, "ok")
	if err := ch.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	expect("ready again", "/readyz", 200, "clickhouse: ok")

	ns.Shutdown()
	ns.WaitForShutdown()
	expect("not ready without NATS", "/readyz", 503, "nats: ")
	p, _ := strconv.Atoi(port)
	ns, err = natstest.Run(natsDir, p)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	expect("ready after NATS is back", "/readyz", 200, "nats: ok")

	loader.stop(t) // fails the test if the exit is not clean
}
