// Package chunk splits a stored Bloomberg Data License reply file into chunks that several
// transformer replicas parse in parallel, each with pkg/dlformat's ordinary Reader, so that
// their observations add up to exactly those of the whole file, in the same order.
//
// A chunk is a byte range of the file's data section that starts and ends at a record
// boundary, presented to the parser with the header context it needs: the file's header (every
// line up to and including START-OF-DATA: field list, DELIMITER, DATEFORMAT, PROGRAMNAME,
// RUNDATE, TIMESTARTED, ...), the column-header row if the data section starts with one, then
// the chunk's lines, then END-OF-DATA. The last chunk ends with the file's own tail (END-OF-DATA,
// TIMEFINISHED, END-OF-FILE and anything after), so the trailer is checked once.
//
// # Boundaries
//
// A record boundary is the start of a data line whose security differs from the previous data
// line's, outside any vertical block (START SECURITY ... END SECURITY), and not an END SECURITY
// line. Blank and comment lines are not data lines. Cutting only where the security changes
// keeps every rule of the reader that looks beyond one line within one chunk: vertical blocks,
// and the folding of a security's repeated return codes into one observation.
//
// Whoever reads the whole file once anyway (the collector, as it stores it) records boundaries
// spread over it (Marks); Cut picks chunk starts among them, and each chunk reads the header
// from the file's start and then only its own bytes (OpenFirst, OpenAt). Files without a data
// section to split (gzip-compressed, or without a START-OF-DATA line) get no marks: they are
// transformed in one piece.
//
// # Line numbers and rejects
//
// The parser numbers the lines of the chunk's stream. For a reader line number l greater than
// Chunk.HeaderLines, the file's line number is l + Chunk.LineOffset. Lines at or below
// HeaderLines are the repeated header: every chunk sees them, so a reject there is kept only
// from chunk 0.
package chunk

import (
	"bytes"
	"errors"
	"io"

	"github.com/marketpipe/marketpipe/pkg/bounds"
	"github.com/marketpipe/marketpipe/pkg/dlformat"
)

// ErrNotSplittable is the error of OpenFirst and OpenAt on a file that cannot be split: gzip,
// or no START-OF-DATA line within MaxHeaderBytes.
var ErrNotSplittable = errors.New("chunk: file cannot be split (gzip-compressed, or no START-OF-DATA line)")

// MaxHeaderBytes bounds the header (everything up to START-OF-DATA) that a chunk repeats.
const MaxHeaderBytes = 4 << 20

// Chunk describes one chunk of a file.
type Chunk struct {
	Index, Count int
	// Start and End delimit the chunk's data lines in the file: [Start, End). For the last
	// chunk End is the end of the file and the range includes the file's tail.
	Start, End int64
	// HeaderLines is the number of header-context lines the chunk's stream begins with.
	HeaderLines int64
	// LineOffset turns the stream's line numbers after HeaderLines into the file's.
	LineOffset int64
}

// Count returns how many chunks a file of size bytes is worth splitting into: one per target
// bytes, rounded up, at least 1 and at most limit (when limit > 0).
func Count(size, target int64, limit int) int {
	if target <= 0 || size <= target {
		return 1
	}
	n := int((size + target - 1) / target)
	if limit > 0 && n > limit {
		n = limit
	}
	return n
}

// cut returns the nominal start offset of chunk i of n of a file of size bytes.
func cut(size int64, i, n int) int64 {
	step := (size + int64(n) - 1) / int64(n)
	return int64(i) * step
}

// Reader is the stream of the first of several chunks: header context, the chunk's lines,
// END-OF-DATA.
type Reader struct {
	s      *scanner
	ch     Chunk
	end    int64 // the next chunk's start
	st     state
	out    []byte // pending output
	outPos int
	done   bool  // no more input to take
	err    error // sticky input error
}

const endOfData = dlformat.EndOfData + "\n"

// readHeader reads the file's header context and makes it the start of the chunk's stream.
func (cr *Reader) readHeader() error {
	h, err := readHeader(cr.s)
	if err != nil {
		return err
	}
	cr.st.delim = h.delim
	cr.out = append(cr.out, h.prefix...)
	cr.ch.HeaderLines = h.lines
	return nil
}

func (cr *Reader) startAt(off, lineNo int64) {
	cr.ch.Start = off
	cr.ch.LineOffset = lineNo - (cr.ch.HeaderLines + 1)
}

// Chunk describes the chunk. End is known once Read has returned io.EOF.
func (cr *Reader) Chunk() Chunk { return cr.ch }

// Read implements io.Reader.
func (cr *Reader) Read(p []byte) (int, error) {
	for cr.outPos == len(cr.out) {
		cr.out, cr.outPos = cr.out[:0], 0
		if cr.err != nil {
			return 0, cr.err
		}
		if cr.done {
			return 0, io.EOF
		}
		cr.fill()
	}
	n := copy(p, cr.out[cr.outPos:])
	cr.outPos += n
	return n, nil
}

// fill moves lines of the chunk into out, up to about 64 KiB.
func (cr *Reader) fill() {
	for len(cr.out) < 64<<10 {
		if r := cr.s.region(cr.end, &cr.st); r != nil {
			cr.out = append(cr.out, r...)
			continue
		}
		line, off, err := cr.s.next()
		if err == io.EOF {
			// A truncated file: the last chunk lets the parser see it end; this one ends here.
			cr.ch.End = cr.s.off
			cr.done = true
			cr.out = append(cr.out, endOfData...)
			return
		}
		if err != nil {
			cr.err = err
			return
		}
		k := cr.st.classify(line)
		if k.endOfData || k.boundary && off >= cr.end {
			cr.ch.End = off
			cr.done = true
			cr.out = append(cr.out, endOfData...)
			return
		}
		cr.out = append(cr.out, line...)
		cr.st.update(k)
	}
}

// header is a file's header context.
type header struct {
	prefix []byte // the lines every chunk starts with
	lines  int64  // the number of lines in prefix
	delim  byte
}

// readHeader reads up to and including START-OF-DATA, then a column-header row if the data
// section starts with one (blank and comment lines before it are dropped: they produce
// nothing). The scanner is left at the first line the chunks share out.
func readHeader(s *scanner) (header, error) {
	h := header{delim: dlformat.DefaultDelimiter}
	for {
		line, _, err := s.next()
		if err == io.EOF {
			return h, ErrNotSplittable
		}
		if err != nil {
			return h, err
		}
		if s.lineNo == 1 && dlformat.IsGzip(line) {
			s.gzip = true
			return h, ErrNotSplittable
		}
		h.prefix = append(h.prefix, line...)
		if len(h.prefix) > MaxHeaderBytes {
			return h, ErrNotSplittable
		}
		h.lines++
		if line[len(line)-1] != '\n' {
			return h, ErrNotSplittable // START-OF-DATA, if this is it, is the file's last byte
		}
		t := trim(line)
		if s.lineNo == 1 {
			t = dlformat.TrimBOM(t)
		}
		if dlformat.IsComment(t) {
			continue
		}
		if k, v, ok := dlformat.HeaderPair(t); ok && dlformat.IsDelimiterKey(k) {
			// The reader fails the file on a DELIMITER that is not one character; the
			// chunks then fail the same way.
			if d, ok := dlformat.Delimiter(v); ok {
				h.delim = d
			}
		}
		if string(t) == dlformat.StartOfData {
			break
		}
	}
	// A column-header row right after START-OF-DATA is header context too.
	for {
		line, _, err := s.peek()
		if err != nil {
			return h, nil // the chunks meet the end (or the error) themselves
		}
		t := trim(line)
		if len(t) == 0 || dlformat.IsComment(t) {
			s.next()
			continue
		}
		c0, rest := dlformat.Cut(t, h.delim)
		c1, _ := dlformat.Cut(rest, h.delim)
		if dlformat.IsColumnHeader(c0, c1) {
			s.next()
			h.prefix = append(h.prefix, line...)
			h.lines++
			if line[len(line)-1] != '\n' {
				h.prefix = append(h.prefix, '\n')
			}
		}
		return h, nil
	}
}

// state is what the boundary rule needs from the lines before the current one.
type state struct {
	delim   byte
	inBlock bool
	hasPrev bool
	prevKey []byte
}

type kind struct {
	data      bool // a data line (not blank, not a comment)
	endOfData bool // END-OF-DATA
	start     bool // START SECURITY
	end       bool // END SECURITY
	key       []byte
	boundary  bool // a chunk may start here
}

// classify reads a line of the data section in the light of the lines before it.
func (st *state) classify(line []byte) kind {
	t := trim(line)
	if len(t) == 0 || dlformat.IsComment(t) {
		return kind{}
	}
	if string(t) == dlformat.EndOfData {
		return kind{endOfData: true, boundary: true}
	}
	k := kind{data: true}
	switch {
	case dlformat.HasMarker(t, dlformat.StartSecurity, st.delim):
		k.start = true
		k.key, _ = dlformat.Cut(t[len(dlformat.StartSecurity)+1:], st.delim)
	case dlformat.HasMarker(t, dlformat.EndSecurity, st.delim):
		k.end = true
		k.key, _ = dlformat.Cut(t[len(dlformat.EndSecurity)+1:], st.delim)
	default:
		k.key, _ = dlformat.Cut(t, st.delim)
	}
	k.key = dlformat.TrimRight(k.key)
	k.boundary = !k.end && !st.inBlock && (!st.hasPrev || !bytes.Equal(k.key, st.prevKey))
	return k
}

// update records a classified line.
func (st *state) update(k kind) {
	if !k.data {
		return
	}
	switch {
	case k.start:
		st.inBlock = true
	case k.end:
		st.inBlock = false
	}
	st.prevKey = append(st.prevKey[:0], k.key...)
	st.hasPrev = true
}

// trim drops the line end (LF or CRLF) and trailing spaces and tabs, as the reader does.
func trim(line []byte) []byte { return dlformat.TrimRight(dlformat.TrimLineEnd(line)) }

// scanner reads lines (with their line ends) and knows their offsets. A line longer than
// maxLine fails it (with bounds.LineTooLong) before more of the line is held.
type scanner struct {
	r         io.Reader
	maxLine   int
	gzip      bool // the input starts with the gzip magic: its lines mean nothing
	buf       []byte
	pos, end  int
	off       int64 // file offset of buf[pos]
	lineStart int64 // offset of the last line returned
	lineNo    int64 // number of the last line returned (1-based)
	long      []byte
	err       error
	peeked    bool
	pLine     []byte
	pOff      int64
}

func newScanner(r io.Reader, size int) *scanner {
	if size <= 0 {
		size = 256 << 10
	}
	return &scanner{r: r, buf: make([]byte, size), maxLine: bounds.MaxLineBytes}
}

// tooLong fails the scanner: the next line is longer than maxLine.
func (s *scanner) tooLong() error {
	s.err = bounds.LineTooLong(s.lineNo+1, s.maxLine)
	return s.err
}

// peek returns the next line without consuming it; it stays valid until next.
func (s *scanner) peek() ([]byte, int64, error) {
	if !s.peeked {
		line, off, err := s.read()
		if err != nil {
			return nil, 0, err
		}
		// Keep a copy: read may reuse the buffer.
		s.pLine = append(s.pLine[:0], line...)
		s.pOff = off
		s.peeked = true
	}
	return s.pLine, s.pOff, nil
}

// next returns the next line, valid until the following call, and its offset.
func (s *scanner) next() ([]byte, int64, error) {
	if s.peeked {
		s.peeked = false
		s.lineNo++
		s.lineStart = s.pOff
		return s.pLine, s.pOff, nil
	}
	line, off, err := s.read()
	if err != nil {
		return nil, 0, err
	}
	s.lineNo++
	s.lineStart = off
	return line, off, nil
}

func (s *scanner) read() ([]byte, int64, error) {
	s.long = s.long[:0]
	start := s.off
	for {
		if i := bytes.IndexByte(s.buf[s.pos:s.end], '\n'); i >= 0 {
			if len(s.long)+i+1 > s.maxLine {
				return nil, 0, s.tooLong()
			}
			line := s.buf[s.pos : s.pos+i+1]
			s.pos += i + 1
			s.off += int64(i + 1)
			if len(s.long) > 0 {
				s.long = append(s.long, line...)
				return s.long, start, nil
			}
			return line, start, nil
		}
		// No full line buffered: keep the partial one, read more.
		if s.pos < s.end {
			if s.pos == 0 && s.end == len(s.buf) {
				// A line longer than the buffer.
				if len(s.long)+s.end > s.maxLine {
					return nil, 0, s.tooLong()
				}
				s.long = append(s.long, s.buf[:s.end]...)
				s.off += int64(s.end)
				s.pos, s.end = 0, 0
			} else {
				s.end = copy(s.buf, s.buf[s.pos:s.end])
				s.pos = 0
			}
		} else {
			s.pos, s.end = 0, 0
		}
		if s.err != nil {
			if errors.Is(s.err, bounds.ErrExceeded) {
				return nil, 0, s.err
			}
			if s.end > s.pos || len(s.long) > 0 {
				// The last line, without a line end.
				line := s.buf[s.pos:s.end]
				s.off += int64(len(line))
				s.pos = s.end
				if len(s.long) > 0 {
					s.long = append(s.long, line...)
					return s.long, start, nil
				}
				return line, start, nil
			}
			return nil, 0, s.err
		}
		n, err := s.r.Read(s.buf[s.end:])
		s.end += n
		if err != nil {
			s.err = err
		}
	}
}

// region consumes the buffered complete lines that all end at or before limit, when there
// are any and none is END-OF-DATA, updates st as the lines one by one would, and returns
// them (valid until the next call). It returns nil when the next line must be read one by one.
func (s *scanner) region(limit int64, st *state) []byte {
	if s.peeked {
		return nil
	}
	if s.pos == s.end && s.err == nil {
		s.refill()
	}
	avail := s.buf[s.pos:s.end]
	if room := limit - s.off; room < int64(len(avail)) {
		if room <= 0 {
			return nil
		}
		avail = avail[:room]
	}
	j := bytes.LastIndexByte(avail, '\n')
	if j < 0 {
		return nil
	}
	r := avail[:j+1]
	// Anchored on "OF-DATA": every line of a file may hold an E ("US Equity"), and the search
	// skips ahead on its first byte.
	if bytes.Contains(r, []byte("OF-DATA")) {
		return nil // the end of the data: line by line
	}
	st.absorb(r)
	s.pos += len(r)
	s.off += int64(len(r))
	s.lineNo += int64(bytes.Count(r, []byte{'\n'}))
	s.lineStart = s.off
	return r
}

// refill reads more input into an empty buffer.
func (s *scanner) refill() {
	s.pos, s.end = 0, 0
	n, err := s.r.Read(s.buf)
	s.end = n
	if err != nil {
		s.err = err
	}
}

// absorb updates the state with complete lines r, as update would line by line: the block
// state from the last marker line, the previous key from the last data line.
func (st *state) absorb(r []byte) {
	if start, end := lastMarkers(r, st.delim); start >= 0 || end >= 0 {
		st.inBlock = start > end
	}
	// The last data line.
	for rest := r[:len(r)-1]; ; {
		i := bytes.LastIndexByte(rest, '\n')
		line := rest[i+1:]
		if k := st.classify(line); k.data {
			st.prevKey = append(st.prevKey[:0], k.key...)
			st.hasPrev = true
			return
		}
		if i < 0 {
			return
		}
		rest = rest[:i]
	}
}

// lastMarkers returns the offsets in r of the last line starting with START SECURITY and of
// the last starting with END SECURITY (each followed by the delimiter), -1 for none. One
// forward search finds both.
func lastMarkers(r []byte, d byte) (start, end int) {
	start, end = -1, -1
	// Anchored on "RITY": an upper-case R is rarer in data lines than S, E, C or U, and the
	// search skips ahead on its first byte.
	pat := []byte{'R', 'I', 'T', 'Y', d}
	for off := 0; ; {
		i := bytes.Index(r[off:], pat)
		if i < 0 {
			return start, end
		}
		i += off
		// A marker line would start where the marker, ending at the anchor, begins.
		if j := i + len(pat) - 1 - len(dlformat.StartSecurity); lineStartsWith(r, j, dlformat.StartSecurity, d) {
			start = j
		} else if j := i + len(pat) - 1 - len(dlformat.EndSecurity); lineStartsWith(r, j, dlformat.EndSecurity, d) {
			end = j
		}
		off = i + len(pat)
	}
}

// lineStartsWith reports whether a line of r starts at j with marker and the delimiter d.
func lineStartsWith(r []byte, j int, marker string, d byte) bool {
	return j >= 0 && (j == 0 || r[j-1] == '\n') && dlformat.HasMarker(r[j:], marker, d)
}
