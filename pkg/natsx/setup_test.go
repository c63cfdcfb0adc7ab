package natsx_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/pkg/natsx"
)

// A raw store declared by an earlier version, compressed by the server, is updated to the
// uncompressed one (the collector compresses), and the plain files it holds still read.
func TestSetupUpdatesACompressedRawStore(t *testing.T) {
	s := natstest.Start(t)
	_, js := natstest.Connect(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	old, err := js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: events.RawBucket, Compression: true})
	if err != nil {
		t.Fatal(err)
	}
	data := textBytes(10 << 10)
	if _, err := old.PutBytes(ctx, "old-file", data); err != nil {
		t.Fatal(err)
	}
	st, err := natsx.Setup(ctx, js, natsx.Retention{})
	if err != nil {
		t.Fatalf("Setup over a compressed raw store: %v", err)
	}
	status, err := st.Raw.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if status.IsCompressed() {
		t.Error("the raw store is still compressed by the server")
	}
	got, err := st.Raw.GetBytes(ctx, "old-file")
	if err != nil || !bytes.Equal(got, data) {
		t.Errorf("old file: %d bytes, %v", len(got), err)
	}
}

// textBytes returns n bytes of reply-file-like lines, which compress well.
func textBytes(n int) []byte {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "S%04d US Equity|0|3|PX_LAST|2025-01-%02d|%d.%02d|\n", i%700, i%28+1, 100+i%97, i%100)
	}
	return []byte(b.String()[:n])
}
