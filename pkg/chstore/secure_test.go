package chstore_test

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/chserver"
	"github.com/marketpipe/marketpipe/pkg/chstore"
	"github.com/marketpipe/marketpipe/pkg/chtest"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/obs"
	"github.com/marketpipe/marketpipe/pkg/tlstest"
)

// TestSecure: CLICKHOUSE_SECURE on a real 18.16 serving tcp_port_secure with a certificate made
// on the fly: migrate, both INSERT clients and a query go over TLS, verified against
// CLICKHOUSE_CA; without the CA the server's certificate is refused.
func TestSecure(t *testing.T) {
	bin := chtest.Binary(t)
	dir := t.TempDir()
	certs := tlstest.New(t, dir)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := chserver.Start(ctx, chserver.Options{Dir: t.TempDir(), Binary: bin,
		TLS: &chserver.TLS{Port: port, CertFile: certs.ServerCert, KeyFile: certs.ServerKey}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Error(err)
		}
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	tc, err := chstore.TLSConfig(true, certs.CA)
	if err != nil {
		t.Fatal(err)
	}
	for i, driver := range []bool{false, true} {
		s, err := chstore.Open(ctx, chstore.Config{Addr: addr, Database: "secure", DialTimeout: 5 * time.Second,
			TLS: tc, DriverInserts: driver})
		if err != nil {
			t.Fatalf("open over TLS: %v", err)
		}
		if err := s.Migrate(ctx); err != nil {
			t.Fatalf("migrate over TLS: %v", err)
		}
		b := chstore.Batch{JobID: "tls-" + strconv.Itoa(i), Program: events.GetHistory, Version: uint64(i + 1),
			Cols: obs.ColumnsOf([]obs.Observation{{Security: "S" + strconv.Itoa(i), Field: "PX_LAST", Date: obs.MakeDate(2026, 1, 2), Kind: obs.Number, Num: 1}})}
		if _, err := s.Insert(ctx, []chstore.Batch{b}); err != nil {
			t.Fatalf("insert over TLS (driver %v): %v", driver, err)
		}
		n, err := s.CountObservations(ctx, false)
		if err != nil || n != uint64(i+1) {
			t.Errorf("count over TLS: %d, %v; want %d", n, err, i+1)
		}
		s.Close()
	}
	noCA, err := chstore.TLSConfig(true, "")
	if err != nil {
		t.Fatal(err)
	}
	if s, err := chstore.Open(ctx, chstore.Config{Addr: addr, Database: "secure", DialTimeout: 5 * time.Second, TLS: noCA}); err == nil {
		s.Close()
		t.Error("opened with a certificate no system root signed, want refused")
	}
}
