// Package auth derives each identity's NATS permissions from what it declares it uses (Uses:
// the consumers it reads, the subjects it publishes, the streams, buckets and object stores it
// reads or writes), and writes the credentials of a deployment (Init): NATS's decentralised
// auth, one user per identity. Nothing here lists a subject by hand: the declarations are the
// services' own (package services), the names pkg/events' and pkg/natsx's.
package auth

import (
	"slices"

	"github.com/marketpipe/marketpipe/pkg/attempts"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/stage"
)

// Uses is what one identity does on NATS. A service builds its stages from the Consumers it
// declares here, so the consumers the admin creates, those the service binds and those its
// permissions allow are the same.
type Uses struct {
	// Consumers are the durable consumers it reads and acknowledges. The stage runtime's own
	// needs come with each (Runtime): its dead letters and the attempts bucket.
	Consumers []stage.Config
	// Publishes are the subjects it publishes to JetStream (wildcards allowed).
	Publishes []string
	// Reads are the streams it reads message by message or through ordered consumers, never
	// through another identity's durable consumer.
	Reads []string
	// KVRead and KVWrite are the key-value buckets it reads, and reads and writes.
	KVRead, KVWrite []string
	// ObjRead and ObjWrite are the object stores it reads, and reads and writes.
	ObjRead, ObjWrite []string
}

// Runtime returns u with what the stage runtime does for each consumer: it publishes dead
// letters (events.DLQSubject of the stage), keeps delivery records in attempts.Bucket and
// reads how runs ended in events.EndsBucket (stage.Options.Skip).
func (u Uses) Runtime() Uses {
	if len(u.Consumers) == 0 {
		return u
	}
	out := u
	out.Publishes = slices.Clone(u.Publishes)
	for _, c := range u.Consumers {
		out.Publishes = append(out.Publishes, events.DLQSubject(c.Name))
	}
	out.KVWrite = append(slices.Clone(u.KVWrite), attempts.Bucket)
	// Every job-event stage drops the events of cancelled runs, which it reads in mp_ends.
	out.KVRead = append(slices.Clone(u.KVRead), events.EndsBucket)
	return out
}

// Identity is one NATS user of a deployment: a service, the operator's CLI or the admin.
type Identity struct {
	Name string
	Uses Uses
	// Admin may do anything on the account: create and upgrade streams, buckets, object stores
	// and consumers (`marketpipe migrate`), and repair them.
	Admin bool
}

// Names of the two identities that are not services.
const (
	// AdminName creates and upgrades the streams, buckets, object stores and consumers.
	AdminName = "admin"
	// OperatorName is the CLI's: submit, status, replay, dlq, cancel.
	OperatorName = "operator"
)
