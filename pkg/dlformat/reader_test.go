package dlformat

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/bounds"
	"github.com/marketpipe/marketpipe/pkg/hostile"
	"github.com/marketpipe/marketpipe/pkg/obs"
)

// bulk marks an expected bulk value (its JSON rows).
type bulk string

// ob builds an expected observation: v is a float64 or int (number), a string, a bulk, or nil
// (a marker; flag says which).
func ob(sec, field, date string, v any, flag string) obs.Observation {
	dt, err := obs.ParseDate(date)
	if err != nil {
		panic(err)
	}
	o := obs.Observation{Security: sec, Field: field, Date: dt, Flag: flag}
	switch v := v.(type) {
	case nil:
		o.Kind = obs.Null
	case int:
		o.Kind, o.Num = obs.Number, float64(v)
	case float64:
		o.Kind, o.Num = obs.Number, v
	case string:
		o.Kind, o.Str = obs.String, v
	case bulk:
		o.Kind, o.Str = obs.Bulk, string(v)
	default:
		panic(fmt.Sprintf("ob: value %T", v))
	}
	return o
}

// rc builds an expected return-code record.
func rc(sec, date string, code int) obs.Observation {
	return ob(sec, "", date, nil, fmt.Sprintf("RC=%d", code))
}

// parseAll reads every observation and reject of in.
func parseAll(tb testing.TB, in []byte) (*Reader, []obs.Observation, []obs.Reject, error) {
	tb.Helper()
	r, err := NewReader(bytes.NewReader(in))
	if err != nil {
		return nil, nil, nil, err
	}
	var rejects []obs.Reject
	r.OnReject = func(rj obs.Reject) error { rejects = append(rejects, rj); return nil }
	var got []obs.Observation
	for {
		o, err := r.Next()
		if err == io.EOF {
			return r, got, rejects, nil
		}
		if err != nil {
			return r, got, rejects, err
		}
		got = append(got, *o)
	}
}

func fmtObs(o obs.Observation) string {
	v := "null"
	switch o.Kind {
	case obs.Number:
		v = fmt.Sprint(o.Num)
	case obs.String:
		v = fmt.Sprintf("%q", o.Str)
	case obs.Bulk:
		v = "bulk" + o.Str
	}
	return fmt.Sprintf("%s|%s|%s|%s|%s", o.Security, o.Field, o.Date, v, o.Flag)
}

func diffObs(t *testing.T, got, want []obs.Observation) {
	t.Helper()
	n := max(len(got), len(want))
	bad := 0
	for i := 0; i < n; i++ {
		switch {
		case i >= len(got):
			t.Errorf("obs %d: missing, want %s", i, fmtObs(want[i]))
		case i >= len(want):
			t.Errorf("obs %d: extra %s", i, fmtObs(got[i]))
		case !got[i].Equal(&want[i]):
			t.Errorf("obs %d:\n got %s\nwant %s", i, fmtObs(got[i]), fmtObs(want[i]))
		default:
			continue
		}
		if bad++; bad > 10 {
			t.Fatalf("too many differences (got %d observations, want %d)", len(got), len(want))
		}
	}
}

// wantReject is a reject expected at a line, with a part of its reason.
type wantReject struct {
	line   int64
	reason string
}

func diffRejects(t *testing.T, got []obs.Reject, want []wantReject) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("got %d rejects, want %d:", len(got), len(want))
		for _, g := range got {
			t.Errorf("  line %d: %s (%q)", g.Line, g.Reason, g.Raw)
		}
		return
	}
	for i := range got {
		if got[i].Line != want[i].line || !strings.Contains(got[i].Reason, want[i].reason) {
			t.Errorf("reject %d: got line %d %q, want line %d containing %q", i, got[i].Line, got[i].Reason, want[i].line, want[i].reason)
		}
	}
}

// file builds a reply file from a header block, fields and rows, "\n"-separated.
func file(header string, fields []string, rows ...string) string {
	var b strings.Builder
	b.WriteString("START-OF-FILE\n")
	b.WriteString(header)
	b.WriteString("\nSTART-OF-FIELDS\n")
	for _, f := range fields {
		b.WriteString(f + "\n")
	}
	b.WriteString("END-OF-FIELDS\nTIMESTARTED=Wed Dec 17 11:19:10 EST 2025\nSTART-OF-DATA\n")
	for _, r := range rows {
		b.WriteString(r + "\n")
	}
	b.WriteString("END-OF-DATA\nTIMEFINISHED=Wed Dec 17 11:19:13 EST 2025\nEND-OF-FILE\n")
	return b.String()
}

func TestReader(t *testing.T) {
	const gd = "RUNDATE=20240716\nPROGRAMNAME=getdata"
	tests := []struct {
		name    string
		in      string
		want    []obs.Observation
		rejects []wantReject
		err     string // part of the *Error's message
	}{
		{
			name: "getdata",
			in:   file(gd, []string{"PX_LAST", "NAME"}, "IBM US Equity|0|2|105.230000|IBM|", "MSFT US Equity|0|2|.215|MICROSOFT CORP|"),
			want: []obs.Observation{
				ob("IBM US Equity", "PX_LAST", "2024-07-16", 105.23, ""),
				ob("IBM US Equity", "NAME", "2024-07-16", "IBM", ""),
				ob("MSFT US Equity", "PX_LAST", "2024-07-16", 0.215, ""),
				ob("MSFT US Equity", "NAME", "2024-07-16", "MICROSOFT CORP", ""),
			},
		},
		{
			name: "snapshot dated by TIMESTARTED without RUNDATE, first TIMESTARTED wins",
			in: "START-OF-FILE\nPROGRAMNAME=getdata\nSTART-OF-FIELDS\nPX_LAST\nEND-OF-FIELDS\n" +
				"TIMESTARTED=Fri Jun  5 11:29:00 BST 2015\nSTART-OF-DATA\nA|0|1|1|\nEND-OF-DATA\n" +
				"TIMESTARTED=Sat Jun  6 00:00:01 BST 2015\nEND-OF-FILE\n",
			want: []obs.Observation{ob("A", "PX_LAST", "2015-06-05", 1, "")},
		},
		{
			name: "comments anywhere, blank lines, CRLF, BOM, text before START-OF-FILE, no final newline",
			in: "\xef\xbb\xbfsome banner\r\n#comment\r\nSTART-OF-FILE\r\n# c\r\nRUNDATE=20240716\r\n\r\nPROGRAMNAME=getdata\r\n\r\n" +
				"START-OF-FIELDS\r\n#c\r\n\r\nPX_LAST\r\nEND-OF-FIELDS\r\n\r\n#c\r\nSTART-OF-DATA\r\n#c\r\n\r\nA|0|1|1.5|\r\n# inside data\r\n" +
				"B|0|1|2|\r\nEND-OF-DATA\r\n#c\r\nEND-OF-FILE",
			want: []obs.Observation{ob("A", "PX_LAST", "2024-07-16", 1.5, ""), ob("B", "PX_LAST", "2024-07-16", 2, "")},
		},
		{
			name: "missing TIMEFINISHED and END-OF-FILE",
			in:   "START-OF-FILE\nRUNDATE=20240716\nSTART-OF-FIELDS\nPX_LAST\nEND-OF-FIELDS\nSTART-OF-DATA\nA|0|1|1|\nEND-OF-DATA",
			want: []obs.Observation{ob("A", "PX_LAST", "2024-07-16", 1, "")},
		},
		{
			name: "header split at the first =, unknown keys kept",
			in:   file(gd+"\nDATERANGE=20240101|20240131\nODD=a=b\nFOO=bar", []string{"X"}, "A|0|1|1|"),
			want: []obs.Observation{ob("A", "X", "2024-07-16", 1, "")},
		},
		{
			name: "markers and blanks",
			in:   file(gd, []string{"A", "B", "C", "D", "E", "F", "G", "H"}, "S|0|8|N.A.|N.S.|N.D.|FLD UNKNOWN|| |N.A. |  |"),
			want: []obs.Observation{
				ob("S", "A", "2024-07-16", nil, "N.A."),
				ob("S", "B", "2024-07-16", nil, "N.S."),
				ob("S", "C", "2024-07-16", nil, "N.D."),
				ob("S", "D", "2024-07-16", nil, "FLD UNKNOWN"),
				ob("S", "E", "2024-07-16", nil, "BLANK"),
				ob("S", "F", "2024-07-16", nil, "BLANK"),
				ob("S", "G", "2024-07-16", nil, "N.A."),
				ob("S", "H", "2024-07-16", nil, "BLANK"),
			},
		},
		{
			name: "numbers and text",
			in: file(gd, []string{"A", "B", "C", "D", "E", "F", "G", "H", "I", "J", "K", "L", "M"},
				"S|0|13|.215|105.230000|-3.5|0|0000320193|1234567890123456|1e5|12:30|1,000|-.5|5.|+1|NaN|"),
			want: []obs.Observation{
				ob("S", "A", "2024-07-16", 0.215, ""),
				ob("S", "B", "2024-07-16", 105.23, ""),
				ob("S", "C", "2024-07-16", -3.5, ""),
				ob("S", "D", "2024-07-16", 0, ""),
				ob("S", "E", "2024-07-16", "0000320193", ""),
				ob("S", "F", "2024-07-16", "1234567890123456", ""),
				ob("S", "G", "2024-07-16", "1e5", ""),
				ob("S", "H", "2024-07-16", "12:30", ""),
				ob("S", "I", "2024-07-16", "1,000", ""),
				ob("S", "J", "2024-07-16", -0.5, ""),
				ob("S", "K", "2024-07-16", 5, ""),
				ob("S", "L", "2024-07-16", "+1", ""),
				ob("S", "M", "2024-07-16", "NaN", ""),
			},
		},
		{
			name: "DATEFORMAT yyyymmdd",
			in:   file(gd+"\nDATEFORMAT=yyyymmdd", []string{"D", "N", "S"}, "S|0|3|20240715|69466781|07/15/2024|"),
			want: []obs.Observation{
				ob("S", "D", "2024-07-16", "2024-07-15", ""),
				ob("S", "N", "2024-07-16", 69466781, ""), // not a valid date: a number
				ob("S", "S", "2024-07-16", "2024-07-15", ""),
			},
		},
		{
			name: "DATEFORMAT absent: mm/dd/yyyy, 8 digits are a number",
			in:   file(gd, []string{"D", "N"}, "S|0|2|07/15/2024|20240715|"),
			want: []obs.Observation{
				ob("S", "D", "2024-07-16", "2024-07-15", ""),
				ob("S", "N", "2024-07-16", 20240715, ""),
			},
		},
		{
			name: "DATEFORMAT mmddyyyy",
			in:   file(gd+"\nDATEFORMAT=mmddyyyy", []string{"D", "X"}, "S|0|2|01/02/2024|13/01/2024|"),
			want: []obs.Observation{
				ob("S", "D", "2024-07-16", "2024-01-02", ""),
				ob("S", "X", "2024-07-16", "13/01/2024", ""),
			},
		},
		{
			name: "DATEFORMAT ddmmyyyy",
			in:   file(gd+"\nDATEFORMAT=ddmmyyyy", []string{"D"}, "S|0|1|01/02/2024|"),
			want: []obs.Observation{ob("S", "D", "2024-07-16", "2024-02-01", "")},
		},
		{
			name:    "unknown DATEFORMAT is reported and mm/dd/yyyy used",
			in:      file(gd+"\nDATEFORMAT=yyyy-mm-dd", []string{"D"}, "S|0|1|01/02/2024|"),
			want:    []obs.Observation{ob("S", "D", "2024-07-16", "2024-01-02", "")},
			rejects: []wantReject{{4, "DATEFORMAT"}},
		},
		{
			name: "DELIMITER",
			in:   file(gd+"\nDELIMITER=,", []string{"PX_LAST", "SCHED"}, "IBM US Equity,0,2,1.5,;2;1;1;3;100.5;,"),
			want: []obs.Observation{
				ob("IBM US Equity", "PX_LAST", "2024-07-16", 1.5, ""),
				ob("IBM US Equity", "SCHED", "2024-07-16", bulk(`[[100.5]]`), ""),
			},
		},
		{
			name:    "DELIMITER of two characters cannot be read",
			in:      file(gd+"\nDELIMITER=||", []string{"PX_LAST"}, "A|0|1|1|"),
			err:     "line 4: DELIMITER",
			rejects: nil,
		},
		{
			name: "SECDESLENGTH padding and space before the delimiter",
			in:   file(gd+"\nSECDESLENGTH=20", []string{"PX_LAST"}, "IBM  US Equity      |0|1|1|", "INDU Index |0|1|2|"),
			want: []obs.Observation{ob("IBM  US Equity", "PX_LAST", "2024-07-16", 1, ""), ob("INDU Index", "PX_LAST", "2024-07-16", 2, "")},
		},
		{
			name: "COLUMNHEADER row is not data",
			in:   file(gd+"\nCOLUMNHEADER=yes", []string{"PX_LAST"}, "SECURITIES|ERROR CODE|NUM FLDS|PX_LAST|", "A|0|1|1|"),
			want: []obs.Observation{ob("A", "PX_LAST", "2024-07-16", 1, "")},
		},
		{
			name: "COLUMNHEADER names an empty field list",
			in:   file("RUNDATE=20150605\nPROGRAMNAME=getsnap\nCOLUMNHEADER=yes", nil, "SECURITIES|ERROR CODE|NUM FLDS|OPEN PRICE|LAST UPDATE TIME|", "SPX Index|0|2|2112.35|11:29:00|"),
			want: []obs.Observation{ob("SPX Index", "OPEN PRICE", "2015-06-05", 2112.35, ""), ob("SPX Index", "LAST UPDATE TIME", "2015-06-05", "11:29:00", "")},
		},
		{
			name:    "no field names at all",
			in:      file(gd, nil, "SPX Index|0|1|1|", "SPX Index|0|0|"),
			rejects: []wantReject{{8, "without field names"}},
		},
		{
			name: "return codes in getdata",
			in:   file(gd, []string{"A", "B"}, "BAD|10|2|||", "RESTRICTED|11|2|", "OK|0|2|1|2|", "ERR|988|2| | |"),
			want: []obs.Observation{
				rc("BAD", "2024-07-16", 10),
				rc("RESTRICTED", "2024-07-16", 11),
				ob("OK", "A", "2024-07-16", 1, ""),
				ob("OK", "B", "2024-07-16", 2, ""),
				rc("ERR", "2024-07-16", 988),
			},
		},
		{
			name: "NFIELDS disagrees, values match the field list: loaded, not rejected",
			in:   file(gd, []string{"A", "B"}, "S|0|3|1|2|", "T|0|x|3|4|"),
			want: []obs.Observation{
				ob("S", "A", "2024-07-16", 1, ""), ob("S", "B", "2024-07-16", 2, ""),
				ob("T", "A", "2024-07-16", 3, ""), ob("T", "B", "2024-07-16", 4, ""),
			},
		},
		{
			name: "rejects: wrong value count, bad return code, no columns; the rest loads",
			in:   file(gd, []string{"A", "B"}, "S|0|2|1|", "T|0|2|1|2|3|", "U|x|2|1|2|", "lonely", "|0|2|1|2|", "V|0|2|5|6|"),
			want: []obs.Observation{ob("V", "A", "2024-07-16", 5, ""), ob("V", "B", "2024-07-16", 6, "")},
			rejects: []wantReject{
				{10, "1 values for 2 fields"}, {11, "3 values for 2 fields"}, {12, "return code"},
				{13, "1 columns"}, {14, "without a security"},
			},
		},
		{
			name: "gethistory vertical",
			in: file("RUNDATE=20150605\nPROGRAMNAME=gethistory", []string{"PX_OPEN", "PX_LAST"},
				"START SECURITY|SPX Index|PX_OPEN|",
				"SPX Index|05/01/2015|2087.38|",
				"SPX Index|05/04/2015|N.A.|",
				"END SECURITY|SPX Index|PX_OPEN|0|",
				"START SECURITY|X:1 Index|PX_OPEN|",
				"END SECURITY|X:1 Index|PX_OPEN|0|",
				"START SECURITY|BAD Index|PX_OPEN|",
				"END SECURITY|BAD Index|PX_OPEN|10|",
				"START SECURITY|BAD Index|PX_LAST|",
				"END SECURITY|BAD Index|PX_LAST|10|",
				"START SECURITY|SPX Index|PX_LAST|",
				"SPX Index|05/01/2015|2090|",
				"END SECURITY|SPX Index|PX_LAST|0|"),
			want: []obs.Observation{
				ob("SPX Index", "PX_OPEN", "2015-05-01", 2087.38, ""),
				ob("SPX Index", "PX_OPEN", "2015-05-04", nil, "N.A."),
				rc("BAD Index", "2015-06-05", 10),
				ob("SPX Index", "PX_LAST", "2015-05-01", 2090, ""),
			},
		},
		{
			name: "gethistory vertical with yyyymmdd and rejects",
			in: file("RUNDATE=20150605\nPROGRAMNAME=gethistory\nDATEFORMAT=yyyymmdd", []string{"PX_OPEN"},
				"START SECURITY|SPX Index|PX_OPEN|",
				"SPX Index|20150501|1|",
				"SPX Index|2015-05-04|2|",
				"SPX Index|20150505|3|4|",
				"OTHER Index|20150506|5|",
				"SPX Index|20150507|6|",
				"END SECURITY|SPX Index|PX_LAST|0|",
				"END SECURITY|SPX Index|PX_LAST|0|",
				"START SECURITY|A|PX_OPEN|",
				"START SECURITY|B|PX_OPEN|",
				"B|20150508|7|"),
			want: []obs.Observation{
				ob("SPX Index", "PX_OPEN", "2015-05-01", 1, ""),
				ob("SPX Index", "PX_OPEN", "2015-05-07", 6, ""),
				ob("B", "PX_OPEN", "2015-05-08", 7, ""),
			},
			rejects: []wantReject{
				{12, "not a date"}, {13, "4 columns"}, {14, "differs"}, {16, "does not match"},
				{17, "without START"}, {19, "inside the block of A"}, {21, "END-OF-DATA inside the block of B"},
			},
		},
		{
			name: "gethistory horizontal",
			in: file("RUNDATE=20251217\nPROGRAMNAME=gethistory\nHIST_FORMAT=horizontal\nDATEFORMAT=yyyymmdd", []string{"NAME", "PX_LAST"},
				"AAPL US Equity|0|2|20251211|N.A.|278.03|",
				"AAPL US Equity|0|2|20251212|N.A.|278.28|",
				"BAD Equity|10|2||||",
				"AAPL US Equity|0|2|x|N.A.|278.28|"),
			want: []obs.Observation{
				ob("AAPL US Equity", "NAME", "2025-12-11", nil, "N.A."),
				ob("AAPL US Equity", "PX_LAST", "2025-12-11", 278.03, ""),
				ob("AAPL US Equity", "NAME", "2025-12-12", nil, "N.A."),
				ob("AAPL US Equity", "PX_LAST", "2025-12-12", 278.28, ""),
				rc("BAD Equity", "2025-12-17", 10),
			},
			rejects: []wantReject{{15, `date "x"`}},
		},
		{
			name: "REST history with pricing source, blank rows for securities without data",
			in: file("RUNDATE=20210710\nPROGRAMNAME=gethistory\nDATEFORMAT=yyyymmdd", []string{"PX_OPEN", "PX_LAST"},
				"RTYM1 Index|0|2|EX| | | |",
				"CTA Comdty|0|2|EX|20210701|0.8505|0.859|",
				"CTA Comdty|0|2|EX| |0.8505|0.859|",
				"CTA Comdty|0|2|EX|20210701|0.859|"),
			want: []obs.Observation{
				ob("CTA Comdty", "PX_OPEN", "2021-07-01", 0.8505, ""),
				ob("CTA Comdty", "PX_LAST", "2021-07-01", 0.859, ""),
			},
			// One value short: it has the shape of a horizontal row, whose date "EX" is not one.
			rejects: []wantReject{{13, "without a date"}, {14, `date "EX"`}},
		},
		{
			name: "no PROGRAMNAME: the shape decides",
			in: "START-OF-FIELDS\nPX_LAST\nEND-OF-FIELDS\nTIMESTARTED=Wed Dec 17 11:19:10 EST 2025\nSTART-OF-DATA\n" +
				"A|0|1|1|\nB|0|1|20251201|2|\nC|0|1|EX|20251202|3|\nD|0|1|EX| | |\nE|0|1|x|y|z|\nEND-OF-DATA\n",
			want: []obs.Observation{
				ob("A", "PX_LAST", "2025-12-17", 1, ""),
				ob("B", "PX_LAST", "2025-12-01", 2, ""),
				ob("C", "PX_LAST", "2025-12-02", 3, ""),
			},
			rejects: []wantReject{{10, "neither"}},
		},
		{
			name: "no file date: snapshot rows and return codes are rejected, history rows load",
			in: "START-OF-FIELDS\nPX_LAST\nEND-OF-FIELDS\nSTART-OF-DATA\n" +
				"A|0|1|1|\nB|10|1| |\nC|0|1|EX|20251202|3|\nEND-OF-DATA\n",
			want:    []obs.Observation{ob("C", "PX_LAST", "2025-12-02", 3, "")},
			rejects: []wantReject{{5, "no RUNDATE or TIMESTARTED"}, {6, "no RUNDATE or TIMESTARTED"}},
		},
		{
			name: "bulk cells",
			in: file(gd+"\nDATEFORMAT=yyyymmdd", []string{"CHAIN", "SCHED", "ONE", "EMPTY", "BAD", "PX_LAST"},
				`S|0|6|;2;2;1;4;CTU17 Index;4;CTZ17 "x";|;2;2;2;5;20280301;3;103.438000;5;;3;.5;|;1;2;12;0007;2;N.A.;|;2;0;2;|;2;1692;2;4;A;2;.1;|1|`),
			want: []obs.Observation{
				ob("S", "CHAIN", "2024-07-16", bulk(`[["CTU17 Index"],["CTZ17 \"x\""]]`), ""),
				ob("S", "SCHED", "2024-07-16", bulk(`[["2028-03-01",103.438],[null,0.5]]`), ""),
				ob("S", "ONE", "2024-07-16", bulk(`[[7],["N.A."]]`), ""),
				ob("S", "EMPTY", "2024-07-16", bulk(`[]`), ""),
				ob("S", "PX_LAST", "2024-07-16", 1, ""),
			},
			rejects: []wantReject{{15, "field BAD: bulk cell declares 1692x2 elements but holds 2"}},
		},
		{
			name: "getactions",
			in: file("RUNDATE=20170206\nPROGRAMNAME=getactions\nDATEFORMAT=yyyymmdd", nil,
				"IBM US Equity|101|202|0|555|DVD_CASH|N|IBM CORP|CUSIP|459200101|USD|Equity| |20170201|20170210|20170202|BBG000BLNNH6||IBM|US|3|CP_RECORD_DT|20170213|CP_GROSS_AMT|1.4|CP_NOTES|N.A.|",
				"BAD US Equity|0|0|300|",
				"ODD US Equity|101|202|0|556|DVD_CASH|U|X|CUSIP|1|USD|Equity| |20170201|20170210|20170202|B||X|US|1|CP_PAY_DT|",
				"NODT US Equity|101|202|0|557|STOCK_SPLT|D|X|CUSIP|1|USD|Equity| | | | |B||X|US|0|"),
			want: []obs.Observation{
				ob("IBM US Equity", "DVD_CASH.ACTION_ID", "2017-02-10", "555", ""),
				ob("IBM US Equity", "DVD_CASH.FLAG", "2017-02-10", "N", ""),
				ob("IBM US Equity", "DVD_CASH.CP_RECORD_DT", "2017-02-10", "2017-02-13", ""),
				ob("IBM US Equity", "DVD_CASH.CP_GROSS_AMT", "2017-02-10", 1.4, ""),
				ob("IBM US Equity", "DVD_CASH.CP_NOTES", "2017-02-10", nil, "N.A."),
				rc("BAD US Equity", "2017-02-06", 300),
				ob("NODT US Equity", "STOCK_SPLT.ACTION_ID", "2017-02-06", "557", ""),
				ob("NODT US Equity", "STOCK_SPLT.FLAG", "2017-02-06", "D", ""),
			},
			rejects: []wantReject{{11, "odd number"}},
		},
		{
			name: "header junk and text after END-OF-FILE are reported",
			in: "START-OF-FILE\n...\nRUNDATE=20240716\nSTART-OF-FIELDS\nX\nEND-OF-FIELDS\n...\nSTART-OF-DATA\nA|0|1|1|\nEND-OF-DATA\n...\nEND-OF-FILE\n" +
				"more\n\n",
			want:    []obs.Observation{ob("A", "X", "2024-07-16", 1, "")},
			rejects: []wantReject{{2, "not KEY=VALUE"}, {7, "not KEY=VALUE"}, {11, "not KEY=VALUE"}, {13, "after END-OF-FILE"}},
		},
		{
			name:    "bad RUNDATE falls back to TIMESTARTED",
			in:      file("RUNDATE=2024-07-16\nPROGRAMNAME=getdata", []string{"X"}, "A|0|1|1|"),
			want:    []obs.Observation{ob("A", "X", "2025-12-17", 1, "")},
			rejects: []wantReject{{2, "RUNDATE"}},
		},
		{
			name: "truncated data section",
			in:   "START-OF-FILE\nRUNDATE=20240716\nSTART-OF-FIELDS\nX\nEND-OF-FIELDS\nSTART-OF-DATA\nA|0|1|1|\nB|0|1|2|",
			want: []obs.Observation{ob("A", "X", "2024-07-16", 1, ""), ob("B", "X", "2024-07-16", 2, "")},
			err:  "line 8: input ends inside the data section",
		},
		{
			name: "empty input",
			in:   "",
			err:  "line 0: no START-OF-FILE",
		},
		{
			name: "not a reply file",
			in:   "hello\nworld\n",
			err:  "line 2: no START-OF-FILE",
		},
		{
			name: "header only",
			in:   "START-OF-FILE\nRUNDATE=20240716\n",
			err:  "line 2: input ends before START-OF-DATA",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, got, rejects, err := parseAll(t, []byte(tt.in))
			if tt.err != "" {
				var e *Error
				if !errors.As(err, &e) || !strings.Contains(e.Error(), tt.err) {
					t.Errorf("err = %v, want *Error containing %q", err, tt.err)
				}
			} else if err != nil {
				t.Fatalf("err = %v", err)
			}
			diffObs(t, got, tt.want)
			diffRejects(t, rejects, tt.rejects)
		})
	}
}

func TestGzip(t *testing.T) {
	in := file("RUNDATE=20240716\nPROGRAMNAME=getdata\nCOMPRESS=yes", []string{"PX_LAST"}, "A|0|1|1|")
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write([]byte(in))
	zw.Close()
	_, got, _, err := parseAll(t, buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	diffObs(t, got, []obs.Observation{ob("A", "PX_LAST", "2024-07-16", 1, "")})

	// Cut the stream short: the error names the line reached and unwraps to the gzip error.
	_, _, _, err = parseAll(t, buf.Bytes()[:buf.Len()-6])
	var e *Error
	if !errors.As(err, &e) || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated gzip: err = %v, want *Error wrapping io.ErrUnexpectedEOF", err)
	}

	// Bad gzip header.
	if _, err := NewReader(bytes.NewReader([]byte{0x1f, 0x8b, 1, 2})); !errors.As(err, &e) {
		t.Errorf("bad gzip header: err = %v, want *Error", err)
	}
}

// A line longer than MaxLineBytes ends the file with an *Error naming it, before the reader
// has read the rest of it; lines up to the bound load.
func TestLongLine(t *testing.T) {
	long := "L|0|1|" + strings.Repeat("x", 300<<10) + "|"
	ok := "B|0|1|" + strings.Repeat("y", 200<<10-8) + "|"
	rest := &hostile.Counter{R: strings.NewReader(strings.Repeat("z", 10<<20) + "\n")}
	in := io.MultiReader(strings.NewReader(file("RUNDATE=20240716\nPROGRAMNAME=getdata", []string{"X"}, "A|0|1|1|", ok, long)), rest)
	r, err := NewReader(in)
	if err != nil {
		t.Fatal(err)
	}
	r.MaxLineBytes = 200 << 10
	var got []obs.Observation
	for {
		o, err := r.Next()
		if err == io.EOF {
			t.Fatal("no error for a line longer than MaxLineBytes")
		}
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Line != 11 || err.Error() != "line 11: longer than 200 KiB" || !errors.Is(err, bounds.ErrExceeded) {
				t.Fatalf("err = %v, want *Error at line 11 matching bounds.ErrExceeded", err)
			}
			break
		}
		got = append(got, *o)
	}
	diffObs(t, got, []obs.Observation{
		ob("A", "X", "2024-07-16", 1, ""),
		ob("B", "X", "2024-07-16", strings.Repeat("y", 200<<10-8), ""),
	})
	if n := rest.N.Load(); n > 0 {
		t.Errorf("read %d bytes past the long line's bound", n)
	}
}

// A cap below the reader's buffer size holds as well.
func TestLongLineSmallCap(t *testing.T) {
	in := file("RUNDATE=20240716\nPROGRAMNAME=getdata", []string{"X"}, "A|0|1|1|", "L|0|1|"+strings.Repeat("x", 2000)+"|")
	r, err := NewReader(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	r.MaxLineBytes = 1 << 10
	for {
		_, err := r.Next()
		if err == io.EOF {
			t.Fatal("no error for a line of 2 KiB under a cap of 1 KiB")
		}
		if err != nil {
			if err.Error() != "line 10: longer than 1 KiB" {
				t.Fatalf("err = %v", err)
			}
			return
		}
	}
}

// A gzip file that inflates past bounds.MaxInflateRatio times its size ends with an *Error long
// before it is all inflated.
func TestGzipBomb(t *testing.T) {
	const lines = 10 << 20 // 260 MiB
	bomb, err := hostile.GzipBytes(hostile.ManyLinesFile(lines))
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewReader(bytes.NewReader(bomb))
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for ; ; n++ {
		_, err := r.Next()
		if err == io.EOF {
			t.Fatalf("no error for a gzip bomb of %d bytes", len(bomb))
		}
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, bounds.ErrExceeded) || !strings.Contains(err.Error(), "gzip inflated past 200x the compressed size") {
				t.Fatalf("err = %v, want an *Error of the inflation bound", err)
			}
			break
		}
	}
	if n >= lines/4 {
		t.Errorf("%d of %d lines read before the bound", n, lines)
	}
}

func TestOnRejectStops(t *testing.T) {
	in := file("RUNDATE=20240716\nPROGRAMNAME=getdata", []string{"X"}, "bad", "A|0|1|1|")
	r, err := NewReader(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	stop := errors.New("stop")
	r.OnReject = func(obs.Reject) error { return stop }
	if _, err := r.Next(); !errors.Is(err, stop) {
		t.Fatalf("err = %v, want stop", err)
	}
	if _, err := r.Next(); !errors.Is(err, stop) {
		t.Fatalf("second Next: err = %v, want stop again", err)
	}
}

func TestNilOnRejectCounts(t *testing.T) {
	in := file("RUNDATE=20240716\nPROGRAMNAME=getdata", []string{"X", "Y"}, "bad", "A|0|1|1|2|", "B|0|2|1|")
	r, err := NewReader(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := r.Next(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	want := Stats{Lines: 15, Observations: 2, Rejects: 2, NFieldsMismatch: 1}
	if r.Stats() != want {
		t.Errorf("Stats = %+v, want %+v", r.Stats(), want)
	}
	if r.Program() != "getdata" {
		t.Errorf("Program = %q", r.Program())
	}
	h := r.Header()
	if v, _ := h.Get("timefinished"); v != "Wed Dec 17 11:19:13 EST 2025" {
		t.Errorf("TIMEFINISHED = %q", v)
	}
	if len(h.Fields) != 2 || h.Fields[1] != "Y" {
		t.Errorf("Fields = %q", h.Fields)
	}
}

func TestNumbers(t *testing.T) {
	tests := []struct {
		in     string
		strict bool
		want   float64
		ok     bool
		json   string
	}{
		{"0", true, 0, true, "0"},
		{".215", true, 0.215, true, "0.215"},
		{"105.230000", true, 105.23, true, "105.23"},
		{"-.5", true, -0.5, true, "-0.5"},
		{"5.", true, 5, true, "5"},
		{"123456789012345", true, 123456789012345, true, "123456789012345"},
		{"1234567890123456", true, 0, false, "1234567890123456"},
		{"1234567890123456.5", true, 1234567890123456.5, true, "1234567890123456.5"},
		{"0007", true, 0, false, "7"},
		{"0007", false, 7, true, "7"},
		{"-0.000", true, 0, true, "-0"},
		{"-", true, 0, false, ""},
		{".", true, 0, false, ""},
		{"1e5", true, 0, false, ""},
		{"1" + strings.Repeat("0", 400) + ".5", true, 0, false, ""}, // out of float64 range: text
	}
	for _, tt := range tests {
		got, ok := parseNumber([]byte(tt.in), tt.strict)
		if ok != tt.ok || (ok && got != tt.want) {
			t.Errorf("parseNumber(%q, %v) = %v, %v; want %v, %v", tt.in, tt.strict, got, ok, tt.want, tt.ok)
		}
		if tt.json != "" {
			if j := string(appendJSONNumber(nil, []byte(tt.in))); j != tt.json {
				t.Errorf("appendJSONNumber(%q) = %s, want %s", tt.in, j, tt.json)
			}
		}
	}
	if f, _ := parseNumber([]byte("-0"), true); math.Signbit(f) {
		t.Log("-0 keeps its sign") // either is fine; just not a failure
	}
}

func TestDates(t *testing.T) {
	for _, s := range []string{"1970-01-01", "2000-02-29", "1900-03-01", "2024-12-31", "0001-01-01", "2199-12-31"} {
		want, _ := obs.ParseDate(s)
		var y, m, d int
		fmt.Sscanf(s, "%d-%d-%d", &y, &m, &d)
		if got := daysFromCivil(y, m, d); got != want {
			t.Errorf("daysFromCivil(%s) = %d, want %d", s, got, want)
		}
	}
	for _, tt := range []struct {
		in   string
		want string
		ok   bool
	}{
		{"Wed Dec 17 11:19:10 EST 2025", "2025-12-17", true},
		{"Fri Jun  07 14:29:39 BST 2015", "2015-06-07", true},
		{"Fri Jun  5 11:29:00 BST 2015", "2015-06-05", true},
		{"Tue May 19 10:42:10 2009", "2009-05-19", true},
		{"Fri Foo 5 11:29:00 BST 2015", "", false},
		{"Fri Feb 30 11:29:00 BST 2015", "", false},
		{"", "", false},
	} {
		got, ok := parseUnixDate(tt.in)
		if ok != tt.ok || (ok && got.String() != tt.want) {
			t.Errorf("parseUnixDate(%q) = %v, %v; want %s, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

// TestShortDecimalsMatchStrconv checks the fast path against strconv.ParseFloat bit for bit
// (the sign of zero included) on random cells of up to 17 digits, with and without a sign,
// point and leading zeros, so that a wrong power or a missed length limit fails.
func TestShortDecimalsMatchStrconv(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 11))
	fast := 0
	for range 200_000 {
		var b []byte
		if rng.IntN(4) == 0 {
			b = append(b, '-')
		}
		n := 1 + rng.IntN(17)
		dot := -1
		if rng.IntN(5) != 0 {
			dot = rng.IntN(n + 1)
		}
		for i := range n {
			if i == dot {
				b = append(b, '.')
			}
			b = append(b, byte('0'+rng.IntN(10)))
		}
		if dot == n {
			b = append(b, '.')
		}
		want, err := strconv.ParseFloat(string(b), 64)
		if err != nil {
			t.Fatalf("strconv.ParseFloat(%q): %v", b, err)
		}
		got, ok := parseNumber(b, false)
		if !ok || math.Float64bits(got) != math.Float64bits(want) {
			t.Fatalf("parseNumber(%q) = %v (%x), %v; strconv gives %v (%x)", b, got, math.Float64bits(got), ok, want, math.Float64bits(want))
		}
		if _, ok := parseShortDecimal(b); ok {
			fast++
		}
	}
	if fast < 100_000 {
		t.Errorf("only %d of 200000 cells took the fast path", fast)
	}
}

// FuzzNumber checks parseNumber against strconv.ParseFloat on any cell of numeric shape.
func FuzzNumber(f *testing.F) {
	for _, s := range []string{"0", "-0.000", ".215", "105.230000", "5.", "123456789012345", "0.1", "999999999999999.9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !numericShape([]byte(s), false) {
			return
		}
		got, ok := parseNumber([]byte(s), false)
		want, err := strconv.ParseFloat(s, 64)
		if err != nil {
			if ok {
				t.Fatalf("parseNumber(%q) = %v, want not a number (%v)", s, got, err)
			}
			return
		}
		if !ok || math.Float64bits(got) != math.Float64bits(want) {
			t.Fatalf("parseNumber(%q) = %v, %v; strconv gives %v", s, got, ok, want)
		}
	})
}

func TestSnapshotTime(t *testing.T) {
	tests := []struct {
		pairs []Pair
		want  time.Time
		ok    bool
	}{
		{[]Pair{{"RUNDATE", "20251217"}, {"TIMESTARTED", "Wed Dec 17 11:19:10 EST 2025"}}, time.Date(2025, 12, 17, 16, 19, 10, 0, time.UTC), true},
		{[]Pair{{"TIMESTARTED", "Mon Jan  5 18:00:00 UTC 2026"}, {"TIMESTARTED", "Mon Jan  5 19:00:00 UTC 2026"}}, time.Date(2026, 1, 5, 18, 0, 0, 0, time.UTC), true},
		{[]Pair{{"TIMESTARTED", "Tue Jul 16 09:00:00 EDT 2024"}}, time.Date(2024, 7, 16, 13, 0, 0, 0, time.UTC), true},
		{[]Pair{{"TIMESTARTED", "Fri Jun  7 14:29:39 2015"}}, time.Date(2015, 6, 7, 14, 29, 39, 0, time.UTC), true},
		{[]Pair{{"TIMESTARTED", "not a time"}, {"RUNDATE", "20260105"}}, time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC), true},
		{[]Pair{{"PROGRAMNAME", "getdata"}}, time.Time{}, false},
	}
	for _, tt := range tests {
		got, ok := Header{Pairs: tt.pairs}.SnapshotTime()
		if !got.Equal(tt.want) || ok != tt.ok {
			t.Errorf("%v: got %v %v, want %v %v", tt.pairs, got, ok, tt.want, tt.ok)
		}
	}
}
