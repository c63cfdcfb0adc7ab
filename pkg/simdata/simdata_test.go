package simdata

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/obs"
)

var (
	jan5 = obs.MakeDate(2026, time.January, 5) // a Monday

	historySpec = events.Spec{Program: events.GetHistory,
		Securities: []string{"IBM US Equity", "BAD X Equity", "AAPL US Equity"},
		Fields:     []string{"PX_LAST", "PX_VOLUME"}, Start: "2026-01-01", End: "2026-01-12"}
	dataSpec = events.Spec{Program: events.GetData,
		Securities: []string{"IBM US Equity", "BAD X Equity", "AAPL US Equity"},
		Fields:     []string{"PX_LAST", "PX_BID", "PX_ASK"}}
)

func collect(t *testing.T, s events.Spec, seed uint64) []obs.Observation {
	t.Helper()
	var out []obs.Observation
	if err := Observations(s, jan5, seed, func(o *obs.Observation) error {
		out = append(out, *o)
		return nil
	}); err != nil {
		t.Fatalf("Observations: %v", err)
	}
	return out
}

func reply(t testing.TB, s events.Spec, seed uint64) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := WriteReply(&b, s, jan5, seed); err != nil {
		t.Fatalf("WriteReply: %v", err)
	}
	return b.Bytes()
}

func TestWriteReplyGetData(t *testing.T) {
	s := events.Spec{Program: events.GetData, Securities: []string{"IBM US Equity", "BAD X Equity"},
		Fields: []string{"PX_LAST", "PX_BID"}}
	v1, _ := Value(7, "IBM US Equity", "PX_LAST", jan5)
	v2, _ := Value(7, "IBM US Equity", "PX_BID", jan5)
	want := "START-OF-FILE\nRUNDATE=20260105\nPROGRAMNAME=getdata\nPROGRAMFLAG=adhoc\n" +
		"FIRMNAME=marketpipe-sim\nDATEFORMAT=yyyymmdd\n\nSTART-OF-FIELDS\nPX_LAST\nPX_BID\n" +
		"END-OF-FIELDS\n\nTIMESTARTED=Mon Jan  5 18:00:00 UTC 2026\nSTART-OF-DATA\n" +
		"IBM US Equity|0|2|" + strconv.FormatFloat(v1, 'f', 4, 64) + "|" +
		strconv.FormatFloat(v2, 'f', 4, 64) + "|\n" +
		"BAD X Equity|10|2|\n" +
		"END-OF-DATA\nTIMEFINISHED=Mon Jan  5 18:00:07 UTC 2026\nEND-OF-FILE\n"
	if got := string(reply(t, s, 7)); got != want {
		t.Errorf("reply:\n%s\nwant:\n%s", got, want)
	}
}

func TestWriteReplyGetHistoryLayout(t *testing.T) {
	s := events.Spec{Program: events.GetHistory, Securities: []string{"IBM US Equity", "BAD Y Corp"},
		Fields: []string{"PX_LAST"}, Start: "2026-01-09", End: "2026-01-12"} // Fri..Mon
	got := string(reply(t, s, 1))
	v9, _ := Value(1, "IBM US Equity", "PX_LAST", obs.MakeDate(2026, 1, 9))
	v12, _ := Value(1, "IBM US Equity", "PX_LAST", obs.MakeDate(2026, 1, 12))
	for _, want := range []string{
		"PROGRAMNAME=gethistory\n",
		"DATERANGE=20260109|20260112\n",
		"START-OF-DATA\nSTART SECURITY|IBM US Equity|PX_LAST|\n" +
			"IBM US Equity|01/09/2026|" + strconv.FormatFloat(v9, 'f', 4, 64) + "|\n" +
			"IBM US Equity|01/12/2026|" + strconv.FormatFloat(v12, 'f', 4, 64) + "|\n" +
			"END SECURITY|IBM US Equity|PX_LAST|0|\n" +
			"START SECURITY|BAD Y Corp|PX_LAST|\nEND SECURITY|BAD Y Corp|PX_LAST|10|\nEND-OF-DATA\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("reply lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "DATEFORMAT") {
		t.Errorf("gethistory reply has DATEFORMAT; vertical rows use the default mm/dd/yyyy")
	}
}

func TestValue(t *testing.T) {
	// Known values pin the generator: a change here changes every simulated file and every
	// test that compares loaded rows with Observations.
	tests := []struct {
		name            string
		seed            uint64
		security, field string
		date            obs.Date
		want            string
	}{
		{"ibm last", 1, "IBM US Equity", "PX_LAST", jan5, "25.8834"},
		{"ibm last seed 2", 2, "IBM US Equity", "PX_LAST", jan5, "46.1984"},
		{"aapl volume", 1, "AAPL US Equity", "PX_VOLUME", obs.MakeDate(2025, 12, 31), "308350.0000"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, ok := Value(tc.seed, tc.security, tc.field, tc.date)
			got := NotAvailable
			if ok {
				got = strconv.FormatFloat(v, 'f', 4, 64)
			}
			if got != tc.want {
				t.Errorf("Value = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestValueShape(t *testing.T) {
	var na, n int
	for i := range 20000 {
		v, ok := Value(3, "SEC"+strconv.Itoa(i%100), "F"+strconv.Itoa(i/100), jan5)
		n++
		if !ok {
			na++
			continue
		}
		if v <= 0 || v >= 100000 { // walks around levels of 1 to 5,000 (prices.go)
			t.Fatalf("value %v out of range", v)
		}
		text := strconv.FormatFloat(v, 'f', 4, 64)
		back, err := strconv.ParseFloat(text, 64)
		if err != nil || back != v {
			t.Fatalf("%v formats as %s which parses back as %v, %v", v, text, back, err)
		}
	}
	if share := float64(na) / float64(n); share < 0.01 || share > 0.06 {
		t.Errorf("N.A. share %.3f, want a small share", share)
	}
}

func TestDeterminism(t *testing.T) {
	for _, s := range []events.Spec{dataSpec, historySpec} {
		a, b := reply(t, s, 42), reply(t, s, 42)
		if !bytes.Equal(a, b) {
			t.Errorf("%s: two writes differ", s.Program)
		}
		if c := reply(t, s, 43); bytes.Equal(a, c) {
			t.Errorf("%s: seeds 42 and 43 give the same file", s.Program)
		}
	}
}

func TestWeekdays(t *testing.T) {
	tests := []struct {
		name       string
		start, end string
		want       []string
	}{
		{"one week from thursday", "2026-01-01", "2026-01-07",
			[]string{"2026-01-01", "2026-01-02", "2026-01-05", "2026-01-06", "2026-01-07"}},
		{"weekend only", "2026-01-03", "2026-01-04", nil},
		{"single monday", "2026-01-05", "2026-01-05", []string{"2026-01-05"}},
		{"before 1970", "1969-12-26", "1969-12-29", []string{"1969-12-26", "1969-12-29"}},
		{"leap day", "2024-02-28", "2024-03-01", []string{"2024-02-28", "2024-02-29", "2024-03-01"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ds, err := Dates(events.Spec{Program: events.GetHistory, Start: tc.start, End: tc.end}, jan5)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, d := range ds {
				got = append(got, d.String())
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestReturnCodeRecords(t *testing.T) {
	for _, s := range []events.Spec{dataSpec, historySpec} {
		t.Run(s.Program, func(t *testing.T) {
			var rc []obs.Observation
			for _, o := range collect(t, s, 1) {
				if o.Security == "BAD X Equity" {
					rc = append(rc, o)
				}
			}
			want := obs.Observation{Security: "BAD X Equity", Date: jan5, Kind: obs.Null, Flag: "RC=10"}
			if len(rc) != 1 || !rc[0].Equal(&want) {
				t.Errorf("BAD security records %+v, want exactly %+v", rc, want)
			}
		})
	}
}

func TestInvalidSpecs(t *testing.T) {
	tests := []struct {
		name string
		spec events.Spec
	}{
		{"unknown program", events.Spec{Program: "getsnap"}},
		{"history without dates", events.Spec{Program: events.GetHistory, Fields: []string{"PX_LAST"}}},
		{"end before start", events.Spec{Program: events.GetHistory, Start: "2026-01-05", End: "2026-01-02"}},
		{"pipe in security", events.Spec{Program: events.GetData, Securities: []string{"A|B"}}},
		{"security read as a comment", events.Spec{Program: events.GetData, Securities: []string{"#1 X"}}},
		{"empty field", events.Spec{Program: events.GetData, Securities: []string{"A"}, Fields: []string{""}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := WriteReply(io.Discard, tc.spec, jan5, 1); !errors.Is(err, ErrSpec) {
				t.Errorf("WriteReply error %v, want ErrSpec", err)
			}
			if err := Observations(tc.spec, jan5, 1, func(*obs.Observation) error { return nil }); !errors.Is(err, ErrSpec) {
				t.Errorf("Observations error %v, want ErrSpec", err)
			}
		})
	}
}

func TestObservationsStopsOnError(t *testing.T) {
	stop := errors.New("stop")
	n := 0
	err := Observations(historySpec, jan5, 1, func(*obs.Observation) error {
		n++
		if n == 3 {
			return stop
		}
		return nil
	})
	if err != stop || n != 3 {
		t.Errorf("err %v after %d calls, want stop after 3", err, n)
	}
}

// TestWriteReplyMatchesObservations reads WriteReply's output back with a reader that knows only
// the two layouts this package writes, and checks it gives Observations' records in order. (The
// full parser, pkg/dlformat, is checked against this package in its own tests.)
func TestWriteReplyMatchesObservations(t *testing.T) {
	for _, s := range []events.Spec{dataSpec, historySpec} {
		t.Run(s.Program, func(t *testing.T) {
			want := collect(t, s, 9)
			got := readOwnFormat(t, reply(t, s, 9), s.Fields)
			if len(got) != len(want) {
				t.Fatalf("file has %d observations, Observations gives %d", len(got), len(want))
			}
			for i := range want {
				if !got[i].Equal(&want[i]) {
					t.Fatalf("observation %d: file %+v, Observations %+v", i, got[i], want[i])
				}
			}
		})
	}
}

// readOwnFormat is a minimal reader for exactly what WriteReply writes.
func readOwnFormat(t *testing.T, file []byte, fields []string) []obs.Observation {
	t.Helper()
	var (
		out     []obs.Observation
		runDate obs.Date
		inData  bool
		field   string // of the current gethistory block
		history = bytes.Contains(file, []byte("\nPROGRAMNAME=gethistory\n"))
		rcSeen  = map[string]bool{}
	)
	cell := func(sec, field string, d obs.Date, v string) {
		o := obs.Observation{Security: sec, Field: field, Date: d}
		switch v {
		case NotAvailable, NotSupplied, NotDownloadable, FieldUnknown:
			o.Kind, o.Flag = obs.Null, v
		case "":
			o.Kind, o.Flag = obs.Null, BlankFlag
		default:
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("cell %q: %v", v, err)
			}
			o.Kind, o.Num = obs.Number, f
		}
		out = append(out, o)
	}
	rc := func(sec, code string) {
		if code != "0" && !rcSeen[sec] {
			rcSeen[sec] = true
			out = append(out, obs.Observation{Security: sec, Date: runDate, Flag: "RC=" + code})
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(file))
	for sc.Scan() {
		line := sc.Text()
		parts := strings.Split(strings.TrimSuffix(line, "|"), "|")
		switch {
		case strings.HasPrefix(line, "RUNDATE="):
			tm, err := time.Parse("20060102", line[len("RUNDATE="):])
			if err != nil {
				t.Fatal(err)
			}
			runDate = obs.DateOf(tm)
		case line == "START-OF-DATA":
			inData = true
		case line == "END-OF-DATA":
			inData = false
		case !inData:
		case strings.HasPrefix(line, "START SECURITY|"):
			field = parts[2]
		case strings.HasPrefix(line, "END SECURITY|"):
			rc(parts[1], parts[3])
		case history:
			tm, err := time.Parse("01/02/2006", parts[1])
			if err != nil {
				t.Fatal(err)
			}
			cell(parts[0], field, obs.DateOf(tm), parts[2])
		default: // getdata row
			rc(parts[0], parts[1])
			for i, v := range parts[3:] {
				cell(parts[0], fields[i], runDate, v)
			}
		}
	}
	return out
}
