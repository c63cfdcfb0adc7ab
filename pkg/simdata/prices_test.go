package simdata

import (
	"math"
	"strconv"
	"testing"

	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/obs"
)

// TestPricesBelievable checks the price model over 100 securities and five years: OHLC
// consistent, daily log-returns of 1% to 2% (sd) with no jump beyond 10%, whole positive
// volumes, bid below ask, and levels that stay plausible.
func TestPricesBelievable(t *testing.T) {
	fields := []string{"PX_OPEN", "PX_HIGH", "PX_LOW", "PX_LAST", "PX_VOLUME", "PX_BID", "PX_ASK",
		"PX_CLOSE_1D", "EQY_SH_OUT", "CUR_MKT_CAP"}
	s := events.Spec{Program: events.GetHistory, Fields: fields, Start: "2021-01-01", End: "2025-12-31"}
	for i := range 100 {
		s.Securities = append(s.Securities, "SEC"+strconv.Itoa(i)+" US Equity")
	}
	type key struct {
		sec string
		d   obs.Date
	}
	rows := map[key]map[string]float64{}
	if err := Observations(s, jan5, 11, func(o *obs.Observation) error {
		if o.Kind != obs.Number {
			return nil
		}
		k := key{o.Security, o.Date}
		if rows[k] == nil {
			rows[k] = map[string]float64{}
		}
		rows[k][o.Field] = o.Num
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	dates, _ := Dates(s, jan5)
	var checked int
	for _, sec := range s.Securities {
		var rets []float64
		for x, d := range dates {
			r := rows[key{sec, d}]
			open, hasO := r["PX_OPEN"]
			high, hasH := r["PX_HIGH"]
			low, hasL := r["PX_LOW"]
			last, hasC := r["PX_LAST"]
			if hasO && hasH && hasL && hasC {
				checked++
				if low > open || low > last || high < open || high < last || low > high {
					t.Fatalf("%s %s: open %v high %v low %v close %v", sec, d, open, high, low, last)
				}
			}
			if hasC && (last < 1 || last > 5000) {
				t.Errorf("%s %s: close %v, far from an equity's range", sec, d, last)
			}
			if bid, ok := r["PX_BID"]; ok && hasC && !(bid < last) {
				t.Errorf("%s %s: bid %v not below close %v", sec, d, bid, last)
			}
			if ask, ok := r["PX_ASK"]; ok && hasC && !(ask > last) {
				t.Errorf("%s %s: ask %v not above close %v", sec, d, ask, last)
			}
			bid, hasB := r["PX_BID"]
			if ask, ok := r["PX_ASK"]; ok && hasB && hasC {
				if bp := (ask - bid) / last * 1e4; bp < 1.5 || bp > 10.5 { // 2 to 10 bp, give or take rounding
					t.Errorf("%s %s: bid %v ask %v: a spread of %.1f bp", sec, d, bid, ask, bp)
				}
			}
			if v, ok := r["PX_VOLUME"]; ok && (v != math.Trunc(v) || v < 1e4 || v > 1e9) {
				t.Errorf("%s %s: volume %v", sec, d, v)
			}
			if x == 0 {
				continue
			}
			prev, hasP := rows[key{sec, dates[x-1]}]["PX_LAST"]
			if c1, ok := r["PX_CLOSE_1D"]; ok && hasP && c1 != prev {
				t.Errorf("%s %s: PX_CLOSE_1D %v, previous close %v", sec, d, c1, prev)
			}
			if hasP && hasC {
				ret := math.Log(last / prev)
				if math.Abs(ret) > 0.10 {
					t.Errorf("%s %s: close %v after %v, a jump of %.1f%%", sec, d, last, prev, 100*ret)
				}
				rets = append(rets, ret)
			}
		}
		var sum, sq float64
		for _, r := range rets {
			sum += r
			sq += r * r
		}
		n := float64(len(rets))
		if sd := math.Sqrt(sq/n - (sum/n)*(sum/n)); sd < 0.008 || sd > 0.025 {
			t.Errorf("%s: daily log-return sd %.4f, want 1%% to 2%%", sec, sd)
		}
	}
	if checked < 100*len(dates)*8/10 {
		t.Errorf("only %d complete OHLC rows checked", checked)
	}
}

// TestValueIsObservations checks that Value, which computes one cell alone, agrees with
// Observations, which walks the dates in turn, and that a revision changes the values.
func TestValueIsObservations(t *testing.T) {
	s := events.Spec{Program: events.GetHistory, Securities: []string{"IBM US Equity", "SPX Index", "EURUSD Curncy"},
		Fields: []string{"PX_LAST", "PX_HIGH", "PX_VOLUME", "CUR_MKT_CAP", "SOME_RATIO"}, Start: "1999-12-20", End: "2000-01-20"}
	var n, same int
	if err := Observations(s, jan5, 5, func(o *obs.Observation) error {
		v, ok := Value(5, o.Security, o.Field, o.Date)
		if ok != (o.Kind == obs.Number) || ok && v != o.Num {
			t.Fatalf("%s %s %s: Value %v, %v; Observations %+v", o.Security, o.Field, o.Date, v, ok, *o)
		}
		if r, ok2 := Value(RevisedSeed(5, 1), o.Security, o.Field, o.Date); ok && ok2 {
			n++
			if r == v {
				same++
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n == 0 || same > 0 {
		t.Errorf("revision 1 left %d of %d values unchanged", same, n)
	}
}

func TestTradingDay(t *testing.T) {
	fri, sat, sun, mon := obs.MakeDate(2026, 1, 2), obs.MakeDate(2026, 1, 3), obs.MakeDate(2026, 1, 4), jan5
	if tradingDay(sat) != tradingDay(fri) || tradingDay(sun) != tradingDay(fri) || tradingDay(mon) != tradingDay(fri)+1 {
		t.Errorf("trading days: fri %d sat %d sun %d mon %d", tradingDay(fri), tradingDay(sat), tradingDay(sun), tradingDay(mon))
	}
	old := obs.MakeDate(1950, 3, 6) // a Monday, before day 0
	if tradingDay(old+1) != tradingDay(old)+1 || tradingDay(old-1) != tradingDay(old)-1 {
		t.Errorf("trading days before 1970 are not consecutive")
	}
}
