package dlformat

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marketpipe/marketpipe/pkg/obs"
)

// The expectations below were written by reading the fixture files, not by running the reader.

const fixtures = "testdata/bloomberg-dl"

func readFixture(t *testing.T, name string) (*Reader, []obs.Observation, []obs.Reject, error) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtures, name))
	if err != nil {
		t.Fatal(err)
	}
	return parseAll(t, b)
}

// history expands one vertical block: dates (MM/DD) of 2015 and their values.
func history(sec, field string, dates []string, vals ...float64) []obs.Observation {
	var out []obs.Observation
	for i, d := range dates {
		out = append(out, ob(sec, field, "2015-"+strings.ReplaceAll(d, "/", "-"), vals[i], ""))
	}
	return out
}

func TestFixturesFull(t *testing.T) {
	may6 := []string{"05/01", "05/04", "05/05", "05/06", "05/07", "05/08"}
	may5 := may6[1:]
	var gethistory []obs.Observation
	for _, b := range []struct {
		sec, field string
		dates      []string
		vals       []float64
	}{
		{"SPX Index", "PX_OPEN", may6, []float64{2087.38, 2110.23, 2112.63, 2091.26, 2079.96, 2092.13}},
		{"SPX Index", "PX_HIGH", may6, []float64{2108.41, 2120.95, 2115.24, 2098.42, 2092.9, 2117.66}},
		{"SPX Index", "PX_LOW", may6, []float64{2087.38, 2110.23, 2088.46, 2067.93, 2074.99, 2092.13}},
		{"SMI Index", "PX_OPEN", may5, []float64{9112.04, 9098.66, 8993.83, 8839.37, 8994.97}},
		{"SMI Index", "PX_HIGH", may5, []float64{9144.87, 9203.59, 8998.61, 8901.26, 9110.69}},
		{"SMI Index", "PX_LOW", may5, []float64{9076.5, 9024.38, 8859.34, 8729, 8941.39}},
		{"IBM US Equity", "PX_OPEN", may6, []float64{173.2, 174.47, 173.51, 172.9, 169.63, 172.94}},
		{"IBM US Equity", "PX_HIGH", may6, []float64{174, 176.3, 174.23, 174.05, 171.98, 173.33}},
		{"IBM US Equity", "PX_LOW", may6, []float64{172.42, 173.7, 171.96, 168.86, 169.04, 172.24}},
		// 120421Q FP Equity: three empty blocks with return code 0 give nothing.
	} {
		gethistory = append(gethistory, history(b.sec, b.field, b.dates, b.vals...)...)
	}

	const snap = "2015-06-05"
	snapNames := []string{"OPEN PRICE", "HIGH PRICE", "LOW PRICE", "BID PRICE", "MID PRICE", "ASK PRICE",
		"BID YIELD", "MID YIELD", "ASK YIELD", "LAST PRICE", "LAST YIELD", "LAST UPDATE TIME",
		"PREVIOUS CLOSE PRICE", "PREVIOUS CLOSE DATE", "PRICING SOURCE"}
	snapRow := func(sec string, vals ...any) []obs.Observation {
		var out []obs.Observation
		for i, v := range vals {
			flag := ""
			if v == nil {
				flag = "BLANK"
			}
			out = append(out, ob(sec, snapNames[i], snap, v, flag))
		}
		return out
	}
	getsnap := append(
		snapRow("SPX Index", 2112.35, 2112.89, 2093.23, 2092.84, 2096.97, 2101.1, nil, nil, nil, 2095.84, nil,
			"2015-06-04", 2095.84, "2015-06-04", nil),
		snapRow("SMI Index", 9169.38, 9181.1, 9079.75, 9090.57, 9093.72, 9096.87, nil, nil, nil, 9093.19, nil,
			"11:29:00", 9233.65, "2015-06-04", nil)...)

	tenFields := []string{"ID_BB_GLOBAL", "ID_BB_UNIQUE", "PARSEKYABLE_DES", "SECURITY_DES", "PX_LAST", "PX_BID",
		"PX_ASK", "CNTRY_OF_DOMICILE", "COUNTRY_ISO", "CRNCY"}
	row := func(sec, date string, vals ...any) []obs.Observation {
		var out []obs.Observation
		for i, v := range vals {
			flag := ""
			if v == nil {
				flag = "N.A."
			}
			out = append(out, ob(sec, tenFields[i], date, v, flag))
		}
		return out
	}
	current := append(
		row("AAPL US Equity", "2025-12-17", "BBG000B9XRY4", "EQ0010169500001000", "AAPL US Equity", "AAPL", 274.94, 274.92, 274.96, "US", "US", "USD"),
		row("IBM US Equity", "2025-12-17", "BBG000BLNNH6", "EQ0010080100001000", "IBM US Equity", "IBM", 304.5, 304.46, 304.56, "US", "US", "USD")...)
	single := append(
		row("AAPL US Equity", "2025-12-15", nil, nil, nil, nil, 274.11, 274.11, 274.12, nil, nil, nil),
		row("IBM US Equity", "2025-12-15", nil, nil, nil, nil, 308.66, 308.71, 308.71, nil, nil, nil)...)
	var multi []obs.Observation
	for _, r := range []struct {
		sec, date     string
		last, bid, ak float64
	}{
		{"AAPL US Equity", "2025-12-11", 278.03, 278.07, 278.09},
		{"AAPL US Equity", "2025-12-12", 278.28, 278.31, 278.38},
		{"AAPL US Equity", "2025-12-15", 274.11, 274.11, 274.12},
		{"IBM US Equity", "2025-12-11", 310.74, 310.7, 310.75},
		{"IBM US Equity", "2025-12-12", 309.24, 309.24, 309.28},
		{"IBM US Equity", "2025-12-15", 308.66, 308.71, 308.71},
	} {
		multi = append(multi, row(r.sec, r.date, nil, nil, nil, nil, r.last, r.bid, r.ak, nil, nil, nil)...)
	}

	cta := func(field string, vals ...float64) []obs.Observation {
		var out []obs.Observation
		for i, d := range []string{"2021-07-01", "2021-07-02", "2021-07-06", "2021-07-07", "2021-07-08"}[:len(vals)] {
			out = append(out, ob("CTA Comdty", field, d, vals[i], ""))
		}
		return out
	}
	// block06/07/08 are laid out row by row: fields vary fastest.
	ohlc := func(withVolume bool) []obs.Observation {
		rows := [][]float64{
			{0.8505, 0.8685, 0.8492, 0.859, 19881},
			{0.86, 0.8715, 0.8587, 0.8697, 15106},
			{0.876, 0.8889, 0.8608, 0.874, 24926},
			{0.874, 0.8795, 0.8657, 0.8763, 12451},
			{0.8757, 0.8763, 0.863, 0.8688, 13261},
		}
		fields := []string{"PX_OPEN", "PX_HIGH", "PX_LOW", "PX_LAST", "PX_VOLUME"}
		if !withVolume {
			fields = fields[:4]
		}
		var out []obs.Observation
		for i, d := range []string{"2021-07-01", "2021-07-02", "2021-07-06", "2021-07-07", "2021-07-08"} {
			for j, f := range fields {
				out = append(out, ob("CTA Comdty", f, d, rows[i][j], ""))
			}
		}
		return out
	}
	us := func() []obs.Observation {
		out := cta("PX_LAST", 0.859, 0.8697, 0.874, 0.8763)
		for i := range out {
			out[i].Security = "US78378X1072"
		}
		return out
	}
	const noDate = "no RUNDATE or TIMESTARTED"
	dots := func(lines ...int64) []wantReject {
		var out []wantReject
		for _, l := range lines {
			out = append(out, wantReject{l, "not KEY=VALUE"})
		}
		return out
	}

	tests := []struct {
		file    string
		program string
		want    []obs.Observation
		rejects []wantReject
	}{
		{
			file:    "datalicenseR/getdata.out",
			program: "getdata",
			want: []obs.Observation{
				ob("IBM US Equity", "PX_LAST", "2009-05-19", 105.23, ""),
				ob("IBM US Equity", "PX_CLOSE", "2009-05-19", 105.29, ""),
				ob("INDU Index", "PX_LAST", "2009-05-19", 17840.52, ""),
				ob("INDU Index", "PX_CLOSE", "2009-05-19", 17839.62, ""),
			},
		},
		{file: "datalicenseR/gethistory.out", program: "gethistory", want: gethistory},
		{file: "datalicenseR/getsnap.out", program: "getsnap", want: getsnap},
		{
			file:    "datalicenseR/getsnap.resp",
			program: "getsnap",
			want: []obs.Observation{
				ob("SPX Index", "ID_BB_UNIQUE", "2015-06-02", "EI09SPX", ""),
				ob("SPX Index", "ID_BB_GLOBAL", "2015-06-02", "BBG000H4FSM0", ""),
				ob("SMI Index", "ID_BB_UNIQUE", "2015-06-02", "EI09SMI", ""),
				ob("SMI Index", "ID_BB_GLOBAL", "2015-06-02", "BBG000J54XS0", ""),
				ob("CHFUSD Curncy", "ID_BB_UNIQUE", "2015-06-02", "IX383787-0", ""),
				ob("CHFUSD Curncy", "ID_BB_GLOBAL", "2015-06-02", "BBG0013HPJ07", ""),
			},
		},
		{file: "bbdl/current__response.out", program: "getdata", want: current},
		{file: "bbdl/historical_single__response.out", program: "gethistory", want: single},
		{file: "bbdl/historical_multi__response.out", program: "gethistory", want: multi},
		{file: "qf-lib-hapi-snippets/test_parser_block00.bbg", want: cta("PX_LAST", 0.859, 0.8697, 0.874, 0.8763), rejects: dots(2, 6, 13)},
		{file: "qf-lib-hapi-snippets/test_parser_block01.bbg", want: us(), rejects: dots(2, 6, 13)},
		// A security without data: one row with a blank date and values, which gives nothing.
		{file: "qf-lib-hapi-snippets/test_parser_block02.bbg", rejects: dots(2, 6, 10)},
		// Return code 10, but no header to date the record by.
		{file: "qf-lib-hapi-snippets/test_parser_block03.bbg", rejects: append(dots(2), wantReject{7, noDate}, wantReject{8, noDate}, wantReject{10, "not KEY=VALUE"})},
		// NFIELDS says 5 for 4 fields: the rows load by the field list.
		{file: "qf-lib-hapi-snippets/test_parser_block06.bbg", want: ohlc(false), rejects: dots(2, 9, 18)},
		{file: "qf-lib-hapi-snippets/test_parser_block07.bbg", want: ohlc(false), rejects: dots(2, 9, 18)},
		{file: "qf-lib-hapi-snippets/test_parser_block08.bbg", want: ohlc(true), rejects: dots(2, 10, 18)},
		// Snapshot rows without RUNDATE or TIMESTARTED cannot be dated.
		{file: "qf-lib-hapi-snippets/test_parser_block14.bbg", rejects: append(dots(2, 7),
			wantReject{10, noDate}, wantReject{11, noDate}, wantReject{12, noDate}, wantReject{13, noDate}, wantReject{14, noDate},
			wantReject{16, "not KEY=VALUE"})},
		{file: "qf-lib-hapi-snippets/test_parser_block15.bbg", rejects: []wantReject{{6, noDate}, {8, "not KEY=VALUE"}}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			r, got, rejects, err := readFixture(t, tt.file)
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			diffObs(t, got, tt.want)
			diffRejects(t, rejects, tt.rejects)
			if r.Program() != tt.program {
				t.Errorf("Program() = %q, want %q", r.Program(), tt.program)
			}
		})
	}
}

// find returns the observation of a security and field.
func find(t *testing.T, got []obs.Observation, sec, field string) obs.Observation {
	t.Helper()
	for _, o := range got {
		if o.Security == sec && o.Field == field {
			return o
		}
	}
	t.Fatalf("no observation for %s %s", sec, field)
	return obs.Observation{}
}

func TestFixtureFPRP00(t *testing.T) {
	_, got, rejects, err := readFixture(t, "bbdl/fprp00.out")
	if err != nil {
		t.Fatal(err)
	}
	diffRejects(t, rejects, nil)
	if len(got) != 5*101 {
		t.Errorf("got %d observations, want 5 securities x 101 fields", len(got))
	}
	// Counted in the file with awk: cells by kind, trailing spaces trimmed.
	flags := map[string]int{}
	kinds := map[obs.Kind]int{}
	for _, o := range got {
		flags[o.Flag]++
		kinds[o.Kind]++
		if o.Date.String() != "2024-07-16" {
			t.Errorf("%s %s: date %s, want RUNDATE 2024-07-16", o.Security, o.Field, o.Date)
		}
		if o.Kind == obs.Bulk && !json.Valid([]byte(o.Str)) {
			t.Errorf("%s %s: bulk value is not JSON: %s", o.Security, o.Field, o.Str)
		}
	}
	wantFlags := map[string]int{"": 203, "BLANK": 241, "N.A.": 41, "N.D.": 5, "FLD UNKNOWN": 15}
	for f, n := range wantFlags {
		if flags[f] != n {
			t.Errorf("flag %q: %d observations, want %d", f, flags[f], n)
		}
	}
	if kinds[obs.Bulk] != 4 {
		t.Errorf("%d bulk values, want 4", kinds[obs.Bulk])
	}

	spot := []obs.Observation{
		ob("CDX IG CDSI GEN 5Y Corp", "ID_BB_UNIQUE", "2024-07-16", "IX1379975-0", ""),
		ob("CDX IG CDSI GEN 5Y Corp", "MATURITY", "2024-07-16", "2029-06-20", ""),
		ob("CDX IG CDSI GEN 5Y Corp", "PX_LAST", "2024-07-16", 48.76796, ""),
		ob("CDX IG CDSI GEN 5Y Corp", "LONG_COMP_NAME", "2024-07-16", "CDX.NA.IG GEN    5 YR", ""),
		ob("CDX IG CDSI GEN 5Y Corp", "ALL_HOLDERS_PUBLIC_FILINGS", "2024-07-16", nil, "N.D."),
		ob("CDX IG CDSI GEN 5Y Corp", "CREATED_ON", "2024-07-16", nil, "FLD UNKNOWN"),
		ob("CDX IG CDSI GEN 5Y Corp", "THIRTYDAY_IMPVOL_100PT0PCTMNY_DF", "2024-07-16", nil, "FLD UNKNOWN"),
		ob("AAPL US Equity", "PX_LAST", "2024-07-16", 234.4, ""),
		ob("AAPL US Equity", "PX_CLOSE_DT", "2024-07-16", "2024-07-15", ""),
		ob("AAPL US Equity", "DVD_SH_LAST", "2024-07-16", 0.25, ""),
		ob("AAPL US Equity", "EARNINGS_CONF_CALL_TIME", "2024-07-16", "17:00", ""),
		ob("AAPL US Equity", "EARNINGS_CONF_CALL_PHONE_NUM", "2024-07-16", nil, "N.A."),
		ob("AAPL US Equity", "CENTRAL_INDEX_KEY_NUMBER", "2024-07-16", "0000320193", ""),
		ob("AAPL US Equity", "PAR_AMT", "2024-07-16", 0.00001, ""),
		ob("AAPL US Equity", "NET_DEBT", "2024-07-16", -38169, ""),
		ob("AAPL US Equity", "CALL_SCHEDULE", "2024-07-16", nil, "BLANK"),
		ob("AAPL US Equity", "ID_BB_COMPANY", "2024-07-16", 101695, ""),
		ob("BBG012HQMQH8 Corp", "PARSEKYABLE_DES", "2024-07-16", "BR420527     Corp", ""),
		ob("BBG012HQMQH8 Corp", "CALL_SCHEDULE", "2024-07-16",
			bulk(`[["2024-10-01",101.688],["2025-10-01",100.844],["2026-10-01",100]]`), ""),
		ob("BBG012HQMQH8 Corp", "DDIS_AMT_OUTSTANDING_BY_YR_BNDLN", "2024-07-16",
			bulk(`[[2026,1373],[2028,1000],[2030,1265],[2031,737]]`), ""),
		ob("BBG012HQMQH8 Corp", "ID_BB_COMPANY", "2024-07-16", 69466781, ""),
		ob("BBG012HQMQH8 Corp", "MTY_YEARS", "2024-07-16", 4.20808, ""),
		ob("91282CKY Govt", "AMT_ISSUED", "2024-07-16", 71403000000, ""),
		ob("TUU4 Comdty", "FUT_CTD_TICKER", "2024-07-16", "T 4.6250 06/30/26", ""),
		ob("TUU4 Comdty", "FUT_CNVS_FACTOR", "2024-07-16", 0.9774, ""),
		ob("TUU4 Comdty", "YAS_RISK", "2024-07-16", nil, "BLANK"),
	}
	for _, w := range spot {
		g := find(t, got, w.Security, w.Field)
		if !g.Equal(&w) {
			t.Errorf("got  %s\nwant %s", fmtObs(g), fmtObs(w))
		}
	}
	aapl := find(t, got, "AAPL US Equity", "DDIS_AMT_OUTSTANDING_BY_YR_BNDLN")
	var rows [][]float64
	if err := json.Unmarshal([]byte(aapl.Str), &rows); err != nil || len(rows) != 26 ||
		rows[0][0] != 2024 || rows[0][1] != 3563 || rows[25][0] != 2062 || rows[25][1] != 1250 {
		t.Errorf("AAPL DDIS_AMT_OUTSTANDING_BY_YR_BNDLN = %s (%v)", aapl.Str, err)
	}
}

func TestFixturesComprehensive(t *testing.T) {
	tests := []struct {
		file   string
		n      int // observations
		nfm    int64
		rcs    []obs.Observation
		checks []obs.Observation
	}{
		{
			file: "bbdl/comprehensive__response_bonds.out", n: 3*26 + 2,
			rcs: []obs.Observation{rc("BBG00INVALID", "2025-12-18", 10), rc("BBG00RESTRICT", "2025-12-18", 11)},
			checks: []obs.Observation{
				ob("GT3 Govt", "CPN", "2025-12-18", 3.5, ""),
				ob("GT3 Govt", "MATURITY", "2025-12-18", "2028-12-15", ""),
				ob("SNAP 6 7/8 03/01/33", "CALL_SCHEDULE", "2025-12-18",
					bulk(`[["2028-03-01",103.438],["2029-03-01",101.719],["2030-03-01",100]]`), ""),
				ob("BBG01YRY9GP8", "CPN", "2025-12-18", 11.7501, ""),
				ob("BBG01YRY9GP8", "INDUSTRY_SECTOR", "2025-12-18", "Consumer, Cyclical", ""),
			},
		},
		{
			// NFIELDS says 36 for a list of 35 fields, and the rows hold 35 values.
			file: "bbdl/comprehensive__response_converts.out", n: 4*35 + 2, nfm: 4,
			rcs: []obs.Observation{rc("KYN52932", "2025-12-18", 10), rc("KYN112636", "2025-12-18", 10)},
			checks: []obs.Observation{
				ob("BBG01VRLWHP4", "SOFT_CALL_SCHEDULE", "2025-12-18", bulk(`[["2031-04-01",100]]`), ""),
				ob("BBG01VRLWHP4", "SOFT_CALL_TRIGGER", "2025-12-18", 130, ""),
				ob("BBG01VRLWHP4", "SOFT_CALL_OUT_OF_DAY_TYP", "2025-12-18", "Consecutive business", ""),
				ob("BBG01QD4Q4C8", "PUT_SCHEDULE", "2025-12-18", bulk(`[["2027-11-05",100]]`), ""),
				ob("BBG01QD4Q4C8", "SOFT_CALL_TRIGGER", "2025-12-18", nil, "N.A."),
			},
		},
		{
			file: "bbdl/comprehensive__response_equity.out", n: 4*23 + 1,
			rcs: []obs.Observation{rc("STRD US Equity", "2025-12-18", 10)},
			checks: []obs.Observation{
				ob("AAPL US Equity", "DVD_EX_DT", "2025-12-18", "2025-11-15", ""),
				ob("4062 JP Equity", "LOW_52WEEK", "2025-12-18", nil, "N.A."),
				ob("4062 JP Equity", "DVD_SH_LAST", "2025-12-18", 10, ""),
				ob("2376 TT Equity", "LONG_COMP_NAME", "2025-12-18", "Gigabyte Technology Co Ltd", ""),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			r, got, rejects, err := readFixture(t, tt.file)
			if err != nil {
				t.Fatal(err)
			}
			diffRejects(t, rejects, nil)
			if len(got) != tt.n {
				t.Errorf("got %d observations, want %d", len(got), tt.n)
			}
			if s := r.Stats(); s.NFieldsMismatch != tt.nfm {
				t.Errorf("NFieldsMismatch = %d, want %d", s.NFieldsMismatch, tt.nfm)
			}
			var gotRC []obs.Observation
			for _, o := range got {
				if o.Field == "" {
					gotRC = append(gotRC, o)
				}
			}
			diffObs(t, gotRC, tt.rcs)
			for _, w := range tt.checks {
				g := find(t, got, w.Security, w.Field)
				if !g.Equal(&w) {
					t.Errorf("got  %s\nwant %s", fmtObs(g), fmtObs(w))
				}
			}
		})
	}
}

func TestFixturesHistoryReplies(t *testing.T) {
	_, got, rejects, err := readFixture(t, "datalicenseR/historyReply1.out")
	if err != nil {
		t.Fatal(err)
	}
	diffRejects(t, rejects, nil)
	if len(got) != 4*15 {
		t.Errorf("historyReply1: %d observations, want 4 blocks x 15 dates", len(got))
	}
	want := ob("GX1 A:00_0_R Index", "PX_OPEN", "2015-08-06", 11607.5, "")
	if g := find(t, got, want.Security, want.Field); g.Date.String() != "2015-08-03" || g.Num != 11290 {
		t.Errorf("first GX1 PX_OPEN = %s", fmtObs(g))
	}
	if !got[3].Equal(&want) {
		t.Errorf("got[3] = %s, want %s", fmtObs(got[3]), fmtObs(want))
	}

	_, got, rejects, err = readFixture(t, "datalicenseR/historyReply2.out")
	if err != nil {
		t.Fatal(err)
	}
	diffRejects(t, rejects, nil)
	// Return code 10 on the END lines of both GX1 blocks: one record, dated by RUNDATE.
	if len(got) != 1+2*15 {
		t.Errorf("historyReply2: %d observations, want 1 + 2 x 15", len(got))
	}
	diffObs(t, got[:1], []obs.Observation{rc("GX1 A_00_0_R Index", "2015-08-25", 10)})
	last := ob("VG1 A:00_0_R Index", "PX_LAST", "2015-08-21", 3256, "")
	if !got[len(got)-1].Equal(&last) {
		t.Errorf("last = %s, want %s", fmtObs(got[len(got)-1]), fmtObs(last))
	}
}

// TestFixturesAll reads every fixture (requests and licenses included): no panic, and either
// success or an *Error; bulk values are valid JSON.
func TestFixturesAll(t *testing.T) {
	err := filepath.WalkDir(fixtures, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		t.Run(strings.TrimPrefix(path, fixtures+"/"), func(t *testing.T) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			_, got, _, err := parseAll(t, b)
			var e *Error
			if err != nil && !errors.As(err, &e) {
				t.Fatalf("err = %v (%T), want nil or *Error", err, err)
			}
			for _, o := range got {
				if o.Kind == obs.Bulk && !json.Valid([]byte(o.Str)) {
					t.Errorf("%s %s: invalid bulk JSON %s", o.Security, o.Field, o.Str)
				}
			}
			t.Logf("%d observations, err %v", len(got), err)
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
