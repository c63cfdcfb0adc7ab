package dlformat

import "bytes"

// The line primitives of a reply file. The Reader reads lines with them, and pkg/chunk, which
// finds record boundaries without parsing values, reads the same lines with the same rules.

// Lines that delimit the sections of a reply file, and the markers that open and close a
// vertical history block.
const (
	StartOfFile   = "START-OF-FILE"
	StartOfFields = "START-OF-FIELDS"
	EndOfFields   = "END-OF-FIELDS"
	StartOfData   = "START-OF-DATA"
	EndOfData     = "END-OF-DATA"
	EndOfFile     = "END-OF-FILE"
	StartSecurity = "START SECURITY"
	EndSecurity   = "END SECURITY"
)

// DefaultDelimiter is the cell delimiter of a file without a DELIMITER line.
const DefaultDelimiter = '|'

// TrimLineEnd drops a line's end, LF or CRLF.
func TrimLineEnd(line []byte) []byte {
	if n := len(line); n > 0 && line[n-1] == '\n' {
		line = line[:n-1]
	}
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line
}

// TrimBOM drops a UTF-8 byte-order mark, which only the first line of a file may start with.
func TrimBOM(line []byte) []byte { return bytes.TrimPrefix(line, []byte("\xef\xbb\xbf")) }

// TrimRight drops trailing spaces and tabs: Bloomberg pads identifiers and some cells.
func TrimRight(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// IsComment reports whether a line is a comment: it starts with '#', in any section.
func IsComment(line []byte) bool { return len(line) > 0 && line[0] == '#' }

// Cut returns the first cell of b and the rest after its delimiter (nil when b had no delimiter).
func Cut(b []byte, d byte) (cell, rest []byte) {
	i := bytes.IndexByte(b, d)
	if i < 0 {
		return b, nil
	}
	return b[:i], b[i+1:]
}

// HasMarker reports whether the data line t starts with marker (StartSecurity, EndSecurity)
// followed by the delimiter d; the marker's cells follow at t[len(marker)+1:].
func HasMarker(t []byte, marker string, d byte) bool {
	return len(t) > len(marker) && string(t[:len(marker)]) == marker && t[len(marker)] == d
}

// IsColumnHeader reports whether a data line whose first two cells are c0 and c1 is a
// column-header row ("SECURITIES|ERROR CODE|NUM FLDS|names|"), which is not data.
func IsColumnHeader(c0, c1 []byte) bool {
	return string(TrimRight(c0)) == "SECURITIES" && string(TrimRight(c1)) == "ERROR CODE"
}

// HeaderPair splits a KEY=VALUE header line t at its first '=', the key and the value with
// their surrounding spaces trimmed. It reports false for a line without '='.
func HeaderPair(t []byte) (key, value []byte, ok bool) {
	i := bytes.IndexByte(t, '=')
	if i < 0 {
		return nil, nil, false
	}
	return bytes.TrimSpace(t[:i]), bytes.TrimSpace(t[i+1:]), true
}

// IsDelimiterKey reports whether a header key is DELIMITER (keys are compared without regard
// to case).
func IsDelimiterKey(key []byte) bool { return bytes.EqualFold(key, []byte("DELIMITER")) }

// Delimiter returns the cell delimiter a DELIMITER line's trimmed value declares: its one
// character, or DefaultDelimiter for an empty value. It reports false for a longer value, which
// fails the file.
func Delimiter(value []byte) (byte, bool) {
	switch len(value) {
	case 0:
		return DefaultDelimiter, true
	case 1:
		return value[0], true
	}
	return 0, false
}
