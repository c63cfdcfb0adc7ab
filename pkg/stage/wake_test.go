package stage_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/pkg/stage"
)

// TestWakeEndsAWait: a delivery that Waited an hour (NakWithDelay) comes back within seconds once
// Wake publishes a plain -NAK on its ack subject, from another connection: the engine-native
// wake-up the poller uses when a notification says an output is ready.
func TestWakeEndsAWait(t *testing.T) {
	s := natstest.Start(t)
	js := setupOn(t, s.ClientURL())
	var mu sync.Mutex
	var deliveries []time.Time
	ack := make(chan string, 4)
	run(t, js, stage.Config{MaxDeliver: -1}, stage.HandlerFunc(func(ctx context.Context, m *stage.Message) error {
		mu.Lock()
		deliveries = append(deliveries, time.Now())
		n := len(deliveries)
		mu.Unlock()
		if n == 1 {
			ack <- m.AckSubject()
			return stage.Wait(time.Hour, "not ready")
		}
		return nil
	}))
	publishN(t, js, 1)
	var subject string
	select {
	case subject = <-ack:
	case <-time.After(10 * time.Second):
		t.Fatal("no first delivery")
	}
	// Let the Wait's NakWithDelay reach the server first.
	waitFor(t, "the delivery waiting", func() bool {
		info := consumerInfo(t, js, "work")
		return info.NumAckPending == 1 && info.NumRedelivered == 0
	})
	time.Sleep(200 * time.Millisecond)
	other, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	woke := time.Now()
	if err := stage.Wake(other, subject); err != nil {
		t.Fatal(err)
	}
	if err := other.Flush(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the second delivery", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(deliveries) == 2
	})
	if d := time.Since(woke); d > 5*time.Second {
		t.Errorf("redelivered %v after Wake; want at once (the wait was an hour)", d)
	}
	waitFor(t, "acked", func() bool { return consumerInfo(t, js, "work").NumAckPending == 0 })
	// A second Wake on the same (now acked) subject changes nothing.
	if err := stage.Wake(other, subject); err != nil {
		t.Fatal(err)
	}
	other.Flush()
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(deliveries) != 2 {
		t.Errorf("%d deliveries after waking an acked message; want 2", len(deliveries))
	}
	if err := stage.Wake(other, "mp.job.x"); err == nil {
		t.Error("Wake accepted a subject that is not an ack subject")
	}
}
