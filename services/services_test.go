package services_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/config"
	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/pkg/natsx"
	"github.com/marketpipe/marketpipe/pkg/service"
	"github.com/marketpipe/marketpipe/services"
)

// TestHelpListsEveryVariable: each service's -h lists the variables every service reads and
// its own, with their defaults.
func TestHelpListsEveryVariable(t *testing.T) {
	own := map[string][]string{
		"requester":   nil,
		"poller":      {"POLL_INTERVAL"},
		"collector":   {"COLLECTOR_MARK_BYTES"},
		"transformer": {"TRANSFORMER_CHUNK_BYTES", "TRANSFORMER_CHUNK_CONCURRENCY"},
		"loader": {"LOADER_MAX_INSERT_ROWS", "LOADER_INSERTS", "LOADER_LINGER", "LOADER_MAX_LINGER",
			"LOADER_TIMEOUT", "LOADER_INSERT_CLIENT"},
	}
	shared := []string{"NATS_URL", "NATS_REPLICAS", "NATS_MAX_BYTES", "CLICKHOUSE_ADDR", "VENDOR_URL",
		"VENDOR_TOKEN_URL", "HTTP_ADDR", "LOG_LEVEL", "OTEL_TRACES_EXPORTER", "ACK_WAIT", "GOMEMLIMIT"}
	if len(services.All) != len(own) {
		t.Fatalf("%d services, the test knows %d", len(services.All), len(own))
	}
	defaults := map[string]string{"requester": "(default nats://127.0.0.1:4222)", "poller": "(default 30s",
		"collector": "(default 1048576", "transformer": "(default 67108864", "loader": "(default 50ms)"}
	none := func(string) (string, bool) { return "", false }
	for _, s := range services.All {
		t.Run(s.Name, func(t *testing.T) {
			var out bytes.Buffer
			err := service.Run(context.Background(), s.Name, s.Summary, []string{"-h"}, none, &out, s.Build, s.Own()...)
			if !errors.Is(err, flag.ErrHelp) {
				t.Fatalf("-h: %v", err)
			}
			want, ok := own[s.Name]
			if !ok {
				t.Fatalf("the test does not know service %s", s.Name)
			}
			for _, v := range append(shared, want...) {
				if !strings.Contains(out.String(), "\n  "+v+" ") {
					t.Errorf("-h does not list %s:\n%s", v, out.String())
				}
			}
			if d := defaults[s.Name]; !strings.Contains(out.String(), d) {
				t.Errorf("-h does not show the default %q:\n%s", d, out.String())
			}
		})
	}
}

// TestREADMEConfigurationTable: README's configuration table is the one the settings structs
// make; when it differs the test prints the table to paste.
func TestREADMEConfigurationTable(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Configuration\n")
	if !ok {
		t.Fatal("README.md has no ## Configuration section")
	}
	start := strings.Index(section, "\n| variable |")
	if start < 0 {
		t.Fatal("README.md's Configuration section has no table")
	}
	table := section[start+1:]
	if end := strings.Index(table, "\n\n"); end >= 0 {
		table = table[:end+1]
	}
	if want := services.Table(); table != want {
		t.Errorf("README.md's configuration table differs from the settings structs'; want:\n%s", want)
	}
}

// TestRunChecksSettingsFirst: a bad setting of a service's own stops it before it waits for
// NATS, with an error naming the variable.
func TestRunChecksSettingsFirst(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	natsURL := "nats://" + ln.Addr().String()
	ln.Close() // nothing listens there: a service would wait for NATS until ctx ends
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpAddr := httpLn.Addr().String()
	httpLn.Close()
	for _, s := range services.All {
		if s.Settings == nil {
			continue
		}
		v := config.Vars(s.Settings)[0]
		t.Run(s.Name, func(t *testing.T) {
			env := map[string]string{"NATS_URL": natsURL, "HTTP_ADDR": httpAddr, v.Name: "-1"}
			lookup := func(k string) (string, bool) { x, ok := env[k]; return x, ok }
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := service.Run(ctx, s.Name, s.Summary, nil, lookup, io.Discard, s.Build, s.Own()...)
			if want := v.Name + `="-1"`; err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s=-1: err = %v, want one containing %q", v.Name, err, want)
			}
		})
	}
}

// TestVendorStagesRefuseARealVendorWithoutCredentials: the stages that call the vendor refuse to
// start against a VENDOR_URL off this host without VENDOR_CREDENTIALS, saying what to set; on a
// loopback address (a simulator) they start without them.
func TestVendorStagesRefuseARealVendorWithoutCredentials(t *testing.T) {
	ns := natstest.Start(t)
	_, js := natstest.Connect(t, ns)
	setupCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := natsx.Setup(setupCtx, js, natsx.Retention{}); err != nil { // the admin's part
		t.Fatal(err)
	}
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpAddr := httpLn.Addr().String()
	httpLn.Close()
	calling := map[string]bool{"requester": true, "poller": true, "collector": true}
	for _, s := range services.All {
		if !calling[s.Name] {
			continue
		}
		delete(calling, s.Name)
		t.Run(s.Name, func(t *testing.T) {
			run := func(vendorURL string, d time.Duration) error {
				env := map[string]string{"NATS_URL": ns.ClientURL(), "HTTP_ADDR": httpAddr, "VENDOR_URL": vendorURL}
				lookup := func(k string) (string, bool) { x, ok := env[k]; return x, ok }
				ctx, cancel := context.WithTimeout(context.Background(), d)
				defer cancel()
				return service.Run(ctx, s.Name, s.Summary, nil, lookup, io.Discard, s.Build, s.Own()...)
			}
			start := time.Now()
			err := run("https://vendor.example.com/eap", 20*time.Second)
			want := "VENDOR_URL=https://vendor.example.com/eap is not the simulator and VENDOR_CREDENTIALS is not set: set VENDOR_CREDENTIALS"
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("err = %v, want one containing %q", err, want)
			}
			if time.Since(start) > 10*time.Second {
				t.Errorf("refused after %s, not at start", time.Since(start))
			}
			// On loopback the vendor client is made; the stage may still stop later (here at its
			// consumer, which the admin declares), but not for credentials.
			start = time.Now()
			err = run("http://127.0.0.1:1/eap", 2*time.Second)
			t.Logf("loopback: ran %s: %v", time.Since(start).Round(time.Millisecond), err)
			if err != nil && strings.Contains(err.Error(), "VENDOR_CREDENTIALS") {
				t.Errorf("on a loopback VENDOR_URL: %v", err)
			}
		})
	}
	if len(calling) > 0 {
		t.Errorf("services.All lacks %v", calling)
	}
}
