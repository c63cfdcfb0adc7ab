package simdata

import (
	"math"
	"strings"

	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/obs"
)

// Numeric cells of market data follow random walks, so that a history looks like one: each
// security has a price path (the log of its close is a random walk over trading days, daily
// log-returns with a standard deviation of 1% to 2%, 0.3% to 0.7% for currencies), and its
// price fields are drawn around it consistently:
//
//   - PX_LAST, PX_CLOSE, PX_MID, PX_SETTLE and any other PX_ mnemonic: the close;
//   - PX_OPEN: the previous close moved by a small overnight gap;
//   - PX_HIGH, PX_LOW: above the higher and below the lower of open and close, so that
//     low <= open, close <= high;
//   - PX_BID, PX_ASK: the close less and plus half a spread of 2 to 10 basis points;
//   - PX_CLOSE_1D, PX_YEST_CLOSE: the previous trading day's close;
//   - a mnemonic containing VOLUME: a whole number of shares around the security's usual volume,
//     higher on days the price moved more;
//   - EQY_SH_OUT: shares outstanding (millions), a slow walk; CUR_MKT_CAP: close × EQY_SH_OUT;
//   - any other number: a walk of its own per (security, field), of 1% a day.
//
// The level of a walk depends on the security (and field) only, its moves on the seed as well:
// another seed or a revision (RevisedSeed) changes every value but keeps each security's scale.
// The yellow key sets the scale: Equity 20 to 400, Index 500 to 30,000, Curncy 0.5 to 2, other
// keys 5 to 2,000.
//
// A value at any date is computed directly (no state carried from date to date), in
// O(log walkBlock) hashes: the walk is built by midpoint displacement (a Brownian bridge) over
// blocks of walkBlock trading days whose ends are drawn independently around the security's
// level, which keeps every security within a plausible range over any span of years. Weekend
// dates take the Friday's values. Actions' numbers (CP_GROSS_AMT, ...) keep the uniform draw of
// cells.go: they are not market data.

// role is what a numeric field means to the price model.
type role uint8

const (
	roleNone role = iota // not a number
	roleWalk             // a walk of its own
	roleClose
	rolePrevClose
	roleOpen
	roleHigh
	roleLow
	roleBid
	roleAsk
	roleVolume
	roleShares
	roleMktCap
)

func roleOf(field string) role {
	switch field {
	case "PX_OPEN":
		return roleOpen
	case "PX_HIGH":
		return roleHigh
	case "PX_LOW":
		return roleLow
	case "PX_BID":
		return roleBid
	case "PX_ASK":
		return roleAsk
	case "PX_CLOSE_1D", "PX_YEST_CLOSE":
		return rolePrevClose
	case "EQY_SH_OUT":
		return roleShares
	case "CUR_MKT_CAP":
		return roleMktCap
	}
	switch {
	case strings.Contains(field, "VOLUME"):
		return roleVolume
	case strings.HasPrefix(field, "PX_"):
		return roleClose
	}
	return roleWalk
}

// Walk construction.
const (
	walkLevels = 12
	walkBlock  = 1 << walkLevels // trading days between independently drawn anchors (~16 years)
	anchorSD   = 0.25            // log-sd of an anchor around the level
)

// halfSqrt[l] is sqrt(n)/2 for the interval length n = walkBlock>>l: the standard deviation, in
// daily standard deviations, of a bridge's midpoint over n days.
var halfSqrt = func() (t [walkLevels + 1]float64) {
	for l := range t {
		t[l] = math.Sqrt(float64(int64(walkBlock)>>l)) / 2
	}
	return t
}()

// Salts separating the draws of the price model from each other and from cells.
var (
	priceSalt  = hashString("#price")
	anchorSalt = hashString("#anchor")
	gapSalt    = hashString("#gap")
	highSalt   = hashString("#high")
	lowSalt    = hashString("#low")
	volSalt    = hashString("#volume")
	sharesSalt = hashString("#shares")
	levelSalt  = hashString("#level")
)

// gauss maps a hash to an approximately standard normal number: the sum of four uniforms
// (Irwin-Hall), scaled to variance 1. Its tails stop at ±3.46, which keeps out absurd jumps.
func gauss(h uint64) float64 {
	s := float64(h&0xffff) + float64(h>>16&0xffff) + float64(h>>32&0xffff) + float64(h>>48)
	return (s/65536 - 2) * math.Sqrt(3)
}

// unit maps a hash to [0, 1).
func unit(h uint64) float64 { return float64(h>>11) / (1 << 53) }

// tradingDay numbers weekdays consecutively; a Saturday or Sunday has its Friday's number.
// Day 4 (1970-01-05) was a Monday.
func tradingDay(d obs.Date) int64 {
	x := int64(d) - 4
	w, r := floorDiv(x, 7)
	return w*5 + min(r, 4)
}

func floorDiv(a, b int64) (q, r int64) {
	q, r = a/b, a%b
	if r < 0 {
		q, r = q-1, r+b
	}
	return q, r
}

// walker evaluates one walk (log-values) at trading days. It remembers the path of its last
// evaluation, so that nearby days cost a few hashes instead of walkLevels; the value of a day
// does not depend on what was evaluated before.
type walker struct {
	key       uint64  // the moves' hash
	anchorKey uint64  // the anchors' hash
	mu, sigma float64 // level (log) and daily sd
	block     int64
	valid     bool
	depth     int
	lo, hi    [walkLevels + 1]int32
	vlo, vhi  [walkLevels + 1]float64
}

func (w *walker) reset(key, anchorKey uint64, mu, sigma float64) {
	*w = walker{key: key, anchorKey: anchorKey, mu: mu, sigma: sigma}
}

func (w *walker) anchor(b int64) float64 {
	return w.mu + anchorSD*gauss(mix(w.anchorKey+uint64(b)*golden))
}

// at returns the walk's value on trading day i.
func (w *walker) at(i int64) float64 {
	b, rr := floorDiv(i, walkBlock)
	r := int32(rr)
	if !w.valid || b != w.block {
		w.block, w.valid, w.depth = b, true, 0
		w.lo[0], w.hi[0] = 0, walkBlock
		w.vlo[0], w.vhi[0] = w.anchor(b), w.anchor(b+1)
	}
	l := w.depth
	for l > 0 && (r < w.lo[l] || r > w.hi[l]) {
		l--
	}
	for {
		lo, hi := w.lo[l], w.hi[l]
		if r == lo {
			w.depth = l
			return w.vlo[l]
		}
		if r == hi {
			w.depth = l
			return w.vhi[l]
		}
		mid := (lo + hi) / 2
		v := (w.vlo[l]+w.vhi[l])/2 + w.sigma*halfSqrt[l]*gauss(mix(w.key+uint64(b*walkBlock+int64(mid))*golden))
		vlo, vhi := w.vlo[l], w.vhi[l]
		l++
		if r < mid {
			w.lo[l], w.hi[l], w.vlo[l], w.vhi[l] = lo, mid, vlo, v
		} else {
			w.lo[l], w.hi[l], w.vlo[l], w.vhi[l] = mid, hi, v, vhi
		}
	}
}

// day is one trading day of a security's prices.
type day struct {
	i                                      int64
	prevClose, open, high, low, close, vol float64
}

// prices is the price model of one security under one seed.
type prices struct {
	seed, secHash uint64
	moveKey       uint64
	sigma         float64
	volLevel      float64 // log of the usual volume
	closes        walker
	shares        walker
	haveShares    bool
	last          day
	haveLast      bool
	win           *dayWindow // nil: remember the last day only
}

// dayWindow remembers the days of a range of trading days for the security being written, so
// that each day is computed once whatever order the fields and dates are written in.
type dayWindow struct {
	base  int64
	days  []day
	stamp []uint32 // days[k] is valid when stamp[k] == gen
	gen   uint32
}

// scale returns the range of a security's price level by its yellow key.
func scale(security string) (lo, hi, sigmaLo, sigmaHi float64) {
	switch {
	case strings.HasSuffix(security, " Equity"):
		return 20, 400, 0.01, 0.02
	case strings.HasSuffix(security, " Index"):
		return 500, 30000, 0.008, 0.015
	case strings.HasSuffix(security, " Curncy"):
		return 0.5, 2, 0.003, 0.007
	}
	return 5, 2000, 0.01, 0.02
}

func logUniform(h uint64, lo, hi float64) float64 {
	return math.Log(lo) + unit(h)*(math.Log(hi)-math.Log(lo))
}

func (p *prices) reset(seed uint64, security string, secHash uint64) {
	lo, hi, slo, shi := scale(security)
	lh := mix(secHash ^ levelSalt)
	win := p.win
	if win != nil {
		if win.gen++; win.gen == 0 { // wrapped: forget every stamp
			clear(win.stamp)
			win.gen = 1
		}
	}
	*p = prices{seed: seed, secHash: secHash, moveKey: pairHash(seed, secHash, priceSalt), win: win}
	p.sigma = slo + unit(mix(lh+1))*(shi-slo)
	p.volLevel = logUniform(mix(lh+2), 2e5, 5e7)
	p.closes.reset(p.moveKey, pairHash(seed, secHash, anchorSalt), logUniform(lh, lo, hi), p.sigma)
}

// dayAt returns the prices of trading day i, remembering the last one: the fields of a row ask
// for the same day in turn.
func (p *prices) dayAt(i int64) *day {
	if w := p.win; w != nil && i >= w.base && i-w.base < int64(len(w.days)) {
		k := i - w.base
		if w.stamp[k] != w.gen {
			w.days[k], w.stamp[k] = p.compute(i), w.gen
		}
		return &w.days[k]
	}
	if !p.haveLast || p.last.i != i {
		p.last, p.haveLast = p.compute(i), true
	}
	return &p.last
}

func (p *prices) compute(i int64) day {
	prev, cur := p.closes.at(i-1), p.closes.at(i)
	dh := p.moveKey + uint64(i)*golden
	gap := 0.3 * p.sigma * gauss(mix(dh^gapSalt))
	open := prev + gap
	d := day{i: i, prevClose: math.Exp(prev), open: math.Exp(open), close: math.Exp(cur)}
	d.high = math.Exp(max(open, cur) + 0.5*p.sigma*math.Abs(gauss(mix(dh^highSalt))))
	d.low = math.Exp(min(open, cur) - 0.5*p.sigma*math.Abs(gauss(mix(dh^lowSalt))))
	move := math.Abs(cur-prev) / p.sigma // in daily standard deviations
	d.vol = math.Round(math.Exp(p.volLevel + 0.3*gauss(mix(dh^volSalt)) + 0.25*move))
	return d
}

func (p *prices) sharesOut(i int64) float64 {
	if !p.haveShares {
		lh := mix(p.secHash ^ sharesSalt)
		p.shares.reset(pairHash(p.seed, p.secHash, sharesSalt), mix(p.moveKey^sharesSalt), logUniform(lh, 50, 10000), 0.0005)
		p.haveShares = true
	}
	return math.Exp(p.shares.at(i))
}

// fieldWalk returns the walker of a field with a walk of its own.
func fieldWalk(w *walker, seed, secHash, fieldHash uint64) {
	lh := mix(secHash ^ fieldHash ^ levelSalt)
	base := pairHash(seed, secHash, fieldHash)
	w.reset(mix(base^priceSalt), mix(base^anchorSalt), logUniform(lh, 1, 5000), 0.01)
}

// units returns the value of a numeric field of role r on date d, in units of 1/10000 (at
// least 1). fw is the field's own walker (roleWalk only).
func (p *prices) units(r role, fw *walker, d obs.Date) int64 {
	i := tradingDay(d)
	var v float64
	switch r {
	case roleWalk:
		v = math.Exp(fw.at(i))
	case roleShares:
		v = p.sharesOut(i)
	default:
		dy := p.dayAt(i)
		switch r {
		case roleClose:
			v = dy.close
		case rolePrevClose:
			v = dy.prevClose
		case roleOpen:
			v = dy.open
		case roleHigh:
			v = dy.high
		case roleLow:
			v = dy.low
		case roleBid, roleAsk:
			half := (1 + 4*unit(mix(p.moveKey+uint64(i)*golden))) / 10000 // 1 to 5 bp: a spread of 2 to 10
			if r == roleBid {
				half = -half
			}
			v = dy.close * (1 + half)
		case roleVolume:
			v = dy.vol
		case roleMktCap:
			v = dy.close * p.sharesOut(i)
		}
	}
	return max(int64(math.Round(v*10000)), 1)
}

// numbers holds the price model of the security being written and the walkers of its fields.
type numbers struct {
	roles []role
	p     prices
	walks []walker
	opts  *events.Options // the request's options (nil: none)
	f     factors         // what they do to the security being written
}

// newNumbers prepares the numeric fields among fields (of kinds kinds) for the dates, in order,
// a file holds: their trading days are remembered per security when any field is a price.
func newNumbers(fields []string, kinds []cellKind, dates []obs.Date) *numbers {
	n := &numbers{roles: make([]role, len(fields)), walks: make([]walker, len(fields))}
	prices := false
	for j, f := range fields {
		if kinds[j] == kindNumber {
			n.roles[j] = roleOf(f)
			prices = prices || n.roles[j] != roleWalk && n.roles[j] != roleShares
		}
	}
	if prices && len(dates) > 1 {
		base := tradingDay(dates[0])
		size := tradingDay(dates[len(dates)-1]) - base + 1
		n.p.win = &dayWindow{base: base, days: make([]day, size), stamp: make([]uint32, size)}
	}
	return n
}

// setSecurity prepares the values of security (hash secHash) with fieldHash the fields' hashes.
func (n *numbers) setSecurity(seed uint64, security string, secHash uint64, fieldHash []uint64) {
	n.p.reset(seed, security, secHash)
	n.f = factors{price: 1, all: 1}
	if n.opts != nil {
		n.f = optionFactors(n.opts, security)
	}
	for j, r := range n.roles {
		if r == roleWalk {
			fieldWalk(&n.walks[j], seed, secHash, fieldHash[j])
		}
	}
}

// units returns field j's value on d, in units of 1/10000.
func (n *numbers) units(j int, d obs.Date) int64 {
	return n.f.apply(n.roles[j], n.p.units(n.roles[j], &n.walks[j], d))
}
