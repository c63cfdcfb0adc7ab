// Package poller is the second stage: it asks the vendor whether a requested job's output is
// ready. Not ready means the message is redelivered after the poll interval (NakWithDelay), so
// no goroutine sleeps per job and ten thousand pending requests cost only their polls. Past the
// job's deadline the job fails with the reason. Its consumer reads mp.job.*.requested.
package poller

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/marketpipe/marketpipe/pkg/auth"
	"github.com/marketpipe/marketpipe/pkg/config"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/service"
	"github.com/marketpipe/marketpipe/pkg/stage"
	"github.com/marketpipe/marketpipe/pkg/vendor"
)

// Name is the stage's consumer and service name.
const Name = "poller"

// Vendor tells whether a request's output is ready.
type Vendor interface {
	Output(ctx context.Context, identifier string) (*vendor.Output, error)
}

// Handler polls one requested job per delivery.
type Handler struct {
	Vendor   Vendor
	Interval time.Duration // between polls of one job
	Now      func() time.Time
	// OnWait, when set, is called before the handler waits, with the vendor request identifiers
	// still not ready; its error, if any, is returned instead of the Wait (a stage.Wait of
	// another delay included). Notifications use it (notify.go).
	OnWait func(ctx context.Context, m *stage.Message, identifiers []string) error
}

// HandleJob implements stage.JobHandler: it returns "ready", "failed" past the deadline, or
// waits the interval while the output is not ready.
func (h *Handler) HandleJob(ctx context.Context, j events.Job, m *stage.Message) (*events.Job, error) {
	now := h.Now()
	if !j.Deadline.IsZero() && now.After(j.Deadline) {
		what := "request " + j.VendorRequestID
		if len(j.Parts) > 0 {
			what = fmt.Sprintf("the %d requests of the job", len(j.Parts))
		}
		failed := j.Fail(fmt.Sprintf("vendor output for %s not ready by the deadline %s (%d polls)",
			what, j.Deadline.Format(time.RFC3339), m.NumDelivered()-1), now)
		return &failed, nil
	}
	if len(j.Parts) > 0 {
		return h.parts(ctx, j, m)
	}
	out, err := h.Vendor.Output(ctx, j.VendorRequestID)
	if err != nil {
		// The consumer delivers without limit; the deadline above ends a job whose vendor
		// stays down. Back off like any transient failure.
		return nil, fmt.Errorf("poll vendor request %s: %w", j.VendorRequestID, err)
	}
	if out == nil {
		return nil, h.wait(ctx, m, []string{j.VendorRequestID})
	}
	// Ready when the vendor said so: the call may have taken the vendor a while.
	next := j.Advance(events.Ready, h.Now())
	next.ResponseKey = out.Key
	next.ResponseDigest = out.Digest
	next.ResponseSize = max(out.ContentLength, 0)
	next.Polls = int(m.NumDelivered())
	return &next, nil
}

// parts polls the vendor requests of a job of several parts, in order: it is ready when every
// part's output is. The first part not ready ends the round, since the vendor prepares them
// about in the order they were made: a round costs the parts ready so far and one more, and
// the parts after it count as not ready (for OnWait).
func (h *Handler) parts(ctx context.Context, j events.Job, m *stage.Message) (*events.Job, error) {
	parts := slices.Clone(j.Parts)
	for i := range parts {
		p := &parts[i]
		out, err := h.Vendor.Output(ctx, p.VendorRequestID)
		if err != nil {
			return nil, fmt.Errorf("poll vendor request %s (part %d of %d): %w", p.VendorRequestID, i+1, len(parts), err)
		}
		if out == nil {
			pending := make([]string, 0, len(parts)-i)
			for _, q := range parts[i:] {
				pending = append(pending, q.VendorRequestID)
			}
			return nil, h.wait(ctx, m, pending)
		}
		p.ResponseKey, p.ResponseDigest, p.ResponseSize = out.Key, out.Digest, max(out.ContentLength, 0)
	}
	next := j.Advance(events.Ready, h.Now())
	next.Parts = parts
	next.Polls = int(m.NumDelivered())
	return &next, nil
}

// wait calls OnWait with the identifiers not ready, and returns the stage's wait.
func (h *Handler) wait(ctx context.Context, m *stage.Message, identifiers []string) error {
	if h.OnWait != nil {
		if err := h.OnWait(ctx, m, identifiers); err != nil {
			return err
		}
	}
	return stage.Wait(h.Interval, "output not ready")
}

// Stage returns the poller stage on env's JetStream.
func Stage(env *service.Env, v Vendor, interval time.Duration) (*stage.Stage, error) {
	return stageWith(env, &Handler{Vendor: v, Interval: interval, Now: time.Now})
}

func stageWith(env *service.Env, h *Handler) (*stage.Stage, error) {
	return stage.NewJobs(env.JS, Consumer, events.Decode, h, env.StageOptions())
}

// Consumer is the poller's stage: "requested" events, each waited on until its output is ready.
var Consumer = stage.Config{
	Name: Name, Stream: events.JobsStream, Filters: []string{events.JobFilter(events.Requested)},
	MaxBytes:   events.MaxJobEventBytes,
	MaxDeliver: -1, Concurrency: 32, AckWait: time.Minute, MaxAckPending: 20000,
}

// Uses is what the poller does on NATS (its identity's permissions): it publishes "ready" or
// "failed", and keeps the outputs notifications announced and the deliveries waiting for them
// (events.OutputsBucket, notify.go).
var Uses = auth.Uses{
	Consumers: []stage.Config{Consumer},
	Publishes: []string{events.JobFilter(events.Ready), events.JobFilter(events.Failed)},
	KVWrite:   []string{events.OutputsBucket},
}

// Summary is what the poller does, for -h.
const Summary = "polls the vendor until each request's output is ready (POLL_INTERVAL)"

// Settings are the poller's own variables (pkg/config reads them).
type Settings struct {
	Interval time.Duration "env:\"POLL_INTERVAL,positive\" default:\"30s\" shown:\"30s; 5m with VENDOR_NOTIFICATIONS=sse (1s under `dev`)\" help:\"time between two polls of one request (with sse, the fallback for a notification missed)\""
}

// Build is the service's wiring.
func Build(ctx context.Context, env *service.Env) ([]service.Runner, error) {
	var s Settings
	if err := config.Read(env.Lookup, &s); err != nil {
		return nil, err
	}
	v, err := env.Vendor()
	if err != nil {
		return nil, err
	}
	if env.Config.VendorNotifications != NotificationsSSE {
		return service.Only(Stage(env, v, s.Interval))
	}
	if _, set := env.Lookup("POLL_INTERVAL"); !set {
		s.Interval = SSEPollInterval
	}
	return buildNotified(env, v, s.Interval)
}
