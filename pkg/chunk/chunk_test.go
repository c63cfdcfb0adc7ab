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
	"testing/iotest"

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

// parseChunks parses each of the n chunks of file as a replica would and puts the results
// together: observations in chunk order, rejects with the file's line numbers (header rejects
// from chunk 0 only). It also checks the chunks against Plan.
func parseChunks(t *testing.T, file []byte, n int) parsed {
	t.Helper()
	plan, err := Plan(bytes.NewReader(file), int64(len(file)), n)
	if err != nil {
		t.Fatalf("Plan(%d): %v", n, err)
	}
	var all parsed
	for i := range n {
		// One byte at a time sometimes, to exercise the scanner's refills.
		var src io.Reader = bytes.NewReader(file)
		if i%2 == 1 {
			src = iotest.HalfReader(src)
		}
		cr, err := Open(src, int64(len(file)), i, n)
		if err != nil {
			t.Fatalf("Open(%d of %d): %v", i, n, err)
		}
		p := parse(cr)
		// Read to the end so that Chunk().End is known even if the parser stopped early.
		io.Copy(io.Discard, cr)
		ch := cr.Chunk()
		if ch != plan[i] {
			t.Errorf("chunk %d of %d: Open gives %+v, Plan %+v", i, n, ch, plan[i])
		}
		all.add(p, ch)
	}
	// The chunks cover the file's data without gaps or overlaps.
	for i := 1; i < n; i++ {
		if plan[i].Start != plan[i-1].End || plan[i].Start < plan[i-1].Start {
			t.Errorf("chunk %d starts at %d, chunk %d ends at %d", i, plan[i].Start, i-1, plan[i-1].End)
		}
	}
	if n > 1 && plan[n-1].End != int64(len(file)) {
		t.Errorf("last chunk ends at %d, the file at %d", plan[n-1].End, len(file))
	}
	return all
}

// add puts what chunk c's stream gave after what the chunks before it gave: rejects with the
// file's line numbers, those of the repeated header from chunk 0 only.
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
			if !Splittable(file) {
				if _, err := Open(bytes.NewReader(file), int64(len(file)), 0, 2); !errors.Is(err, ErrNotSplittable) {
					t.Fatalf("Open of an unsplittable file: %v", err)
				}
				same(t, "1 chunk", parseChunks(t, file, 1), want)
				return
			}
			for n := 1; n <= 9; n++ {
				same(t, fmt.Sprintf("%d chunks", n), parseChunks(t, file, n), want)
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
			if !Splittable([]byte(file)) {
				t.Fatal("not splittable")
			}
			for n := 1; n <= 7; n++ {
				same(t, fmt.Sprintf("%d chunks", n), parseChunks(t, []byte(file), n), want)
				same(t, fmt.Sprintf("%d chunks at marks", n), parseMarkedChunks(t, []byte(file), n), want)
			}
		})
	}
}

func TestNotSplittable(t *testing.T) {
	data := simulated(t, events.Spec{Program: events.GetData, Securities: secs(3), Fields: []string{"PX_LAST"}})
	noData := bytes.ReplaceAll(data, []byte("START-OF-DATA"), []byte("STARTOFDATA"))
	for name, file := range map[string][]byte{"gzip": gzipped(data), "no START-OF-DATA": noData} {
		if Splittable(file) {
			t.Errorf("%s: Splittable", name)
		}
		if _, err := Open(bytes.NewReader(file), int64(len(file)), 1, 2); !errors.Is(err, ErrNotSplittable) {
			t.Errorf("%s: Open: %v", name, err)
		}
		// One chunk is the file as is.
		cr, err := Open(bytes.NewReader(file), int64(len(file)), 0, 1)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(cr)
		if !bytes.Equal(got, file) {
			t.Errorf("%s: one chunk is not the file", name)
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

// BenchmarkChunks measures a replica's overhead: scanning to its chunk and passing its lines
// on (no parsing), for the last of two chunks and the middle one of three of a
// 5-million-observation gethistory file; MB/s are of the whole file.
func BenchmarkChunks(b *testing.B) {
	file := benchFile(b)
	for _, c := range []struct{ i, n int }{{1, 2}, {1, 3}} {
		b.Run(fmt.Sprintf("%d_of_%d", c.i, c.n), func(b *testing.B) {
			b.SetBytes(int64(len(file)))
			for b.Loop() {
				cr, err := Open(bytes.NewReader(file), int64(len(file)), c.i, c.n)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, cr); err != nil {
					b.Fatal(err)
				}
			}
		})
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
