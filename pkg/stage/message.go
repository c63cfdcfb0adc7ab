package stage

import (
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"time"
)

// Message is one delivery handed to a Handler.
type Message struct {
	msg  jetstream.Msg
	meta *jetstream.MsgMetadata
}

// Data returns the payload.
func (m *Message) Data() []byte { return m.msg.Data() }

// Subject returns the subject the message was published on.
func (m *Message) Subject() string { return m.msg.Subject() }

// Header returns the message headers (may be nil).
func (m *Message) Header() nats.Header { return m.msg.Headers() }

// NumDelivered is 1 on the first delivery.
func (m *Message) NumDelivered() uint64 {
	if m.meta == nil {
		return 1
	}
	return m.meta.NumDelivered
}

// StreamSeq is the message's sequence in its stream; it orders events of one stream.
func (m *Message) StreamSeq() uint64 {
	if m.meta == nil {
		return 0
	}
	return m.meta.Sequence.Stream
}

// Timestamp is when the stream stored the message; zero when unknown.
func (m *Message) Timestamp() time.Time {
	if m.meta == nil {
		return time.Time{}
	}
	return m.meta.Timestamp
}

// InProgress tells the server the work goes on, resetting AckWait. The runtime already does
// this periodically; a handler calls it only to be explicit.
func (m *Message) InProgress() error { return m.msg.InProgress() }

// NewMessage wraps a JetStream message; exported for tests of handlers.
func NewMessage(msg jetstream.Msg) *Message {
	meta, _ := msg.Metadata()
	return &Message{msg: msg, meta: meta}
}
