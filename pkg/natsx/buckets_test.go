package natsx_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/pkg/natsx"
)

// TestBucketStreamsAreNatsGos declares buckets and object stores with nats.go on one server and
// with Setup's configurations on another, and compares the streams the servers keep: they
// must differ in direct gets only, so nats.go binds and uses ours as its own. It fails when a
// nats.go upgrade changes what it declares.
func TestBucketStreamsAreNatsGos(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, theirs := natstest.Connect(t, natstest.Start(t))
	_, ours := natstest.Connect(t, natstest.Start(t))
	read := func(js jetstream.JetStream, name string) jetstream.StreamConfig {
		t.Helper()
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		return s.CachedInfo().Config
	}
	for _, c := range []struct {
		name     string
		ttl      time.Duration
		maxBytes int64
	}{{"kept", 0, 0}, {"limited", 24 * time.Hour, 1 << 20}, {"short", time.Minute, 1 << 20}} {
		kv, obj := natsx.BucketStreams(c.name, c.ttl, c.maxBytes, 1)
		if _, err := theirs.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: c.name, Description: "d",
			TTL: c.ttl, MaxBytes: c.maxBytes, Storage: jetstream.FileStorage}); err != nil {
			t.Fatal(err)
		}
		if _, err := theirs.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: c.name, Description: "d",
			TTL: c.ttl, MaxBytes: c.maxBytes, Storage: jetstream.FileStorage}); err != nil {
			t.Fatal(err)
		}
		for _, want := range []jetstream.StreamConfig{kv, obj} {
			if _, err := ours.CreateStream(ctx, want); err != nil {
				t.Fatal(err)
			}
			got, nats := read(ours, want.Name), read(theirs, want.Name)
			if got.AllowDirect || !nats.AllowDirect {
				t.Errorf("%s: direct gets %v, nats.go's %v; want off, and on", want.Name, got.AllowDirect, nats.AllowDirect)
			}
			nats.AllowDirect = false
			if !equalConfig(got, nats) {
				t.Errorf("%s:\nours    %+v\nnats.go %+v", want.Name, got, nats)
			}
		}
		if _, err := ours.KeyValue(ctx, c.name); err != nil {
			t.Errorf("nats.go does not bind our bucket %s: %v", c.name, err)
		}
		if _, err := ours.ObjectStore(ctx, c.name); err != nil {
			t.Errorf("nats.go does not bind our object store %s: %v", c.name, err)
		}
	}
}

// equalConfig compares two stream configurations as the servers report them, but for the
// fields each server sets itself.
func equalConfig(a, b jetstream.StreamConfig) bool {
	a.Metadata, b.Metadata = nil, nil // the server's version and API level
	return fmt.Sprintf("%+v", a) == fmt.Sprintf("%+v", b)
}
