package rawstore_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketpipe/marketpipe/pkg/bounds"
	"github.com/marketpipe/marketpipe/pkg/chunk"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/hostile"
	"github.com/marketpipe/marketpipe/pkg/natstest"
	"github.com/marketpipe/marketpipe/pkg/rawstore"
)

// replyFile is a reply file of about 600 KB with n data lines.
func replyFile(n int) []byte {
	var b strings.Builder
	b.WriteString(hostile.Head)
	for i := range n {
		fmt.Fprintf(&b, "S%05d US Equity|0|1|%d.5|\n", i, i)
	}
	b.WriteString(hostile.Tail)
	return []byte(b.String())
}

// A file put is stored with its size, digest and marks, which Stat and Open find again, and
// reads back whole and from any offset, with and without JetStream for OpenAt.
func TestPutStatOpen(t *testing.T) {
	env := natstest.NewEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	file := replyFile(20000)
	raw := &rawstore.Store{Objects: env.Streams.Raw, JS: env.JS, ChunkSize: 64 << 10, MarkBytes: 32 << 10}
	put, err := raw.Put(ctx, "k/g0/f", rawstore.Meta{Headers: map[string][]string{"Job-Id": {"k"}}}, bytes.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	want, err := chunk.Marks(bytes.NewReader(file), 32<<10, events.MaxFileMarks)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(file)
	if put.Size != int64(len(file)) || put.SHA256 != hex.EncodeToString(sum[:]) || len(put.Marks) != len(want) || len(want) < 10 {
		t.Fatalf("put: %d bytes %s, %d marks; want %d bytes %x, %d marks", put.Size, put.SHA256, len(put.Marks), len(file), sum, len(want))
	}
	for i, m := range want {
		if put.Marks[i] != events.FileMark(m) {
			t.Fatalf("mark %d: %+v, want %+v", i, put.Marks[i], m)
		}
	}
	// A store without the writer's settings (the transformer's) finds the same.
	reader := &rawstore.Store{Objects: env.Streams.Raw}
	st, err := reader.Stat(ctx, "k/g0/f")
	if err != nil {
		t.Fatal(err)
	}
	if st.Size != put.Size || st.SHA256 != put.SHA256 || fmt.Sprint(st.Marks) != fmt.Sprint(put.Marks) || st.Headers.Get("Job-Id") != "k" {
		t.Errorf("stat: %+v, put: %+v", st, put)
	}
	f, err := reader.Open(ctx, "k/g0/f")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(f)
	f.Close()
	if err != nil || !bytes.Equal(got, file) || fmt.Sprint(f.Info.Marks) != fmt.Sprint(put.Marks) {
		t.Fatalf("open: %d bytes, %v, %d marks", len(got), err, len(f.Info.Marks))
	}
	for _, s := range []*rawstore.Store{raw, reader} {
		for _, off := range []int64{0, 1, put.Marks[3].Offset, int64(len(file)) - 1, int64(len(file))} {
			r, err := s.OpenAt(ctx, st, off)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			r.Close()
			if err != nil || !bytes.Equal(got, file[off:]) {
				t.Errorf("OpenAt %d (js %v): %d bytes, %v; want %d", off, s.JS != nil, len(got), err, len(file[off:]))
			}
		}
	}

	if _, err := reader.Stat(ctx, "missing"); !errors.Is(err, rawstore.ErrNotFound) {
		t.Errorf("stat of a missing file: %v, want ErrNotFound", err)
	}
}

// Files stored plain by earlier versions read as they are, without marks; an object with marks
// that do not describe its file, or without its plain headers, is ErrDamaged.
func TestEarlierAndDamagedFiles(t *testing.T) {
	env := natstest.NewEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	file := replyFile(100)
	if _, err := env.Streams.Raw.PutBytes(ctx, "old", file); err != nil {
		t.Fatal(err)
	}
	raw := &rawstore.Store{Objects: env.Streams.Raw}
	f, err := raw.Open(ctx, "old")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(f)
	f.Close()
	if err != nil || !bytes.Equal(got, file) || f.Info.Marks != nil || f.Info.Size != int64(len(file)) {
		t.Errorf("plain file: %d bytes, %v, marks %v", len(got), err, f.Info.Marks)
	}

	for name, marks := range map[string]string{
		"not JSON":     "[{",
		"past the end": fmt.Sprintf(`[{"offset":%d,"line":3}]`, len(file)),
		"out of order": `[{"offset":200,"line":9},{"offset":100,"line":10}]`,
		"too many":     "[" + strings.Repeat(`{"offset":1,"line":1},`, events.MaxFileMarks) + `{"offset":1,"line":1}]`,
	} {
		if _, err := raw.Put(ctx, "bad", rawstore.Meta{}, bytes.NewReader(file)); err != nil {
			t.Fatal(err)
		}
		info, err := env.Streams.Raw.GetInfo(ctx, "bad")
		if err != nil {
			t.Fatal(err)
		}
		info.Headers.Set(rawstore.MarksHeader, marks)
		if err := env.Streams.Raw.UpdateMeta(ctx, "bad", info.ObjectMeta); err != nil {
			t.Fatal(err)
		}
		_, err = raw.Stat(ctx, "bad")
		if !errors.Is(err, rawstore.ErrDamaged) || !strings.Contains(err.Error(), rawstore.MarksHeader) {
			t.Errorf("%s: stat = %v, want ErrDamaged naming %s", name, err, rawstore.MarksHeader)
		}
		if _, err := raw.Open(ctx, "bad"); !errors.Is(err, rawstore.ErrDamaged) {
			t.Errorf("%s: open = %v, want ErrDamaged", name, err)
		}
	}

	// Stored, but its plain headers never recorded (the writer stopped in between).
	info, err := env.Streams.Raw.GetInfo(ctx, "bad")
	if err != nil {
		t.Fatal(err)
	}
	meta := info.ObjectMeta
	meta.Headers = map[string][]string{"Chunk-Layout": {"s2"}}
	if err := env.Streams.Raw.UpdateMeta(ctx, "bad", meta); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Stat(ctx, "bad"); !errors.Is(err, rawstore.ErrDamaged) {
		t.Errorf("incomplete: stat = %v, want ErrDamaged", err)
	}
}

// A line longer than pkg/bounds allows fails Put with bounds.ErrExceeded, and nothing stays
// stored.
func TestPutRefusesALongLine(t *testing.T) {
	env := natstest.NewEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	raw := &rawstore.Store{Objects: env.Streams.Raw}
	_, err := raw.Put(ctx, "long", rawstore.Meta{}, hostile.LongLineFile(bounds.MaxLineBytes+2))
	if !errors.Is(err, bounds.ErrExceeded) {
		t.Fatalf("put = %v, want bounds.ErrExceeded", err)
	}
	if _, err := env.Streams.Raw.GetInfo(ctx, "long"); !errors.Is(err, jetstream.ErrObjectNotFound) {
		t.Errorf("after the refused put: %v, want no object", err)
	}
}
