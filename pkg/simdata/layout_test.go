package simdata

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/marketpipe/marketpipe/pkg/events"
)

// TestLayoutFeatures checks that each named layout writes what it promises, so that the reader
// tests that use them really exercise every option.
func TestLayoutFeatures(t *testing.T) {
	data := events.Spec{Program: events.GetData, Securities: []string{"IBM US Equity", "BAD X Equity"},
		Fields: []string{"PX_LAST", "DVD_EX_DT"}}
	hist := events.Spec{Program: events.GetHistory, Securities: []string{"IBM US Equity", "BAD X Equity"},
		Fields: []string{"PX_LAST", "DVD_EX_DT"}, Start: "2026-01-05", End: "2026-01-06"}
	acts := events.Spec{Program: GetActions, Securities: []string{"IBM US Equity", "BAD X Equity", "RC300 N Equity"},
		Start: "2026-01-01", End: "2026-01-31"}
	tests := []struct {
		layout string
		spec   events.Spec
		want   []string
		absent []string
	}{
		{"getdata", data, []string{"DATEFORMAT=yyyymmdd\n", "IBM US Equity|0|2|"}, []string{"\r\n", "COLUMNHEADER", "#", MalformedLine}},
		{"getdata-columnheader", data, []string{"DATEFORMAT=mmddyyyy\n", "COLUMNHEADER=yes\n",
			"START-OF-DATA\nSECURITIES|ERROR CODE|NUM FLDS|PX_LAST|DVD_EX_DT|\n"}, nil},
		{"getdata-padded", data, []string{"SECDESLENGTH=32\n", "IBM US Equity" + strings.Repeat(" ", 19) + "|0|2|",
			"BAD X Equity" + strings.Repeat(" ", 20) + "|10|2|", " |\n", "\n# ", "\n" + MalformedLine + "\n"}, []string{"DATEFORMAT"}},
		{"getdata-delimiter", data, []string{"DELIMITER=,\r\n", "DATEFORMAT=ddmmyyyy\r\n", "IBM US Equity,0,2,",
			"BAD X Equity,10,2,\r\n"}, []string{"|0|"}},
		{"gethistory", hist, []string{"START SECURITY|IBM US Equity|PX_LAST|\nIBM US Equity|01/05/2026|",
			"END SECURITY|BAD X Equity|DVD_EX_DT|10|\n"}, []string{"DATEFORMAT", "HIST_FORMAT"}},
		{"gethistory-horizontal", hist, []string{"HIST_FORMAT=horizontal\n", "DATEFORMAT=yyyymmdd\n",
			"IBM US Equity|0|2|20260105|", "IBM US Equity|0|2|20260106|", "BAD X Equity|10|2|\n",
			"SECURITIES|ERROR CODE|NUM FLDS|PX_LAST|DVD_EX_DT|\n", "\n" + MalformedLine + "\n"}, []string{"START SECURITY"}},
		{"gethistory-rest", hist, []string{"SECDESLENGTH=24\r\n", "IBM US Equity           |0|2|EX|20260105|",
			"BAD X Equity            |10|2| | | | |\r\n"}, []string{"START SECURITY", "HIST_FORMAT"}},
		{"getactions", acts, []string{"PROGRAMNAME=getactions\n", "DATEFORMAT=yyyymmdd\n", "DATERANGE=20260101|20260131\n",
			"IBM US Equity|297278|1335000|0|851012921|DVD_CASH|D|", "|20260109|20260129||BBG", "|Cash Dividend|SIM|5|CP_RECORD_DT|",
			"|CP_GROSS_AMT|3415.5510|", "\nBAD X Equity|838787|9835217|10|||||||||||||||||0|\n", "\nRC300 N Equity|475153|2011360|300|\n"},
			[]string{"\r\n", "COLUMNHEADER", "#", MalformedLine}},
		{"getactions-padded", acts, []string{"SECDESLENGTH=28\r\n", "IBM US Equity" + strings.Repeat(" ", 15) + "|297278|",
			"|01/09/2026|01/29/2026||", "|CP_GROSS_AMT|3415.5510 |", "\n# ", "\n" + MalformedLine + "\r\n"}, []string{"DATEFORMAT"}},
		{"getactions-delimiter", acts, []string{"DELIMITER=,\n", "DATEFORMAT=ddmmyyyy\n", ",09/01/2026,29/01/2026,,",
			"\nRC300 N Equity,475153,2011360,300,\n"}, []string{"|0|"}},
	}
	if len(tests) != len(LayoutNames()) {
		t.Fatalf("%d layouts tested, %d exist", len(tests), len(LayoutNames()))
	}
	for _, tc := range tests {
		t.Run(tc.layout, func(t *testing.T) {
			l, ok := LookupLayout(tc.layout)
			if !ok {
				t.Fatalf("no layout %q", tc.layout)
			}
			var b bytes.Buffer
			if err := WriteReplyLayout(&b, tc.spec, jan5, 1, l); err != nil {
				t.Fatal(err)
			}
			got := b.String()
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("file lacks %q:\n%s", w, got)
				}
			}
			for _, a := range tc.absent {
				if strings.Contains(got, a) {
					t.Errorf("file has %q:\n%s", a, got)
				}
			}
			if l.CRLF && strings.Count(got, "\n") != strings.Count(got, "\r\n") {
				t.Errorf("CRLF layout has bare LF line endings")
			}
		})
	}
}

func TestWriteReplyIsWriteReplyLayoutDefault(t *testing.T) {
	for _, s := range []events.Spec{dataSpec, historySpec, actionsSpec} {
		var a, b bytes.Buffer
		if err := WriteReply(&a, s, jan5, 5); err != nil {
			t.Fatal(err)
		}
		l, _ := LookupLayout(s.Program)
		if err := WriteReplyLayout(&b, s, jan5, 5, l); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a.Bytes(), b.Bytes()) {
			t.Errorf("%s: WriteReply differs from layout %s", s.Program, s.Program)
		}
	}
}

func TestLayoutErrors(t *testing.T) {
	comma, _ := LookupLayout("getdata-delimiter")
	tests := []struct {
		name   string
		spec   events.Spec
		layout Layout
	}{
		{"delimiter in a security", events.Spec{Program: events.GetData, Securities: []string{"ACME, INC"},
			Fields: []string{"PX_LAST"}}, comma},
		{"unknown DATEFORMAT", dataSpec, Layout{Name: "x", DateFormat: "yyyy-mm-dd"}},
		{"semicolon delimiter clashes with bulk cells", dataSpec, Layout{Name: "x", Delimiter: ';'}},
		{"unknown history format", historySpec, Layout{Name: "x", History: REST + 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := WriteReplyLayout(io.Discard, tc.spec, jan5, 1, tc.layout); !errors.Is(err, ErrSpec) {
				t.Errorf("WriteReplyLayout error %v, want ErrSpec", err)
			}
		})
	}
}

func TestParseLayouts(t *testing.T) {
	tests := []struct {
		name, list string
		want       int
		err        bool
	}{
		{"default", DefaultLayouts, 3, false},
		{"all", "all", len(layouts) + len(actionLayouts), false},
		{"spaces and empty items", " gethistory-rest , ,getdata", 2, false},
		{"unknown", "getdata,vertical-ish", 0, true},
		{"empty", "", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ls, err := ParseLayouts(tc.list)
			if (err != nil) != tc.err || len(ls) != tc.want {
				t.Errorf("ParseLayouts(%q) = %d layouts, %v; want %d, error %v", tc.list, len(ls), err, tc.want, tc.err)
			}
		})
	}
}

func TestReturnCode(t *testing.T) {
	tests := []struct {
		sec  string
		want int
	}{
		{"IBM US Equity", 0}, {"BAD X Equity", BadRC}, {"BADLY", BadRC}, {"RC11 X Equity", 11},
		{"RC995 X Equity", 995}, {"RC995", 995}, {"RCX Equity", 0}, {"RC+5 X", 0}, {"RC-5 X", 0},
		{"RC0 X", 0}, {"RC12345678901 X", 0},
	}
	for _, tc := range tests {
		t.Run(tc.sec, func(t *testing.T) {
			if got := ReturnCode(tc.sec); got != tc.want {
				t.Errorf("ReturnCode(%q) = %d, want %d", tc.sec, got, tc.want)
			}
		})
	}
}
