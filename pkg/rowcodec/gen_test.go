package rowcodec

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/marketpipe/marketpipe/pkg/obs"
)

// historyObs returns gethistory-like observations in reply-file order (horizontal: security,
// then date, then field): nSec securities × 5 price fields × nDates business days, prices
// as 2-decimal random walks, volumes as integers, about 3% N.A.
func historyObs(nSec, nDates int, seed uint64) []obs.Observation {
	r := rand.New(rand.NewPCG(seed, 1))
	fields := []string{"PX_OPEN", "PX_HIGH", "PX_LOW", "PX_LAST", "PX_VOLUME"}
	var dates []obs.Date
	for d := obs.MakeDate(2025, 1, 2); len(dates) < nDates; d++ {
		if wd := d.Time().Weekday(); wd != time.Saturday && wd != time.Sunday {
			dates = append(dates, d)
		}
	}
	round := func(x float64) float64 { return math.Round(x*100) / 100 }
	out := make([]obs.Observation, 0, nSec*nDates*len(fields))
	for s := range nSec {
		sec := fmt.Sprintf("T%03d US Equity", s)
		last := 20 + r.Float64()*480
		for _, d := range dates {
			open := last
			last *= 1 + r.NormFloat64()*0.015
			hi := max(open, last) * (1 + r.Float64()*0.01)
			lo := min(open, last) * (1 - r.Float64()*0.01)
			vals := []float64{round(open), round(hi), round(lo), round(last), math.Round(1e6 + r.Float64()*4e7)}
			for i, f := range fields {
				o := obs.Observation{Security: sec, Field: f, Date: d, Kind: obs.Number, Num: vals[i]}
				if r.IntN(100) < 3 {
					o.Kind, o.Num, o.Flag = obs.Null, 0, "N.A."
				}
				out = append(out, o)
			}
		}
	}
	return out
}
