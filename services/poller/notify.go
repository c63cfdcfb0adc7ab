package poller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/marketpipe/marketpipe/pkg/service"
	"github.com/marketpipe/marketpipe/pkg/stage"
	"github.com/marketpipe/marketpipe/pkg/vendor"
)

// VENDOR_NOTIFICATIONS=sse: each poller replica listens to the vendor's notification stream
// (one connection each; HAPI allows vendor.MaxNotificationStreams per client) and records every
// output announced in events.OutputsBucket as out.<request identifier>. A delivery whose
// output is not ready records its ack subject as wait.<request identifier> before it waits; the
// listener, after recording an output, wakes the delivery waiting for it (stage.Wake: the
// server redelivers it at once), and the delivery then finds its output in the bucket without
// asking the vendor. The listener writes out then reads wait; the delivery writes wait then
// reads out: whichever comes second sees the other. Anything a notification misses (an outage
// of the stream longer than its 48 hours of replay, a failed write) is found by the poll at
// POLL_INTERVAL, the fallback (SSEPollInterval unless set).

// Values of VENDOR_NOTIFICATIONS (config.Config.VendorNotifications).
const (
	NotificationsPoll = "poll"
	NotificationsSSE  = "sse"
)

// SSEPollInterval is POLL_INTERVAL's default with VENDOR_NOTIFICATIONS=sse: the fallback poll.
const SSEPollInterval = 5 * time.Minute

// Keys of events.OutputsBucket.
const (
	outPrefix  = "out."  // + request identifier: the output announced (notifiedOutput)
	waitPrefix = "wait." // + request identifier: the ack subject of the delivery waiting for it
	cursorKey  = "cursor"
)

// notifiedOutput is an output as a notification announced it.
type notifiedOutput struct {
	Key         string    `json:"key"`
	Digest      string    `json:"digest"`
	ContentType string    `json:"content_type,omitempty"`
	Published   time.Time `json:"published"`
	EventID     string    `json:"event_id,omitempty"`
}

// Notified answers the poller's output lookups from the outputs notifications announced, and
// keeps the waits and the announcements in sync (see above).
type Notified struct {
	KV     jetstream.KeyValue // events.OutputsBucket
	NC     *nats.Conn         // the poller's connection: it may acknowledge the consumer's messages
	Vendor Vendor             // asked when no notification announced the output
	Log    *slog.Logger
	// Counted, when set, counts the notifications by outcome (handled, duplicate, stale,
	// invalid) and the lookups answered from a notification (lookup_hit).
	Counted func(outcome string)
}

func (n *Notified) count(outcome string) {
	if n.Counted != nil {
		n.Counted(outcome)
	}
}

// Output implements Vendor: the output a notification announced, else the vendor's answer. A
// bucket that cannot be read is passed over: the vendor answers.
func (n *Notified) Output(ctx context.Context, identifier string) (*vendor.Output, error) {
	e, err := n.KV.Get(ctx, outPrefix+identifier)
	switch {
	case err == nil:
		var o notifiedOutput
		if err := json.Unmarshal(e.Value(), &o); err == nil && o.Key != "" && o.Digest != "" {
			n.count("lookup_hit")
			return &vendor.Output{Key: o.Key, Digest: o.Digest, ContentType: o.ContentType, ContentLength: -1,
				LastModified: o.Published}, nil
		}
		n.Log.WarnContext(ctx, "unreadable output record; asking the vendor", "key", e.Key())
	case !errors.Is(err, jetstream.ErrKeyNotFound):
		n.Log.WarnContext(ctx, "reading the announced outputs; asking the vendor", "bucket", n.KV.Bucket(), "err", err)
	}
	return n.Vendor.Output(ctx, identifier)
}

// OnWait is Handler.OnWait: it records the delivery as waiting for each identifier, then looks
// again whether one was announced meanwhile, in which case the delivery comes back at once
// instead of after the poll interval. A failed write only costs the wake-up: the poll finds it.
func (n *Notified) OnWait(ctx context.Context, m *stage.Message, identifiers []string) error {
	subject := m.AckSubject()
	if subject == "" {
		return nil
	}
	for _, id := range identifiers {
		if _, err := n.KV.PutString(ctx, waitPrefix+id, subject); err != nil {
			n.Log.WarnContext(ctx, "recording a wait for a notification; the poll will find the output", "request", id, "err", err)
			return nil
		}
	}
	for _, id := range identifiers {
		if _, err := n.KV.Get(ctx, outPrefix+id); err == nil {
			return stage.Wait(0, "output announced meanwhile")
		}
	}
	return nil
}

// Announce records a notified output and wakes the delivery waiting for it; it is the handler
// of vendor.Client.Notifications. The client skips the duplicates and stale events it has seen
// itself; the record catches those a restarted replica gets again (a replay after its cursor):
// an output recorded with a later endedAtTime is not replaced. Its error (the output could not
// be recorded) makes the stream resume before this notification.
func (n *Notified) Announce(ctx context.Context, x vendor.Notification) error {
	id := x.RequestIdentifier()
	if e, err := n.KV.Get(ctx, outPrefix+id); err == nil {
		var have notifiedOutput
		if json.Unmarshal(e.Value(), &have) == nil && have.Published.After(x.EndedAt) {
			n.count("stale")
			n.Log.DebugContext(ctx, "stale notification: a later output is recorded", "request", id, "event_id", x.EventID)
			return nil
		}
	}
	rec, err := json.Marshal(notifiedOutput{Key: x.Key, Digest: x.Digest, ContentType: x.ContentType,
		Published: x.EndedAt, EventID: x.EventID})
	if err != nil {
		return err
	}
	if _, err := n.KV.Put(ctx, outPrefix+id, rec); err != nil {
		return fmt.Errorf("record the output of %s: %w", id, err)
	}
	n.count("handled")
	n.Log.DebugContext(ctx, "output announced", "request", id, "key", x.Key, "event_id", x.EventID)
	if e, err := n.KV.Get(ctx, waitPrefix+id); err == nil {
		if err := stage.Wake(n.NC, string(e.Value())); err != nil {
			n.Log.WarnContext(ctx, "waking the delivery waiting for an output; the poll will", "request", id, "err", err)
		}
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		n.Log.WarnContext(ctx, "reading the wait for an output; the poll will find it", "request", id, "err", err)
	}
	if x.EventID != "" {
		// Where a restarted replica resumes; replicas write it alike, and an older id written
		// last only replays a few notifications, which are recorded again.
		if _, err := n.KV.PutString(ctx, cursorKey, x.EventID); err != nil {
			n.Log.DebugContext(ctx, "recording the notification cursor", "err", err)
		}
	}
	return nil
}

// Listen runs the notification stream of client until ctx ends.
func (n *Notified) Listen(ctx context.Context, client *vendor.Client, o vendor.NotifyOptions) error {
	if e, err := n.KV.Get(ctx, cursorKey); err == nil && o.LastEventID == "" {
		o.LastEventID = string(e.Value())
	}
	o.OnConnect = func(last string) {
		n.Log.InfoContext(ctx, "listening to the vendor's notifications", "last_event_id", last)
	}
	o.OnSkip = func(x vendor.Notification, reason string) {
		outcome := reason
		if strings.HasPrefix(outcome, "invalid") {
			outcome = "invalid"
			n.Log.WarnContext(ctx, "vendor notification not understood", "event_id", x.EventID, "reason", reason)
		}
		n.count(outcome)
	}
	err := client.Notifications(ctx, o, n.Announce)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// listener is the runner of the notification stream.
type listener struct {
	n      *Notified
	client *vendor.Client
}

func (l listener) Run(ctx context.Context) error {
	return l.n.Listen(ctx, l.client, vendor.NotifyOptions{})
}

// buildNotified wires the poller with notifications: the stage, whose lookups and waits go
// through Notified, and the listener.
func buildNotified(env *service.Env, v *vendor.Client, interval time.Duration) ([]service.Runner, error) {
	if env.Streams == nil || env.Streams.Outputs == nil {
		return nil, errors.New("VENDOR_NOTIFICATIONS=sse needs the key-value bucket of outputs: run `marketpipe migrate`")
	}
	counts := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "marketpipe_vendor_notifications_total",
		Help: "Vendor notifications by outcome (handled, duplicate, stale, invalid), and output lookups answered from one (lookup_hit)."},
		[]string{"outcome"})
	if err := env.Registry.Register(counts); err != nil {
		return nil, fmt.Errorf("register notification metrics: %w", err)
	}
	n := &Notified{KV: env.Streams.Outputs, NC: env.NC, Vendor: v, Log: env.Log.With("component", "notifications"),
		Counted: func(outcome string) { counts.WithLabelValues(outcome).Inc() }}
	s, err := stageWith(env, &Handler{Vendor: n, Interval: interval, Now: time.Now, OnWait: n.OnWait})
	if err != nil {
		return nil, err
	}
	env.Log.Info("vendor notifications on: polling every POLL_INTERVAL only as a fallback", "poll_interval", interval)
	return []service.Runner{s, listener{n: n, client: v}}, nil
}
