package dlformat

import "testing"

// TestLinePrimitives pins the exported line rules pkg/chunk relies on to read lines as the
// Reader does.
func TestLinePrimitives(t *testing.T) {
	for in, want := range map[string]string{"A|1| \t\r\n": "A|1| \t", "A\n": "A", "A\r": "A", "A": "A", "\n": ""} {
		if got := string(TrimLineEnd([]byte(in))); got != want {
			t.Errorf("TrimLineEnd(%q) = %q, want %q", in, got, want)
		}
	}
	if got := string(TrimRight([]byte("IBM US Equity \t "))); got != "IBM US Equity" {
		t.Errorf("TrimRight = %q", got)
	}
	if got := string(TrimBOM([]byte("\xef\xbb\xbfSTART-OF-FILE"))); got != StartOfFile {
		t.Errorf("TrimBOM = %q", got)
	}
	if !IsComment([]byte("# x")) || IsComment([]byte(" # x")) || IsComment(nil) {
		t.Error("IsComment: want only lines starting with '#'")
	}
	if c, rest := Cut([]byte("A|B|"), '|'); string(c) != "A" || string(rest) != "B|" {
		t.Errorf("Cut = %q, %q", c, rest)
	}
	if c, rest := Cut([]byte("A"), '|'); string(c) != "A" || rest != nil {
		t.Errorf("Cut without delimiter = %q, %q; want the cell and nil", c, rest)
	}
	if !HasMarker([]byte("START SECURITY;A;"), StartSecurity, ';') || HasMarker([]byte("START SECURITY|A|"), StartSecurity, ';') ||
		HasMarker([]byte("START SECURITY"), StartSecurity, ';') {
		t.Error("HasMarker: want the marker followed by the delimiter")
	}
	if !IsColumnHeader([]byte("SECURITIES "), []byte("ERROR CODE")) || IsColumnHeader([]byte("IBM US Equity"), []byte("0")) {
		t.Error("IsColumnHeader")
	}
	k, v, ok := HeaderPair([]byte(" delimiter = ; "))
	if !ok || string(k) != "delimiter" || string(v) != ";" || !IsDelimiterKey(k) {
		t.Errorf("HeaderPair = %q, %q, %v", k, v, ok)
	}
	if _, _, ok := HeaderPair([]byte("no pair")); ok {
		t.Error("HeaderPair of a line without '=' reported a pair")
	}
	for val, want := range map[string]int{"": DefaultDelimiter, ";": ';', ";;": -1} {
		d, ok := Delimiter([]byte(val))
		if want < 0 && ok || want >= 0 && (!ok || int(d) != want) {
			t.Errorf("Delimiter(%q) = %q, %v", val, d, ok)
		}
	}
	if !IsGzip([]byte{0x1f, 0x8b, 8}) || IsGzip([]byte{0x1f}) {
		t.Error("IsGzip")
	}
}
