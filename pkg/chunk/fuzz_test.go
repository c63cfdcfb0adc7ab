package chunk

import (
	"bytes"
	"io"
	"testing"

	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/hostile"
	"github.com/marketpipe/marketpipe/pkg/obs"
	"github.com/marketpipe/marketpipe/pkg/simdata"
)

// seeds are small files of each shape the scanner meets: simulated reply files, vertical
// blocks, a trailer, gzip, no data section.
func seeds(f *testing.F) [][]byte {
	var b bytes.Buffer
	if err := simdata.WriteReply(&b, events.Spec{Program: "gethistory", Securities: secs(6), Fields: []string{"PX_LAST", "PX_VOLUME"},
		Start: "2026-01-01", End: "2026-01-09"}, obs.MakeDate(2026, 1, 5), 3); err != nil {
		f.Fatal(err)
	}
	sim := b.Bytes()
	return [][]byte{
		sim,
		[]byte(hostile.Head + "AAPL US Equity|0|1|1|\r\n# note\n\nMSFT US Equity|0|1|2|\n" + hostile.Tail),
		[]byte("START-OF-DATA\nSTART SECURITY|A|PX_LAST|\nA|20260105|1|\nEND SECURITY|A|PX_LAST|0|\nB|1|\nEND-OF-DATA\n"),
		[]byte("DELIMITER=;\nSTART-OF-DATA\nSECURITIES;ERROR CODE;NUM FLDS;X;\nA;0;1;1;\nB;0;1;2;\nEND-OF-DATA\nEND-OF-FILE\nextra"),
		gzipped(sim),
		[]byte("no data section\n"),
		{},
	}
}

// FuzzMarks: any input gives marks at line starts, in order, within the limit, and whatever
// the marks, the chunks cut there (OpenFirst, OpenAt) read back exactly the file's data.
func FuzzMarks(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add(s, uint16(64))
	}
	f.Fuzz(func(t *testing.T, file []byte, every uint16) {
		ms, err := Marks(bytes.NewReader(file), int64(every)+1, 4)
		if err != nil {
			t.Fatalf("Marks: %v", err) // only a failing reader or a line past the bound fails it
		}
		checkMarks(t, file, ms, 4)
		starts := Cut(ms, int64(len(file)), 4)
		for i, s := range starts {
			end := int64(0)
			if i+1 < len(starts) {
				end = starts[i+1].Offset
			}
			rr, err := OpenAt(bytes.NewReader(file), bytes.NewReader(file[s.Offset:]), s, end, i+1, len(starts)+1)
			if err != nil {
				t.Fatalf("OpenAt(%+v): %v", s, err)
			}
			if _, err := io.Copy(io.Discard, rr); err != nil {
				t.Fatalf("chunk from %+v: %v", s, err)
			}
		}
		if len(starts) > 0 {
			cr, err := OpenFirst(bytes.NewReader(file), starts[0].Offset, len(starts)+1)
			if err != nil {
				t.Fatalf("OpenFirst(%d): %v", starts[0].Offset, err)
			}
			if _, err := io.Copy(io.Discard, cr); err != nil {
				t.Fatalf("first chunk: %v", err)
			}
			if got := cr.Chunk().End; got != starts[0].Offset {
				t.Fatalf("first chunk ends at %d, want the next chunk's start %d", got, starts[0].Offset)
			}
		}
	})
}
