package vendor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"
)

// NotificationsPath is HAPI's server-sent event stream of the account's notifications, relative
// to the base URL.
const NotificationsPath = "/notifications/sse"

// MaxNotificationStreams is how many notification streams HAPI lets one client hold open; one
// more is refused with 429. Each poller replica holds one.
const MaxNotificationStreams = 16

// Bounds on what the notification stream may send: a longer line or a larger event ends the
// connection (the client reconnects from the last event it handled).
const (
	MaxEventLine = 64 << 10
	MaxEventData = 256 << 10
)

// Defaults of NotifyOptions.
const (
	// DefaultSilence is how long a stream may stay silent (no event, no heartbeat) before the
	// client takes it for dead and reconnects; HAPI sends heartbeats more often.
	DefaultSilence = 90 * time.Second
	// DefaultNotifyMinBackoff and DefaultNotifyMaxBackoff bound the wait between reconnections.
	DefaultNotifyMinBackoff = time.Second
	DefaultNotifyMaxBackoff = time.Minute
	// DefaultRemember is how many digests (and distributions) the client remembers to skip
	// duplicates and stale events: far more than the events of the 48 hours a Last-Event-ID
	// replays.
	DefaultRemember = 200_000
)

// Notification is one DistributionPublished event: an output is ready.
type Notification struct {
	// EventID is the SSE id of the event (what Last-Event-ID resumes after).
	EventID string
	// Distribution is the distribution's URL (generated.@id).
	Distribution string
	// Key is its file name (generated.identifier), the key of the responses listing and of the
	// download: "<request identifier>.<yyyymmdd>.bbg".
	Key         string
	ContentType string
	// Digest is the SHA-512 of the file as Output.Digest gives it: "sha512=<base64>".
	Digest string
	// EndedAt is when the distribution was published (endedAtTime).
	EndedAt time.Time
}

// RequestIdentifier is the identifier of the request whose output this is: the file name before
// its first '.'.
func (n Notification) RequestIdentifier() string {
	id, _, _ := strings.Cut(n.Key, ".")
	return id
}

// Output is the notification as the responses listing would describe the file; its size is not
// known (-1).
func (n Notification) Output() *Output {
	return &Output{Key: n.Key, ContentType: n.ContentType, ContentLength: -1, Digest: n.Digest, LastModified: n.EndedAt}
}

// NotifyOptions configure Client.Notifications. The zero value uses the defaults.
type NotifyOptions struct {
	// LastEventID, when set, resumes after that event: the events published since (for 48 hours)
	// are sent first.
	LastEventID string
	// Silence is how long a stream may send nothing before the client reconnects; default
	// DefaultSilence.
	Silence time.Duration
	// MinBackoff and MaxBackoff bound the wait before a reconnection (exponential, jittered;
	// a Retry-After longer than MinBackoff is honoured); defaults DefaultNotifyMinBackoff and
	// DefaultNotifyMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// Remember bounds the digests and distributions remembered; default DefaultRemember.
	Remember int
	// OnConnect, when set, is called each time a stream is open (with the Last-Event-ID it
	// resumed after, "" for none); OnSkip for each event not handed to the handler, with the
	// reason ("duplicate", "stale" or "invalid: ..."). Both are for logs, metrics and tests.
	OnConnect func(lastEventID string)
	OnSkip    func(n Notification, reason string)
}

// Notifications listens to the notification stream (GET /notifications/sse, authenticated as
// every call) until ctx ends, and calls handle for each output published, once: an event whose
// digest was handled already is a duplicate, one whose endedAtTime is older than the last
// handled for its distribution is stale, and neither reaches handle. It reconnects whenever the
// stream ends, fails or stays silent past Silence (heartbeats count), with backoff, resuming
// after the last event handled (Last-Event-ID), so an event is not lost to a disconnection of
// less than 48 hours. When handle fails, the stream is dropped and resumed before that event,
// which comes again. It returns ctx's error, or an error that retrying cannot cure (refused
// credentials).
func (c *Client) Notifications(ctx context.Context, o NotifyOptions, handle func(context.Context, Notification) error) error {
	if o.Silence <= 0 {
		o.Silence = DefaultSilence
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = DefaultNotifyMinBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultNotifyMaxBackoff
	}
	o.MaxBackoff = max(o.MaxBackoff, o.MinBackoff)
	if o.Remember <= 0 {
		o.Remember = DefaultRemember
	}
	l := &listener{c: c, o: o, handle: handle, last: o.LastEventID,
		digests: newBoundedSet[struct{}](o.Remember), ended: newBoundedSet[time.Time](o.Remember)}
	failures := 0
	for {
		got, err := l.stream(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, ErrCredentials) {
			return fmt.Errorf("notifications: %w", err)
		}
		var ae *APIError
		if errors.As(err, &ae) && ae.StatusCode == http.StatusUnauthorized && c.auth != nil {
			c.auth.renew()
		}
		if got {
			failures = 0 // the stream worked for a while: start backing off afresh
		}
		d := o.MinBackoff << min(failures, 16)
		if d <= 0 || d > o.MaxBackoff {
			d = o.MaxBackoff
		}
		d = d/2 + rand.N(d/2+1)
		if ae != nil && ae.RetryAfter > d {
			d = min(ae.RetryAfter, c.cfg.MaxRetryAfter)
		}
		failures++
		c.log.LogAttrs(ctx, slog.LevelWarn, "vendor notification stream ended; reconnecting",
			slog.String("error", fmt.Sprint(err)), slog.Duration("delay", d), slog.String("last_event_id", l.last))
		if err := sleep(ctx, d); err != nil {
			return err
		}
	}
}

// listener is the state of Notifications across connections.
type listener struct {
	c       *Client
	o       NotifyOptions
	handle  func(context.Context, Notification) error
	last    string                // id of the last event handled (or skipped)
	digests *boundedSet[struct{}] // digests handled
	ended   *boundedSet[time.Time]
}

// errSilent ends a stream that sent nothing for NotifyOptions.Silence.
var errSilent = errors.New("notification stream silent")

// stream reads one connection until it ends; got reports whether it was opened.
func (l *listener) stream(ctx context.Context) (got bool, err error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	cl := &call{op: "notifications", method: http.MethodGet, path: NotificationsPath,
		header: http.Header{"Accept": {"text/event-stream"}, "Cache-Control": {"no-cache"}}}
	if l.last != "" {
		cl.header.Set("Last-Event-ID", l.last)
	}
	// The watchdog, from the request on (a server that never answers is silent too): every line
	// read pushes the deadline back.
	alive := make(chan struct{}, 1)
	go func() {
		t := time.NewTimer(l.o.Silence)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-alive:
				if !t.Stop() {
					select {
					case <-t.C:
					default:
					}
				}
				t.Reset(l.o.Silence)
			case <-t.C:
				cancel(errSilent)
				return
			}
		}
	}()
	resp, _, err := l.c.send(ctx, cl)
	if err != nil {
		if errors.Is(context.Cause(ctx), errSilent) {
			return false, fmt.Errorf("notification stream: no answer within %s: %w", l.o.Silence, err)
		}
		return false, err
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		return false, fmt.Errorf("notification stream: Content-Type %q, want text/event-stream", ct)
	}
	if l.o.OnConnect != nil {
		l.o.OnConnect(l.last)
	}
	err = readEvents(resp.Body, func() {
		select {
		case alive <- struct{}{}:
		default:
		}
	}, func(e sseEvent) error { return l.dispatch(ctx, e) })
	if cause := context.Cause(ctx); cause != nil && errors.Is(cause, errSilent) {
		return true, fmt.Errorf("%w for %s", errSilent, l.o.Silence)
	}
	return true, err
}

// sseEvent is one dispatched server-sent event.
type sseEvent struct {
	id, name string
	hasID    bool
	data     []byte
}

// readEvents parses a text/event-stream (W3C server-sent events) from r: lines ending in LF or
// CRLF, "field: value", comments starting with ':', an empty line dispatching the event. It
// calls alive for every line and dispatch for every event with data, and returns dispatch's
// error, the reader's, or one for a line longer than MaxEventLine or an event's data larger
// than MaxEventData.
func readEvents(r io.Reader, alive func(), dispatch func(sseEvent) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), MaxEventLine)
	var (
		e       sseEvent
		data    bytes.Buffer
		hasData bool
	)
	for sc.Scan() {
		alive()
		line := sc.Bytes()
		if len(line) == 0 {
			if hasData {
				e.data = bytes.TrimSuffix(data.Bytes(), []byte("\n"))
				if err := dispatch(e); err != nil {
					return err
				}
			} else if e.hasID {
				// An event without data still moves the last event id on.
				if err := dispatch(sseEvent{id: e.id, hasID: true}); err != nil {
					return err
				}
			}
			e, hasData = sseEvent{}, false
			data.Reset()
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "event":
			e.name = string(value)
		case "data":
			if data.Len()+len(value)+1 > MaxEventData {
				return fmt.Errorf("notification stream: an event's data exceeds %d bytes", MaxEventData)
			}
			data.Write(value)
			data.WriteByte('\n')
			hasData = true
		case "id":
			if !bytes.ContainsRune(value, 0) {
				e.id, e.hasID = string(value), true
			}
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return fmt.Errorf("notification stream: a line exceeds %d bytes", MaxEventLine)
		}
		return err
	}
	return io.ErrUnexpectedEOF // the server ended the stream
}

// EventDistributionPublished is the SSE event name of a published output.
const EventDistributionPublished = "DistributionPublished"

// distributionPublished is the JSON-LD DistributionPublishedActivity of the event's data.
type distributionPublished struct {
	EndedAtTime time.Time `json:"endedAtTime"`
	Generated   struct {
		ID          string `json:"@id"`
		Identifier  string `json:"identifier"`
		ContentType string `json:"contentType"`
		Digest      struct {
			Algorithm string `json:"digestAlgorithm"`
			Value     string `json:"digestValue"`
		} `json:"digest"`
	} `json:"generated"`
}

// parseNotification reads a DistributionPublished event's data.
func parseNotification(id string, data []byte) (Notification, error) {
	var d distributionPublished
	if err := json.Unmarshal(data, &d); err != nil {
		return Notification{}, fmt.Errorf("data is not a DistributionPublishedActivity: %v", err)
	}
	g := d.Generated
	n := Notification{EventID: id, Distribution: g.ID, Key: g.Identifier, ContentType: g.ContentType, EndedAt: d.EndedAtTime}
	if n.Distribution == "" {
		n.Distribution = n.Key
	}
	if !ValidIdentifier(n.RequestIdentifier()) {
		return n, fmt.Errorf("generated.identifier %q is not <request identifier>.<date>.bbg", g.Identifier)
	}
	if !strings.EqualFold(g.Digest.Algorithm, "SHA512") {
		return n, fmt.Errorf("digestAlgorithm %q: want SHA512", g.Digest.Algorithm)
	}
	sum, err := hex.DecodeString(g.Digest.Value)
	if err != nil || len(sum) != 64 {
		return n, fmt.Errorf("digestValue %q: want the hex of 64 bytes", g.Digest.Value)
	}
	if d.EndedAtTime.IsZero() {
		return n, errors.New("endedAtTime is missing")
	}
	n.Digest = "sha512=" + base64.StdEncoding.EncodeToString(sum)
	return n, nil
}

// dispatch handles one event: a DistributionPublished one is handed to the handler unless it is
// a duplicate or stale; the last event id moves on once the event is dealt with.
func (l *listener) dispatch(ctx context.Context, e sseEvent) error {
	if e.name == EventDistributionPublished {
		n, err := parseNotification(e.id, e.data)
		switch {
		case err != nil:
			l.skip(n, "invalid: "+err.Error())
		case l.digests.has(n.Digest):
			l.skip(n, "duplicate")
		case l.isStale(n):
			l.skip(n, "stale")
		default:
			if err := l.handle(ctx, n); err != nil {
				return fmt.Errorf("handling the notification of %s: %w", n.Key, err)
			}
			l.digests.add(n.Digest, struct{}{})
			l.ended.add(n.Distribution, n.EndedAt)
		}
	}
	if e.hasID {
		l.last = e.id
	}
	return nil
}

func (l *listener) isStale(n Notification) bool {
	last, ok := l.ended.get(n.Distribution)
	return ok && n.EndedAt.Before(last)
}

func (l *listener) skip(n Notification, reason string) {
	l.c.log.Debug("vendor notification skipped", "key", n.Key, "event_id", n.EventID, "reason", reason)
	if l.o.OnSkip != nil {
		l.o.OnSkip(n, reason)
	}
}

// boundedSet is a map that forgets its oldest entries beyond its size.
type boundedSet[V any] struct {
	mu    sync.Mutex
	max   int
	m     map[string]V
	order []string // insertion order, a ring once full
	next  int
}

func newBoundedSet[V any](size int) *boundedSet[V] {
	return &boundedSet[V]{max: size, m: map[string]V{}}
}

func (b *boundedSet[V]) has(k string) bool { _, ok := b.get(k); return ok }

func (b *boundedSet[V]) get(k string) (V, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	v, ok := b.m[k]
	return v, ok
}

func (b *boundedSet[V]) add(k string, v V) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.m[k]; ok {
		b.m[k] = v
		return
	}
	if len(b.order) < b.max {
		b.order = append(b.order, k)
	} else {
		delete(b.m, b.order[b.next])
		b.order[b.next] = k
		b.next = (b.next + 1) % b.max
	}
	b.m[k] = v
}
