package tests

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/chstore"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/obs"
)

// TestCorporateActions runs a getactions job through the five stages: every action the
// simulator's file holds is loaded, row for row.
func TestCorporateActions(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p := startPipeline(t, ctx)
	secs := securities(8)
	path := writeJob(t, t.TempDir(), "actions.yaml", "name: actions\nprogram: getactions\nsecurities:\n"+yamlList(secs)+
		"start: 2025-01-01\nend: 2026-06-30\n")
	out, stderr, code := runCLI(t, ctx, p.env, "submit", path, "--wait", "--timeout", "2m")
	if code != 0 {
		t.Fatalf("submit: exit %d: %s%s", code, out, stderr)
	}
	id := strings.TrimSpace(out)
	spec := events.Spec{Name: "actions", Program: events.GetActions, Securities: secs, Start: "2025-01-01", End: "2026-06-30"}
	want := expected(t, spec, p.runDate)
	if len(want) == 0 {
		t.Fatal("the simulator has no corporate actions for these securities: the test would check nothing")
	}
	compare(t, loaded(t, ctx, p.store, id), want)
}

// TestRequestOptions runs jobs with request options through the five stages: the simulator
// honours each (weekly dates, prices in euros from one pricing source, typed identifiers and
// overrides on a snapshot), the loaded rows are what it generated for them, and the rows are
// kept under the options they depend on, beside a plain request's for the same securities.
func TestRequestOptions(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	p := startPipeline(t, ctx)
	dir := t.TempDir()
	secs := securities(3)
	submit := func(name, body string) string {
		t.Helper()
		out, stderr, code := runCLI(t, ctx, p.env, "submit", writeJob(t, dir, name+".yaml", "name: "+name+"\n"+body), "--wait", "--timeout", "2m")
		if code != 0 {
			t.Fatalf("submit %s: exit %d: %s%s", name, code, out, stderr)
		}
		return strings.TrimSpace(out)
	}
	hist := "program: gethistory\nsecurities:\n" + yamlList(secs) + "fields: [PX_LAST, PX_VOLUME]\nstart: 2025-01-01\nend: 2025-06-30\n"
	plain := submit("plain", hist)
	weekly := submit("weekly-eur", hist+"periodicity: weekly\ncurrency: EUR\npricing_source: BGN\n")
	snap := submit("snap", "program: getdata\nfields: [PX_LAST, PX_BID]\nsecurities:\n  - IBM US Equity\n"+
		"  - /ISIN/US0378331005\n  - {id: 037833100, type: CUSIP, overrides: {SETTLE_DT: \"20261231\"}}\n"+
		"overrides: {VWAP_START_TIME: \"09:30\"}\n")

	base := events.Spec{Program: events.GetHistory, Securities: secs, Fields: []string{"PX_LAST", "PX_VOLUME"}, Start: "2025-01-01", End: "2025-06-30"}
	compare(t, loaded(t, ctx, p.store, plain), expected(t, base, p.runDate))
	ws := base
	ws.Options = events.Options{Periodicity: "weekly", Currency: "EUR", PricingSource: "BGN"}
	wantWeekly := expected(t, ws, p.runDate)
	compare(t, loaded(t, ctx, p.store, weekly), wantWeekly)
	// The simulator's view of the snapshot: identifiers as the vendor got them, each with its
	// overrides (the universe's and its own).
	ss := events.Spec{Program: events.GetData, Securities: []string{"IBM US Equity", "US0378331005", "037833100"},
		Fields: []string{"PX_LAST", "PX_BID"}, Options: events.Options{SecurityOverrides: map[string]map[string]string{
			"IBM US Equity": {"VWAP_START_TIME": "09:30"}, "US0378331005": {"VWAP_START_TIME": "09:30"},
			"037833100": {"VWAP_START_TIME": "09:30", "SETTLE_DT": "20261231"}}}}
	compare(t, loaded(t, ctx, p.store, snap), expected(t, ss, p.runDate))

	// Weekly: one date a week (26 weeks of 2025's first half); both requests stay readable,
	// each under its own program, and a week's euro price is not the plain request's.
	perSecField := len(wantWeekly) / (len(secs) * 2)
	if perSecField < 25 || perSecField > 27 {
		t.Errorf("weekly request: %d dates per security and field, want about 26", perSecField)
	}
	programs := map[string]map[string]float64{} // program -> date -> PX_LAST of the first security
	err := p.store.Query(ctx, chstore.Filter{Securities: secs[:1], Fields: []string{"PX_LAST"}}, func(r *chstore.Row) error {
		if r.Kind != obs.Number { // a marker (N.A. and the like) in both
			return nil
		}
		if programs[r.Program] == nil {
			programs[r.Program] = map[string]float64{}
		}
		programs[r.Program][r.Date.String()] = r.Num
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	eur := programs["gethistory[currency=EUR,periodicity=weekly,pricing_source=BGN]"]
	usd := programs["gethistory"]
	if len(eur) == 0 || len(usd) == 0 {
		t.Fatalf("programs stored: %v", slices.Collect(maps.Keys(programs)))
	}
	for d, v := range eur {
		if u, ok := usd[d]; !ok || u == v {
			t.Errorf("%s: euro price %v, plain %v (present %v): want both, different", d, v, u, ok)
		}
	}
}
