// Package stage is the runtime every pipeline stage runs on: it owns all JetStream plumbing so a
// service is a Handler plus a thin main.
//
// A Stage binds a Handler to a durable pull consumer. Every replica of a stage uses the same
// durable name, so replicas split the stage's work; a replica that dies leaves its unacked
// messages to be redelivered to the others after AckWait.
//
// A stage of job events runs a JobHandler instead (NewJobs, Jobs): it gets the decoded event
// and returns the next one, which the runtime publishes before the ack; a payload that is no
// job event is permanent. Handlers of row batches and chunk tasks stay plain Handlers.
//
// Ack rules (the handler's return value decides):
//
//	nil                   Ack. The handler returns nil only once its effect is durable: the next
//	                      event is acknowledged by JetStream, or the rows are inserted.
//	Wait(after, why)      NakWithDelay(after), at most MaxWait. An expected wait, such as output
//	                      not ready yet; not counted as a failure and never dead-lettered (the
//	                      stage's MaxDeliver is unlimited for stages that wait; the handler
//	                      enforces a deadline).
//	Permanent(err)        Term, after a dead-letter record with the reason is durable. For poison
//	                      messages that no retry can fix (undecodable, invalid). Errors only the
//	                      message's content can cause are permanent too: one that says so
//	                      (a Permanent method: events.ErrInvalidJobID), an invalid key-value
//	                      key or subject.
//	any other error       transient: NakWithDelay(Backoff(delivery count)). On the last delivery
//	                      MaxDeliver allows, the message is dead-lettered instead, so it is never
//	                      dropped silently.
//
// Nothing leaves a stream without an ack, a dead letter or (decided by a handler) a failed job:
//
//   - The server never drops a message at a delivery limit: the consumer's MaxDeliver is
//     unlimited and the runtime enforces Config.MaxDeliver by dead-lettering.
//   - A message that crashes its process is put aside before it can crash it again. The runtime
//     records in the attempts bucket (attempts.Bucket) every delivery it settles with a
//     Nak; a delivery it finds no record for ended without being settled, so the process
//     crashed, was killed, or froze past AckWait. Once a message has had more deliveries than
//     MaxDeliver, or MaxCrashes such deliveries in a row (this bounds stages with an unlimited
//     MaxDeliver too), its next delivery is dead-lettered without running the handler, with the
//     reason "crashed or timed out the stage N times".
//   - If the dead-letter publish itself fails, the message is Nak'ed and the next delivery
//     publishes the same dead letter without running the handler: a message is only ever
//     removed once its effect or its dead-letter record is durable.
//   - A subject naming a job by an invalid id is dead-lettered without running the handler.
//
// A message delivered for the first time and acknowledged costs no write to the attempts
// bucket. While a job's message fails transiently, the bucket holds, per job and stage, the last
// error (secrets redacted), the consecutive failed attempts and when the next one is: what
// `marketpipe status` and `submit --wait` show. Success removes it; a dead letter marks it.
//
// While a handler runs, the runtime sends InProgress every AckWait/3 so long work is not
// redelivered. The admin declares each stage's consumer and the attempts bucket (Declare, run by
// `marketpipe migrate`); a service's stages only bind to them (Options.Bind), and stop at start
// with an error naming `marketpipe migrate` when one is missing. A consumer that disappears
// while the stage runs (deleted, lost with a server's state) is waited for until it is declared
// again (without Options.Bind the stage declares it itself, from the acknowledgement floor last
// seen), and Ready reports the stage not ready until it is bound again. On shutdown it stops fetching (Drain), lets
// in-flight handlers finish within ShutdownGrace, acks them, and returns.
package stage
