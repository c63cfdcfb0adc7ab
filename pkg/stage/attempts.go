package stage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/attempts"
)

// delivery is the runtime's record of a message's last delivery that it settled with a Nak
// (attempts.DeliveryKey). Deliveries after it that left no record ended without being settled:
// the process crashed, was killed or froze past AckWait.
type delivery struct {
	Settled  uint64 `json:"settled"`            // NumDelivered of that delivery
	Failures int    `json:"failures,omitempty"` // consecutive failed deliveries up to it
	Error    string `json:"error,omitempty"`    // its failure, redacted
	// DeadLetter is the reason of a dead letter decided but not yet published (the publish
	// failed): the next delivery publishes it without running the handler.
	DeadLetter string `json:"dead_letter,omitempty"`

	found   bool   // the record exists
	crashes uint64 // deliveries since it that were not settled
}

// kvTimeout bounds each operation on the attempts bucket: they are best effort, never a reason
// to hold a message.
const kvTimeout = 5 * time.Second

// loadDelivery reads the message's record and counts the deliveries that crashed since. The
// first delivery has none (no read). When the record cannot be read, nothing is counted as a
// crash: a NATS hiccup must not dead-letter messages. A record this process wrote later than
// the bucket's (settledHere) is the one that counts.
func (s *Stage) loadDelivery(ctx context.Context, m *Message) delivery {
	n := m.NumDelivered()
	if n <= 1 || s.attempts == nil {
		return delivery{}
	}
	ctx, cancel := context.WithTimeout(ctx, kvTimeout)
	defer cancel()
	here, ok := s.settled.get(m.StreamSeq())
	var d delivery
	e, err := s.attempts.Get(ctx, attempts.DeliveryKey(s.cfg.Name, m.StreamSeq()))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		err = nil
	case err == nil:
		if err = json.Unmarshal(e.Value(), &d); err == nil {
			d.found = true
		}
	}
	if ok && (!d.found || here.Settled > d.Settled) {
		d, err = here, nil
		d.found = true
	}
	if err != nil {
		s.log.WarnContext(ctx, "read delivery record", "err", err)
		return delivery{}
	}
	if d.Settled < n {
		d.crashes = n - 1 - d.Settled
	}
	return d
}

// settledHere remembers, by stream sequence, the delivery records this process wrote, whether
// or not the write reached the attempts bucket: a write lost while the bucket elects a leader
// must not make the deliveries after it look like crashes (a message waiting on a 100 ms poll
// is delivered many times in an election). A process that crashes forgets them, so its
// crashes still count.
type settledHere struct {
	mu sync.Mutex
	m  map[uint64]delivery
}

// maxSettledHere bounds the records kept: they are of the messages this process is making wait
// or retry, normally far fewer. Past it they start over, and the bucket's records count.
const maxSettledHere = 1 << 12

func (h *settledHere) get(seq uint64) (delivery, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	d, ok := h.m[seq]
	return d, ok
}

func (h *settledHere) put(seq uint64, d delivery) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil || len(h.m) >= maxSettledHere {
		h.m = map[uint64]delivery{}
	}
	h.m[seq] = d
}

func (h *settledHere) forget(seq uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.m, seq)
}

// overLimit returns why the message must be dead-lettered before its handler runs again, or "".
func (s *Stage) overLimit(m *Message, d delivery) string {
	if d.DeadLetter != "" {
		return d.DeadLetter
	}
	n := m.NumDelivered()
	if d.crashes < uint64(s.cfg.MaxCrashes) && (s.cfg.MaxDeliver <= 0 || n <= uint64(s.cfg.MaxDeliver)) {
		return ""
	}
	if d.crashes == 0 {
		// The last allowed delivery failed and its dead letter could not be published.
		return fmt.Sprintf("gave up after %d deliveries: %s", n-1, d.Error)
	}
	reason := fmt.Sprintf("crashed or timed out the stage %d times", d.crashes)
	if d.Error != "" {
		reason += fmt.Sprintf("; failed %d times before: %s", d.Failures, d.Error)
	}
	return reason
}

func (s *Stage) putDelivery(ctx context.Context, m *Message, d delivery) {
	if s.attempts == nil {
		return
	}
	s.settled.put(m.StreamSeq(), d)
	data, _ := json.Marshal(d)
	ctx, cancel := context.WithTimeout(ctx, kvTimeout)
	defer cancel()
	if _, err := s.attempts.Put(ctx, attempts.DeliveryKey(s.cfg.Name, m.StreamSeq()), data); err != nil {
		s.log.WarnContext(ctx, "write delivery record", "err", err)
	}
}

// forget removes what was recorded of a message that is settled for good: its delivery record
// and, when it had failed, its job's record at this stage.
func (s *Stage) forget(ctx context.Context, m *Message, jobID string, d delivery) {
	if s.attempts == nil || !d.found {
		return
	}
	s.settled.forget(m.StreamSeq())
	ctx, cancel := context.WithTimeout(ctx, kvTimeout)
	defer cancel()
	if err := s.attempts.Delete(ctx, attempts.DeliveryKey(s.cfg.Name, m.StreamSeq())); err != nil {
		s.log.DebugContext(ctx, "delete delivery record", "err", err)
	}
	if d.Failures > 0 {
		s.clearAttempt(ctx, jobID)
	}
}

func (s *Stage) clearAttempt(ctx context.Context, jobID string) {
	if s.attempts == nil || jobID == "" {
		return
	}
	if err := s.attempts.Delete(ctx, attempts.JobKey(jobID, s.cfg.Name)); err != nil {
		s.log.DebugContext(ctx, "delete attempt record", "err", err)
	}
}

// putAttempt records a job's failure at this stage, for `marketpipe status`.
func (s *Stage) putAttempt(ctx context.Context, a attempts.Record) {
	if s.attempts == nil || a.Job == "" {
		return
	}
	a.Stage = s.cfg.Name
	data, _ := json.Marshal(a)
	ctx, cancel := context.WithTimeout(ctx, kvTimeout)
	defer cancel()
	if _, err := s.attempts.Put(ctx, attempts.JobKey(a.Job, s.cfg.Name), data); err != nil {
		s.log.WarnContext(ctx, "write attempt record", "err", err)
	}
}

// invalidInput reports errors that only the message's content can cause, so every retry would
// meet them again: one that says it is permanent (a Permanent method returning true, as
// events.ErrInvalidJobID has), an invalid key or subject.
func invalidInput(err error) bool {
	var p interface{ Permanent() bool }
	return errors.As(err, &p) && p.Permanent() || errors.Is(err, jetstream.ErrInvalidKey) ||
		errors.Is(err, jetstream.ErrInvalidSubject) || errors.Is(err, nats.ErrBadSubject)
}

// limitError is a delivery refused before its handler ran: it is dead-lettered with its reason.
type limitError struct{ reason string }

func (e *limitError) Error() string { return e.reason }

var secrets = []struct {
	re   *regexp.Regexp
	repl string
}{
	// user and password in a URL: nats://u:p@host, https://key@host
	{regexp.MustCompile(`(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@`), "${1}REDACTED@"},
	{regexp.MustCompile(`(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+`), "$1 REDACTED"},
	// a JWT anywhere
	{regexp.MustCompile(`\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*`), "REDACTED"},
	{regexp.MustCompile(`(?i)\b(password|passwd|pwd|secret|client_secret|token|access_token|refresh_token|api_key|apikey)(["']?\s*[=:]\s*["']?)[^\s"'&,;)]+`), "${1}${2}REDACTED"},
}

// Redact removes what looks like a secret from an error text before it is stored where
// operators read it (a dead letter, an attempt record): passwords in URLs, bearer tokens,
// JWTs, and values of password=, token=, secret= and the like.
func Redact(s string) string {
	for _, p := range secrets {
		s = p.re.ReplaceAllString(s, p.repl)
	}
	return s
}
