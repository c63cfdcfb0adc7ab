package stage

// Subjects is what the runtime needs of the pipeline's subject names; it knows none of its own.
// The pipeline's are events.Subjects.
type Subjects interface {
	// JobID returns the job a subject belongs to ("" for a subject that names none), which logs,
	// spans and attempt records carry. An error says the subject names a job by an id that is
	// not valid: the message is dead-lettered without running the handler.
	JobID(subject string) (id string, err error)
	// Kind names what a subject carries, without ids, for the span names of publishes
	// (PublishSpanNames).
	Kind(subject string) string
	// DeadLetter returns the subject of the dead letters of the stage named stage.
	DeadLetter(stage string) string
}

// Event is a message that knows where it goes, such as a job event (*events.Job): what
// PublishJob publishes and a JobHandler returns.
type Event interface {
	// Route returns the event's subject and Nats-Msg-Id. An error that says it is permanent
	// (an invalid job id) dead-letters the message being handled.
	Route() (subject, msgID string, err error)
	Encode() ([]byte, error)
}
