package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/config"
)

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:9000": true, "localhost:9000": true, "[::1]:9000": true, "127.0.0.2:9000": true,
		"10.0.0.5:9000": false, "clickhouse:9000": false, "0.0.0.0:9000": false, "127.0.0.1": false,
	} {
		if got := isLoopback(addr); got != want {
			t.Errorf("isLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

// runDevCmd runs `marketpipe dev args...` with env as the whole environment, the state in a
// temporary directory, and returns the state directory, what dev printed and its error.
func runDevCmd(t *testing.T, env map[string]string, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	state := filepath.Join(t.TempDir(), "state")
	var out bytes.Buffer
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	root := newRootCmd(lookup, &out, &out)
	root.SetArgs(append([]string{"dev", "--state-dir", state}, args...))
	err := root.ExecuteContext(ctx)
	return state, out.String(), err
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestDevChecksBeforeStarting: dev refuses a bad setting, or a busy HTTP port, before it starts
// NATS, ClickHouse or the simulator (nothing printed, no state directory) and never says ready.
func TestDevChecksBeforeStarting(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tt := range []struct {
		name    string
		env     map[string]string
		wantErr string
	}{
		{"bad POLL_INTERVAL", map[string]string{"POLL_INTERVAL": "soon"}, `POLL_INTERVAL="soon"`},
		{"zero POLL_INTERVAL", map[string]string{"POLL_INTERVAL": "0s"}, `POLL_INTERVAL="0s": want a positive duration`},
		{"bad ACK_WAIT", map[string]string{"ACK_WAIT": "x"}, `ACK_WAIT="x"`},
		{"bad TRANSFORMER_CHUNK_BYTES", map[string]string{"TRANSFORMER_CHUNK_BYTES": "-1"}, `TRANSFORMER_CHUNK_BYTES="-1"`},
		{"bad COLLECTOR_MARK_BYTES", map[string]string{"COLLECTOR_MARK_BYTES": "big"}, `COLLECTOR_MARK_BYTES="big"`},
		{"bad LOADER_LINGER", map[string]string{"LOADER_LINGER": "later"}, `LOADER_LINGER="later"`},
		{"bad LOADER_INSERT_CLIENT", map[string]string{"LOADER_INSERT_CLIENT": "http"}, `LOADER_INSERT_CLIENT="http"`},
		{"busy HTTP port", map[string]string{"HTTP_ADDR": busy.Addr().String()}, "listen on HTTP_ADDR " + busy.Addr().String()},
		{"two NATS URLs", map[string]string{"NATS_URL": "nats://127.0.0.1:1,nats://127.0.0.1:2"}, "dev runs one NATS server"},
		{"real vendor without credentials", map[string]string{"VENDOR_URL": "https://api.bloomberg.com/eap"},
			"VENDOR_URL=https://api.bloomberg.com/eap is not the simulator and VENDOR_CREDENTIALS is not set: set VENDOR_CREDENTIALS"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"HTTP_ADDR": freeAddr(t), "NATS_URL": "nats://" + freeAddr(t),
				"CLICKHOUSE_ADDR": freeAddr(t)}
			for k, v := range tt.env {
				env[k] = v
			}
			state, out, err := runDevCmd(t, env)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
			}
			if out != "" {
				t.Errorf("dev started something before failing:\n%s", out)
			}
			if _, err := os.Stat(state); !os.IsNotExist(err) {
				t.Errorf("state directory created (%v) before the configuration was checked", err)
			}
		})
	}
}

func TestDevListensOnLoopbackByDefault(t *testing.T) {
	get := func(env map[string]string, host string) config.Config {
		t.Helper()
		lookup, err := devLookup(func(k string) (string, bool) { v, ok := env[k]; return v, ok }, host)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(lookup)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	cfg := get(nil, "127.0.0.1")
	if cfg.HTTPAddr != "127.0.0.1:8080" || cfg.NATS.URL != "nats://127.0.0.1:4222" {
		t.Errorf("defaults: HTTP_ADDR %s, NATS_URL %s; want both on 127.0.0.1", cfg.HTTPAddr, cfg.NATS.URL)
	}
	cfg = get(nil, "0.0.0.0")
	if cfg.HTTPAddr != "0.0.0.0:8080" || cfg.NATS.URL != "nats://0.0.0.0:4222" {
		t.Errorf("--listen 0.0.0.0: HTTP_ADDR %s, NATS_URL %s", cfg.HTTPAddr, cfg.NATS.URL)
	}
	cfg = get(map[string]string{"HTTP_ADDR": ":9090", "NATS_URL": "nats://10.1.2.3:4333"}, "127.0.0.1")
	if cfg.HTTPAddr != ":9090" || cfg.NATS.URL != "nats://10.1.2.3:4333" {
		t.Errorf("the variables do not win: HTTP_ADDR %s, NATS_URL %s", cfg.HTTPAddr, cfg.NATS.URL)
	}

	for host, want := range map[string]string{"127.0.0.1": "http://127.0.0.1:", "0.0.0.0": "http://127.0.0.1:"} {
		simURL, stop, err := startSimulator(host, devOptions{}.sim)
		if err != nil {
			t.Fatal(err)
		}
		stop()
		if !strings.HasPrefix(simURL, want) {
			t.Errorf("simulator on %s: URL %s, want %s...", host, simURL, want)
		}
	}
}
