package dlformat

import (
	"bytes"
	"fmt"

	"github.com/marketpipe/marketpipe/pkg/obs"
)

// Column positions of a getactions row.
const (
	actRC        = 3
	actID        = 4
	actMnemonic  = 5
	actFlag      = 6
	actAnnounce  = 13
	actEffective = 14
	actNFields   = 20
	actFixed     = 21
)

// actionsRow reads a getactions row: 21 fixed columns then FIELD|VALUE pairs (4 columns when the
// return code is 300 or 400).
func (r *Reader) actionsRow(t []byte) (bool, error) {
	d := r.delim
	cells := countCells(t, d)
	if cells < 4 {
		return false, r.rejectLine(fmt.Sprintf("corporate action row has %d columns; want at least 4", cells))
	}
	var col [actFixed][]byte
	rest := t
	for i := 0; i < actFixed && rest != nil; i++ {
		col[i], rest = Cut(rest, d)
	}
	if len(TrimRight(col[0])) == 0 {
		return false, r.rejectLine("row without a security")
	}
	sec := r.security(col[0])
	if code, ok := parseRC(col[actRC]); !ok {
		return false, r.rejectLine(fmt.Sprintf("return code %q is not a number", col[actRC]))
	} else if code != 0 {
		return r.returnCode(sec, col[actRC])
	}
	if cells < actFixed {
		return false, r.rejectLine(fmt.Sprintf("corporate action row has %d columns; want %d fixed columns and FIELD|VALUE pairs", cells, actFixed))
	}
	if (cells-actFixed)%2 != 0 {
		return false, r.rejectLine("corporate action row has an odd number of FIELD|VALUE columns")
	}
	if nf, ok := atoiN(bytes.TrimSpace(col[actNFields])); !ok || nf != (cells-actFixed)/2 {
		r.stats.NFieldsMismatch++
	}
	mn := bytes.TrimSpace(col[actMnemonic])
	if len(mn) == 0 {
		return false, r.rejectLine("corporate action row without an action mnemonic")
	}
	date, ok := parseRowDate(col[actEffective], r.datefmt)
	if !ok {
		date, ok = parseRowDate(col[actAnnounce], r.datefmt)
	}
	if !ok {
		if date, ok = r.fileDate(); !ok {
			return false, r.rejectLine(noFileDate)
		}
	}
	prefix := string(mn)
	r.queue = append(r.queue[:0],
		obs.Observation{Security: sec, Field: r.actionField(prefix, []byte("ACTION_ID")), Date: date,
			Kind: obs.String, Str: string(TrimRight(col[actID]))},
		obs.Observation{Security: sec, Field: r.actionField(prefix, []byte("FLAG")), Date: date,
			Kind: obs.String, Str: string(TrimRight(col[actFlag]))})
	r.queued = 0
	r.row = rowState{active: true, mode: rowPairs, rest: rest, sec: sec, date: date, prefix: prefix}
	if rest == nil {
		r.row.active = false
	}
	return false, nil
}

// actionField returns "<ACTION>.<FIELD>", interned: action files repeat a few dozen names.
func (r *Reader) actionField(prefix string, name []byte) string {
	if r.prefixes == nil {
		r.prefixes = make(map[string]string)
	}
	r.scratch = append(append(append(r.scratch[:0], prefix...), '.'), name...)
	if s, ok := r.prefixes[string(r.scratch)]; ok {
		return s
	}
	s := string(r.scratch)
	if len(r.prefixes) < 10000 {
		r.prefixes[s] = s
	}
	return s
}
