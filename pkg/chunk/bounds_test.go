package chunk

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/marketpipe/marketpipe/pkg/bounds"
	"github.com/marketpipe/marketpipe/pkg/hostile"
)

// A line longer than bounds.MaxLineBytes fails Marks and a chunk's reader with the line's number,
// once they have read little more than the bound: none holds the line whole.
func TestLongLine(t *testing.T) {
	const huge = 1 << 30
	read := int64(bounds.MaxLineBytes + 2<<20) // the bound, a buffer and the header
	want := fmt.Sprintf("line %d longer than 16 MiB", hostile.LongLine)
	for _, tc := range []struct {
		name string
		run  func(r io.Reader) error
	}{
		{"Marks", func(r io.Reader) error { _, err := Marks(r, 1<<20, 8); return err }},
		{"OpenFirst", func(r io.Reader) error {
			// The first of two chunks, up to the data's end: through the long line.
			cr, err := OpenFirst(r, hostile.Size(huge)-int64(len(hostile.Tail)), 2)
			if err == nil {
				_, err = io.Copy(io.Discard, cr)
			}
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &hostile.Counter{R: hostile.LongLineFile(huge)}
			err := tc.run(c)
			if !errors.Is(err, bounds.ErrExceeded) || err.Error() != want {
				t.Fatalf("err = %v, want %q", err, want)
			}
			if n := c.N.Load(); n > read {
				t.Errorf("read %d bytes of the file before failing, want at most %d", n, read)
			}
		})
	}
}

// Marks checks the lines it reads without looking for boundaries too: after the data, and in
// a file that cannot be split. A gzip file's bytes are not lines.
func TestMarksLongLineAnywhere(t *testing.T) {
	long := strings.Repeat("y", bounds.MaxLineBytes)
	for _, tc := range []struct {
		name, file string
		line       int
	}{
		{"trailer", hostile.Head + hostile.Tail + long + "\n", strings.Count(hostile.Head+hostile.Tail, "\n") + 1},
		{"no data section", strings.Repeat("# comment\n", 500000) + long + "\n", 500001},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Marks(strings.NewReader(tc.file), 1<<20, 8)
			if want := fmt.Sprintf("line %d longer than 16 MiB", tc.line); err == nil || err.Error() != want {
				t.Fatalf("err = %v, want %q", err, want)
			}
		})
	}
	// A line of exactly the bound is accepted.
	if _, err := Marks(strings.NewReader(hostile.Head+long[1:]+"\n"+hostile.Tail), 1<<20, 8); err != nil {
		t.Errorf("a line of %d bytes: %v", bounds.MaxLineBytes, err)
	}
	gz := gzipped([]byte(hostile.Head + long + long + "\n" + hostile.Tail))
	if ms, err := Marks(strings.NewReader(string(gz)), 1<<20, 8); err != nil || ms != nil {
		t.Errorf("gzip file: marks %v, %v; want none and no error", ms, err)
	}
}
