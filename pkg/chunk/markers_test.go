package chunk

import (
	"strings"
	"testing"
)

// TestLastMarkers: the offsets of the last START SECURITY and END SECURITY lines of a region,
// only at line starts and only with the file's delimiter after the marker.
func TestLastMarkers(t *testing.T) {
	cases := []struct {
		r          string
		d          byte
		start, end int
	}{
		{"START SECURITY|A|PX|\nA|1|2|\n", '|', 0, -1},
		{"END SECURITY|A|PX|0|\n", '|', -1, 0},
		{"A|0|\nSTART SECURITY|A|PX|\nA|1|2|\nEND SECURITY|A|PX|0|\nSTART SECURITY|B|PX|\nB|1|2|\n", '|',
			strings.LastIndex("A|0|\nSTART SECURITY|A|PX|\nA|1|2|\nEND SECURITY|A|PX|0|\nSTART SECURITY|B|PX|\nB|1|2|\n", "START"),
			strings.Index("A|0|\nSTART SECURITY|A|PX|\nA|1|2|\nEND SECURITY|A|PX|0|\nSTART SECURITY|B|PX|\nB|1|2|\n", "END")},
		{"xSTART SECURITY|A|\nA END SECURITY|A|\n", '|', -1, -1}, // not at a line start
		{"START SECURITY;A;\nEND SECURITY;A;\n", '|', -1, -1},    // another delimiter
		{"START SECURITY;A;\nEND SECURITY;A;\n", ';', 0, strings.Index("START SECURITY;A;\nEND SECURITY;A;\n", "END")},
		{"START SECURITIES|A|\nEND SECURITY\n", '|', -1, -1},
	}
	for _, c := range cases {
		start, end := lastMarkers([]byte(c.r), c.d)
		if start != c.start || end != c.end {
			t.Errorf("lastMarkers(%q, %q) = %d, %d; want %d, %d", c.r, c.d, start, end, c.start, c.end)
		}
	}
}
