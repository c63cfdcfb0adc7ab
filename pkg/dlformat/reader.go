package dlformat

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/marketpipe/marketpipe/pkg/bounds"
	"github.com/marketpipe/marketpipe/pkg/obs"
)

// Reader reads the observations of one reply file. It is not safe for concurrent use.
type Reader struct {
	// OnReject, if not nil, is called for every line (or bulk cell) that cannot be turned into
	// observations; reading goes on after it. If it returns an error, Next stops and returns
	// that error (wrapped). Rejects are counted in Stats either way.
	OnReject func(obs.Reject) error
	// MaxLineBytes caps a line's length (DefaultMaxLineBytes when 0): a longer line ends the
	// file with an *Error (matching bounds.ErrExceeded) before more of it is held in memory.
	// Set it before the first Next.
	MaxLineBytes int

	br    *bufio.Reader
	long  []byte // holds a line longer than br's buffer
	state section
	err   error // sticky: once set, Next returns it

	hdr      Header
	program  string
	delim    byte
	datefmt  dateFormat
	hist     bool // gethistory or HIST_FORMAT=horizontal: rows carry dates
	actions  bool // getactions
	snapProg bool // a PROGRAMNAME that is neither history nor actions: getdata-like rows
	runDate  obs.Date
	hasRun   bool
	started  obs.Date
	hasStart bool
	sawStart bool // a TIMESTARTED was seen (the first one counts)
	sawData  bool

	// Vertical history block.
	inBlock    bool
	blockSec   string
	blockField string
	blockLine  int64

	// The row being emitted cell by cell.
	row rowState

	// A few observations queued by a single line (getactions heads).
	queue  []obs.Observation
	queued int

	// Small caches that keep allocations off the hot path.
	lastSec  string
	lastRC   string // "security\x00code" of the last RC record, to fold repeats
	rcFlag   string
	rcCode   string
	lineNo   int64
	lineRaw  []byte
	scratch  []byte
	o        obs.Observation
	stats    Stats
	prefixes map[string]string // getactions "<ACTION>.<FIELD>" names
}

// NewReader returns a Reader of the reply file in r, decompressing it if it starts with the gzip
// magic bytes (and failing it, with an *Error, once it inflates past pkg/bounds' ratio). It
// fails, with an *Error, only if r is gzip but its header cannot be read.
func NewReader(r io.Reader) (*Reader, error) {
	var g bounds.InflateGuard
	br := bufio.NewReaderSize(g.Compressed(r), 64<<10)
	magic, err := br.Peek(2)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, &Error{Line: 0, Reason: "read: " + err.Error(), Err: err}
	}
	if IsGzip(magic) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, &Error{Line: 0, Reason: "gzip: " + err.Error(), Err: err}
		}
		br = bufio.NewReaderSize(g.Plain(zr), 64<<10)
	}
	return &Reader{br: br, delim: DefaultDelimiter}, nil
}

// Header returns the file's header lines and field list as read so far: complete for the part
// before the data once Next has been called, the lines after the data once Next returned io.EOF.
func (r *Reader) Header() Header { return r.hdr }

// Program returns the file's PROGRAMNAME (getdata, gethistory, ...), "" if it has none.
func (r *Reader) Program() string { return r.program }

// Stats returns the counts so far.
func (r *Reader) Stats() Stats { return r.stats }

// Next returns the next observation, or io.EOF after the last one. The observation is valid until
// the next call (copy it to keep it; its strings may be kept). Malformed lines go to OnReject and
// reading goes on; a file that cannot be read at all gives an *Error naming the line.
func (r *Reader) Next() (*obs.Observation, error) {
	if r.err != nil {
		return nil, r.err
	}
	for {
		if r.queued < len(r.queue) {
			r.o = r.queue[r.queued]
			r.queued++
			return r.emit()
		}
		if r.row.active {
			ok, err := r.nextCell()
			if err != nil {
				r.err = err
				return nil, err
			}
			if ok {
				return r.emit()
			}
			continue
		}
		line, err := r.readLine()
		if err != nil {
			if err == io.EOF {
				err = r.atEOF()
			}
			r.err = err
			return nil, err
		}
		ok, err := r.handleLine(line)
		if err != nil {
			r.err = err
			return nil, err
		}
		if ok {
			return r.emit()
		}
	}
}

func (r *Reader) emit() (*obs.Observation, error) {
	r.stats.Observations++
	return &r.o, nil
}

// atEOF decides whether the end of input is a normal end or a file cut short.
func (r *Reader) atEOF() error {
	switch r.state {
	case secTrailer, secDone:
		return io.EOF
	case secData:
		return &Error{Line: r.lineNo, Reason: "input ends inside the data section (no END-OF-DATA): file truncated"}
	case secPreamble:
		return &Error{Line: r.lineNo, Reason: "no START-OF-FILE, START-OF-FIELDS or START-OF-DATA: not a Data License reply file"}
	}
	return &Error{Line: r.lineNo, Reason: "input ends before START-OF-DATA"}
}

// reject reports a line that could not be turned into observations.
func (r *Reader) reject(line int64, raw []byte, reason string) error {
	r.stats.Rejects++
	if r.OnReject == nil {
		return nil
	}
	if err := r.OnReject(obs.Reject{Line: line, Raw: string(raw), Reason: reason}); err != nil {
		return fmt.Errorf("line %d: reject handler: %w", line, err)
	}
	return nil
}

func (r *Reader) rejectLine(reason string) error { return r.reject(r.lineNo, r.lineRaw, reason) }

// String describes the reader's position, for debugging.
func (r *Reader) String() string {
	return "dlformat.Reader{line " + strconv.FormatInt(r.lineNo, 10) + ", program " + strconv.Quote(r.program) + "}"
}
