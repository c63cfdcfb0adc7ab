package rawstore

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

// nothingYet is nats.go's object reader while no chunk comes: each Read times out.
type nothingYet struct{ reads int }

func (n *nothingYet) Read([]byte) (int, error) {
	n.reads++
	time.Sleep(10 * time.Millisecond)
	return 0, os.ErrDeadlineExceeded
}

func TestStallReaderEndsAStalledRead(t *testing.T) {
	defer func(d time.Duration) { StallTimeout = d }(StallTimeout)
	StallTimeout = 200 * time.Millisecond
	src := &nothingYet{}
	start := time.Now()
	n, err := stallReader{src, context.Background()}.Read(make([]byte, 10))
	if n != 0 || err == nil || !strings.Contains(err.Error(), "no bytes for 200ms") {
		t.Fatalf("Read = %d, %v; want 0 and an error saying no bytes for 200ms", n, err)
	}
	if took := time.Since(start); took < StallTimeout || took > 5*StallTimeout {
		t.Errorf("the stalled read ended after %s; want about %s", took, StallTimeout)
	}
	if src.reads < 2 {
		t.Errorf("%d reads of the source; want it asked again while it returns nothing", src.reads)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := (stallReader{&nothingYet{}, ctx}).Read(make([]byte, 10)); !errors.Is(err, context.Canceled) {
		t.Errorf("Read with its context cancelled: %v; want context.Canceled", err)
	}
	got, err := io.ReadAll(stallReader{strings.NewReader("abc"), context.Background()})
	if string(got) != "abc" || err != nil {
		t.Errorf("ReadAll = %q, %v; want abc", got, err)
	}
}
