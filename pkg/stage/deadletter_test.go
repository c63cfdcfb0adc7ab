package stage_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/stage"
)

// deadLetters returns every dead letter, read with stage.EachDeadLetter.
func deadLetters(t *testing.T, js jetstream.JetStream) []stage.DeadLetter {
	t.Helper()
	ctx := context.Background()
	stream, err := js.Stream(ctx, events.DLQStream)
	if err != nil {
		t.Fatal(err)
	}
	var out []stage.DeadLetter
	if err := stage.EachDeadLetter(ctx, stream, "", func(d stage.DeadLetter) error {
		out = append(out, d)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// The record the runtime writes reads back as the delivery it was made of: stage, reason,
// deliveries, subject, stream and sequence, message id, headers and payload.
func TestDeadLetterRecordReadsBack(t *testing.T) {
	js := setup(t)
	run(t, js, stage.Config{}, stage.HandlerFunc(func(context.Context, *stage.Message) error {
		return stage.Permanent(errors.New("undecodable payload at byte 3"))
	}))
	hdr := nats.Header{"X-Custom": []string{"v"}}
	if err := stage.NewPublisher(js).Publish(context.Background(), "t.work", "m0", []byte("payload"), hdr); err != nil {
		t.Fatal(err)
	}
	var dls []stage.DeadLetter
	waitFor(t, "dead letter", func() bool { dls = deadLetters(t, js); return len(dls) == 1 })
	d := dls[0]
	if d.ID != 1 || d.Stage != "work" || d.Subject != "t.work" || d.Deliveries != 1 ||
		d.Reason != "permanent: undecodable payload at byte 3" || d.Bytes != len("payload") ||
		d.Stream != testStream || d.Seq != 1 || d.MsgID != "m0" || string(d.Data) != "payload" || d.Time.IsZero() {
		t.Errorf("dead letter read back as %+v", d)
	}
	if d.Header.Get("X-Custom") != "v" {
		t.Errorf("original header lost: %v", d.Header)
	}
	for k := range d.Header {
		if strings.HasPrefix(k, "Mp-Dlq-") || k == nats.MsgIdHdr {
			t.Errorf("original headers hold the record's %s", k)
		}
	}
}

// A record that is not a dead letter the runtime wrote is refused with what is wrong and where.
func TestParseDeadLetterRefusesBadRecords(t *testing.T) {
	js := setup(t)
	ctx := context.Background()
	for _, c := range []struct {
		hdr  nats.Header
		want string
	}{
		{nats.Header{stage.HdrDLQSubject: {"t.work"}}, "dead letter 1 on mp.dlq.x: no Mp-Dlq-Stage header"},
		{nats.Header{stage.HdrDLQStage: {"x"}, stage.HdrDLQDeliveries: {"many"}}, `dead letter 2: header Mp-Dlq-Deliveries "many" is not a delivery count`},
		{nats.Header{stage.HdrDLQStage: {"x"}, stage.HdrDLQSeq: {"-1"}}, `dead letter 3: header Mp-Dlq-Seq "-1" is not a stream sequence`},
	} {
		ack, err := js.PublishMsg(ctx, &nats.Msg{Subject: events.DLQSubject("x"), Header: c.hdr, Data: []byte("x")})
		if err != nil {
			t.Fatal(err)
		}
		stream, err := js.Stream(ctx, events.DLQStream)
		if err != nil {
			t.Fatal(err)
		}
		m, err := stream.GetMsg(ctx, ack.Sequence)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := stage.ParseDeadLetter(m); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseDeadLetter(%v) = %v, want %q", c.hdr, err, c.want)
		}
		if err := stage.EachDeadLetter(ctx, stream, "", func(stage.DeadLetter) error { return nil }); err == nil ||
			!strings.Contains(err.Error(), c.want) {
			t.Errorf("EachDeadLetter over a bad record: %v", err)
		}
		if err := stream.DeleteMsg(ctx, ack.Sequence); err != nil {
			t.Fatal(err)
		}
	}
}

// A message two stages dead-lettered is published once by a redrive, for those two stages,
// with its own headers and payload and a new message id, and both records are removed;
// another message's record stays until it is redriven.
func TestRedrivePublishesOnceAndRemovesEveryRecord(t *testing.T) {
	js := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stops []func()
	for _, name := range []string{"requester", "jobs"} {
		stops = append(stops, run(t, js, stage.Config{Name: name}, stage.HandlerFunc(func(_ context.Context, m *stage.Message) error {
			if string(m.Data()) == "poison" || name == "jobs" {
				return stage.Permanent(errors.New("poison for " + name))
			}
			return nil
		})))
	}
	pub := stage.NewPublisher(js)
	if err := pub.Publish(ctx, "t.work", "p1", []byte("poison"), nats.Header{"X-Custom": []string{"v"}}); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, "t.work", "o1", []byte("other"), nil); err != nil {
		t.Fatal(err)
	}
	var dls []stage.DeadLetter
	waitFor(t, "three dead letters", func() bool { dls = deadLetters(t, js); return len(dls) == 3 })
	for _, stop := range stops {
		stop() // nothing dead-letters the redriven message again: the records are what Redrive left
	}
	var req, jobs, other uint64
	for _, d := range dls {
		switch {
		case string(d.Data) == "other":
			other = d.ID
		case d.Stage == "requester":
			req = d.ID
		default:
			jobs = d.ID
		}
	}
	stream, err := js.Stream(ctx, events.DLQStream)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := stage.Redrive(ctx, stream, pub, []uint64{999}, "", func(stage.Redriven) {}); err == nil ||
		!strings.Contains(err.Error(), "no dead letter with id 999") {
		t.Errorf("redrive of an unknown id: %v", err)
	}
	var got []stage.Redriven
	messages, removed, err := stage.Redrive(ctx, stream, pub, []uint64{req}, "", func(r stage.Redriven) { got = append(got, r) })
	if err != nil || messages != 1 || removed != 2 {
		t.Fatalf("redrive of %d: %d messages, %d records, %v; want 1, 2", req, messages, removed, err)
	}
	if len(got) != 1 || got[0].ID != req || !slices.Equal(got[0].Others, []uint64{jobs}) {
		t.Errorf("redriven %+v, want %d with %d removed too", got, req, jobs)
	}
	work, err := js.Stream(ctx, testStream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := work.GetMsg(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "t.work" || string(m.Data) != "poison" || m.Header.Get("X-Custom") != "v" ||
		m.Header.Get(stage.HdrRedriveStages) != "jobs,requester" ||
		m.Header.Get(nats.MsgIdHdr) != "p1.redrive."+strconv.FormatUint(req, 10) {
		t.Errorf("redriven message %s %q %v", m.Subject, m.Data, m.Header)
	}
	for k := range m.Header {
		if strings.HasPrefix(k, "Mp-Dlq-") {
			t.Errorf("redriven message carries the record's %s", k)
		}
	}
	if dls = deadLetters(t, js); len(dls) != 1 || dls[0].ID != other {
		t.Errorf("left %+v, want only the other message's record %d", dls, other)
	}

	if messages, _, err := stage.Redrive(ctx, stream, pub, nil, "requester", func(stage.Redriven) {}); err != nil || messages != 0 {
		t.Errorf("redrive of requester's: %d messages, %v; want none left", messages, err)
	}
	messages, removed, err = stage.Redrive(ctx, stream, pub, nil, "", func(stage.Redriven) {})
	if err != nil || messages != 1 || removed != 1 {
		t.Errorf("redrive of all: %d messages, %d records, %v; want 1, 1", messages, removed, err)
	}
	if m, err := work.GetMsg(ctx, 4); err != nil || string(m.Data) != "other" || m.Header.Get(stage.HdrRedriveStages) != "jobs" {
		t.Errorf("second redriven message: %v", err)
	}
}
