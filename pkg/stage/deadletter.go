package stage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Dead-letter record headers. The original headers are kept beside them.
const (
	HdrDLQStage      = "Mp-Dlq-Stage"
	HdrDLQReason     = "Mp-Dlq-Reason"
	HdrDLQDeliveries = "Mp-Dlq-Deliveries"
	HdrDLQSubject    = "Mp-Dlq-Subject"
	HdrDLQStream     = "Mp-Dlq-Stream"
	HdrDLQSeq        = "Mp-Dlq-Seq"
	HdrDLQTime       = "Mp-Dlq-Time"
	HdrDLQMsgID      = "Mp-Dlq-Msg-Id"
)

// hdrDLQPrefix starts every header above: what a redrive strips to restore the original headers.
const hdrDLQPrefix = "Mp-Dlq-"

// HdrRedriveStages, on a message that a redrive published again, lists the stages that
// dead-lettered it (comma-separated): only they handle it again. Every other stage that reads
// its subject handled it the first time, and acks it unread.
const HdrRedriveStages = "Mp-Redrive-Stages"

// maxReasonBytes bounds the reason kept in a record's header.
const maxReasonBytes = 4096

// DeadLetter is one record of the dead-letter stream: a message a stage could not handle, why,
// and the message itself. The JSON form is what `marketpipe dlq list --json` prints.
type DeadLetter struct {
	ID         uint64    `json:"id"`   // sequence in the dead-letter stream: what redrive --id takes
	Time       time.Time `json:"time"` // when the record was stored
	Stage      string    `json:"stage"`
	Subject    string    `json:"subject"` // where the message came from and where redrive sends it
	Deliveries int       `json:"deliveries"`
	Reason     string    `json:"reason"`
	Bytes      int       `json:"bytes"`

	Stream string      `json:"-"` // the original message's stream and sequence: the message
	Seq    uint64      `json:"-"` // every stage that dead-lettered it names the same way
	MsgID  string      `json:"-"` // the original Nats-Msg-Id
	Header nats.Header `json:"-"` // the original headers, but its message id
	Data   []byte      `json:"-"` // the original payload
}

// newDeadLetter is the record of delivery m, which the stage named stageName (consuming
// stream) could not handle for reason.
func newDeadLetter(m *Message, stageName, stream, reason string, now time.Time) DeadLetter {
	hdr := nats.Header{}
	for k, v := range m.Header() {
		if k != nats.MsgIdHdr {
			hdr[k] = v
		}
	}
	return DeadLetter{Time: now, Stage: stageName, Subject: m.Subject(), Deliveries: int(m.NumDelivered()),
		Reason: truncate(reason, maxReasonBytes), Bytes: len(m.Data()), Stream: stream, Seq: m.StreamSeq(),
		MsgID: m.Header().Get(nats.MsgIdHdr), Header: hdr, Data: m.Data()}
}

// record returns what is published for d on its stage's dead-letter subject: its message id
// (one per stage and original message, so a dead letter published again after a failed
// attempt is a duplicate) and its headers. The original message id moves to HdrDLQMsgID so that the record is not
// taken for a duplicate of the message.
func (d DeadLetter) record() (msgID string, hdr nats.Header) {
	hdr = nats.Header{}
	for k, v := range d.Header {
		hdr[k] = v
	}
	if d.MsgID != "" {
		hdr.Set(HdrDLQMsgID, d.MsgID)
	}
	hdr.Set(HdrDLQStage, d.Stage)
	hdr.Set(HdrDLQReason, d.Reason)
	hdr.Set(HdrDLQDeliveries, strconv.Itoa(d.Deliveries))
	hdr.Set(HdrDLQSubject, d.Subject)
	hdr.Set(HdrDLQStream, d.Stream)
	hdr.Set(HdrDLQSeq, strconv.FormatUint(d.Seq, 10))
	hdr.Set(HdrDLQTime, d.Time.UTC().Format(time.RFC3339Nano))
	return fmt.Sprintf("dlq.%s.%s.%d", d.Stage, d.Stream, d.Seq), hdr
}

// ParseDeadLetter reads a record of the dead-letter stream. A record without a stage, or with a
// delivery count or sequence that is not a number, is refused.
func ParseDeadLetter(m *jetstream.RawStreamMsg) (DeadLetter, error) {
	d := DeadLetter{ID: m.Sequence, Time: m.Time, Stage: m.Header.Get(HdrDLQStage),
		Subject: m.Header.Get(HdrDLQSubject), Reason: m.Header.Get(HdrDLQReason), Bytes: len(m.Data),
		Stream: m.Header.Get(HdrDLQStream), MsgID: m.Header.Get(HdrDLQMsgID), Header: nats.Header{}, Data: m.Data}
	if d.Stage == "" {
		return d, fmt.Errorf("dead letter %d on %s: no %s header: not a dead-letter record", m.Sequence, m.Subject, HdrDLQStage)
	}
	if v := m.Header.Get(HdrDLQDeliveries); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return d, fmt.Errorf("dead letter %d: header %s %q is not a delivery count", m.Sequence, HdrDLQDeliveries, v)
		}
		d.Deliveries = n
	}
	if v := m.Header.Get(HdrDLQSeq); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return d, fmt.Errorf("dead letter %d: header %s %q is not a stream sequence", m.Sequence, HdrDLQSeq, v)
		}
		d.Seq = n
	}
	for k, v := range m.Header {
		// The record's own message id is not the message's (that is MsgID).
		if !strings.HasPrefix(k, hdrDLQPrefix) && k != nats.MsgIdHdr {
			d.Header[k] = v
		}
	}
	return d, nil
}

// origin identifies the message a dead letter was made of: every stage that reads its subject
// and could not handle it made one of the same origin.
type origin struct {
	stream string
	seq    uint64
}

func (d DeadLetter) origin() origin {
	if d.Stream == "" || d.Seq == 0 {
		return origin{seq: d.ID} // its own: no original has an empty stream
	}
	return origin{d.Stream, d.Seq}
}

// DeadLetterStream is what listing and redriving need of the dead-letter stream.
type DeadLetterStream interface {
	GetMsg(ctx context.Context, seq uint64, opts ...jetstream.GetMsgOpt) (*jetstream.RawStreamMsg, error)
	DeleteMsg(ctx context.Context, seq uint64) error
}

// EachDeadLetter calls fn with each dead letter on subject (a stage's dead-letter subject,
// Subjects.DeadLetter; "" for all), oldest first, reading one at a time, so that a stream of
// any size takes little memory.
func EachDeadLetter(ctx context.Context, stream DeadLetterStream, subject string, fn func(DeadLetter) error) error {
	filter := subject
	if filter == "" {
		filter = ">"
	}
	for seq := uint64(1); ; {
		// The next message at or after seq on filter: records removed by a redrive are skipped.
		m, err := stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read dead letters from %d: %w", seq, err)
		}
		d, err := ParseDeadLetter(m)
		if err != nil {
			return err
		}
		if err := fn(d); err != nil {
			return err
		}
		seq = m.Sequence + 1
	}
}

// Redriven is one message a redrive published again.
type Redriven struct {
	DeadLetter          // the record it was published from
	Others     []uint64 // the other records of the same message, removed with it
}

// Redrive publishes again the messages of the dead letters ids (or, with none, of every dead
// letter of stageName, or of all), each once, and removes every record of them. It calls done
// after each message, and returns how many messages it published and records it removed.
func Redrive(ctx context.Context, stream DeadLetterStream, pub *Publisher, ids []uint64, stageName string,
	done func(Redriven)) (messages, removed int, err error) {
	// First the index of every record by the message it was made of: a message's records are
	// removed together. The payloads are not kept; each is read again when published.
	records := map[origin][]uint64{}
	stagesOf := map[origin][]string{} // the stages that dead-lettered each message
	wanted := map[uint64]bool{}
	for _, id := range ids {
		wanted[id] = true
	}
	type record struct {
		id     uint64
		origin origin
	}
	var todo []record
	err = EachDeadLetter(ctx, stream, "", func(d DeadLetter) error {
		o := d.origin()
		records[o] = append(records[o], d.ID)
		if !slices.Contains(stagesOf[o], d.Stage) {
			stagesOf[o] = append(stagesOf[o], d.Stage)
		}
		if len(ids) > 0 && wanted[d.ID] || len(ids) == 0 && (stageName == "" || d.Stage == stageName) {
			todo = append(todo, record{d.ID, o})
			delete(wanted, d.ID)
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	for _, id := range ids {
		if wanted[id] {
			return 0, 0, fmt.Errorf("no dead letter with id %d (see marketpipe dlq list)", id)
		}
	}
	published := map[origin]bool{}
	for _, r := range todo {
		id, o := r.id, r.origin
		if published[o] {
			continue // published already, for another record of the same message
		}
		m, err := stream.GetMsg(ctx, id)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // removed since it was listed, by another redrive
		}
		if err != nil {
			return messages, removed, fmt.Errorf("read dead letter %d: %w", id, err)
		}
		d, err := ParseDeadLetter(m)
		if err != nil {
			return messages, removed, err
		}
		if err := republish(ctx, pub, d, stagesOf[o]); err != nil {
			return messages, removed, err
		}
		published[o] = true
		messages++
		res := Redriven{DeadLetter: d}
		for _, rid := range records[o] {
			if err := stream.DeleteMsg(ctx, rid); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
				return messages, removed, fmt.Errorf("redrive %d: published again, but removing dead letter %d failed (it may be redriven twice; the stages deduplicate): %w", id, rid, err)
			}
			removed++
			if rid != id {
				res.Others = append(res.Others, rid)
			}
		}
		done(res)
	}
	return messages, removed, nil
}

// republish publishes the original message of d again, for the stages that dead-lettered it
// (HdrRedriveStages): the other stages that read its subject handled it already. A new
// message id is used, since the original one may still be inside the duplicate window.
func republish(ctx context.Context, pub *Publisher, d DeadLetter, stages []string) error {
	if d.Subject == "" {
		return fmt.Errorf("dead letter %d has no original subject", d.ID)
	}
	hdr := nats.Header{}
	for k, v := range d.Header {
		hdr[k] = v
	}
	stages = slices.Clone(stages)
	slices.Sort(stages)
	hdr.Set(HdrRedriveStages, strings.Join(stages, ","))
	msgID := fmt.Sprintf("%s.redrive.%d", d.MsgID, d.ID)
	if err := pub.Publish(ctx, d.Subject, msgID, d.Data, hdr); err != nil {
		return fmt.Errorf("redrive %d: %w", d.ID, err)
	}
	return nil
}

// redrivenFor reports whether m, if it is a redriven message, is meant for the stage name.
func redrivenFor(m *Message, name string) bool {
	v := m.Header().Get(HdrRedriveStages)
	if v == "" {
		return true
	}
	return slices.Contains(strings.Split(v, ","), name)
}
