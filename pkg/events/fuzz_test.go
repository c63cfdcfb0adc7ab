package events

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// FuzzDecode: any payload is either refused with an error that says so, or decodes to a job
// with an id whose encoding decodes and encodes again to the same bytes.
func FuzzDecode(f *testing.F) {
	j := Job{ID: "eod-prices-20260105-ab12", Generation: 1, State: Collected, Version: 7,
		Spec: Spec{Name: "eod-prices", Program: GetHistory, Securities: []string{"IBM US Equity"}, Fields: []string{"PX_LAST"},
			Start: "2026-01-02", End: "2026-01-31"},
		Deadline: time.Date(2026, 1, 5, 18, 0, 0, 0, time.FixedZone("EST", -5*3600)),
		FileKey:  "eod/g1/r.bbg", FileSize: 1234, FileMarks: []FileMark{{Offset: 100, Line: 9}}, Error: "x"}
	enc, err := j.Encode()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(enc)
	f.Add([]byte(`{"id":"a"}`))
	f.Add([]byte(`{"id":""}`))
	f.Add([]byte(`{"id":"a","deadline":"2026-13-01T00:00:00Z"}`))
	f.Add([]byte(`{"id":"a","file_marks":[{"offset":-1,"line":1e3}],"generation":1.5}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		j, err := Decode(data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "decode job event: ") || j.ID != "" {
				t.Fatalf("Decode = %+v, %v", j, err)
			}
			return
		}
		if j.ID == "" {
			t.Fatal("decoded a job without an id")
		}
		enc, err := j.Encode()
		if err != nil {
			t.Fatalf("a decoded job does not encode: %v", err) // a stage could never pass it on
		}
		j2, err := Decode(enc)
		if err != nil {
			t.Fatalf("decode of its own encoding %s: %v", enc, err)
		}
		enc2, err := j2.Encode()
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not stable:\n%s\n%s (%v)", enc, enc2, err)
		}
	})
}
