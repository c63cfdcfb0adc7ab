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
// Chunk i of n nominally starts at byte i·⌈size/n⌉. Its real start is the first record
// boundary at or after that offset: the start of a data line whose security differs from the
// previous data line's, outside any vertical block (START SECURITY ... END SECURITY), and not an
// END SECURITY line. Blank and comment lines are not data lines. END-OF-DATA (or the end of a
// truncated file) is always a boundary. Cutting only where the security changes keeps every
// rule of the reader that looks beyond one line within one chunk: vertical blocks, and the
// folding of a security's repeated return codes into one observation.
//
// The rule depends only on the file, so each replica finds the same boundaries on its own: a
// replica given (i, n) reads the file from its first byte, keeps the header, scans lines (no
// parsing) up to its start, hands its lines to the parser and stops reading at its end. No
// planning pass and no shared state are needed; Plan computes all the chunks in one scan for
// tests and diagnostics.
//
// Files that cannot be split (gzip-compressed, or without a START-OF-DATA line) are one chunk:
// Splittable says so from the head of the file, and Open with n > 1 returns ErrNotSplittable.
//
// # Line numbers and rejects
//
// The parser numbers the lines of the chunk's stream. For a reader line number l greater than
// Chunk.HeaderLines, the file's line number is l + Chunk.LineOffset. Lines at or below
// HeaderLines are the repeated header: every chunk sees them, so a reject there is kept only
// from chunk 0.
//
// # Use in the transformer and the loader
//
// The transformer's handler of "collected" (job j, FileKey, FileSize):
//
//  1. n := Count(FileSize, ChunkBytes, MaxChunks) (e.g. 64 MiB, 64). If n == 1, or the first
//     MaxHeaderBytes of the object are not Splittable, transform the file as today.
//  2. Otherwise publish n chunk tasks and ack: one message per chunk on mp.chunk.<job id>
//     (a stream MP_CHUNKS, Limits retention like MP_JOBS), each carrying the job event and
//     {"chunk": i, "chunks": n}, with Nats-Msg-Id <job id>.g<generation>.chunk<i>.
//  3. A second consumer of the transformer ("transformer-chunk", on MP_CHUNKS, shared by the
//     replicas) handles one chunk: Raw.Get with a context that has an explicit deadline
//     (nats.go bounds an object read whose context has none by 5 s for the whole object),
//     Open(obj, FileSize, i, n), dlformat.NewReader on it, and the usual Builder loop, with
//     two differences: batch sequence numbers are i<<20 + the chunk's own sequence (this
//     needs a rowcodec.Builder option to start at a given Seq), so ledger keys stay unique per
//     job run; and reject lines are mapped as above. Once its batches are published (Wait), it
//     records {batches, rows, rejects} under <job id>.g<generation>.c<i> in a KV bucket
//     (mp_chunks) and counts that job run's keys there (one stream-info request, as
//     natsx.LoadedBatches does); the handler that sees all n publishes "transformed" with the
//     sums. Two handlers finishing together both publish it under the same Nats-Msg-Id, and
//     JetStream keeps one. A *dlformat.Error in any chunk fails the job as today (only the last
//     chunk can see a truncated file); read errors are retried, never made permanent.
//
// The loader needs no change: batches carry job id, generation and Seq, so ledger keys are
// unique across chunks, and completion compares the ledger's count with Batches, the sum.
//
// Cost: a replica reads the object from its first byte and skips to its chunk. Scanning is
// cheap (BenchmarkChunks: 2.6 to 3.9 GB/s), but the object store itself delivered about
// 370 MB/s here, so with 2 replicas the second reads half the file only to skip it: about
// 1.4x, not 2x. To approach 2x, the collector should store large files as segment objects
// (<key>/seg-<k>, e.g. 64 MiB each) and record, for each segment start, the state the
// boundary rule needs there (first boundary at or after it, inside a block or not, previous
// key): a chunk replica then reads the header from segment 0 and only its own segments.
package chunk

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/marketpipe/marketpipe/pkg/bounds"
)

// ErrNotSplittable is returned by Open for n > 1 when the file cannot be split: gzip, or no
// START-OF-DATA line.
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

// Splittable reports whether a file whose first bytes are head can be split: it is not gzip
// and head holds a START-OF-DATA line. Give it at least MaxHeaderBytes of the file, or the
// whole file if smaller.
func Splittable(head []byte) bool {
	if len(head) >= 2 && head[0] == 0x1f && head[1] == 0x8b {
		return false
	}
	s := newScanner(bytes.NewReader(head), 0)
	for {
		line, _, err := s.next()
		if err != nil {
			return false
		}
		if isMarker(line, "START-OF-DATA") {
			return true
		}
	}
}

// Reader is the stream of one chunk: header context, the chunk's lines, END-OF-DATA.
type Reader struct {
	s      *scanner
	ch     Chunk
	end    int64 // nominal end offset; boundaries at or after it end the chunk
	last   bool
	st     state
	out    []byte // pending output
	outPos int
	done   bool  // no more input to take
	tail   bool  // copying the file's tail as is (last chunk)
	err    error // sticky input error
}

// Open returns the reader of chunk i of n of the file that r yields from its first byte; size
// is the file's size. It reads r up to the chunk's first line before it returns. n == 1 gives
// the whole file unchanged.
func Open(r io.Reader, size int64, i, n int) (*Reader, error) {
	if n < 1 || i < 0 || i >= n {
		return nil, fmt.Errorf("chunk: chunk %d of %d", i, n)
	}
	cr := &Reader{s: newScanner(r, 0), ch: Chunk{Index: i, Count: n}, last: i == n-1}
	if n == 1 {
		cr.ch.End = size
		cr.tail = true
		return cr, nil
	}
	if err := cr.readHeader(); err != nil {
		return nil, err
	}
	cr.end = cut(size, i+1, n)
	// The start: the first candidate line (the data section's first line, or a boundary) at or
	// after the nominal start; chunk 0 starts at the data section's first line.
	from := cut(size, i, n)
	first := true
	for {
		if i > 0 {
			// Whole buffers of lines that end before the nominal start: no line-by-line work.
			if r := cr.s.region(from, &cr.st); r != nil {
				first = false
				continue
			}
		}
		line, off, err := cr.s.next()
		if err == io.EOF {
			// The data ended (a truncated file) before this chunk's start: empty, except
			// that the last chunk lets the parser see the truncation.
			cr.startAt(cr.s.off, cr.s.lineNo+1)
			cr.ch.End = cr.s.off
			cr.done = true
			if !cr.last {
				cr.out = append(cr.out, endOfData...)
			}
			return cr, nil
		}
		if err != nil {
			return nil, err
		}
		k := cr.st.classify(line)
		// The end of the data starts every chunk not started yet.
		if (first || k.boundary) && (i == 0 || off >= from) || k.endOfData {
			cr.startAt(off, cr.s.lineNo)
			if !cr.last && (k.endOfData || off >= cr.end) {
				// The next chunk starts here too: this one is empty.
				cr.ch.End = off
				cr.done = true
				cr.out = append(cr.out, endOfData...)
				return cr, nil
			}
			cr.out = append(cr.out, line...)
			// The last chunk is the rest of the file as is: no boundary to look for.
			cr.tail = cr.last
			cr.st.update(k)
			return cr, nil
		}
		first = false
		cr.st.update(k)
	}
}

const endOfData = "END-OF-DATA\n"

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
		if cr.tail {
			// The rest of the file as is.
			n, err := cr.s.readRaw(p)
			cr.ch.End = cr.s.off
			if err == io.EOF {
				cr.done = true
				if n > 0 {
					return n, nil
				}
				return 0, io.EOF
			}
			if err != nil {
				cr.err = err
			}
			return n, err
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
		if !cr.last {
			if r := cr.s.region(cr.end, &cr.st); r != nil {
				cr.out = append(cr.out, r...)
				continue
			}
		}
		line, off, err := cr.s.next()
		if err == io.EOF {
			// A truncated file: the last chunk lets the parser see it end; others end here.
			cr.ch.End = cr.s.off
			cr.done = true
			if !cr.last {
				cr.out = append(cr.out, endOfData...)
			}
			return
		}
		if err != nil {
			cr.err = err
			return
		}
		k := cr.st.classify(line)
		if !cr.last && (k.endOfData || k.boundary && off >= cr.end) {
			cr.ch.End = off
			cr.done = true
			cr.out = append(cr.out, endOfData...)
			return
		}
		cr.out = append(cr.out, line...)
		if cr.last && k.endOfData {
			cr.tail = true
			return
		}
		cr.st.update(k)
	}
}

// Plan reads the whole file from r (size bytes) and returns its n chunks: exactly what Open
// gives for each i.
func Plan(r io.Reader, size int64, n int) ([]Chunk, error) {
	if n < 1 {
		return nil, fmt.Errorf("chunk: %d chunks", n)
	}
	if n == 1 {
		return []Chunk{{Index: 0, Count: 1, End: size}}, nil
	}
	s := newScanner(r, 0)
	h, err := readHeader(s)
	if err != nil {
		return nil, err
	}
	chunks := make([]Chunk, n)
	for i := range chunks {
		chunks[i] = Chunk{Index: i, Count: n, HeaderLines: h.lines}
	}
	st := state{delim: h.delim}
	next := 0 // the next chunk whose start is not yet known
	setStart := func(off, lineNo int64) {
		for next < n && (next == 0 || off >= cut(size, next, n)) {
			chunks[next].Start = off
			chunks[next].LineOffset = lineNo - (h.lines + 1)
			if next > 0 {
				chunks[next-1].End = off
			}
			next++
		}
	}
	first := true
	for {
		line, off, err := s.next()
		if err == io.EOF {
			for next < n {
				setStartForce(chunks, &next, s.off, s.lineNo+1, h.lines)
			}
			chunks[n-1].End = s.off
			return chunks, nil
		}
		if err != nil {
			return nil, err
		}
		k := st.classify(line)
		if first || k.boundary {
			setStart(off, s.lineNo)
		}
		first = false
		if k.endOfData {
			for next < n {
				setStartForce(chunks, &next, off, s.lineNo, h.lines)
			}
			// The tail belongs to the last chunk: read to the end for its size.
			for {
				_, _, err := s.next()
				if err == io.EOF {
					chunks[n-1].End = s.off
					return chunks, nil
				}
				if err != nil {
					return nil, err
				}
			}
		}
		st.update(k)
	}
}

// setStartForce starts chunk *next at off whatever its nominal start (the data ended first).
func setStartForce(chunks []Chunk, next *int, off, lineNo, headerLines int64) {
	i := *next
	chunks[i].Start = off
	chunks[i].LineOffset = lineNo - (headerLines + 1)
	if i > 0 {
		chunks[i-1].End = off
	}
	*next = i + 1
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
	h := header{delim: '|'}
	for {
		line, _, err := s.next()
		if err == io.EOF {
			return h, ErrNotSplittable
		}
		if err != nil {
			return h, err
		}
		if s.lineNo == 1 && len(line) >= 2 && line[0] == 0x1f && line[1] == 0x8b {
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
		if len(t) > 0 && t[0] == '#' {
			continue
		}
		if v, ok := bytes.CutPrefix(t, []byte("DELIMITER=")); ok {
			// The reader fails the file on a DELIMITER that is not one character; the
			// chunks then fail the same way.
			if v = bytes.TrimSpace(v); len(v) == 1 {
				h.delim = v[0]
			}
		}
		if string(bytes.TrimLeft(t, "\ufeff")) == "START-OF-DATA" {
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
		if len(t) == 0 || t[0] == '#' {
			s.next()
			continue
		}
		c0, rest := cell(t, h.delim)
		c1, _ := cell(rest, h.delim)
		if string(trimSpaces(c0)) == "SECURITIES" && string(trimSpaces(c1)) == "ERROR CODE" {
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
	if len(t) == 0 || t[0] == '#' {
		return kind{}
	}
	if string(t) == "END-OF-DATA" {
		return kind{endOfData: true, boundary: true}
	}
	k := kind{data: true}
	switch {
	case hasMarker(t, "START SECURITY", st.delim):
		k.start = true
		k.key, _ = cell(t[len("START SECURITY")+1:], st.delim)
	case hasMarker(t, "END SECURITY", st.delim):
		k.end = true
		k.key, _ = cell(t[len("END SECURITY")+1:], st.delim)
	default:
		k.key, _ = cell(t, st.delim)
	}
	k.key = trimSpaces(k.key)
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

func hasMarker(t []byte, marker string, d byte) bool {
	return len(t) > len(marker) && string(t[:len(marker)]) == marker && t[len(marker)] == d
}

// cell returns the first cell of b and what follows its delimiter.
func cell(b []byte, d byte) (c, rest []byte) {
	if i := bytes.IndexByte(b, d); i >= 0 {
		return b[:i], b[i+1:]
	}
	return b, nil
}

// trim drops the line end (LF or CRLF) and trailing spaces and tabs.
func trim(line []byte) []byte {
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	return trimSpaces(line)
}

func trimSpaces(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

func isMarker(line []byte, m string) bool {
	return string(bytes.TrimLeft(trim(line), "\ufeff")) == m
}

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

// readRaw copies what is left of the file into p: the buffered bytes first.
func (s *scanner) readRaw(p []byte) (int, error) {
	if s.peeked {
		n := copy(p, s.pLine)
		s.pLine = s.pLine[n:]
		if len(s.pLine) == 0 {
			s.peeked = false
		}
		return n, nil
	}
	if s.pos < s.end {
		n := copy(p, s.buf[s.pos:s.end])
		s.pos += n
		s.off += int64(n)
		return n, nil
	}
	if s.err != nil {
		return 0, s.err
	}
	n, err := s.r.Read(p)
	s.off += int64(n)
	if err != nil {
		s.err = err
	}
	return n, err
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
		if i >= 10 && string(r[i-10:i]) == "START SECU" && (i == 10 || r[i-11] == '\n') {
			start = i - 10
		} else if i >= 8 && string(r[i-8:i]) == "END SECU" && (i == 8 || r[i-9] == '\n') {
			end = i - 8
		}
		off = i + len(pat)
	}
}
