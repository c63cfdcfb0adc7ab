package chunk

import (
	"bytes"
	"fmt"
	"io"
	"testing"
	"testing/iotest"

	"github.com/marketpipe/marketpipe/pkg/events"
)

// parseMarkedChunks parses file in at most n chunks cut at its marks, each read as a replica
// would (OpenFirst, OpenAt from the mark's offset), and puts the results together as
// parseChunks does. A file whose marks give fewer chunks is parsed in that many.
func parseMarkedChunks(t *testing.T, file []byte, n int) parsed {
	t.Helper()
	// Marks every 1/20 of the file, at most 8 of them: the spacing doubles at least once.
	ms, err := Marks(iotest.HalfReader(bytes.NewReader(file)), int64(len(file)/20+1), 8)
	if err != nil {
		t.Fatalf("Marks: %v", err)
	}
	checkMarks(t, file, ms, 8)
	starts := Cut(ms, int64(len(file)), n)
	if len(starts) == 0 {
		return parse(bytes.NewReader(file))
	}
	count := len(starts) + 1
	var all parsed
	for i := range count {
		var (
			r  io.Reader
			ch func() Chunk
		)
		if i == 0 {
			cr, err := OpenFirst(bytes.NewReader(file), starts[0].Offset, count)
			if err != nil {
				t.Fatalf("OpenFirst(%d of %d): %v", i, count, err)
			}
			r, ch = cr, cr.Chunk
		} else {
			end := int64(0)
			if i < len(starts) {
				end = starts[i].Offset
			}
			start := starts[i-1]
			rr, err := OpenAt(bytes.NewReader(file), iotest.HalfReader(bytes.NewReader(file[start.Offset:])), start, end, i, count)
			if err != nil {
				t.Fatalf("OpenAt(%d of %d): %v", i, count, err)
			}
			r, ch = rr, rr.Chunk
		}
		p := parse(r)
		all.add(p, ch())
	}
	return all
}

// checkMarks checks that ms are at most limit line starts of file, in order.
func checkMarks(t *testing.T, file []byte, ms []Mark, limit int) {
	t.Helper()
	if len(ms) > limit {
		t.Fatalf("%d marks, limit %d", len(ms), limit)
	}
	for i, m := range ms {
		if m.Offset <= 0 || m.Offset >= int64(len(file)) || file[m.Offset-1] != '\n' {
			t.Fatalf("mark %d at %d is not a line start", i, m.Offset)
		}
		if line := int64(bytes.Count(file[:m.Offset], []byte{'\n'})) + 1; line != m.Line {
			t.Fatalf("mark %d at %d: line %d, the file's line there is %d", i, m.Offset, m.Line, line)
		}
		if i > 0 && m.Offset <= ms[i-1].Offset {
			t.Fatalf("marks %d and %d out of order: %v", i-1, i, ms)
		}
	}
}

// TestMarksSpread: marks every k bytes land at the first boundary at or after each multiple,
// and a limit doubles the spacing rather than cutting the file's end off.
func TestMarksSpread(t *testing.T) {
	file := simulated(t, events.Spec{Program: events.GetData, Securities: secs(2000), Fields: []string{"PX_LAST"}})
	size := int64(len(file))
	every := size / 40
	ms, err := Marks(bytes.NewReader(file), every, 100)
	if err != nil {
		t.Fatal(err)
	}
	checkMarks(t, file, ms, 100)
	// One security per line: every line of the data but the first is a boundary, so each
	// mark is the first line starting at or after its multiple.
	if len(ms) < 38 {
		t.Fatalf("%d marks every %d bytes of %d", len(ms), every, size)
	}
	for _, m := range ms {
		// A multiple of every lies after the previous line's start, at or before the mark.
		prev := int64(bytes.LastIndexByte(file[:m.Offset-1], '\n') + 1)
		if (m.Offset/every)*every <= prev {
			t.Fatalf("mark at %d: the line before it, at %d, starts at or after the multiple %d", m.Offset, prev, (m.Offset/every)*every)
		}
	}
	thin, err := Marks(bytes.NewReader(file), every, 10)
	if err != nil {
		t.Fatal(err)
	}
	checkMarks(t, file, thin, 10)
	if len(thin) < 5 || thin[len(thin)-1].Offset < size*3/4 {
		t.Fatalf("limit 10: %d marks, the last at %d of %d: %v", len(thin), thin[len(thin)-1].Offset, size, thin)
	}
}

// TestMarksReadToTheEnd: Marks consumes its whole input, also when the file cannot be split,
// so a tee feeding it never blocks.
func TestMarksReadToTheEnd(t *testing.T) {
	data := simulated(t, events.Spec{Program: events.GetData, Securities: secs(300), Fields: []string{"PX_LAST"}})
	for name, file := range map[string][]byte{"plain": data, "gzip": gzipped(data),
		"no START-OF-DATA": bytes.ReplaceAll(data, []byte("START-OF-DATA"), []byte("STARTOFDATA"))} {
		r := bytes.NewReader(file)
		ms, err := Marks(r, 1024, 64)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if r.Len() != 0 {
			t.Errorf("%s: %d bytes left unread", name, r.Len())
		}
		if (len(ms) > 0) != (name == "plain") {
			t.Errorf("%s: %d marks", name, len(ms))
		}
	}
	// A read error is Marks' error.
	if _, err := Marks(iotest.ErrReader(fmt.Errorf("boom")), 1024, 64); err == nil {
		t.Error("a failing reader gave no error")
	}
}

// TestOpenAtShortData: data that ends before the chunk's end fails the chunk.
func TestOpenAtShortData(t *testing.T) {
	file := simulated(t, events.Spec{Program: events.GetData, Securities: secs(300), Fields: []string{"PX_LAST"}})
	ms, err := Marks(bytes.NewReader(file), int64(len(file)/4), 8)
	if err != nil || len(ms) < 2 {
		t.Fatalf("marks %v, %v", ms, err)
	}
	rr, err := OpenAt(bytes.NewReader(file), bytes.NewReader(file[ms[0].Offset:ms[1].Offset-10]), ms[0], ms[1].Offset, 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(rr); err != io.ErrUnexpectedEOF {
		t.Fatalf("short data: %v", err)
	}
	if _, err := OpenAt(bytes.NewReader(file), bytes.NewReader(nil), ms[1], ms[0].Offset, 1, 3); err == nil {
		t.Fatal("an end before the start was accepted")
	}
}

// BenchmarkMarks measures what marking costs the collector: one pass over a
// 5-million-observation gethistory file, marks every 1 MiB at first (the collector's default).
func BenchmarkMarks(b *testing.B) {
	file := benchFile(b)
	b.SetBytes(int64(len(file)))
	for b.Loop() {
		if _, err := Marks(bytes.NewReader(file), 1<<20, 128); err != nil {
			b.Fatal(err)
		}
	}
}
