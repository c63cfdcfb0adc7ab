package dlformat

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/marketpipe/marketpipe/pkg/obs"
)

// Markers as written in the files; returned as Flag without allocating.
const (
	flagNA = "N.A."
	flagNS = "N.S."
	flagND = "N.D."
	// FlagUnknown is the marker of a field the vendor does not know.
	FlagUnknown = "FLD UNKNOWN"
	flagBlank   = "BLANK"
)

// dateFormat is how DATEFORMAT says dates are written in cells.
type dateFormat uint8

const (
	dateMDY dateFormat = iota // 07/15/2024: mmddyyyy and the default
	dateYMD                   // 20240715: yyyymmdd
	dateDMY                   // 15/07/2024: ddmmyyyy
)

// parseDateFormat maps a DATEFORMAT value; ok is false for values not seen in real files.
func parseDateFormat(v string) (dateFormat, bool) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "", "mmddyyyy", "mm/dd/yyyy":
		return dateMDY, true
	case "yyyymmdd":
		return dateYMD, true
	case "ddmmyyyy", "dd/mm/yyyy":
		return dateDMY, true
	}
	return dateMDY, false
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// bstr views b as a string without copying. Only for values that do not outlive b and are not
// kept by the callee (strconv clones its input into errors since Go 1.20).
func bstr(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// numericShape reports whether b is [-]digits[.digits] with at least one digit. strict rejects
// the shapes that are numeric but better kept as text: zero-padded integers ("0000320193") and
// integers of more than 15 digits, which a float64 would not hold exactly.
func numericShape(b []byte, strict bool) bool {
	i := 0
	if i < len(b) && b[i] == '-' {
		i++
	}
	start := i
	for i < len(b) && isDigit(b[i]) {
		i++
	}
	intLen := i - start
	fracLen, dot := 0, false
	if i < len(b) && b[i] == '.' {
		dot = true
		i++
		s := i
		for i < len(b) && isDigit(b[i]) {
			i++
		}
		fracLen = i - s
	}
	if i != len(b) || intLen+fracLen == 0 {
		return false
	}
	if strict {
		if intLen > 1 && b[start] == '0' {
			return false
		}
		if !dot && intLen > 15 {
			return false
		}
	}
	return true
}

// parseNumber returns the value of a cell of numeric shape (see numericShape).
func parseNumber(b []byte, strict bool) (float64, bool) {
	if !numericShape(b, strict) {
		return 0, false
	}
	if f, ok := parseShortDecimal(b); ok {
		return f, true
	}
	f, err := strconv.ParseFloat(bstr(b), 64)
	if err != nil {
		return 0, false // out of range: keep as text rather than ±Inf
	}
	return f, true
}

// parseShortDecimal is the exact fast path for a cell of numeric shape with at most 15 digits
// in all (the bulk of prices, volumes and counts): its digits make an integer m < 10^15 < 2^53
// and its k fraction digits a power 10^k ≤ 10^15, both exact as float64, so m / 10^k is the
// correctly rounded value that strconv.ParseFloat also returns (Clinger's fast path), at a
// fraction of its cost. Longer cells report false and go to strconv.
func parseShortDecimal(b []byte) (float64, bool) {
	neg, i := false, 0
	if len(b) > 0 && b[0] == '-' {
		neg, i = true, 1
	}
	var m uint64
	digits, frac, dot := 0, 0, false
	for ; i < len(b); i++ {
		c := b[i]
		switch {
		case isDigit(c):
			m = m*10 + uint64(c-'0')
			digits++
			if dot {
				frac++
			}
		case c == '.' && !dot:
			dot = true
		default:
			return 0, false
		}
	}
	if digits == 0 || digits > 15 {
		return 0, false
	}
	f := float64(m)
	if frac > 0 {
		f /= pow10[frac]
	}
	if neg {
		f = -f
	}
	return f, true
}

// pow10 holds the exact powers of ten parseShortDecimal divides by.
var pow10 = [...]float64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15}

// daysFromCivil returns days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
// algorithm): much cheaper than time.Date on the hot path of history rows.
func daysFromCivil(y, m, d int) obs.Date {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era--
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return obs.Date(era*146097 + doe - 719468)
}

func validDate(y, m, d int) bool {
	if y < 1 || m < 1 || m > 12 || d < 1 {
		return false
	}
	dim := [...]int{31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}[m-1]
	if m == 2 && (y%4 == 0 && (y%100 != 0 || y%400 == 0)) {
		dim = 29
	}
	return d <= dim
}

func atoiN(b []byte) (int, bool) {
	n := 0
	for _, c := range b {
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, len(b) > 0
}

// parseYMD8 reads 20240715.
func parseYMD8(b []byte) (y, m, d int, ok bool) {
	if len(b) != 8 {
		return 0, 0, 0, false
	}
	y, ok1 := atoiN(b[:4])
	m, ok2 := atoiN(b[4:6])
	d, ok3 := atoiN(b[6:])
	ok = ok1 && ok2 && ok3 && validDate(y, m, d)
	return y, m, d, ok
}

// parseSlashed reads 07/15/2024 (dayFirst false) or 15/07/2024 (dayFirst true).
func parseSlashed(b []byte, dayFirst bool) (y, m, d int, ok bool) {
	if len(b) != 10 || b[2] != '/' || b[5] != '/' {
		return 0, 0, 0, false
	}
	a, ok1 := atoiN(b[:2])
	c, ok2 := atoiN(b[3:5])
	y, ok3 := atoiN(b[6:])
	m, d = a, c
	if dayFirst {
		m, d = c, a
	}
	ok = ok1 && ok2 && ok3 && validDate(y, m, d)
	return y, m, d, ok
}

// parseRowDate reads the date column of a history row. Either spelling is accepted: the column
// is known to hold a date, and REST fragments come without a DATEFORMAT header.
func parseRowDate(b []byte, df dateFormat) (obs.Date, bool) {
	b = TrimRight(b)
	if y, m, d, ok := parseYMD8(b); ok {
		return daysFromCivil(y, m, d), true
	}
	if y, m, d, ok := parseSlashed(b, df == dateDMY); ok {
		return daysFromCivil(y, m, d), true
	}
	return 0, false
}

// cellDate recognises a date in a value cell in the file's DATEFORMAT. 8-digit dates are only
// taken between 1900 and 2199, so that amounts and ids of 8 digits stay numbers.
func cellDate(b []byte, df dateFormat) (y, m, d int, ok bool) {
	switch len(b) {
	case 8:
		if df != dateYMD {
			return 0, 0, 0, false
		}
		y, m, d, ok = parseYMD8(b)
		return y, m, d, ok && y >= 1900 && y < 2200
	case 10:
		return parseSlashed(b, df == dateDMY)
	}
	return 0, 0, 0, false
}

// appendISODate appends YYYY-MM-DD.
func appendISODate(dst []byte, y, m, d int) []byte {
	return append(dst, byte('0'+y/1000%10), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10),
		'-', byte('0'+m/10), byte('0'+m%10), '-', byte('0'+d/10), byte('0'+d%10))
}

// marker returns the flag for a marker cell (already trimmed), or "".
func marker(b []byte) string {
	switch len(b) {
	case 0:
		return flagBlank
	case 4:
		switch bstr(b) {
		case flagNA:
			return flagNA
		case flagNS:
			return flagNS
		case flagND:
			return flagND
		}
	case 11:
		if bstr(b) == FlagUnknown {
			return FlagUnknown
		}
	}
	return ""
}

// parseUnixDate reads the date part of a TIMESTARTED value such as "Wed Dec 17 11:19:10 EST 2025"
// or "Fri Jun  07 14:29:39 BST 2015": weekday, month name, day, time, zone (optional), year. The
// date is taken as written, in the file's own zone.
func parseUnixDate(v string) (obs.Date, bool) {
	f := strings.Fields(v)
	if len(f) < 4 {
		return 0, false
	}
	var month time.Month
	for m := time.January; m <= time.December; m++ {
		if strings.EqualFold(f[1], m.String()[:3]) {
			month = m
		}
	}
	d, ok1 := atoiN([]byte(f[2]))
	y, ok2 := atoiN([]byte(f[len(f)-1]))
	if month == 0 || !ok1 || !ok2 || !validDate(y, int(month), d) {
		return 0, false
	}
	return daysFromCivil(y, int(month), d), true
}

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD, as encoding/json
// does, so that bulk cells are always valid JSON.
func appendJSONString(dst, s []byte) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c < 0x20:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, `\ufffd`...)
		} else if r == '\u2028' || r == '\u2029' {
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xf])
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}

// appendJSONNumber appends numeric text (numericShape, not strict) as a canonical JSON number:
// "0.215" for ".21500", "105.23" for "105.230000", "320193" for "0000320193".
func appendJSONNumber(dst, b []byte) []byte {
	if len(b) > 0 && b[0] == '-' {
		dst = append(dst, '-')
		b = b[1:]
	}
	intPart, frac := b, []byte(nil)
	for i, c := range b {
		if c == '.' {
			intPart, frac = b[:i], b[i+1:]
			break
		}
	}
	for len(intPart) > 1 && intPart[0] == '0' {
		intPart = intPart[1:]
	}
	if len(intPart) == 0 {
		dst = append(dst, '0')
	} else {
		dst = append(dst, intPart...)
	}
	for len(frac) > 0 && frac[len(frac)-1] == '0' {
		frac = frac[:len(frac)-1]
	}
	if len(frac) > 0 {
		dst = append(dst, '.')
		dst = append(dst, frac...)
	}
	return dst
}
