package dlformat

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/obs"
	"github.com/marketpipe/marketpipe/pkg/simdata"
)

// FuzzReader checks that no input makes the reader panic, loop or break its contract: every
// error is an *Error, observations have a security, bulk values are valid JSON, markers carry
// a null value, and each reject names a line that exists.
func FuzzReader(f *testing.F) {
	filepath.WalkDir(fixtures, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if b, err := os.ReadFile(path); err == nil {
				f.Add(b)
			}
		}
		return nil
	})
	f.Add([]byte(file("RUNDATE=20240716\nPROGRAMNAME=getactions\nDATEFORMAT=yyyymmdd", nil,
		"IBM US Equity|101|202|0|555|DVD_CASH|N|IBM CORP|CUSIP|459200101|USD|Equity| |20170201|20170210|20170202|BBG000BLNNH6||IBM|US|2|CP_RECORD_DT|20170213|CP_GROSS_AMT|1.4|")))
	// The simulator's files in every layout, small, with every kind of cell and return code.
	for _, l := range slices.Concat(simdata.Layouts(), simdata.ActionLayouts()) {
		spec := events.Spec{Program: l.Program, Securities: []string{"IBM US Equity", "BAD X", "RC11 Y", "RC995 Z"},
			Fields: []string{"PX_LAST", "NAME", "DVD_EX_DT", "LAST_UPDATE_TIME", "INDX_MEMBERS", "PEER_LIST", "NOSUCH_F"}}
		spec.Start, spec.End = "2026-01-01", "2026-01-06"
		var b bytes.Buffer
		if err := simdata.WriteReplyLayout(&b, spec, obs.MakeDate(2026, 1, 6), 3, l); err != nil {
			f.Fatalf("simulated seed %s: %v", l.Name, err)
		}
		f.Add(b.Bytes())
	}
	f.Add([]byte(file("RUNDATE=20240716\nDELIMITER=;", []string{"A"}, "S;0;1;1;")))
	f.Add([]byte(file("RUNDATE=20240716", []string{"A", "B"}, "S|0|2|;1;2;12;1;4;x;|;2;1;2;5;20240101;13;.5;|")))

	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := NewReader(bytes.NewReader(in))
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("NewReader: %v (%T), want *Error", err, err)
			}
			return
		}
		r.MaxLineBytes = 4 << 10
		r.OnReject = func(rj obs.Reject) error {
			if rj.Line < 1 || rj.Line > r.Stats().Lines || rj.Reason == "" {
				t.Fatalf("reject %+v: bad line or empty reason (lines read %d)", rj, r.Stats().Lines)
			}
			return nil
		}
		for n := 0; ; n++ {
			o, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("Next: %v (%T), want *Error", err, err)
				}
				if _, again := r.Next(); again != err {
					t.Fatalf("Next after error: %v, want the same error", again)
				}
				break
			}
			if n > 8*len(in)+8 {
				t.Fatalf("%d observations from %d bytes: looping", n, len(in))
			}
			if o.Security == "" {
				t.Fatalf("observation without a security: %+v", o)
			}
			switch o.Kind {
			case obs.Bulk:
				if !json.Valid([]byte(o.Str)) {
					t.Fatalf("bulk value is not JSON: %q", o.Str)
				}
			case obs.Null:
				if o.Flag == "" {
					t.Fatalf("null value without a flag: %+v", o)
				}
			case obs.Number:
				if o.Flag != "" {
					t.Fatalf("number with a flag: %+v", o)
				}
			}
			if _, err := json.Marshal(o.ToJSON("p", "")); err != nil {
				t.Fatalf("ToJSON does not marshal: %v (%+v)", err, o)
			}
		}
	})
}
