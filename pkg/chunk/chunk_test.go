package chunk

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marketpipe/marketpipe/pkg/dlformat"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/obs"
	"github.com/marketpipe/marketpipe/pkg/simdata"
)

// parsed is what the reader makes of a stream.
type parsed struct {
	obs     []obs.Observation
	rejects []obs.Reject
	err     error
}

func parse(r io.Reader) parsed {
	var p parsed
	rd, err := dlformat.NewReader(r)
	if err != nil {
		p.err = err
		return p
	}
	rd.OnReject = func(rej obs.Reject) error { p.rejects = append(p.rejects, rej); return nil }
	for {
		o, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return p
		}
		if err != nil {
			p.err = err
			return p
		}
		p.obs = append(p.obs, *o)
	}
}

func (all *parsed) add(p parsed, c Chunk) {
	all.obs = append(all.obs, p.obs...)
	for _, r := range p.rejects {
		if r.Line > c.HeaderLines {
			r.Line += c.LineOffset
		} else if c.Index > 0 {
			continue
		}
		all.rejects = append(all.rejects, r)
	}
	if p.err != nil && all.err == nil {
		all.err = p.err
	}
}

func same(t *testing.T, name string, got, want parsed) {
	t.Helper()
	if (got.err == nil) != (want.err == nil) {
		t.Fatalf("%s: chunks end with error %v, the whole file with %v", name, got.err, want.err)
	}
	if len(got.obs) != len(want.obs) {
		t.Fatalf("%s: chunks give %d observations, the whole file %d", name, len(got.obs), len(want.obs))
	}
	for i := range got.obs {
		if !got.obs[i].Equal(&want.obs[i]) {
			t.Fatalf("%s: observation %d: chunks %+v, whole file %+v", name, i, got.obs[i], want.obs[i])
		}
	}
	if fmt.Sprint(got.rejects) != fmt.Sprint(want.rejects) {
		t.Fatalf("%s: rejects differ:\nchunks %v\nwhole  %v", name, got.rejects, want.rejects)
	}
}

func simulated(t *testing.T, spec events.Spec) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := simdata.WriteReply(&buf, spec, obs.MakeDate(2026, 1, 5), 3); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func secs(n int) []string {
	var s []string
	for i := range n {
		s = append(s, fmt.Sprintf("SEC%03d US Equity", i))
	}
	return append(s, "BAD1 US Equity", "LAST US Equity")
}

// TestChunksAddUp: for simulated files and every reply file of the reader's test data, the
// chunks' observations and rejects, put together, are the whole file's, for 1 to 9 chunks.
func TestChunksAddUp(t *testing.T) {
	files := map[string][]byte{
		"gethistory": simulated(t, events.Spec{Program: events.GetHistory, Securities: secs(40),
			Fields: []string{"PX_LAST", "PX_OPEN", "PX_VOLUME"}, Start: "2025-10-01", End: "2025-12-31"}),
		"getdata": simulated(t, events.Spec{Program: events.GetData, Securities: secs(300),
			Fields: []string{"PX_LAST", "NAME", "PX_BID"}}),
		"one security": simulated(t, events.Spec{Program: events.GetHistory, Securities: []string{"IBM US Equity"},
			Fields: []string{"PX_LAST"}, Start: "2025-01-01", End: "2025-12-31"}),
	}
	root := "../dlformat/testdata/bloomberg-dl"
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if ext := filepath.Ext(path); ext == ".out" || ext == ".bbg" || ext == ".resp" {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			files[strings.TrimPrefix(path, root+"/")] = b
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 20 {
		t.Fatalf("only %d files", len(files))
	}
	for name, file := range files {
		t.Run(name, func(t *testing.T) {
			want := parse(bytes.NewReader(file))
			for n := 1; n <= 9; n++ {
				same(t, fmt.Sprintf("%d chunks at marks", n), parseMarkedChunks(t, file, n), want)
			}
		})
	}
}

// TestEdgeCases: CRLF, comments and blank lines, a column header, a truncated file, an odd
// delimiter, a vertical block split over many lines.
func TestEdgeCases(t *testing.T) {
	hist := string(simulated(t, events.Spec{Program: events.GetHistory, Securities: secs(6),
		Fields: []string{"PX_LAST", "PX_OPEN"}, Start: "2025-12-01", End: "2025-12-31"}))
	data := string(simulated(t, events.Spec{Program: events.GetData, Securities: secs(30),
		Fields: []string{"PX_LAST", "PX_BID"}}))
	cases := map[string]string{
		"crlf":       strings.ReplaceAll(hist, "\n", "\r\n"),
		"comments":   strings.ReplaceAll(data, "SEC010", "# a comment\n\nSEC010"),
		"truncated":  hist[:len(hist)*2/3],
		"no trailer": data[:strings.Index(data, "END-OF-DATA")],
		"delimiter": strings.ReplaceAll(strings.Replace(data, "DATEFORMAT=yyyymmdd", "DATEFORMAT=yyyymmdd\nDELIMITER=;", 1),
			"|", ";"),
		// The reader takes header keys in any case and trims them: so must the boundaries.
		"delimiter key": strings.ReplaceAll(strings.Replace(hist, "START-OF-FIELDS", "delimiter = ;\nSTART-OF-FIELDS", 1),
			"|", ";"),
		"column header": strings.Replace(data, "START-OF-DATA\n",
			"START-OF-DATA\n\nSECURITIES|ERROR CODE|NUM FLDS|PX_LAST|PX_BID|\n", 1),
		"bom":         "\ufeff" + data,
		"after EOF":   data + "junk after the end\n",
		"no newline":  strings.TrimSuffix(data, "\n"),
		"empty data":  data[:strings.Index(data, "START-OF-DATA")] + "START-OF-DATA\nEND-OF-DATA\nEND-OF-FILE\n",
		"bad row":     strings.Replace(data, "SEC020 US Equity|0|2|", "SEC020 US Equity|0|2|x|y|z|", 1),
		"long header": strings.Replace(data, "FIRMNAME=", "NOTE="+strings.Repeat("x", 300<<10)+"\nFIRMNAME=", 1),
	}
	for name, file := range cases {
		t.Run(name, func(t *testing.T) {
			want := parse(strings.NewReader(file))
			ms, err := Marks(strings.NewReader(file), int64(len(file)/8+1), 8)
			if err != nil || len(ms) == 0 && name != "empty data" && name != "truncated" {
				t.Fatalf("%d marks, %v", len(ms), err)
			}
			for n := 1; n <= 7; n++ {
				same(t, fmt.Sprintf("%d chunks at marks", n), parseMarkedChunks(t, []byte(file), n), want)
			}
		})
	}
}

// A file that cannot be split (gzip, no START-OF-DATA) gets no marks, and no error: it is
// transformed in one piece; OpenFirst and OpenAt refuse it.
func TestNotSplittable(t *testing.T) {
	data := simulated(t, events.Spec{Program: events.GetData, Securities: secs(300), Fields: []string{"PX_LAST"}})
	noData := bytes.ReplaceAll(data, []byte("START-OF-DATA"), []byte("STARTOFDATA"))
	if ms, err := Marks(bytes.NewReader(data), 1<<10, 8); err != nil || len(ms) == 0 {
		t.Fatalf("the plain file: %d marks, %v", len(ms), err)
	}
	for name, file := range map[string][]byte{"gzip": gzipped(data), "no START-OF-DATA": noData} {
		if ms, err := Marks(bytes.NewReader(file), 1<<10, 8); err != nil || len(ms) != 0 {
			t.Errorf("%s: %d marks, %v; want none, no error", name, len(ms), err)
		}
		if _, err := OpenFirst(bytes.NewReader(file), 100, 2); !errors.Is(err, ErrNotSplittable) {
			t.Errorf("%s: OpenFirst: %v", name, err)
		}
		if _, err := OpenAt(bytes.NewReader(file), bytes.NewReader(file[100:]), Mark{Offset: 100, Line: 3}, 0, 1, 2); !errors.Is(err, ErrNotSplittable) {
			t.Errorf("%s: OpenAt: %v", name, err)
		}
	}
}

func TestCount(t *testing.T) {
	for _, tc := range []struct {
		size, target int64
		limit, want  int
	}{{0, 64, 0, 1}, {64, 64, 0, 1}, {65, 64, 0, 2}, {1000, 64, 4, 4}, {1000, 0, 4, 1}} {
		if got := Count(tc.size, tc.target, tc.limit); got != tc.want {
			t.Errorf("Count(%d, %d, %d) = %d, want %d", tc.size, tc.target, tc.limit, got, tc.want)
		}
	}
}

// benchFile is a 5-million-observation gethistory file.
func benchFile(b *testing.B) []byte {
	spec := events.Spec{Program: events.GetHistory, Fields: []string{"PX_LAST", "PX_OPEN", "PX_HIGH", "PX_LOW"},
		Start: "2016-01-01", End: "2025-07-31"}
	for i := range 500 {
		spec.Securities = append(spec.Securities, fmt.Sprintf("SEC%d US Equity", i))
	}
	var buf bytes.Buffer
	if err := simdata.WriteReply(&buf, spec, obs.MakeDate(2026, 1, 5), 1); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}

// gzipped returns data gzip-compressed.
func gzipped(data []byte) []byte {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(data)
	zw.Close()
	return gz.Bytes()
}
