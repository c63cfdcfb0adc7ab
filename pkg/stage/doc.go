// Package stage is the runtime every pipeline stage runs on: it owns all JetStream plumbing so a
// service is a Handler plus a thin main.
//
// A Stage binds a Handler to a durable pull consumer. Every replica of a stage uses the same
// durable name, so replicas split the stage's work; a replica that dies leaves its unacked
// messages to be redelivered to the others after AckWait.
//
// Ack rules (the handler's return value decides):
//
//	nil                   Ack. The handler returns nil only once its effect is durable: the next
//	                      event is acknowledged by JetStream, or the rows are inserted.
//	Retry(after, why)     NakWithDelay(after). An expected wait, such as output not ready yet; not
//	                      counted as a failure and never dead-lettered (the consumer's MaxDeliver
//	                      is unlimited for stages that wait; the handler enforces a deadline).
//	Permanent(err)        Term, after a dead-letter record with the reason is durable. For poison
//	                      messages that no retry can fix (undecodable, invalid).
//	any other error       transient: NakWithDelay(Backoff(delivery count)). On the last delivery
//	                      MaxDeliver allows, the message is dead-lettered instead, so it is never
//	                      dropped silently.
//
// If the dead-letter publish itself fails, the message is Nak'ed for a later try: a message is
// only ever removed once its effect or its dead-letter record is durable.
//
// While a handler runs, the runtime sends InProgress every AckWait/3 so long work is not
// redelivered. On shutdown it stops fetching (Drain), lets in-flight handlers finish within
// ShutdownGrace, acks them, and returns.
package stage
