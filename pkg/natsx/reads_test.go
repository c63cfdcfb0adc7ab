package natsx_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/pkg/natsx"
)

// TestBucketReadsSeeAcknowledgedWrites writes keys to an R3 bucket declared by Setup (over the
// one an earlier version declared through nats.go) and reads each back at once through a
// connection to every node: each read must see the write, as the stage runtime's delivery
// records and the load ledger need. With nats.go's direct gets, any replica answers, and a
// follower that has not applied the write yet answers with the older value: rarely, and mostly
// under load, so the streams' configuration is checked too.
func TestBucketReadsSeeAcknowledgedWrites(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	servers := natstest.StartCluster(t, 3)
	_, js := natstest.ConnectURL(t, natstest.ClusterURL(servers))
	// The ledger as an earlier version declared it, through nats.go, with direct gets. A cluster
	// that just elected its meta leader may leave a request unanswered: each attempt has 5 s.
	for {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := js.CreateKeyValue(actx, jetstream.KeyValueConfig{Bucket: events.LedgerBucket, Replicas: 3})
		cancel()
		if err == nil || errors.Is(err, jetstream.ErrBucketExists) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("create the ledger as an earlier version did: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	st, err := natsx.Setup(ctx, js, natsx.Retention{Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range allStreams {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if s.CachedInfo().Config.AllowDirect {
			t.Errorf("%s allows direct gets: a lagging replica may answer a read", name)
		}
	}
	var readers []jetstream.KeyValue
	for _, s := range servers {
		_, sjs := natstest.Connect(t, s)
		kv, err := sjs.KeyValue(ctx, events.LedgerBucket)
		if err != nil {
			t.Fatal(err)
		}
		readers = append(readers, kv)
	}
	const writes = 1000
	stale := 0
	for i := range writes {
		key, val := fmt.Sprintf("k%d", i%50), fmt.Sprint(i)
		if _, err := st.Ledger.Put(ctx, key, []byte(val)); err != nil {
			t.Fatal(err)
		}
		for _, r := range readers {
			e, err := r.Get(ctx, key)
			switch {
			case errors.Is(err, jetstream.ErrKeyNotFound):
				stale++
			case err != nil:
				t.Fatal(err)
			case string(e.Value()) != val:
				stale++
			}
		}
	}
	if stale > 0 {
		t.Errorf("%d of %d reads did not see the write acknowledged before them", stale, writes*len(readers))
	}
}
