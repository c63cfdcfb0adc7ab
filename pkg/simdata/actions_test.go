package simdata

import (
	"errors"
	"strings"
	"testing"

	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/obs"
)

var actionsSpec = events.Spec{Program: GetActions,
	Securities: []string{"IBM US Equity", "BAD X Equity", "RC300 N Equity", "RC400 M Equity", "AAPL US Equity"},
	Start:      "2025-07-01", End: "2026-01-31"}

// TestActionsCoverage checks that an actions spec over a few months gives every action kind,
// every flag, actions dated by their announce date, markers, bulk cells and the return codes,
// so that TestParserAgrees exercises them.
func TestActionsCoverage(t *testing.T) {
	seen := map[string]int{}
	dates := map[obs.Date]bool{}
	for _, o := range collect(t, actionsSpec, 3) {
		mn, field, _ := strings.Cut(o.Field, ".")
		switch {
		case o.Flag != "":
			seen["flag "+o.Flag]++
		case field == "FLAG":
			seen["action flag "+o.Str]++
			seen["action "+mn]++
			dates[o.Date] = true
		case o.Kind == obs.Bulk:
			seen["bulk"]++
		case o.Kind == obs.Number:
			seen["number"]++
		}
	}
	for _, want := range []string{"flag RC=10", "flag RC=300", "flag RC=400", "flag N.A.", "action flag N",
		"action flag U", "action flag D", "bulk", "number"} {
		if seen[want] == 0 {
			t.Errorf("no %s in the actions spec's observations (saw %v)", want, seen)
		}
	}
	for _, mn := range ActionMnemonics() {
		if seen["action "+mn] == 0 {
			t.Errorf("no %s action (saw %v)", mn, seen)
		}
	}
	// The reader dates an action by its effective date, else its announce date: both occur.
	var b strings.Builder
	if err := WriteReply(&b, actionsSpec, jan5, 3); err != nil {
		t.Fatal(err)
	}
	var noEffective int
	for line := range strings.SplitSeq(b.String(), "\n") {
		if c := strings.Split(line, "|"); len(c) > 21 && c[14] == "" {
			noEffective++
		}
	}
	if noEffective == 0 {
		t.Error("no action without an effective date")
	}
}

// TestActionsStableAcrossRanges checks that an action depends only on (seed, security, date):
// a request for a sub-range, or for some mnemonics, gives the same records for what it covers.
func TestActionsStableAcrossRanges(t *testing.T) {
	all := collect(t, actionsSpec, 3)
	sub := actionsSpec
	sub.Start, sub.End, sub.Fields = "2025-10-01", "2025-11-30", []string{"DVD_CASH", "SPIN"}
	lo, hi := obs.MakeDate(2025, 10, 1), obs.MakeDate(2025, 11, 30)
	var want []obs.Observation
	for _, o := range all {
		mn, _, _ := strings.Cut(o.Field, ".")
		if o.Field == "" || (o.Date >= lo && o.Date <= hi && (mn == "DVD_CASH" || mn == "SPIN")) {
			want = append(want, o)
		}
	}
	got := collect(t, sub, 3)
	if len(got) != len(want) || len(got) == 0 {
		t.Fatalf("sub-range gives %d records, want %d", len(got), len(want))
	}
	for i := range got {
		if !got[i].Equal(&want[i]) {
			t.Fatalf("record %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

// TestActionsFieldFilter checks Fields: action mnemonics select kinds, other mnemonics select
// nothing, and a list that selects no kind gives every kind.
func TestActionsFieldFilter(t *testing.T) {
	with := func(fields ...string) []obs.Observation {
		s := actionsSpec
		s.Fields = fields
		return collect(t, s, 3)
	}
	same := func(name string, a, b []obs.Observation) {
		if len(a) != len(b) {
			t.Fatalf("%s: %d records, want %d", name, len(a), len(b))
		}
		for i := range a {
			if !a[i].Equal(&b[i]) {
				t.Fatalf("%s: record %d: %+v, want %+v", name, i, a[i], b[i])
			}
		}
	}
	all := with()
	same("no action mnemonic", with("PX_LAST", "NAME"), all)
	dvd := with("DVD_CASH")
	same("an action mnemonic among others", with("PX_LAST", "DVD_CASH"), dvd)
	if len(dvd) >= len(all) {
		t.Errorf("DVD_CASH alone gives %d records, all kinds %d", len(dvd), len(all))
	}
	for _, o := range dvd {
		if o.Field != "" && !strings.HasPrefix(o.Field, "DVD_CASH.") {
			t.Fatalf("DVD_CASH spec gives %+v", o)
		}
	}
}

func TestActionsInvalidSpecs(t *testing.T) {
	for name, s := range map[string]events.Spec{
		"no range":   {Program: GetActions, Securities: []string{"IBM US Equity"}},
		"end before": {Program: GetActions, Securities: []string{"IBM US Equity"}, Start: "2026-01-05", End: "2026-01-01"},
	} {
		if _, err := Dates(s, jan5); !errors.Is(err, ErrSpec) {
			t.Errorf("%s: error %v, want ErrSpec", name, err)
		}
	}
	if f, ok := ActionFields("DVD_CASH"); !ok || len(f) == 0 {
		t.Errorf("ActionFields(DVD_CASH) = %v, %v", f, ok)
	}
	if _, ok := ActionFields("PX_LAST"); ok {
		t.Error("ActionFields(PX_LAST) ok")
	}
}
