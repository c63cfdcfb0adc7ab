package simdata

import (
	"maps"
	"math"
	"slices"
	"time"

	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/obs"
)

// How the simulated data honours a request's options (events.Options), so that a test can see
// each option change what it should:
//
//   - periodicity keeps the last weekday of each week, month, quarter or year in the range;
//   - currency converts prices (not volumes nor share counts) from USD at USDRates, or at a
//     rate derived from the code for a currency not listed there;
//   - a pricing source moves prices by up to ±20 bp, one offset per source;
//   - overrides move every number of the security by up to ±1%, one offset per set of
//     overrides (the universe's and the security's own together).

// USDRates are the simulator's fixed exchange rates: units of each currency per US dollar.
var USDRates = map[string]float64{
	"USD": 1, "EUR": 0.92, "GBP": 0.79, "JPY": 150, "CHF": 0.88, "CAD": 1.36, "AUD": 1.52,
	"HKD": 7.8, "SEK": 10.6, "NOK": 10.8, "DKK": 6.9, "SGD": 1.34, "CNY": 7.2, "INR": 83,
}

// currencyRate is currency's rate per USD (1 for none).
func currencyRate(currency string) float64 {
	if currency == "" {
		return 1
	}
	if r, ok := USDRates[currency]; ok {
		return r
	}
	return 0.5 + float64(hashString(currency)%1500)/1000 // 0.5 to 2, fixed per code
}

// offset is a multiplier 1 ± span derived from s.
func offset(s string, span float64) float64 {
	return 1 + span*(2*unit(mix(hashString(s)))-1)
}

// priceRole reports whether r is quoted in a currency.
func priceRole(r role) bool {
	switch r {
	case roleClose, rolePrevClose, roleOpen, roleHigh, roleLow, roleBid, roleAsk, roleMktCap, roleWalk:
		return true
	}
	return false
}

// factors are the multipliers a request's options put on one security's numbers.
type factors struct {
	price float64 // prices: currency and pricing source
	all   float64 // every number: overrides
}

func optionFactors(o *events.Options, security string) factors {
	f := factors{price: currencyRate(o.Currency), all: 1}
	if o.PricingSource != "" {
		f.price *= offset("source "+o.PricingSource, 0.002)
	}
	ov := maps.Clone(o.Overrides)
	if own := o.SecurityOverrides[security]; len(own) > 0 {
		if ov == nil {
			ov = map[string]string{}
		}
		maps.Copy(ov, own)
	}
	if len(ov) > 0 {
		key := "overrides"
		for _, k := range slices.Sorted(maps.Keys(ov)) {
			key += "\x00" + k + "=" + ov[k]
		}
		f.all = offset(key, 0.01)
	}
	return f
}

// apply returns units (1/10000) of a number of role r with the factors applied.
func (f factors) apply(r role, units int64) int64 {
	m := f.all
	if priceRole(r) {
		m *= f.price
	}
	if m == 1 {
		return units
	}
	return max(int64(math.Round(float64(units)*m)), 1)
}

// periodEnds keeps the last of dates (sorted weekdays) in each period of periodicity.
func periodEnds(dates []obs.Date, periodicity string) []obs.Date {
	if periodicity == "" || periodicity == "daily" {
		return dates
	}
	key := func(d obs.Date) int {
		t := d.Time()
		switch periodicity {
		case "weekly":
			y, w := t.ISOWeek()
			return y*100 + w
		case "monthly":
			return t.Year()*100 + int(t.Month())
		case "quarterly":
			return t.Year()*10 + int(t.Month()-time.January)/3
		}
		return t.Year()
	}
	out := dates[:0:0]
	for i, d := range dates {
		if i+1 == len(dates) || key(dates[i+1]) != key(d) {
			out = append(out, d)
		}
	}
	return out
}
