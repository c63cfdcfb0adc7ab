// Package hostile makes reply files built to hurt a reader, for the tests and the measurements
// of pkg/bounds' limits: valid enough to pass a first look, and as large as asked without ever
// being held in memory.
package hostile

import (
	"fmt"
	"io"
	"strings"
	"sync/atomic"

	"github.com/klauspost/compress/gzip"
)

// Head is a valid getdata reply file up to and including its first data line.
const Head = `START-OF-FILE
PROGRAMNAME=getdata
DATEFORMAT=yyyymmdd
RUNDATE=20260105
START-OF-FIELDS
PX_LAST
END-OF-FIELDS
TIMESTARTED=Mon Jan  5 18:00:00 EST 2026
START-OF-DATA
IBM US Equity|0|1|123.45|
`

// Tail ends a reply file after its data.
const Tail = `END-OF-DATA
TIMEFINISHED=Mon Jan  5 18:00:01 EST 2026
END-OF-FILE
`

// LongLine is the line number of the data line LongLineFile makes long.
var LongLine = int64(strings.Count(Head, "\n") + 1)

// LongLineFile returns a reply file whose second data line (line LongLine) is lineBytes long,
// its line end included, followed by Tail: Size(lineBytes) bytes in all.
func LongLineFile(lineBytes int64) io.Reader {
	const start = "AAPL US Equity|0|1|"
	return io.MultiReader(strings.NewReader(Head+start), &Repeat{B: 'x', N: lineBytes - int64(len(start)) - 1},
		strings.NewReader("\n"+Tail))
}

// Size is the size of LongLineFile(lineBytes).
func Size(lineBytes int64) int64 { return int64(len(Head)+len(Tail)) + lineBytes }

// Repeat yields N copies of B.
type Repeat struct {
	B byte
	N int64
}

func (r *Repeat) Read(p []byte) (int, error) {
	if r.N <= 0 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.N)]
	for i := range p {
		p[i] = r.B
	}
	r.N -= int64(len(p))
	return len(p), nil
}

// Gzip returns r compressed (best compression), as it is read.
func Gzip(r io.Reader) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		zw, err := gzip.NewWriterLevel(pw, gzip.BestCompression)
		if err == nil {
			if _, err = io.Copy(zw, r); err == nil {
				err = zw.Close()
			}
		}
		pw.CloseWithError(err)
	}()
	return pr
}

// GzipBytes returns r compressed, whole.
func GzipBytes(r io.Reader) ([]byte, error) {
	var b strings.Builder
	if _, err := io.Copy(&b, Gzip(r)); err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	return []byte(b.String()), nil
}

// Counter counts the bytes read through it; N is safe to read while another goroutine reads.
type Counter struct {
	R io.Reader
	N atomic.Int64
}

func (c *Counter) Read(p []byte) (int, error) {
	n, err := c.R.Read(p)
	c.N.Add(int64(n))
	return n, err
}

// DataLine is the data line ManyLinesFile repeats.
const DataLine = "IBM US Equity|0|1|123.45|\n"

// ManyLinesFile returns a valid reply file of n data lines DataLine: a file of ordinary lines
// that compresses about a thousand times.
func ManyLinesFile(n int64) io.Reader {
	return io.MultiReader(strings.NewReader(Head), &repeatLine{line: DataLine, n: n}, strings.NewReader(Tail))
}

type repeatLine struct {
	line string
	n    int64
	off  int
}

func (r *repeatLine) Read(p []byte) (int, error) {
	k := 0
	for k < len(p) && r.n > 0 {
		c := copy(p[k:], r.line[r.off:])
		k += c
		if r.off += c; r.off == len(r.line) {
			r.off, r.n = 0, r.n-1
		}
	}
	if k == 0 {
		return 0, io.EOF
	}
	return k, nil
}

// Cycle yields b again and again, without end.
func Cycle(b []byte) io.Reader { return &cycle{b: b} }

type cycle struct {
	b   []byte
	off int
}

func (c *cycle) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k := copy(p[n:], c.b[c.off:])
		n += k
		c.off = (c.off + k) % len(c.b)
	}
	return n, nil
}
