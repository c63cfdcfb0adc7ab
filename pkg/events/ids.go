package events

import "fmt"

// MaxJobIDLen bounds a job id: it is a token of every subject and key of its job, and
// jobspec.NewJobID's ids are at most 85 bytes.
const MaxJobIDLen = 128

// ErrInvalidJobID is wrapped by ValidJobID's errors. It says it is permanent (a Permanent
// method), which the stage runtime honours without knowing this package: no retry can make an
// id valid.
var ErrInvalidJobID error = invalidJobID{}

type invalidJobID struct{}

func (invalidJobID) Error() string   { return "invalid job id" }
func (invalidJobID) Permanent() bool { return true }

// ValidJobID reports whether id can name a job: one NATS subject token that is also a key-value
// key and an object name prefix, so only ASCII letters, digits, '-' and '_', 1 to MaxJobIDLen
// bytes. Anything else (a space, '*', '.', '/', an empty id) would be refused later by the
// server as an invalid subject or key, on every retry.
func ValidJobID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty", ErrInvalidJobID)
	}
	if len(id) > MaxJobIDLen {
		return fmt.Errorf("%w: %d bytes, more than %d", ErrInvalidJobID, len(id), MaxJobIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("%w %q: byte %d is %q (only letters, digits, '-' and '_')", ErrInvalidJobID, id, i, c)
		}
	}
	return nil
}
