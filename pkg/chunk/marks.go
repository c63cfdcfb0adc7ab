package chunk

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// # Marks: chunks that read only their own bytes
//
// Whoever reads the whole file once anyway (the collector, while it stores the download)
// records record boundaries spread over it, and the transformer cuts chunks at those marks.
// Each chunk then reads the header from the file's start and its own bytes from its mark on
// (OpenAt); the first chunk reads the file from its start up to the second chunk's mark
// (OpenFirst). Between them the chunks read the file once, plus a header each.

// Mark is a record boundary of a file: the offset of a data line where a chunk may start, and
// that line's number (1-based).
type Mark struct {
	Offset, Line int64
}

// Marks reads the file from r to its end and returns the first record boundary at or after
// every multiple of every bytes, without duplicates, in file order. When there would be more
// than limit marks, every other one is dropped and the spacing doubled, so a file of any size
// gets at most limit marks, spread evenly. A file that cannot be split (gzip, no START-OF-DATA,
// a header over MaxHeaderBytes) gets none, and no error. Marks always reads r to its end, so
// that it can read a copy of a stream being stored; it fails when r does, or at the first line
// longer than bounds.MaxLineBytes (an error matching bounds.ErrExceeded, before it holds more
// of that line), whatever the part of the file, unless the file is gzip.
func Marks(r io.Reader, every int64, limit int) ([]Mark, error) {
	if every <= 0 || limit < 1 {
		return nil, fmt.Errorf("chunk: marks every %d bytes, at most %d", every, limit)
	}
	s := newScanner(r, 0)
	marks, err := marks(s, every, limit)
	if err != nil && !errors.Is(err, ErrNotSplittable) {
		return nil, err
	}
	// The rest of the file: the trailer, or all of a file that cannot be split.
	if err := s.drain(); err != io.EOF {
		return nil, err
	}
	if err != nil {
		return nil, nil
	}
	return marks, nil
}

// drain reads the rest of the input without keeping it, checking its lines' lengths unless the
// input is gzip, and returns the error that ended it (io.EOF at its end).
func (s *scanner) drain() error {
	lineNo, cur := s.lineNo, 0 // cur: bytes of the line in progress
	if s.peeked {
		lineNo++
	}
	for {
		if !s.gzip {
			b := s.buf[s.pos:s.end]
			for {
				i := bytes.IndexByte(b, '\n')
				if i < 0 {
					cur += len(b)
					break
				}
				if cur+i+1 > s.maxLine {
					cur += i + 1
					break
				}
				lineNo, cur, b = lineNo+1, 0, b[i+1:]
			}
			if cur > s.maxLine {
				s.lineNo = lineNo
				return s.tooLong()
			}
		}
		s.pos = s.end
		if s.err != nil {
			return s.err
		}
		s.refill()
	}
}

func marks(s *scanner, every int64, limit int) ([]Mark, error) {
	h, err := readHeader(s)
	if err != nil {
		return nil, err
	}
	st := state{delim: h.delim}
	var ms []Mark
	next := every // the next multiple of every that has no mark yet
	for {
		if r := s.region(next, &st); r != nil {
			continue
		}
		line, off, err := s.next()
		if err == io.EOF {
			return ms, nil
		}
		if err != nil {
			return nil, err
		}
		k := st.classify(line)
		if k.endOfData {
			return ms, nil
		}
		// Not the data's first line: the first chunk starts there.
		if k.boundary && off >= next && st.hasPrev {
			ms = append(ms, Mark{Offset: off, Line: s.lineNo})
			// Doubling once may drop none: marks further apart than twice the spacing (a
			// security's lines span more) all stay.
			for len(ms) > limit {
				every *= 2
				ms = thin(ms, every)
			}
			next = (off/every + 1) * every
		}
		st.update(k)
	}
}

// thin keeps of ms, the first boundaries at or after multiples of every/2, those that are the
// first at or after a multiple of every.
func thin(ms []Mark, every int64) []Mark {
	kept, next := ms[:0], every
	for _, m := range ms {
		if m.Offset >= next {
			kept = append(kept, m)
			next = (m.Offset/every + 1) * every
		}
	}
	return kept
}

// OpenFirst returns the reader of the first of several chunks cut at marks: the file that r
// yields from its first byte, up to the next chunk's start end (a mark's offset), then
// END-OF-DATA.
func OpenFirst(r io.Reader, end int64, count int) (*Reader, error) {
	if count < 2 {
		return nil, fmt.Errorf("chunk: first of %d chunks", count)
	}
	cr := &Reader{s: newScanner(r, 0), ch: Chunk{Index: 0, Count: count}}
	if err := cr.readHeader(); err != nil {
		return nil, err
	}
	// end is a boundary, so the first boundary at or after it is end itself.
	cr.end = end
	line, off, err := cr.s.next()
	if err == io.EOF {
		return nil, fmt.Errorf("chunk: the file ends before its first chunk's end %d", end)
	}
	if err != nil {
		return nil, err
	}
	k := cr.st.classify(line)
	cr.startAt(off, cr.s.lineNo)
	if k.endOfData || off >= end {
		return nil, fmt.Errorf("chunk: the first chunk's end %d is not after the data's start %d", end, off)
	}
	cr.out = append(cr.out, line...)
	cr.st.update(k)
	return cr, nil
}

// RangeReader is the stream of a chunk that starts at a mark: the file's header context, the
// chunk's bytes, and END-OF-DATA unless it is the last chunk.
type RangeReader struct {
	ch Chunk
	r  io.Reader
}

// Chunk describes the chunk. End is 0 for the last chunk until Read has returned io.EOF.
func (rr *RangeReader) Chunk() Chunk { return rr.ch }

// Read implements io.Reader.
func (rr *RangeReader) Read(p []byte) (int, error) { return rr.r.Read(p) }

// OpenAt returns the reader of chunk index of count that starts at mark start: head yields
// the file from its first byte (only its header is read), data yields the file from
// start.Offset. The chunk ends before end, the next chunk's start, or, when end is 0 (the last
// chunk), with the file. A data stream that ends before end is an error of the chunk, as a
// truncated object is.
func OpenAt(head, data io.Reader, start Mark, end int64, index, count int) (*RangeReader, error) {
	if index < 1 || index >= count || start.Offset <= 0 || start.Line < 1 || end != 0 && end <= start.Offset {
		return nil, fmt.Errorf("chunk: chunk %d of %d from %+v to %d", index, count, start, end)
	}
	h, err := readHeader(newScanner(head, 64<<10))
	if err != nil {
		return nil, err
	}
	rr := &RangeReader{ch: Chunk{Index: index, Count: count, Start: start.Offset, End: end, HeaderLines: h.lines,
		LineOffset: start.Line - (h.lines + 1)}}
	if end == 0 {
		rr.r = io.MultiReader(bytes.NewReader(h.prefix), data)
		return rr, nil
	}
	rr.r = io.MultiReader(bytes.NewReader(h.prefix), &exactReader{r: data, n: end - start.Offset},
		bytes.NewReader([]byte(endOfData)))
	return rr, nil
}

// exactReader reads n bytes of r: fewer is io.ErrUnexpectedEOF.
type exactReader struct {
	r io.Reader
	n int64
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > e.n {
		p = p[:e.n]
	}
	n, err := e.r.Read(p)
	e.n -= int64(n)
	if err == io.EOF {
		if e.n > 0 {
			return n, io.ErrUnexpectedEOF
		}
		err = nil
	}
	return n, err
}

// Cut returns the chunks' starts for a file of size bytes with marks ms, for at most n chunks:
// chunk i > 0 starts at the first mark at or after i·⌈size/n⌉, and chunks that would be empty
// are left out. Chunk 0 starts at the data (OpenFirst); len(result)+1 chunks in all.
func Cut(ms []Mark, size int64, n int) []Mark {
	var starts []Mark
	j := 0
	for i := 1; i < n; i++ {
		from := cut(size, i, n)
		for j < len(ms) && ms[j].Offset < from {
			j++
		}
		if j == len(ms) {
			break
		}
		if len(starts) == 0 || starts[len(starts)-1] != ms[j] {
			starts = append(starts, ms[j])
		}
	}
	return starts
}
