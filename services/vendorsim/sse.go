package vendorsim

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// NotificationsPath is HAPI's server-sent event stream of the account's notifications.
const NotificationsPath = Prefix + "/notifications/sse"

// MaxNotificationStreams is how many notification streams one client may hold open at once;
// HAPI answers 429 to one more.
const MaxNotificationStreams = 16

// DefaultHeartbeat is how often an idle notification stream gets an empty heartbeat event.
const DefaultHeartbeat = 15 * time.Second

// NotificationRetention is how long a notification can be replayed after a reconnection
// (Last-Event-ID): 48 hours, as HAPI keeps them.
const NotificationRetention = 48 * time.Hour

// maxKeptNotifications bounds the replay log in memory, whatever its age.
const maxKeptNotifications = 100_000

// notification is one event of the stream: its id, SSE event name and data.
type notification struct {
	id   uint64
	name string
	data []byte
	at   time.Time // when it was published, for the retention
}

// notifier publishes notifications to the open streams and keeps them for replay.
type notifier struct {
	mu      sync.Mutex
	log     []notification // ids increasing
	nextID  uint64
	streams map[*sseStream]struct{}
	paused  bool
	// listened is set once a stream was opened: until then no output is announced, so a
	// simulator nobody listens to does not prepare every output when it becomes ready.
	listened bool
	closed   bool
	timers   map[*time.Timer]struct{}
	// published is when each request's output was published (its DistributionPublished event).
	published map[string]time.Time
}

// sseStream is one open connection.
type sseStream struct {
	wake chan struct{} // a notification was added (buffered 1)
	drop chan struct{} // closed to end the stream (DropNotificationStreams)
}

func newNotifier() *notifier {
	return &notifier{nextID: 1, streams: map[*sseStream]struct{}{}, published: map[string]time.Time{},
		timers: map[*time.Timer]struct{}{}}
}

// close stops the pending publications and ends the open streams.
func (n *notifier) close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.closed = true
	for t := range n.timers {
		t.Stop()
	}
	clear(n.timers)
	for st := range n.streams {
		close(st.drop)
		delete(n.streams, st)
	}
}

// schedulePublication announces req's output on the notification stream when it becomes ready
// (readyAt), if a client has listened to the stream by then.
func (s *Server) schedulePublication(req *request) {
	ready := s.readyAt(req)
	n := s.notes
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return
	}
	var t *time.Timer
	t = time.AfterFunc(max(ready.Sub(s.opts.Now()), 0), func() {
		n.mu.Lock()
		_, pending := n.timers[t]
		delete(n.timers, t)
		listened := n.listened
		n.mu.Unlock()
		if pending && listened {
			s.publishDistribution(req, ready)
		}
	})
	n.timers[t] = struct{}{}
}

// add appends notifications and wakes every stream.
func (n *notifier) add(now time.Time, ns ...notification) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, e := range ns {
		e.id, e.at = n.nextID, now
		n.nextID++
		n.log = append(n.log, e)
	}
	cut := 0
	for cut < len(n.log) && (len(n.log)-cut > maxKeptNotifications || now.Sub(n.log[cut].at) > NotificationRetention) {
		cut++
	}
	n.log = n.log[cut:]
	for st := range n.streams {
		select {
		case st.wake <- struct{}{}:
		default:
		}
	}
}

// after returns the notifications with an id above id.
func (n *notifier) after(id uint64) []notification {
	n.mu.Lock()
	defer n.mu.Unlock()
	i := 0
	for i < len(n.log) && n.log[i].id <= id {
		i++
	}
	return append([]notification(nil), n.log[i:]...)
}

// lastID is the id of the newest notification (0: none yet).
func (n *notifier) lastID() uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.nextID - 1
}

// DistributionPublished is the data of a DistributionPublished event, as HAPI.md describes its
// JSON-LD DistributionPublishedActivity.
type DistributionPublished struct {
	Type        string    `json:"@type"`
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

// EventDistributionPublished is the SSE event name of a published output.
const EventDistributionPublished = "DistributionPublished"

// publishDistribution announces req's output, ready at ready, on the notification stream:
// the file is prepared first, for its digest. With Faults.DuplicateEvents the event is sent
// twice; with Faults.StaleEvents it is followed by an event for the same distribution with an
// earlier endedAtTime and another digest, which a client must ignore.
func (s *Server) publishDistribution(req *request, ready time.Time) {
	p, err := s.prepare(req)
	if err != nil {
		s.log.Warn("vendorsim: preparing a published output", "request", req.id, "error", err)
		return
	}
	sum, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(p.digest, "sha512="))
	if err != nil {
		return
	}
	ev := DistributionPublished{Type: "DistributionPublishedActivity", EndedAtTime: ready.UTC()}
	ev.Generated.ID = Prefix + "/catalogs/" + s.opts.Account + "/content/responses/" + req.key()
	ev.Generated.Identifier = req.key()
	ev.Generated.ContentType = MediaType
	ev.Generated.Digest.Algorithm = "SHA512"
	ev.Generated.Digest.Value = hex.EncodeToString(sum)
	data, _ := json.Marshal(ev)
	ns := []notification{{name: EventDistributionPublished, data: data}}
	if s.opts.Faults.DuplicateEvents {
		ns = append(ns, ns[0])
	}
	if s.opts.Faults.StaleEvents {
		stale := ev
		stale.EndedAtTime = ev.EndedAtTime.Add(-time.Minute)
		flipped := append([]byte(nil), sum...)
		flipped[0] ^= 0xff
		stale.Generated.Digest.Value = hex.EncodeToString(flipped)
		sdata, _ := json.Marshal(stale)
		ns = append(ns, notification{name: EventDistributionPublished, data: sdata})
	}
	s.notes.mu.Lock()
	s.notes.published[req.id] = s.opts.Now()
	s.notes.mu.Unlock()
	s.notes.add(s.opts.Now(), ns...)
}

// Published returns when the output of the request with this identifier was announced on the
// notification stream, and false when it was not (yet).
func (s *Server) Published(identifier string) (time.Time, bool) {
	s.notes.mu.Lock()
	defer s.notes.mu.Unlock()
	t, ok := s.notes.published[identifier]
	return t, ok
}

// DropNotificationStreams ends every open notification stream, as a network failure would; the
// clients reconnect. It returns how many it ended.
func (s *Server) DropNotificationStreams() int {
	s.notes.mu.Lock()
	defer s.notes.mu.Unlock()
	n := 0
	for st := range s.notes.streams {
		close(st.drop)
		delete(s.notes.streams, st)
		n++
	}
	return n
}

// PauseNotifications, while paused, ends every open stream and answers new ones 503; the
// notifications published meanwhile are kept, and a client reconnecting with Last-Event-ID gets
// them once the pause ends.
func (s *Server) PauseNotifications(paused bool) {
	s.notes.mu.Lock()
	s.notes.paused = paused
	s.notes.mu.Unlock()
	if paused {
		s.DropNotificationStreams()
	}
}

// NotificationStreams returns how many notification streams are open.
func (s *Server) NotificationStreams() int {
	s.notes.mu.Lock()
	defer s.notes.mu.Unlock()
	return len(s.notes.streams)
}

// notifications serves GET /eap/notifications/sse: the notifications after Last-Event-ID (none
// of the past without it), then each as it is published, and a heartbeat when idle.
func (s *Server) notifications(w http.ResponseWriter, r *http.Request) {
	var from uint64
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		id, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			writeStatus(w, http.StatusBadRequest, fmt.Sprintf("Last-Event-ID %q is not an event id of this stream", v))
			return
		}
		from = id
		if from > s.notes.lastID() {
			// An id this stream never gave: the client heard another run of the simulator.
			// Everything it has is news to that client.
			from = 0
		}
	} else {
		from = s.notes.lastID()
	}
	st := &sseStream{wake: make(chan struct{}, 1), drop: make(chan struct{})}
	s.notes.mu.Lock()
	paused, full := s.notes.paused, len(s.notes.streams) >= MaxNotificationStreams
	if !paused && !full {
		s.notes.streams[st] = struct{}{}
		s.notes.listened = true
	}
	s.notes.mu.Unlock()
	switch {
	case paused:
		w.Header().Set("Retry-After", "1")
		writeStatus(w, http.StatusServiceUnavailable, "notifications paused (simulator)")
		return
	case full:
		w.Header().Set("Retry-After", "5")
		writeStatus(w, http.StatusTooManyRequests,
			fmt.Sprintf("at most %d notification streams per client", MaxNotificationStreams))
		return
	}
	defer func() {
		s.notes.mu.Lock()
		delete(s.notes.streams, st)
		s.notes.mu.Unlock()
	}()
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return
	}
	beat := s.opts.Heartbeat
	if beat <= 0 {
		beat = DefaultHeartbeat
	}
	t := time.NewTicker(beat)
	defer t.Stop()
	for {
		for _, e := range s.notes.after(from) {
			if _, err := fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", e.id, e.name, e.data); err != nil {
				return
			}
			from = e.id
		}
		if err := rc.Flush(); err != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-st.drop:
			panic(http.ErrAbortHandler) // the connection ends without a goodbye
		case <-st.wake:
		case <-t.C:
			if _, err := fmt.Fprint(w, "event: heartbeat\ndata:\n\n"); err != nil {
				return
			}
		}
	}
}

// ReadyAt returns when the output of the request with this identifier is (or was) ready, and
// false when there is no such request.
func (s *Server) ReadyAt(identifier string) (time.Time, bool) {
	req := s.lookup(identifier)
	if req == nil {
		return time.Time{}, false
	}
	return s.readyAt(req), true
}
