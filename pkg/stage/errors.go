package stage

import (
	"errors"
	"fmt"
	"time"
)

// waitError asks for a redelivery after a fixed delay without counting a failure.
type waitError struct {
	after  time.Duration
	reason string
}

func (e *waitError) Error() string { return fmt.Sprintf("wait %s: %s", e.after, e.reason) }

// Wait returns an error that makes the runtime redeliver the message after the given delay.
// Use it for expected waits (the vendor's output is not ready), not for failures: it is
// counted as waiting (marketpipe_messages_waiting_total), never as a failure.
func Wait(after time.Duration, reason string) error {
	return &waitError{after: after, reason: reason}
}

// permanentError marks a message as poison.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return "permanent: " + e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as one no retry can fix: the message is dead-lettered with err as the
// reason and terminated.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err was marked by Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// WaitAfter reports the delay asked for by Wait.
func WaitAfter(err error) (time.Duration, bool) {
	var r *waitError
	if errors.As(err, &r) {
		return r.after, true
	}
	return 0, false
}
