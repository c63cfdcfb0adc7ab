package simdata

import (
	"slices"
	"strconv"
	"strings"

	"github.com/marketpipe/marketpipe/pkg/obs"
)

// GetActions is the corporate-actions program. pkg/events names only getdata and gethistory, so
// the constant lives here (and as vendor.ProgramGetActions); an events.Spec with this Program is
// an actions spec.
//
// An actions spec asks for the corporate actions of each security in a date range:
//
//   - Securities: the universe, as for the other programs;
//   - Start, End (YYYY-MM-DD, required): the range of the actions' dates;
//   - Fields (optional): the action mnemonics wanted, among ActionMnemonics. Other mnemonics
//     are not corporate actions and select nothing; when Fields selects no action kind at all
//     (empty, or only other mnemonics), every kind is given. Fields are listed in the file's
//     START-OF-FIELDS section, which the reader does not use for getactions rows.
//
// The simulated vendor gives a security with return code 0 an action on about one weekday in
// actionOneIn of the range, of a kind drawn from ActionMnemonics (skipped when Fields leaves the
// kind out). Everything about an action depends only on (seed, security, date), so it is the same
// in every request whose range holds the date. An action is dated by the weekday it was drawn
// for: its effective date, or, for about one in eight (no effective date yet), its announce date
// (the reader dates an action by its effective date, else its announce date). Its row carries
// the 21 fixed columns, then FIELD|VALUE pairs whose cells follow the usual kinds by mnemonic
// (CP_RECORD_DT a date, CP_GROSS_AMT a number, CP_TERMS_LIST a bulk cell, ...; markers
// included). A security with a non-zero ReturnCode gets one row: 4 columns for return codes
// 300 and 400 ("RC300 X Equity"), as real getactions files write them, 21 columns otherwise.
// A security without actions in the range has no row at all.
const GetActions = "getactions"

// actionOneIn sets how often a security has an action: on one weekday in actionOneIn.
const actionOneIn = 9

// actionKind is an action mnemonic and the fields of its FIELD|VALUE pairs, in row order.
type actionKind struct {
	mnemonic    string
	description string
	fields      []string
}

var actionKinds = [...]actionKind{
	{"DVD_CASH", "Cash Dividend", []string{"CP_RECORD_DT", "CP_PAY_DT", "CP_FREQ", "CP_GROSS_AMT", "CP_DVD_CRNCY"}},
	{"DVD_STOCK", "Stock Dividend", []string{"CP_RECORD_DT", "CP_PAY_DT", "CP_RATIO"}},
	{"STOCK_SPLT", "Stock Split", []string{"CP_RATIO", "CP_ADJ", "CP_ADJ_DT", "CP_TERMS_LIST"}},
	{"SPIN", "Spin-Off", []string{"CP_SPINOFF_TICKER", "CP_SPINOFF_NAME", "CP_RATIO", "CP_ANNOUNCE_TIME"}},
	{"ACQUIS", "Acquisition", []string{"CP_ACQUIRER_NAME", "CP_CASH", "CP_ELECTION_SCHEDULE", "CP_STATUS_DES"}},
}

// ActionMnemonics returns the corporate-action mnemonics the simulated vendor gives, which an
// actions spec's Fields may choose from.
func ActionMnemonics() []string {
	out := make([]string, len(actionKinds))
	for i, k := range actionKinds {
		out[i] = k.mnemonic
	}
	return out
}

// ActionFields returns the fields of an action's FIELD|VALUE pairs, and false for a mnemonic
// ActionMnemonics does not list. The reader names their observations "<MNEMONIC>.<FIELD>",
// besides "<MNEMONIC>.ACTION_ID" and "<MNEMONIC>.FLAG".
func ActionFields(mnemonic string) ([]string, bool) {
	for _, k := range actionKinds {
		if k.mnemonic == mnemonic {
			return slices.Clone(k.fields), true
		}
	}
	return nil, false
}

// Return codes that getactions rows write with only 4 columns.
const (
	ActionsRC300 = 300
	ActionsRC400 = 400
)

// actionPlan is the precomputed part of an actions spec.
type actionPlan struct {
	wanted     [len(actionKinds)]bool
	fieldHash  [len(actionKinds)][]uint64 // hash of "<MNEMONIC>.<FIELD>"
	fieldKinds [len(actionKinds)][]cellKind
	names      [len(actionKinds)][]string // "<MNEMONIC>.<FIELD>"
	idName     [len(actionKinds)]string
	flagName   [len(actionKinds)]string
}

// actionsSalt separates the draw of actions from the cells of any field.
var actionsSalt = hashString("#corporate-actions")

func newActionPlan(fields []string) *actionPlan {
	ap := &actionPlan{}
	selected := false
	for _, f := range fields {
		if i := slices.IndexFunc(actionKinds[:], func(k actionKind) bool { return k.mnemonic == f }); i >= 0 {
			ap.wanted[i], selected = true, true
		}
	}
	for i, k := range actionKinds {
		if !selected {
			ap.wanted[i] = true
		}
		ap.idName[i] = k.mnemonic + ".ACTION_ID"
		ap.flagName[i] = k.mnemonic + ".FLAG"
		for _, f := range k.fields {
			name := k.mnemonic + "." + f
			ap.names[i] = append(ap.names[i], name)
			ap.fieldHash[i] = append(ap.fieldHash[i], hashString(name))
			ap.fieldKinds[i] = append(ap.fieldKinds[i], kindOf(f))
		}
	}
	return ap
}

// action is one drawn corporate action.
type action struct {
	kind        int
	id          int64
	flag        byte
	announce    obs.Date
	noEffective bool
	amend       obs.Date
	hasAmend    bool
}

// drawAction returns the action security (hash secHash) has on weekday d, if any.
func drawAction(seed, secHash uint64, d obs.Date) (action, bool) {
	h := cellHash(pairHash(seed, secHash, actionsSalt), d)
	if h%actionOneIn != 0 {
		return action{}, false
	}
	a := action{
		kind: int((h >> 8) % uint64(len(actionKinds))),
		id:   100_000_000 + int64((h>>12)%900_000_000),
		flag: 'N',
	}
	switch (h >> 44) % 8 {
	case 0:
		a.flag = 'U'
	case 1:
		a.flag = 'D'
	}
	a.noEffective = (h>>48)%8 == 0
	if a.noEffective {
		a.announce = d
	} else {
		a.announce = d - 1 - obs.Date((h>>52)%30)
	}
	if (h>>58)%2 == 0 {
		a.hasAmend = true
		a.amend = a.announce + obs.Date((h>>59)%5)
	}
	return a, true
}

// actionObservations calls fn with the observations of an actions spec, in file order.
func actionObservations(p *plan, seed uint64, fn func(*obs.Observation) error) error {
	ap := p.actions
	var (
		o       obs.Observation
		scratch = make([]byte, 0, 256)
	)
	for i, sec := range p.securities {
		if rc := ReturnCode(sec); rc != 0 {
			o = obs.Observation{Security: sec, Date: p.runDate, Kind: obs.Null, Flag: "RC=" + strconv.Itoa(rc)}
			if err := fn(&o); err != nil {
				return err
			}
			continue
		}
		for _, d := range p.dates {
			a, ok := drawAction(seed, p.secHash[i], d)
			if !ok || !ap.wanted[a.kind] {
				continue
			}
			k := a.kind
			o = obs.Observation{Security: sec, Field: ap.idName[k], Date: d, Kind: obs.String,
				Str: strconv.FormatInt(a.id, 10)}
			if err := fn(&o); err != nil {
				return err
			}
			o = obs.Observation{Security: sec, Field: ap.flagName[k], Date: d, Kind: obs.String, Str: string(a.flag)}
			if err := fn(&o); err != nil {
				return err
			}
			for j, name := range ap.names[k] {
				o = obs.Observation{Security: sec, Field: name, Date: d}
				base := pairHash(seed, p.secHash[i], ap.fieldHash[k][j])
				scratch = observe(&o, ap.fieldKinds[k][j], cellHash(base, d), scratch)
				if err := fn(&o); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// currencies of the currency column.
var currencies = [...]string{"USD", "EUR", "GBP", "JPY", "CHF"}

// actions writes getactions rows: 21 fixed columns then FIELD|VALUE pairs, one row per action;
// one row per security with a non-zero return code.
func (w *replyWriter) actions() error {
	p, ap, d := w.p, w.p.actions, w.d
	for i, sec := range p.securities {
		sh := p.secHash[i]
		company := 100000 + int64(mix(sh^w.seed)%900000)
		secID := 1000000 + int64(mix(sh+w.seed*golden)%9000000)
		head := func(b []byte, rc int) []byte {
			b = w.appendID(b, sec)
			b = strconv.AppendInt(b, company, 10)
			b = append(b, d)
			b = strconv.AppendInt(b, secID, 10)
			b = append(b, d)
			b = strconv.AppendInt(b, int64(rc), 10)
			return append(b, d)
		}
		if rc := ReturnCode(sec); rc == ActionsRC300 || rc == ActionsRC400 {
			w.buf = append(head(w.buf, rc), w.nl...)
		} else if rc != 0 {
			// The other 17 fixed columns blank, no pairs.
			b := head(w.buf, rc)
			for range actFixedCols - 5 {
				b = append(b, d)
			}
			b = append(b, '0', d)
			w.buf = append(b, w.nl...)
		} else {
			ticker, _, _ := strings.Cut(sec, " ")
			sector := sec[strings.LastIndexByte(sec, ' ')+1:]
			for _, dt := range p.dates {
				a, ok := drawAction(w.seed, sh, dt)
				if !ok || !ap.wanted[a.kind] {
					continue
				}
				k := actionKinds[a.kind]
				b := head(w.buf, 0)
				b = strconv.AppendInt(b, a.id, 10) // 4 action id
				b = append(b, d)
				b = append(b, k.mnemonic...) // 5 mnemonic
				b = append(b, d, a.flag, d)  // 6 flag
				b = appendText(b, mix(sh^golden))
				b = append(b, d)                                         // 7 company name
				b = append(b, "TICKER"...)                               // 8 id type
				b = append(b, d)                                         //
				b = append(b, ticker...)                                 // 9 id
				b = append(b, d)                                         //
				b = append(b, currencies[sh%uint64(len(currencies))]...) // 10 currency
				b = append(b, d)
				b = append(b, sector...) // 11 market sector
				b = append(b, d)
				b = append(b, "EQ"...) // 12 unique id
				b = strconv.AppendUint(b, mix(sh)%1e16, 10)
				b = append(b, d)
				b = w.appendDate(b, a.announce) // 13 announce
				b = append(b, d)
				if !a.noEffective { // 14 effective
					b = w.appendDate(b, dt)
				}
				b = append(b, d)
				if a.hasAmend { // 15 amend
					b = w.appendDate(b, a.amend)
				}
				b = append(b, d)
				b = appendFIGI(b, sh) // 16 global id
				b = append(b, d, d)   // 17 composite global id: blank
				b = append(b, k.description...)
				b = append(b, d)
				b = append(b, "SIM"...) // 19 source
				b = append(b, d)
				b = strconv.AppendInt(b, int64(len(k.fields)), 10) // 20 number of fields
				b = append(b, d)
				for j, f := range k.fields {
					b = append(b, f...)
					b = append(b, d)
					b = w.appendCell(b, ap.fieldKinds[a.kind][j], pairHash(w.seed, sh, ap.fieldHash[a.kind][j]), -1, dt)
				}
				w.buf = append(b, w.nl...)
				if len(w.buf) > flushAt {
					if err := w.flush(); err != nil {
						return err
					}
				}
			}
		}
		if len(w.buf) > flushAt {
			if err := w.flush(); err != nil {
				return err
			}
		}
	}
	return w.flush()
}

// actFixedCols is the number of fixed columns of a getactions row.
const actFixedCols = 21

// appendFIGI appends a FIGI-shaped identifier: BBG and 9 digits or capitals.
func appendFIGI(b []byte, h uint64) []byte {
	const alnum = "0123456789BCDFGHJKLMNPQRSTVWXYZ"
	b = append(b, "BBG"...)
	x := mix(h ^ 0xf1f1)
	for range 9 {
		b = append(b, alnum[x%uint64(len(alnum))])
		x /= uint64(len(alnum))
	}
	return b
}
