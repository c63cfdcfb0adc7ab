package vendor

import (
	"bytes"
	"crypto/sha512"
	"hash"
	"math/rand/v2"
	"testing"
	"time"
)

func TestBackgroundHash(t *testing.T) {
	data := make([]byte, 3*hashChunk*hashBuffers+12345)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	want := sha512.Sum512(data)
	for _, piece := range []int{1, 1000, 32 << 10, hashChunk, hashChunk + 1, len(data)} {
		b := newBackgroundHash(sha512.New())
		for p := data; len(p) > 0; {
			n := min(piece, len(p))
			b.Write(p[:n])
			p = p[n:]
		}
		if got := b.Sum(); !bytes.Equal(got, want[:]) {
			t.Errorf("pieces of %d bytes: hash differs", piece)
		}
		b.Stop() // after Sum: nothing left to stop
	}

	// Stopped while the writer is blocked on a full queue (a download closed from another
	// goroutine): Write and Sum return.
	b := newBackgroundHash(slowHash{sha512.New()})
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.Write(data)
		b.Sum()
	}()
	time.Sleep(10 * time.Millisecond)
	b.Stop()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Write or Sum still blocked after Stop")
	}
}

// slowHash takes its time, so the queue fills.
type slowHash struct{ hash.Hash }

func (s slowHash) Write(p []byte) (int, error) {
	time.Sleep(5 * time.Millisecond)
	return s.Hash.Write(p)
}
