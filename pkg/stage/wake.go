package stage

import (
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
)

// AckSubject is the subject the delivery is acknowledged on (its reply subject,
// "$JS.ACK.<stream>.<consumer>...."): what Wake needs to end a Wait early, from this process or
// another replica of the same identity.
func (m *Message) AckSubject() string { return m.msg.Reply() }

// ackNak is JetStream's negative acknowledgement without a delay.
var ackNak = []byte("-NAK")

// Wake ends the Wait of a delivery (its AckSubject) at once: the server puts the message back
// on the consumer's redelivery queue, so the stage gets it again now rather than when the
// delay of its NakWithDelay runs out. A delivery that was acked meanwhile, or redelivered and
// acked, is not affected (the server ignores an ack subject it no longer has pending); one
// being handled right now is redelivered once more, which a stage that Waits handles anyway.
// The publish is core NATS: nc must be a connection of the consumer's identity, which may
// acknowledge the consumer's messages.
func Wake(nc *nats.Conn, ackSubject string) error {
	if !strings.HasPrefix(ackSubject, "$JS.ACK.") {
		return fmt.Errorf("wake: %q is not a JetStream ack subject", ackSubject)
	}
	if nc == nil {
		return errors.New("wake: no NATS connection")
	}
	if err := nc.Publish(ackSubject, ackNak); err != nil {
		return fmt.Errorf("wake %s: %w", ackSubject, err)
	}
	return nil
}
