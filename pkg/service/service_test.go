package service_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/config"
	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/pkg/natsx"
	"github.com/marketpipe/marketpipe/pkg/service"
	"github.com/marketpipe/marketpipe/pkg/vendor"
	"github.com/marketpipe/marketpipe/services/vendorsim"
)

func newEnv(t *testing.T, vars map[string]string) *service.Env {
	t.Helper()
	srv := natstest.Start(t)
	vars["NATS_URL"] = srv.ClientURL()
	lookup := config.Lookup(func(k string) (string, bool) { v, ok := vars[k]; return v, ok })
	cfg, err := config.Load(lookup)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, js := natstest.Connect(t, srv)
	if _, err := natsx.Setup(ctx, js, natsx.Retention{}); err != nil { // the admin's part
		t.Fatal(err)
	}
	env, err := service.NewEnv(ctx, "test", cfg, lookup, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.NC.Close)
	return env
}

func readyz(t *testing.T, env *service.Env) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	env.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	return rec.Code, rec.Body.String()
}

// TestReadinessNamesAnUnreachableVendor: once a vendor call gets no response, /readyz answers
// 503 naming the vendor (its address without credentials), without calling it itself; a call
// that is answered makes it ready again.
func TestReadinessNamesAnUnreachableVendor(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: connections are refused
	env := newEnv(t, map[string]string{"VENDOR_URL": "http://user:s3cret@" + addr + "/eap"})
	v, err := env.Vendor()
	if err != nil {
		t.Fatal(err)
	}
	if code, body := readyz(t, env); code != 200 || !strings.Contains(body, "vendor: ok") {
		t.Fatalf("before any call: %d %q", code, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := v.Account(ctx); err == nil {
		t.Fatal("account call to a closed port succeeded")
	}
	code, body := readyz(t, env)
	want := "vendor: vendor http://" + addr + " unreachable: no response to the last call (account"
	if code != http.StatusServiceUnavailable || !strings.Contains(body, want) || strings.Contains(body, "s3cret") {
		t.Errorf("after a refused call: %d %q, want 503 with %q", code, body, want)
	}

	// The vendor comes up on that address: the next call is answered.
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen again on %s: %v", addr, err)
	}
	sim := &http.Server{Handler: vendorsim.NewServer(vendorsim.Options{Account: vendorsim.DefaultAccount})}
	go sim.Serve(ln)
	defer sim.Close()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	if _, err := v.Account(ctx2); err != nil {
		t.Fatal(err)
	}
	if code, body := readyz(t, env); code != 200 || !strings.Contains(body, "vendor: ok") {
		t.Errorf("after an answered call: %d %q", code, body)
	}
}

// TestHelpListsEnvironment checks that a service's -h names the variables every service reads.
func TestHelpListsEnvironment(t *testing.T) {
	var out bytes.Buffer
	none := func(string) (string, bool) { return "", false }
	err := service.Run(context.Background(), "stage", "does a stage's work", []string{"-h"}, none, &out, nil)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	for _, v := range []string{"NATS_URL", "NATS_REPLICAS", "NATS_MAX_BYTES", "CLICKHOUSE_ADDR", "GOMEMLIMIT"} {
		if !strings.Contains(out.String(), "\n  "+v) {
			t.Errorf("-h does not list %s:\n%s", v, out.String())
		}
	}
}

// TestNotSetUpStopsAtOnce: a service started before `marketpipe migrate` declared the streams
// stops at once, naming the command, instead of waiting for ever.
func TestNotSetUpStopsAtOnce(t *testing.T) {
	srv := natstest.Start(t)
	vars := map[string]string{"NATS_URL": srv.ClientURL()}
	lookup := config.Lookup(func(k string) (string, bool) { v, ok := vars[k]; return v, ok })
	cfg, err := config.Load(lookup)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	_, err = service.NewEnv(ctx, "test", cfg, lookup, io.Discard)
	if !errors.Is(err, natsx.ErrNotSetUp) || !strings.Contains(err.Error(), "`marketpipe migrate`") {
		t.Fatalf("NewEnv: %v, want one naming marketpipe migrate", err)
	}
	if ctx.Err() != nil {
		t.Errorf("NewEnv waited %v, until its deadline", time.Since(start))
	}
}

// TestRefusedStopsAtOnce: a service whose user the NATS server refuses stops at once with the
// server's reason, instead of waiting for JetStream for ever on a closed connection.
func TestRefusedStopsAtOnce(t *testing.T) {
	srv := natstest.StartConf(t, t.TempDir(), "authorization { users: [ {user: svc, password: right-pw} ] }")
	vars := map[string]string{"NATS_URL": srv.ClientURL(), "NATS_USER": "svc", "NATS_PASSWORD": "wrong-pw"}
	lookup := config.Lookup(func(k string) (string, bool) { v, ok := vars[k]; return v, ok })
	cfg, err := config.Load(lookup)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = service.NewEnv(ctx, "test", cfg, lookup, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "refused this client") || strings.Contains(err.Error(), "wrong-pw") {
		t.Fatalf("NewEnv: %v, want the server's refusal without the password", err)
	}
	if ctx.Err() != nil {
		t.Error("NewEnv waited until its deadline")
	}
}

// TestVendorRateLimit checks the vendor client's pace: HAPI's limit against a vendor elsewhere,
// none against a simulator on this host, and VENDOR_RATE_LIMIT's value when set.
func TestVendorRateLimit(t *testing.T) {
	dir := t.TempDir()
	creds := filepath.Join(dir, "credentials.json")
	if err := os.WriteFile(creds, []byte(`{"client_id":"id","client_secret":"`+strings.Repeat("ab", 32)+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		url   string
		set   int
		creds string
		want  int
	}{
		{url: "https://api.bloomberg.com/eap", creds: creds, want: vendor.MaxCallsPerMinute},
		{url: "https://api.bloomberg.com/eap", creds: creds, set: 300, want: 300},
		{url: "http://127.0.0.1:8081/eap", want: 0},
		{url: "http://127.0.0.1:8081/eap", set: 600, want: 600},
	} {
		cfg := config.Config{VendorURL: tc.url, VendorCredentials: tc.creds, VendorRateLimit: tc.set}
		vc, err := service.VendorConfig(cfg)
		if err != nil {
			t.Fatalf("%s: %v", tc.url, err)
		}
		if vc.CallsPerMinute != tc.want {
			t.Errorf("%s with VENDOR_RATE_LIMIT=%d: %d calls a minute, want %d", tc.url, tc.set, vc.CallsPerMinute, tc.want)
		}
	}
}
