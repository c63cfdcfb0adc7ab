package dlformat

import (
	"bufio"
	"errors"
	"io"

	"github.com/marketpipe/marketpipe/pkg/bounds"
)

// DefaultMaxLineBytes is the longest line a Reader accepts unless told otherwise: the bound every
// reader of vendor bytes keeps (pkg/bounds). It keeps a corrupt file without newlines from
// taking memory without bound.
const DefaultMaxLineBytes = bounds.MaxLineBytes

// readLine returns the next line without its line ending, valid until the next call.
func (r *Reader) readLine() ([]byte, error) {
	b, err := r.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		b, err = r.readLong(b)
	} else if len(b) > r.maxLine() {
		err = errLineTooLong // a cap below the buffer's size
	}
	if err == errLineTooLong {
		r.long = nil
		err := bounds.LineTooLong(r.lineNo+1, r.maxLine())
		return nil, &Error{Line: r.lineNo + 1, Reason: "longer than " + bounds.Size(int64(r.maxLine())), Err: err}
	}
	if err != nil && !(err == io.EOF && len(b) > 0) {
		if err == io.EOF {
			return nil, io.EOF
		}
		if errors.Is(err, bounds.ErrExceeded) {
			return nil, &Error{Line: r.lineNo + 1, Reason: err.Error(), Err: err}
		}
		return nil, &Error{Line: r.lineNo + 1, Reason: "read: " + err.Error(), Err: err}
	}
	r.lineNo++
	r.stats.Lines++
	b = TrimLineEnd(b)
	if r.lineNo == 1 {
		b = TrimBOM(b)
	}
	return b, nil
}

var errLineTooLong = errors.New("line too long")

func (r *Reader) maxLine() int {
	if r.MaxLineBytes > 0 {
		return r.MaxLineBytes
	}
	return DefaultMaxLineBytes
}

// readLong gathers a line longer than the bufio buffer into r.long. Past the cap it stops
// reading and returns errLineTooLong.
func (r *Reader) readLong(first []byte) ([]byte, error) {
	r.long = append(r.long[:0], first...)
	for {
		if len(r.long) > r.maxLine() {
			return nil, errLineTooLong
		}
		b, err := r.br.ReadSlice('\n')
		if len(r.long)+len(b) > r.maxLine() {
			return nil, errLineTooLong
		}
		r.long = append(r.long, b...)
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err == nil || err == io.EOF:
			return r.long, nil
		default:
			return nil, err
		}
	}
}

// IsGzip reports whether b starts with the gzip magic bytes: a reply file is read compressed
// when it does, whatever its name.
func IsGzip(b []byte) bool { return len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b }
