package natsx

import (
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// bucket is what Setup sets of a key-value bucket or an object store.
type bucket struct {
	name, description string
	ttl               time.Duration // 0: kept until deleted
	maxBytes          int64         // 0: no limit
	storage           jetstream.StorageType
	replicas          int
}

// The streams of buckets and object stores are declared here as nats.go's CreateKeyValue and
// CreateObjectStore declare them (nats.go 1.55, for the settings Setup uses), but without direct
// gets. With replicas, a direct get is answered by whichever replica answers first, and a
// follower that lags, or that restarted and is only mostly caught up, answers with an older
// value or none; our reads must see the writes acknowledged before them (a delivery record, the
// load ledger, a run's end, a stored file's metadata), so they go to the stream's leader. A
// client binding a bucket reads as its stream says. nats.go's own Create functions cannot be
// used: on an existing stream they turn direct gets back on. TestBucketStreamsAreNatsGos
// compares these with what nats.go declares.

// kvStreamConfig is the stream of a key-value bucket that keeps one value per key.
func kvStreamConfig(b bucket) jetstream.StreamConfig {
	dup := 2 * time.Minute // nats.go's: the server's default window, or the TTL if shorter
	if b.ttl > 0 && b.ttl < dup {
		dup = b.ttl
	}
	return jetstream.StreamConfig{
		Name: KVStream(b.name), Description: b.description, Subjects: []string{"$KV." + b.name + ".>"},
		MaxMsgsPerSubject: 1, MaxBytes: limit(b.maxBytes), MaxAge: b.ttl, MaxMsgSize: -1,
		Storage: b.storage, Replicas: max(b.replicas, 1), AllowRollup: true, DenyDelete: true,
		Duplicates: dup, MaxMsgs: -1, MaxConsumers: -1, Discard: jetstream.DiscardNew,
	}
}

// objectStreamConfig is the stream of an object store, not compressed by the server.
func objectStreamConfig(b bucket) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name: ObjectStream(b.name), Description: b.description,
		Subjects: []string{"$O." + b.name + ".C.>", "$O." + b.name + ".M.>"},
		MaxAge:   b.ttl, MaxBytes: limit(b.maxBytes), Storage: b.storage, Replicas: max(b.replicas, 1),
		Discard: jetstream.DiscardNew, AllowRollup: true,
	}
}

// limit is a stream's byte limit, -1 for none (as nats.go writes it).
func limit(n int64) int64 {
	if n == 0 {
		return -1
	}
	return n
}
