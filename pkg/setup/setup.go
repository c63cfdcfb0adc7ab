// Package setup names what a service meets when the JetStream resources it binds to are not
// there: the admin creates streams, buckets, object stores and consumers (`marketpipe
// migrate`); services only bind to them. The stage runtime, the attempts bucket and natsx all
// report a missing resource with this one error.
package setup

import (
	"errors"
	"fmt"
)

// ErrNotSetUp marks a stream, bucket, object store or consumer that does not exist. Waiting
// does not help.
var ErrNotSetUp = errors.New("not set up: run `marketpipe migrate` with the admin's NATS credentials first")

// Missing returns the error for a resource that does not exist (err: what the server said).
func Missing(what string, err error) error {
	return fmt.Errorf("%s: %w (%v)", what, ErrNotSetUp, err)
}
