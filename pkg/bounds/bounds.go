// Package bounds declares the limits that every reader of vendor bytes enforces while it
// streams: the vendor client's download (file size, decompression ratio), the collector's scan
// for record boundaries (pkg/chunk: line length), and the transformer's reply-file reader
// (pkg/dlformat: line length, decompression ratio). A reply file built to hurt therefore fails
// its job with the bound it broke, at the same place in every stage, before any of them holds
// more than a line in memory.
package bounds

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

const (
	// MaxLineBytes is the longest line of a reply file. The widest real lines (hundreds of
	// fields with bulk cells) are a few hundred kilobytes.
	MaxLineBytes = 16 << 20
	// MaxFileBytes is the most a reply file may hold, whatever its listing says.
	MaxFileBytes int64 = 64 << 30
	// MaxInflateRatio is the most plain bytes a gzip stream may give per compressed byte.
	// Reply files compress about 5 to 20 times; deflate's own limit is about 1032.
	MaxInflateRatio = 200
	// inflateSlack is what a stream may give beyond the ratio: the first blocks of a file (a
	// header of repeated lines) may compress far better than the whole.
	inflateSlack = 1 << 20
)

// ErrExceeded is matched (errors.Is) by every error of a bound broken: the input can never be
// read, so the job fails rather than retries.
var ErrExceeded = errors.New("vendor input exceeds a bound")

// Error says which bound the input broke, and where.
type Error struct{ Reason string }

func (e *Error) Error() string        { return e.Reason }
func (e *Error) Is(target error) bool { return target == ErrExceeded }

// FileLimit is the most plain bytes a file listed at listed bytes (-1: not listed) may have:
// the listed size plus a sixteenth and 1 MiB (a listing may be rounded or slightly stale),
// never more than MaxFileBytes.
func FileLimit(listed int64) int64 {
	if listed < 0 || listed > MaxFileBytes {
		return MaxFileBytes
	}
	return min(listed+listed/16+1<<20, MaxFileBytes)
}

// CheckFileSize returns an *Error once n plain bytes exceed FileLimit(listed).
func CheckFileSize(n, listed int64) error {
	limit := FileLimit(listed)
	if n <= limit {
		return nil
	}
	if limit == MaxFileBytes {
		return &Error{Reason: fmt.Sprintf("file larger than %s, the most a reply file may hold", Size(MaxFileBytes))}
	}
	return &Error{Reason: fmt.Sprintf("file larger than its listed %s + margin (%s)", Size(listed), Size(limit))}
}

// CheckInflated returns an *Error once plain bytes inflated from compressed bytes exceed
// MaxInflateRatio times them (plus a little slack for the first blocks), or MaxFileBytes.
func CheckInflated(compressed, plain int64) error {
	if plain > MaxInflateRatio*compressed+inflateSlack {
		return &Error{Reason: fmt.Sprintf("gzip inflated past %dx the compressed size (%s from %s)",
			MaxInflateRatio, Size(plain), Size(compressed))}
	}
	if plain > MaxFileBytes {
		return &Error{Reason: fmt.Sprintf("gzip inflated past %s, the most a reply file may hold", Size(MaxFileBytes))}
	}
	return nil
}

// LineTooLong is the error of line number line (1-based) longer than max bytes.
func LineTooLong(line int64, max int) error {
	return &Error{Reason: fmt.Sprintf("line %d longer than %s", line, Size(int64(max)))}
}

// Size writes n bytes for people, in the largest binary unit it reaches, to two decimals:
// "16 MiB", "5.25 MiB", "300 bytes".
func Size(n int64) string {
	for _, u := range []struct {
		shift uint
		name  string
	}{{30, "GiB"}, {20, "MiB"}, {10, "KiB"}} {
		if n >= 1<<u.shift {
			v := strconv.FormatFloat(float64(n)/float64(int64(1)<<u.shift), 'f', 2, 64)
			return strings.TrimSuffix(strings.TrimRight(v, "0"), ".") + " " + u.name
		}
	}
	return strconv.FormatInt(n, 10) + " bytes"
}

// InflateGuard watches one gzip stream: wrap the decompressor's input with Compressed and its
// output with Plain, whose Read fails with an *Error as soon as CheckInflated does, before the
// stream has inflated much further than the bound.
type InflateGuard struct {
	compressed, plain int64
	err               error
}

// Compressed returns r, counting the bytes the decompressor reads from it.
func (g *InflateGuard) Compressed(r io.Reader) io.Reader { return &compressedReader{r: r, g: g} }

// Plain returns r, the decompressor's output, checked after every Read.
func (g *InflateGuard) Plain(r io.Reader) io.Reader { return &plainReader{r: r, g: g} }

type compressedReader struct {
	r io.Reader
	g *InflateGuard
}

func (c *compressedReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.g.compressed += int64(n)
	return n, err
}

type plainReader struct {
	r io.Reader
	g *InflateGuard
}

func (p *plainReader) Read(b []byte) (int, error) {
	if p.g.err != nil {
		return 0, p.g.err
	}
	n, err := p.r.Read(b)
	p.g.plain += int64(n)
	if p.g.err = CheckInflated(p.g.compressed, p.g.plain); p.g.err != nil {
		return 0, p.g.err
	}
	return n, err
}
