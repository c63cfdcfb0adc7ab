package vendor_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/vendor"
	"github.com/marketpipe/marketpipe/services/vendorsim"
)

// notes collects what Notifications hands over and skips.
type notes struct {
	mu       sync.Mutex
	got      []vendor.Notification
	skipped  map[string]int // by reason
	connects []string       // the Last-Event-ID of each connection
}

func (n *notes) handle(_ context.Context, x vendor.Notification) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.got = append(n.got, x)
	return nil
}

func (n *notes) options() vendor.NotifyOptions {
	return vendor.NotifyOptions{MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		OnConnect: func(last string) { n.mu.Lock(); n.connects = append(n.connects, last); n.mu.Unlock() },
		OnSkip: func(_ vendor.Notification, reason string) {
			n.mu.Lock()
			if n.skipped == nil {
				n.skipped = map[string]int{}
			}
			n.skipped[reason]++
			n.mu.Unlock()
		}}
}

func (n *notes) keys() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var ks []string
	for _, x := range n.got {
		ks = append(ks, x.Key)
	}
	return ks
}

func (n *notes) count(f func() int) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return f()
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// listen runs Notifications until the test ends.
func listen(t *testing.T, c *vendor.Client, o vendor.NotifyOptions, n *notes) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Notifications(ctx, o, n.handle) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Notifications returned %v, want context.Canceled", err)
		}
	})
}

func submitN(t *testing.T, c *vendor.Client, prefix string, from, to int) []string {
	t.Helper()
	var ids []string
	for i := from; i < to; i++ {
		r := histReq
		r.Identifier = fmt.Sprintf("%s%02d", prefix, i)
		if err := c.Submit(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.Identifier)
	}
	return ids
}

// TestNotificationsOncePerOutput: with JWT credentials, every output published is handed over
// once, with the digest and key the listing gives, although the simulator sends each event twice
// and follows it with a stale one (earlier endedAtTime, another digest).
func TestNotificationsOncePerOutput(t *testing.T) {
	creds := &vendor.Credentials{ClientID: "cid", ClientSecret: secretHex}
	sim := startSim(t, vendorsim.Options{Credentials: creds, ReadyAfter: 50 * time.Millisecond,
		Faults: vendorsim.Faults{DuplicateEvents: true, StaleEvents: true}})
	c := newClient(t, vendor.Config{BaseURL: sim.URL + "/eap", Credentials: creds})
	n := &notes{}
	listen(t, c, n.options(), n)
	eventually(t, "the stream open", func() bool { return n.count(func() int { return len(n.connects) }) == 1 })
	ids := submitN(t, c, "sse", 0, 5)
	eventually(t, "five notifications", func() bool { return len(n.keys()) >= 5 })
	eventually(t, "the duplicates and stale events skipped", func() bool {
		return n.count(func() int { return n.skipped["duplicate"] + n.skipped["stale"] }) == 10
	})
	time.Sleep(200 * time.Millisecond)
	if got := n.keys(); len(got) != 5 {
		t.Fatalf("handed over %d notifications, want 5: %v", len(got), got)
	}
	n.mu.Lock()
	got := slices.Clone(n.got)
	n.mu.Unlock()
	// Published in any order (each output is prepared when ready), each once.
	slices.SortFunc(got, func(a, b vendor.Notification) int { return strings.Compare(a.Key, b.Key) })
	for i, x := range got {
		if x.RequestIdentifier() != ids[i] {
			t.Errorf("notification %d is for %s, want %s", i, x.RequestIdentifier(), ids[i])
		}
		out, err := c.Output(context.Background(), ids[i])
		if err != nil || out == nil {
			t.Fatalf("listing of %s: %v %v", ids[i], out, err)
		}
		if x.Key != out.Key || x.Digest != out.Digest {
			t.Errorf("notification %s %s, listing %s %s", x.Key, x.Digest, out.Key, out.Digest)
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.skipped["duplicate"] != 5 || n.skipped["stale"] != 5 {
		t.Errorf("skipped %v, want 5 duplicates and 5 stale", n.skipped)
	}
}

// TestNotificationsResumeAfterDrop: outputs published while the connection is down (dropped,
// then refused for a while) arrive after the reconnection, which carries Last-Event-ID; none is
// lost or handed over twice.
func TestNotificationsResumeAfterDrop(t *testing.T) {
	simSrv := vendorsim.NewServer(vendorsim.Options{RunDate: runDate, ReadyAfter: 20 * time.Millisecond})
	t.Cleanup(func() { simSrv.Close() })
	srv := httptest.NewServer(simSrv)
	t.Cleanup(srv.Close)
	c := newClient(t, vendor.Config{BaseURL: srv.URL + "/eap"})
	n := &notes{}
	listen(t, c, n.options(), n)
	eventually(t, "the stream open", func() bool { return simSrv.NotificationStreams() == 1 })
	submitN(t, c, "drop", 0, 3)
	eventually(t, "three notifications", func() bool { return len(n.keys()) == 3 })

	simSrv.PauseNotifications(true) // drops the stream and refuses new ones
	submitN(t, c, "drop", 3, 7)
	eventually(t, "the outputs published while paused", func() bool {
		_, ok := simSrv.Published("drop06")
		return ok
	})
	if got := len(n.keys()); got != 3 {
		t.Fatalf("%d notifications while the stream was down", got)
	}
	simSrv.PauseNotifications(false)
	eventually(t, "seven notifications", func() bool { return len(n.keys()) == 7 })
	// And a plain drop, without a pause.
	simSrv.DropNotificationStreams()
	submitN(t, c, "drop", 7, 9)
	eventually(t, "nine notifications", func() bool { return len(n.keys()) == 9 })
	time.Sleep(100 * time.Millisecond)
	got := n.keys()
	slices.Sort(got)
	if len(got) != 9 {
		t.Fatalf("%d notifications, want 9: %v", len(got), got)
	}
	for i, k := range got {
		if want := fmt.Sprintf("drop%02d.", i); !strings.HasPrefix(k, want) {
			t.Errorf("notification %d is %s, want %s...", i, k, want)
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.connects) < 3 || n.connects[0] != "" {
		t.Fatalf("connections with Last-Event-ID %q; want a first without, then reconnections with one", n.connects)
	}
	for _, last := range n.connects[1:] {
		if last == "" {
			t.Errorf("a reconnection without Last-Event-ID: %q", n.connects)
		}
	}
}

// TestNotificationsHeartbeats: heartbeats keep a quiet stream open; a stream that goes silent
// (no heartbeat either) is abandoned and opened again.
func TestNotificationsHeartbeats(t *testing.T) {
	simSrv := vendorsim.NewServer(vendorsim.Options{RunDate: runDate, Heartbeat: 50 * time.Millisecond})
	t.Cleanup(func() { simSrv.Close() })
	srv := httptest.NewServer(simSrv)
	t.Cleanup(srv.Close)
	c := newClient(t, vendor.Config{BaseURL: srv.URL + "/eap"})
	n := &notes{}
	o := n.options()
	o.Silence = 300 * time.Millisecond
	listen(t, c, o, n)
	eventually(t, "the stream open", func() bool { return simSrv.NotificationStreams() == 1 })
	time.Sleep(time.Second) // more than three times Silence: the heartbeats keep it
	if got := n.count(func() int { return len(n.connects) }); got != 1 {
		t.Errorf("%d connections over a second of heartbeats, want 1", got)
	}

	// A server that sends headers, then nothing: the client leaves it after Silence.
	var mu sync.Mutex
	opened := 0
	silent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		opened++
		mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(silent.Close)
	c2 := newClient(t, vendor.Config{BaseURL: silent.URL + "/eap", Account: "a"})
	n2 := &notes{}
	o2 := n2.options()
	o2.Silence = 100 * time.Millisecond
	listen(t, c2, o2, n2)
	eventually(t, "three connections to the silent server", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return opened >= 3
	})

	// A server that never answers the request at all is silent too.
	asked := 0
	mute := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		asked++
		mu.Unlock()
		<-r.Context().Done()
	}))
	t.Cleanup(mute.Close)
	c3 := newClient(t, vendor.Config{BaseURL: mute.URL + "/eap", Account: "a"})
	n3 := &notes{}
	o3 := n3.options()
	o3.Silence = 100 * time.Millisecond
	listen(t, c3, o3, n3)
	eventually(t, "three requests to the mute server", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return asked >= 3
	})
	if got := n3.count(func() int { return len(n3.connects) }); got != 0 {
		t.Errorf("%d streams opened on a server that never answered", got)
	}
}

// TestNotificationsLimitPerClient: the simulator refuses a seventeenth stream with 429.
func TestNotificationsLimitPerClient(t *testing.T) {
	simSrv := vendorsim.NewServer(vendorsim.Options{RunDate: runDate})
	t.Cleanup(func() { simSrv.Close() })
	srv := httptest.NewServer(simSrv)
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	open := func() *http.Response {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/eap/notifications/sse", nil)
		req.Header.Set("api-version", "2")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	for i := range vendor.MaxNotificationStreams {
		if resp := open(); resp.StatusCode != http.StatusOK {
			t.Fatalf("stream %d: %s", i+1, resp.Status)
		}
	}
	if resp := open(); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("stream 17: %s, want 429", resp.Status)
	}
	// The client backs off on a 429 instead of failing; it gets in once a stream is closed.
	c := newClient(t, vendor.Config{BaseURL: srv.URL + "/eap"})
	n := &notes{}
	o := n.options()
	o.MinBackoff, o.MaxBackoff = 50*time.Millisecond, 50*time.Millisecond
	listen(t, c, o, n)
	time.Sleep(200 * time.Millisecond)
	if simSrv.NotificationStreams() != vendor.MaxNotificationStreams {
		t.Fatalf("%d streams open, want %d", simSrv.NotificationStreams(), vendor.MaxNotificationStreams)
	}
	simSrv.DropNotificationStreams()
	eventually(t, "the client's stream open", func() bool { return n.count(func() int { return len(n.connects) }) == 1 })
}

// TestNotificationsRefuseHostileInput: an overlong line or event ends the connection instead of
// growing memory without bound, and an event that does not describe an output is skipped.
func TestNotificationsRefuseHostileInput(t *testing.T) {
	var mu sync.Mutex
	conns := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		conns++
		k := conns
		mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		switch k {
		case 1:
			fmt.Fprintf(w, "id: 1\nevent: DistributionPublished\ndata: %s\n\n", strings.Repeat("x", vendor.MaxEventLine+1))
		case 2:
			for range vendor.MaxEventData / 1000 {
				fmt.Fprintf(w, "data: %s\n", strings.Repeat("y", 999))
			}
			fmt.Fprint(w, "data: more\n\n")
		default:
			fmt.Fprint(w, "id: 7\nevent: DistributionPublished\ndata: {\"generated\":{\"identifier\":\"../etc\"}}\n\n")
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}
	}))
	t.Cleanup(srv.Close)
	c := newClient(t, vendor.Config{BaseURL: srv.URL + "/eap", Account: "a"})
	n := &notes{}
	listen(t, c, n.options(), n)
	eventually(t, "the invalid event skipped", func() bool {
		return n.count(func() int {
			for r, k := range n.skipped {
				if strings.HasPrefix(r, "invalid") && k > 0 {
					return 1
				}
			}
			return 0
		}) == 1
	})
	if len(n.keys()) != 0 {
		t.Errorf("handed over %v", n.keys())
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.connects) != 3 || n.connects[2] != "" {
		t.Errorf("connections %q: want three, none after an event id (the first two ended before one was dealt with)", n.connects)
	}
}
