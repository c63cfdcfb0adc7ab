package dlformat

import (
	"bytes"
	"strconv"
)

// looksBulk reports whether a (trimmed) cell is a bulk cell: a sub-delimiter, the number of
// dimensions (1 or 2), the sub-delimiter again, ..., and the sub-delimiter at the end. The test is
// narrow on purpose: text that merely starts with punctuation must stay text.
func looksBulk(b []byte) bool {
	if len(b) < 5 {
		return false
	}
	s := b[0]
	switch {
	case s <= ' ' || s >= 0x7f, s == '.', s == '-', s == '+', s == '#', s == '"', s == '\'', s == '(':
		return false
	case 'a' <= s && s <= 'z', 'A' <= s && s <= 'Z', isDigit(s):
		return false
	}
	return (b[1] == '1' || b[1] == '2') && b[2] == s && b[len(b)-1] == s
}

// bulkError says why a bulk cell could not be read.
type bulkError string

func (e bulkError) Error() string { return string(e) }

// appendBulk converts a bulk cell (looksBulk true) into JSON rows appended to dst.
//
// Layout: S dims S rows S [cols S] (type S value S)*, S being the first character. Types 2, 3, 12
// and 13 are numbers, 5 dates; everything else (1, 4, 11 text; 6 time; 7 date-time; 9 month/year;
// 10 boolean; unknown codes) stays a string as written, which loses nothing.
func appendBulk(dst, b []byte, df dateFormat) ([]byte, error) {
	s := b[0]
	body := b[1 : len(b)-1] // without the leading and trailing sub-delimiter
	next := func() ([]byte, bool) {
		if body == nil {
			return nil, false
		}
		i := bytes.IndexByte(body, s)
		if i < 0 {
			t := body
			body = nil
			return t, true
		}
		t := body[:i]
		body = body[i+1:]
		return t, true
	}
	tok, _ := next()
	dims, _ := atoiN(tok)
	if dims != 1 && dims != 2 {
		return dst, bulkError("bulk cell: dimensions " + strconv.Quote(string(tok)) + ", want 1 or 2")
	}
	tok, ok := next()
	rows, okr := atoiN(tok)
	if !ok || !okr || len(tok) > 9 {
		return dst, bulkError("bulk cell: row count " + strconv.Quote(string(tok)) + " is not a number")
	}
	cols := 1
	if dims == 2 {
		tok, ok = next()
		c, okc := atoiN(tok)
		if !ok || !okc || len(tok) > 9 || c < 1 {
			return dst, bulkError("bulk cell: column count " + strconv.Quote(string(tok)) + " is not a positive number")
		}
		cols = c
	}
	// Count the elements before writing anything: a declared shape that the cell does not fill
	// (hand-edited files) must be rejected, not padded or truncated.
	have := 0
	if body != nil {
		have = bytes.Count(body, []byte{s}) + 1
	}
	if have%2 != 0 || int64(have/2) != int64(rows)*int64(cols) {
		return dst, bulkError("bulk cell declares " + strconv.Itoa(rows) + "x" + strconv.Itoa(cols) +
			" elements but holds " + strconv.Itoa(have/2) + " type;value pairs" + oddNote(have))
	}
	dst = append(dst, '[')
	for r := 0; r < rows; r++ {
		if r > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '[')
		for c := 0; c < cols; c++ {
			if c > 0 {
				dst = append(dst, ',')
			}
			typ, _ := next()
			val, _ := next()
			dst = appendBulkValue(dst, typ, val, df)
		}
		dst = append(dst, ']')
	}
	return append(dst, ']'), nil
}

func oddNote(have int) string {
	if have%2 != 0 {
		return " and a stray element"
	}
	return ""
}

func appendBulkValue(dst, typ, val []byte, df dateFormat) []byte {
	v := TrimRight(val)
	if len(v) == 0 {
		return append(dst, "null"...)
	}
	switch string(typ) {
	case "2", "3", "12", "13":
		if numericShape(v, false) {
			return appendJSONNumber(dst, v)
		}
	case "5":
		if y, m, d, ok := parseYMD8(v); ok {
			return append(appendISODate(append(dst, '"'), y, m, d), '"')
		}
		if y, m, d, ok := parseSlashed(v, df == dateDMY); ok {
			return append(appendISODate(append(dst, '"'), y, m, d), '"')
		}
	}
	return appendJSONString(dst, v)
}
