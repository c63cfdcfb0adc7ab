package jobspec

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/events"
)

const jobPath = "testdata/job.yaml"

// history is a valid gethistory job; cases change one thing.
const history = `name: eod-prices
program: gethistory
securities:
  - IBM US Equity
  - AAPL US Equity
fields: [PX_LAST, PX_VOLUME]
start: 2026-01-02
end: 2026-01-31
`

func TestParseGood(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want File
	}{
		{
			name: "gethistory minimal",
			yaml: history,
			want: File{Name: "eod-prices", Program: "gethistory",
				Securities: []string{"IBM US Equity", "AAPL US Equity"},
				Fields:     []string{"PX_LAST", "PX_VOLUME"}, Start: Date{Fixed: "2026-01-02"}, End: Date{Fixed: "2026-01-31"},
				Deadline: DefaultDeadline},
		},
		{
			name: "getdata with schedule, tz and deadline",
			yaml: "name: Snap1\nprogram: getdata\nsecurities: [IBM US Equity]\nfields: [PX_LAST]\n" +
				"schedule: \"0 22 * * 1-5\"\ntz: America/New_York\ndeadline: 90m\n",
			want: File{Name: "Snap1", Program: "getdata", Securities: []string{"IBM US Equity"},
				Fields: []string{"PX_LAST"}, Schedule: "0 22 * * 1-5", TZ: "America/New_York",
				Deadline: 90 * time.Minute},
		},
		{
			name: "single-day history, quoted values, descriptor schedule",
			yaml: "name: \"d1\"\nprogram: 'gethistory'\nsecurities:\n  - \"  IBM US Equity \"\n" +
				"fields:\n  - PX_LAST\nstart: \"2024-02-29\"\nend: 2024-02-29\nschedule: \"@daily\"\n",
			want: File{Name: "d1", Program: "gethistory", Securities: []string{"IBM US Equity"},
				Fields: []string{"PX_LAST"}, Start: Date{Fixed: "2024-02-29"}, End: Date{Fixed: "2024-02-29"}, Schedule: "@daily",
				Deadline: DefaultDeadline},
		},
		{
			name: "anchors and aliases",
			yaml: "name: a\nprogram: getdata\nsecurities: [&ibm IBM US Equity, AAPL US Equity]\nfields: &f [PX_LAST]\n",
			want: File{Name: "a", Program: "getdata", Securities: []string{"IBM US Equity", "AAPL US Equity"},
				Fields: []string{"PX_LAST"}, Deadline: DefaultDeadline},
		},
		{
			name: "securities_file relative to the job file, CRLF lines",
			yaml: "name: f\nprogram: getdata\nsecurities_file: crlf-universe.txt\nfields: [PX_LAST]\n",
			want: File{Name: "f", Program: "getdata", Securities: []string{"IBM US Equity", "AAPL US Equity"},
				Fields: []string{"PX_LAST"}, Deadline: DefaultDeadline,
				SecuritiesFile: filepath.Join("testdata", "crlf-universe.txt")},
		},
		{
			name: "unicode security and digits in mnemonics",
			yaml: "name: u\nprogram: getdata\nsecurities: [\"Société Générale FP Equity\"]\nfields: [EQY_DVD_YLD_12M, 3MO_CALL_IMPVOL]\n",
			want: File{Name: "u", Program: "getdata", Securities: []string{"Société Générale FP Equity"},
				Fields: []string{"EQY_DVD_YLD_12M", "3MO_CALL_IMPVOL"}, Deadline: DefaultDeadline},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse([]byte(tt.yaml), jobPath)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			tt.want.Path = jobPath
			if !reflect.DeepEqual(*f, tt.want) {
				t.Errorf("got  %+v\nwant %+v", *f, tt.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	// mod replaces the line starting with old in history, or appends when old is "".
	mod := func(old, new string) string {
		if old == "" {
			return history + new
		}
		var out []string
		for _, l := range strings.Split(history, "\n") {
			if strings.HasPrefix(l, old) {
				if new == "" {
					continue
				}
				l = new
			}
			out = append(out, l)
		}
		return strings.Join(out, "\n")
	}
	const p = jobPath
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"empty file", "", []string{p + ": empty job file"}},
		{"only comments", "# nothing\n", []string{p + ": empty job file"}},
		{"not a mapping", "- a\n- b\n", []string{p + ":1: a job file is a mapping of keys (name, program, ...) to values"}},
		{"yaml syntax", "name: a\n  program: b\n", []string{p + ":2: not valid YAML: mapping values are not allowed in this context"}},
		// yaml.v3's parser counts lines from 0, its scanner from 1: both point at the bad line.
		{"yaml syntax, unclosed list", "name: a\nprogram: getdata\nfields: [PX_LAST, NAME\n",
			[]string{p + ":3: not valid YAML: did not find expected ',' or ']'"}},
		{"yaml syntax, list item in a mapping", "name: a\nprogram: getdata\n- PX_LAST\n",
			[]string{p + ":3: not valid YAML: did not find expected key"}},
		{"yaml syntax, bad indentation", "name: a\nfields:\n  - PX_LAST\n bad: x\n",
			[]string{p + ":4: not valid YAML: did not find expected key"}},
		{"yaml syntax on line 1", "{name: a program: b}\n", []string{p + ":1: not valid YAML: did not find expected ',' or '}'"}},
		{"yaml syntax, mapping after a list", "- a\nname: b\n", []string{p + ":2: not valid YAML: did not find expected '-' indicator"}},
		{"yaml syntax, scanner", "name: a\nprogram: getdata\nfields: @x\n",
			[]string{p + ":3: not valid YAML: found character that cannot start any token"}},
		{"two documents", history + "---\nname: b\n", []string{p + ":9: more than one YAML document; a job file is one"}},
		{"unknown key with suggestion", mod("", "sechdule: x\n"), []string{p + ":9: unknown key sechdule (did you mean schedule?)"}},
		{"unknown key", mod("", "colour: blue\n"), []string{p + ":9: unknown key colour (known: name, program, securities, securities_file, fields, start, end, schedule, tz, calendar, deadline, strict, identifier_type, overrides, pricing_source, pricing_source_exclusive, periodicity, currency, incremental)"}},
		{"non-scalar key", mod("", "[a]: b\n"), []string{p + ":9: keys are plain names such as name or fields"}},
		{"duplicate key", mod("", "name: other\n"), []string{p + ":9: name: given twice (first at line 1)"}},
		{"missing everything", "deadline: 1h\n", []string{
			p + ": name: missing",
			p + ": program: missing (getdata, gethistory or getactions)",
			p + ": securities: missing (or securities_file)",
			p + ": fields: missing"}},
		{"name bad characters", mod("name:", "name: eod prices"), []string{p + ":1: name: eod prices is not a job name (letters, digits and '-', starting with a letter or digit, at most 63)"}},
		{"name leading dash", mod("name:", "name: -x"), []string{p + ":1: name: -x is not a job name (letters, digits and '-', starting with a letter or digit, at most 63)"}},
		{"name too long", mod("name:", "name: "+strings.Repeat("a", 64)), []string{p + ":1: name: " + strings.Repeat("a", 64) + " is not a job name (letters, digits and '-', starting with a letter or digit, at most 63)"}},
		{"name empty", mod("name:", "name:"), []string{p + ":1: name: empty"}},
		{"name is a list", mod("name:", "name: [a]"), []string{p + ":1: name: want a single value, not a list"}},
		{"program unknown", mod("program:", "program: getsnap"), []string{p + ":2: program: getsnap is not a program (getdata, gethistory or getactions)"}},
		{"securities empty list", str(mod("", "")).replace("securities:\n  - IBM US Equity\n  - AAPL US Equity", "securities: []"),
			[]string{p + ":3: securities: empty list"}},
		{"securities null", str(mod("", "")).replace("securities:\n  - IBM US Equity\n  - AAPL US Equity", "securities:"),
			[]string{p + ":3: securities: empty list"}},
		{"securities not a list", str(mod("", "")).replace("securities:\n  - IBM US Equity\n  - AAPL US Equity", "securities: IBM US Equity"),
			[]string{p + ":3: securities: want a list, not a value"}},
		{"security duplicate", mod("  - AAPL", "  - IBM US Equity"), []string{p + ":5: securities: IBM US Equity repeated (first at line 4)"}},
		{"security duplicate after trimming", mod("  - AAPL", "  - ' IBM US Equity'"), []string{p + ":5: securities: IBM US Equity repeated (first at line 4)"}},
		{"security empty", mod("  - AAPL", "  - ''"), []string{p + ":5: securities: empty security"}},
		{"security null", mod("  - AAPL", "  -"), []string{p + ":5: securities: empty security"}},
		{"security blank", mod("  - AAPL", "  - '   '"), []string{p + ":5: securities: empty security"}},
		{"security delimiter", mod("  - AAPL", "  - AAPL|US"), []string{p + ":5: securities: AAPL|US contains '|', the reply file's delimiter"}},
		{"security control character", mod("  - AAPL", "  - \"AAPL\\tUS\""), []string{p + ":5: securities: \"AAPL\\tUS\" contains a control character"}},
		{"security too long", mod("  - AAPL", "  - "+strings.Repeat("X", 257)), []string{p + ":5: securities: security of 257 bytes; at most 256"}},
		{"security is a mapping", mod("  - AAPL", "  - {a: b}"), []string{p + ":5: securities: unknown key a in a security (id, type, overrides)", p + ":5: securities: a security given as a mapping needs id:"}},
		{"alias to a bad security", mod("  - AAPL", "  - &bad 'X|Y'\n  - *bad"), []string{
			p + ":5: securities: X|Y contains '|', the reply file's delimiter",
			p + ":6: securities: X|Y contains '|', the reply file's delimiter"}},
		{"securities and securities_file", mod("", "securities_file: universe.txt\n"), []string{p + ":9: securities_file: give securities or securities_file, not both"}},
		{"securities_file missing", str(mod("", "")).replace("securities:\n  - IBM US Equity\n  - AAPL US Equity", "securities_file: nope.txt"),
			[]string{p + ":3: securities_file: open testdata/nope.txt: no such file or directory"}},
		{"securities_file problems name the file and its lines", str(mod("", "")).replace("securities:\n  - IBM US Equity\n  - AAPL US Equity", "securities_file: bad-universe.txt"),
			[]string{"testdata/bad-universe.txt:3: IBM|US Equity contains '|', the reply file's delimiter",
				"testdata/bad-universe.txt:4: IBM US Equity repeated (first at line 1)"}},
		{"securities_file not a regular file", str(mod("", "")).replace("securities:\n  - IBM US Equity\n  - AAPL US Equity", "securities_file: ."),
			[]string{p + ":3: securities_file: testdata is not a regular file"}},
		{"securities_file with no securities", str(mod("", "")).replace("securities:\n  - IBM US Equity\n  - AAPL US Equity", "securities_file: empty-universe.txt"),
			[]string{"testdata/empty-universe.txt: no securities (only blank lines and comments)"}},
		{"fields empty list", mod("fields:", "fields: []"), []string{p + ":6: fields: empty list"}},
		{"fields not a list", mod("fields:", "fields: PX_LAST"), []string{p + ":6: fields: want a list, not a value"}},
		{"field with a space", mod("fields:", "fields: [PX_LAST, PX LAST]"), []string{p + ":6: fields: PX LAST is not a field mnemonic (upper-case letters, digits and '_')"}},
		{"field lower case", mod("fields:", "fields: [px_last]"), []string{p + ":6: fields: px_last is not a field mnemonic: mnemonics are upper case (PX_LAST)"}},
		{"field delimiter", mod("fields:", "fields: ['PX_LAST|X']"), []string{p + ":6: fields: PX_LAST|X is not a field mnemonic (upper-case letters, digits and '_')"}},
		{"field empty", mod("fields:", "fields: [PX_LAST, '']"), []string{p + ":6: fields: empty field"}},
		{"field too long", mod("fields:", "fields: ["+strings.Repeat("A", 65)+"]"), []string{p + ":6: fields: field of 65 bytes; at most 64"}},
		{"field duplicate", mod("fields:", "fields:\n  - PX_LAST\n  - PX_LAST"), []string{p + ":8: fields: PX_LAST repeated (first at line 7)"}},
		{"field is a list", mod("fields:", "fields: [[PX_LAST]]"), []string{p + ":6: fields: want a field mnemonic, not a list"}},
		{"start not a date", mod("start:", "start: 2026/01/02"), []string{p + ":7: start: 2026/01/02 is not a date (YYYY-MM-DD, today, -Nd for N days back or -Nb for N business days back)"}},
		{"start not a real date", mod("start:", "start: 2026-02-30"), []string{p + ":7: start: 2026-02-30 is not a real date"}},
		{"end month 13", mod("end:", "end: 2026-13-01"), []string{p + ":8: end: 2026-13-01 is not a real date"}},
		{"start after end", mod("start:", "start: 2026-02-01"), []string{p + ":7: start: 2026-02-01 is after end 2026-01-31"}},
		{"history without dates", str(mod("start:", "")).replace("end: 2026-01-31\n", ""), []string{
			p + ": start: missing (gethistory needs start and end)",
			p + ": end: missing (gethistory needs start and end)"}},
		{"getdata with dates", mod("program:", "program: getdata"), []string{
			p + ":7: start: only gethistory takes a date range",
			p + ":8: end: only gethistory takes a date range"}},
		{"schedule does not parse", mod("", "schedule: \"0 25 * * *\"\n"), []string{p + ":9: schedule: 0 25 * * * is not a cron schedule (minute hour day-of-month month day-of-week): end of range (25) above maximum (23): 25"}},
		{"schedule with seconds", mod("", "schedule: \"0 0 22 * * 1-5\"\n"), []string{p + ":9: schedule: 0 0 22 * * 1-5 is not a cron schedule (minute hour day-of-month month day-of-week): expected exactly 5 fields, found 6: [0 0 22 * * 1-5]"}},
		{"schedule never fires", mod("", "schedule: \"0 0 30 2 *\"\n"), []string{p + ":9: schedule: 0 0 30 2 * never fires"}},
		{"schedule with its own zone", mod("", "schedule: \"CRON_TZ=Asia/Tokyo 0 22 * * *\"\n"), []string{p + ":9: schedule: give the time zone with tz:, not in the schedule"}},
		{"tz unknown", mod("", "schedule: \"@daily\"\ntz: Europe/Londres\n"), []string{p + ":10: tz: Europe/Londres is not a time zone (an IANA name such as Europe/London)"}},
		{"tz Local", mod("", "schedule: \"@daily\"\ntz: Local\n"), []string{p + ":10: tz: Local is not a time zone (an IANA name such as Europe/London)"}},
		{"tz without schedule", mod("", "tz: Europe/London\n"), []string{p + ":9: tz: only used with schedule or relative dates (today, -Nd, -Nb)"}},
		{"deadline not a duration", mod("", "deadline: 2 hours\n"), []string{p + ":9: deadline: 2 hours is not a duration (such as 90m or 6h)"}},
		{"deadline negative", mod("", "deadline: -1h\n"), []string{p + ":9: deadline: -1h: must be positive"}},
		{"deadline zero", mod("", "deadline: 0s\n"), []string{p + ":9: deadline: 0s: must be positive"}},
		{"every problem reported", mustRead(t, "testdata/bad.yaml"), []string{
			"testdata/bad.yaml:1: name: eod prices is not a job name (letters, digits and '-', starting with a letter or digit, at most 63)",
			"testdata/bad.yaml:5: securities: IBM US Equity repeated (first at line 4)",
			"testdata/bad.yaml:6: fields: PX LAST is not a field mnemonic (upper-case letters, digits and '_')",
			"testdata/bad.yaml:7: start: 2026-01-31 is after end 2026-01-02",
			"testdata/bad.yaml:9: unknown key colour (known: name, program, securities, securities_file, fields, start, end, schedule, tz, calendar, deadline, strict, identifier_type, overrides, pricing_source, pricing_source_exclusive, periodicity, currency, incremental)"}},
		{"strict not a boolean", mod("", "strict: yes\n"), []string{p + ":9: strict: yes: want true or false"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := jobPath
			if tt.name == "every problem reported" {
				path = "testdata/bad.yaml"
			}
			f, err := Parse([]byte(tt.yaml), path)
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", f)
			}
			if f != nil {
				t.Errorf("Parse returned a file with errors")
			}
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("error is %T, not Errors", err)
			}
			var got []string
			for _, e := range es {
				got = append(got, e.Error())
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("errors:\n got  %q\n want %q", got, tt.want)
			}
		})
	}
}

type str string

func (s str) replace(old, new string) string {
	if !strings.Contains(string(s), old) {
		panic("test bug: " + old + " not in the document")
	}
	return strings.Replace(string(s), old, new, 1)
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestErrorColumnsAndAs(t *testing.T) {
	_, err := Parse([]byte("name: a\nprogram: getdata\nsecurities: [IBM US Equity]\nfields: [PX_LAST, bad field]\n"), "j.yaml")
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("errors.As(*Error) failed on %v", err)
	}
	want := Error{Path: "j.yaml", Line: 4, Column: 19, Field: "fields",
		Reason: "bad field is not a field mnemonic (upper-case letters, digits and '_')"}
	if *e != want {
		t.Errorf("got %+v, want %+v", *e, want)
	}
	if got := (&Error{Reason: "x"}).Error(); got != "job file: x" {
		t.Errorf("pathless error = %q", got)
	}
}

func TestLimits(t *testing.T) {
	var b strings.Builder
	b.WriteString("name: big\nprogram: getdata\nsecurities:\n")
	for i := range MaxSecurities + 1 {
		fmt.Fprintf(&b, "  - S%d Equity\n", i)
	}
	b.WriteString("fields: [")
	for i := range MaxFields + 1 {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "F%d", i)
	}
	b.WriteString("]\n")
	_, err := Parse([]byte(b.String()), "big.yaml")
	want := []string{
		"big.yaml:4: securities: 100001 securities; at most 100000 in one job",
		fmt.Sprintf("big.yaml:%d: fields: 1001 fields; at most 1000 in one job", MaxSecurities+5),
	}
	var es Errors
	if !errors.As(err, &es) || len(es) != 2 || es[0].Error() != want[0] || es[1].Error() != want[1] {
		t.Errorf("got %v, want %q", err, want)
	}
}

func TestTooManyProblemsAreCut(t *testing.T) {
	var b strings.Builder
	b.WriteString("name: big\nprogram: getdata\nfields: [PX_LAST]\nsecurities:\n")
	for range 150 {
		b.WriteString("  - ''\n")
	}
	_, err := Parse([]byte(b.String()), "j.yaml")
	var es Errors
	errors.As(err, &es)
	if len(es) != maxReported+1 || es[maxReported].Error() != "j.yaml: 50 more problems not shown" {
		t.Errorf("got %d errors, last %v", len(es), es[len(es)-1])
	}
}

func TestLoad(t *testing.T) {
	f, err := Load("testdata/snapshot.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"IBM US Equity", "AAPL US Equity", "MSFT US Equity", "/ISIN/US0378331005"}
	if !reflect.DeepEqual(f.Securities, want) {
		t.Errorf("securities = %q, want %q", f.Securities, want)
	}
	if f.SecuritiesFile != filepath.Join("testdata", "universe.txt") || f.Path != "testdata/snapshot.yaml" {
		t.Errorf("paths: %q %q", f.SecuritiesFile, f.Path)
	}
	if _, err := Load("testdata/absent.yaml"); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(absent) = %v, want a wrapped ErrNotExist", err)
	}
	_, err = Load("testdata/bad.yaml")
	var es Errors
	if !errors.As(err, &es) || len(es) != 5 {
		t.Errorf("Load(bad) = %v", err)
	}
}

func TestSecuritiesFileAbsolute(t *testing.T) {
	abs, err := filepath.Abs("testdata/universe.txt")
	if err != nil {
		t.Fatal(err)
	}
	f, err := Parse([]byte("name: a\nprogram: getdata\nsecurities_file: "+abs+"\nfields: [PX_LAST]\n"), "/elsewhere/j.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Securities) != 4 || f.SecuritiesFile != abs {
		t.Errorf("got %q from %q", f.Securities, f.SecuritiesFile)
	}
}

func TestSpec(t *testing.T) {
	f, err := Load("testdata/eod-prices.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, err := f.SpecAt(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	want := events.Spec{Name: "eod-prices", Program: "gethistory",
		Securities: []string{"IBM US Equity", "AAPL US Equity", "VOD LN Equity"},
		Fields:     []string{"PX_LAST", "PX_VOLUME"}, Start: "2026-01-02", End: "2026-01-31"}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("Spec = %+v", s)
	}
	s.Securities[0] = "changed"
	if f.Securities[0] != "IBM US Equity" {
		t.Error("Spec shares its slices with the File")
	}
	if f.Deadline != 2*time.Hour {
		t.Errorf("deadline = %v", f.Deadline)
	}
	strict, err := Parse([]byte(history+"strict: true\n"), jobPath)
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := strict.SpecAt(time.Now()); !s.Strict {
		t.Error("strict: true did not reach the Spec")
	}
}

func TestNextRun(t *testing.T) {
	london, _ := time.LoadLocation("Europe/London")
	tests := []struct {
		name     string
		schedule string
		tz       string
		after    time.Time
		want     time.Time
		ok       bool
	}{
		{"none", "", "", time.Now(), time.Time{}, false},
		{"utc weekday", "0 22 * * 1-5", "", time.Date(2026, 1, 2, 21, 0, 0, 0, time.UTC), // a Friday
			time.Date(2026, 1, 2, 22, 0, 0, 0, time.UTC), true},
		{"skips the weekend", "0 22 * * 1-5", "", time.Date(2026, 1, 2, 22, 0, 0, 0, time.UTC),
			time.Date(2026, 1, 5, 22, 0, 0, 0, time.UTC), true},
		{"london summer time", "0 22 * * *", "Europe/London", time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC),
			time.Date(2026, 7, 1, 22, 0, 0, 0, london), true},
		{"london winter", "0 22 * * *", "Europe/London", time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC),
			time.Date(2026, 1, 1, 22, 0, 0, 0, time.UTC), true},
		{"never", "0 0 30 2 *", "", time.Now(), time.Time{}, false},
		{"unparsable", "nope", "", time.Now(), time.Time{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &File{Schedule: tt.schedule, TZ: tt.tz}
			got, ok := f.NextRun(tt.after)
			if ok != tt.ok || !got.Equal(tt.want) {
				t.Errorf("NextRun = %v, %v; want %v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
	// In summer London is UTC+1: 22:00 there is 21:00 UTC.
	f := &File{Schedule: "0 22 * * *", TZ: "Europe/London"}
	if got, _ := f.NextRun(time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)); got.UTC().Hour() != 21 {
		t.Errorf("summer run at %v UTC", got.UTC())
	}
}

var jobIDRE = regexp.MustCompile(`^[a-z0-9-]+-[0-9]{8}t[0-9]{6}z-[a-z2-7]{4}$`)

func TestNewJobID(t *testing.T) {
	at := time.Date(2026, 11, 25, 5, 57, 24, 0, time.FixedZone("X", 3600))
	id := NewJobID("EOD-Prices", at)
	if !strings.HasPrefix(id, "eod-prices-20261125t045724z-") || !jobIDRE.MatchString(id) {
		t.Errorf("id = %q", id)
	}
	seen := map[string]bool{}
	for range 1000 {
		id := NewJobID("eod-prices", at)
		if seen[id] {
			// 1000 draws of 20 bits collide with probability ~0.05%; a repeat within a few is a bug.
			if len(seen) < 10 {
				t.Fatalf("repeated id %q after %d", id, len(seen))
			}
		}
		seen[id] = true
	}
	for _, name := range []string{"", "a.b c*>", strings.Repeat("x", 200)} {
		id := NewJobID(name, at)
		if !jobIDRE.MatchString(id) || strings.ContainsAny(id, ".*> ") {
			t.Errorf("NewJobID(%q) = %q, not a subject token", name, id)
		}
	}
}

func TestVendorRequestID(t *testing.T) {
	id := VendorRequestID("eod-prices-20261125t045724z-k3qa", 0)
	if len(id) != 21 || !regexp.MustCompile(`^[a-z0-9]+$`).MatchString(id) || !strings.HasPrefix(id, "mp") {
		t.Errorf("id = %q", id)
	}
	if id != VendorRequestID("eod-prices-20261125t045724z-k3qa", 0) {
		t.Error("not deterministic")
	}
	if id == VendorRequestID("eod-prices-20261125t045724z-k3qa", 1) ||
		id == VendorRequestID("eod-prices-20261125t045724z-k3qb", 0) {
		t.Error("generation or job id does not change the identifier")
	}
}

// FuzzParse: any input gives a File or Errors, never a panic, and a File is valid.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"eod-prices.yaml", "snapshot.yaml", "bad.yaml"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(history))
	f.Add([]byte("0: [:!00 \xef"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse(data, "testdata/fuzz.yaml")
		if err != nil {
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 || file != nil {
				t.Fatalf("Parse returned %v, %T %v", file, err, err)
			}
			return
		}
		if file.Name == "" || len(file.Securities) == 0 || len(file.Fields) == 0 ||
			(file.Program != events.GetData && file.Program != events.GetHistory) {
			t.Fatalf("invalid file accepted: %+v", file)
		}
	})
}

// TestNewJobIDIsValid: whatever the job's name, its ids pass events.ValidJobID.
func TestNewJobIDIsValid(t *testing.T) {
	at := time.Date(2026, 11, 25, 4, 57, 24, 0, time.UTC)
	for _, name := range []string{"eod prices", "", "x*y", "a.b>c", "ünïcödé", "   ", strings.Repeat("long name ", 40), "a/b\\c\x00"} {
		id := NewJobID(name, at)
		if err := events.ValidJobID(id); err != nil {
			t.Errorf("NewJobID(%q) = %q: %v", name, id, err)
		}
	}
}

// TestLargestJobEventFits: a job at every limit of a job file (the most fields of the longest
// mnemonics, the longest securities list a job event carries inline, of the longest
// identifiers, a longer one travelling by reference) makes a job event the broker admits
// (events.MaxJobEventBytes, derived from the one max_payload).
func TestLargestJobEventFits(t *testing.T) {
	spec := events.Spec{Name: strings.Repeat("n", 63), Program: events.GetHistory, Start: "2026-01-01", End: "2026-12-31"}
	for i := range events.InlineSecurities {
		spec.Securities = append(spec.Securities, fmt.Sprintf("%0*d", MaxSecurityLen, i))
	}
	for i := range MaxFields {
		spec.Fields = append(spec.Fields, fmt.Sprintf("F%0*d", MaxFieldLen-1, i))
	}
	now := time.Now()
	j := events.NewRun(NewJobID(spec.Name, now), spec, now, time.Hour)
	j.Error = strings.Repeat("e", 4096)
	j.Warnings = &events.Warnings{UnknownFields: spec.Fields, ReturnCodes: map[string]int64{"RC=10": 1}, RejectedLines: 1}
	data, err := j.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > events.MaxJobEventBytes {
		t.Errorf("the largest job event is %d bytes, more than the %d the broker admits", len(data), events.MaxJobEventBytes)
	}
	t.Logf("largest job event: %d bytes of %d", len(data), events.MaxJobEventBytes)
}

func TestRelativeDates(t *testing.T) {
	base := "name: rel\nprogram: gethistory\nsecurities: [IBM US Equity]\nfields: [PX_LAST]\n"
	for _, c := range []struct {
		extra      string
		at         time.Time
		start, end string
	}{
		// 01:30 UTC on 1 December is still 30 November in New York: the zone decides today.
		{"start: -1d\nend: today\ntz: America/New_York\n", time.Date(2026, 12, 1, 1, 30, 0, 0, time.UTC), "2026-11-29", "2026-11-30"},
		{"start: -1d\nend: today\n", time.Date(2026, 12, 1, 1, 30, 0, 0, time.UTC), "2026-11-30", "2026-12-01"},
		// Tokyo is a day ahead of UTC at 20:00 UTC.
		{"start: today\nend: today\ntz: Asia/Tokyo\n", time.Date(2026, 12, 1, 20, 0, 0, 0, time.UTC), "2026-12-02", "2026-12-02"},
		// Weekdays by default: -1b from a Monday is the Friday before.
		{"start: -1b\nend: -1b\n", time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC), "2026-11-27", "2026-11-27"},
		// XNYS skips Good Friday 2026 (3 April); XLON also skips Easter Monday.
		{"start: -2b\nend: -1b\ncalendar: XNYS\n", time.Date(2026, 4, 7, 12, 0, 0, 0, time.UTC), "2026-04-02", "2026-04-06"},
		{"start: -2b\nend: -1b\ncalendar: XLON\n", time.Date(2026, 4, 7, 12, 0, 0, 0, time.UTC), "2026-04-01", "2026-04-02"},
		{"start: 2026-01-02\nend: -1d\n", time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), "2026-01-02", "2026-02-28"},
	} {
		f, err := Parse([]byte(base+c.extra), "rel.yaml")
		if err != nil {
			t.Fatalf("%q: %v", c.extra, err)
		}
		s, err := f.SpecAt(c.at)
		if err != nil || s.Start != c.start || s.End != c.end {
			t.Errorf("%q at %s: %s..%s (%v), want %s..%s", c.extra, c.at, s.Start, s.End, err, c.start, c.end)
		}
	}
	// A run outside the calendar's holiday data is refused with the reason.
	f, err := Parse([]byte(base+"start: -5b\nend: -1b\ncalendar: XNYS\n"), "rel.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.SpecAt(time.Date(2030, 1, 7, 12, 0, 0, 0, time.UTC)); err == nil || !strings.Contains(err.Error(), "2027-12-31") {
		t.Errorf("run after the holiday data: %v", err)
	}
	for _, c := range []struct{ extra, want string }{
		{"start: -5x\nend: today\n", "start: -5x is not a date (YYYY-MM-DD, today, -Nd"},
		{"start: today\nend: -2d\n", "start: today is after end -2d"},
		{"start: -99999d\nend: today\n", "goes back more than"},
		{"start: -1d\nend: today\ncalendar: XTKS\n", `calendar: unknown calendar "XTKS" (known: weekdays, XNYS, XLON)`},
		{"start: 2026-01-01\nend: 2026-01-02\ntz: UTC\n", "tz: only used with schedule or relative dates"},
		{"start: 2026-01-01\nend: 2026-01-02\nschedule: \"@every 1h\"\n", "use a cron expression"},
	} {
		_, err := Parse([]byte(base+c.extra), "rel.yaml")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.extra, err, c.want)
		}
	}
}

func TestRequestOptions(t *testing.T) {
	data := "name: opts\nprogram: getdata\nfields: [PX_LAST, PX_BID]\n" +
		"securities:\n  - IBM US Equity\n  - /isin/US0378331005\n  - {id: 037833100, type: CUSIP, overrides: {SETTLE_DT: \"20261231\"}}\n" +
		"overrides: {VWAP_START_TIME: \"09:30\"}\npricing_source: BGN\npricing_source_exclusive: true\n"
	f, err := Parse([]byte(data), "opts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, err := f.SpecAt(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	want := events.Spec{Name: "opts", Program: "getdata", Fields: []string{"PX_LAST", "PX_BID"},
		Securities: []string{"IBM US Equity", "/ISIN/US0378331005", "/CUSIP/037833100"},
		Options: events.Options{Overrides: map[string]string{"VWAP_START_TIME": "09:30"},
			SecurityOverrides: map[string]map[string]string{"/CUSIP/037833100": {"SETTLE_DT": "20261231"}},
			PricingSource:     "BGN", PricingSourceExclusive: true}}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("spec\n%+v\nwant\n%+v", s, want)
	}
	if d := s.Dataset(); d != "getdata[pricing_source=BGN!]" {
		t.Errorf("dataset %q", d)
	}
	h, err := Parse([]byte(history+"identifier_type: isin\nperiodicity: weekly\ncurrency: EUR\n"), jobPath)
	if err != nil {
		t.Fatal(err)
	}
	hs, _ := h.SpecAt(time.Now())
	if hs.Securities[0] != "/ISIN/IBM US Equity" || hs.Periodicity != "weekly" || hs.Currency != "EUR" ||
		hs.Dataset() != "gethistory[currency=EUR,periodicity=weekly]" {
		t.Errorf("history options: %+v, dataset %q", hs, hs.Dataset())
	}

	many := "overrides: {"
	for i := range 20 {
		many += fmt.Sprintf("F%02d: x, ", i)
	}
	many = strings.TrimSuffix(many, ", ") + "}\n"
	for _, c := range []struct{ yaml, want string }{
		{history + "overrides: {SETTLE_DT: \"20261231\"}\n", "only getdata takes overrides: HAPI ignores security overrides on history"},
		{"name: o\nprogram: getdata\nfields: [PX_LAST]\nsecurities: [IBM US Equity]\n" + many, "20 overrides; at most 19 per security"},
		{history + "identifier_type: RIC\n", "RIC is not one of HAPI's identifier types"},
		{history + "periodicity: hourly\n", "periodicity: hourly: want one of daily, weekly, monthly, quarterly, yearly"},
		{history + "currency: EURO\n", `currency: "EURO" is not a currency`},
		{history + "currency: XYZ\n", "XYZ is not an ISO 4217 currency"},
		{"name: o\nprogram: getdata\nfields: [PX_LAST]\nsecurities: [IBM US Equity]\nperiodicity: weekly\n", "only gethistory takes a periodicity"},
		{"name: o\nprogram: getdata\nfields: [PX_LAST]\nsecurities: [/RIC/IBM.N]\n", "identifier type RIC is not one of HAPI's"},
		{"name: o\nprogram: getdata\nfields: [PX_LAST]\nsecurities: [IBM US Equity]\npricing_source_exclusive: true\n", "needs pricing_source"},
		{"name: o\nprogram: getdata\nfields: [PX_LAST]\nsecurities: [{type: ISIN}]\n", "needs id:"},
	} {
		_, err := Parse([]byte(c.yaml), "o.yaml")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v\nwant %q", c.yaml, err, c.want)
		}
	}
}

func TestIncremental(t *testing.T) {
	h, err := Parse([]byte(history+"incremental: true\n"), jobPath)
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := h.SpecAt(time.Now()); !s.Incremental {
		t.Errorf("incremental: true gave %+v", s)
	}
	if h, err := Parse([]byte(history+"incremental: false\n"), jobPath); err != nil || h.Incremental {
		t.Errorf("incremental: false: %+v %v", h, err)
	}
	for _, c := range []struct{ yaml, want string }{
		{history + "incremental: yes\n", ":9: incremental: yes: want true or false"},
		{"name: o\nprogram: getdata\nfields: [PX_LAST]\nsecurities: [IBM US Equity]\nincremental: true\n",
			"o.yaml:5: incremental: only gethistory takes incremental: it skips the dates earlier runs loaded, and getdata asks for no dates to skip"},
		{"name: o\nprogram: getactions\nsecurities: [IBM US Equity]\nstart: 2025-01-01\nend: 2025-02-01\nincremental: true\n",
			"o.yaml:6: incremental: only gethistory takes incremental"},
		{history + "incremental:\n", "incremental: empty"},
	} {
		_, err := Parse([]byte(c.yaml), "o.yaml")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v\nwant %q", c.yaml, err, c.want)
		}
	}
}
