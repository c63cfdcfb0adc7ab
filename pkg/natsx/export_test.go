package natsx

import (
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// BucketStreams returns the streams Setup declares for a key-value bucket and an object store
// with these settings, for the tests of natsx_test.
func BucketStreams(name string, ttl time.Duration, maxBytes int64, replicas int) (kv, obj jetstream.StreamConfig) {
	b := bucket{name: name, description: "d", ttl: ttl, maxBytes: maxBytes, storage: jetstream.FileStorage, replicas: replicas}
	return kvStreamConfig(b), objectStreamConfig(b)
}
