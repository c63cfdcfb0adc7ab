package vendor

import (
	"encoding/json"
	"strings"
	"testing"
)

// Each request option travels in the body exactly as HAPI's specification writes it.
func TestOptionsInTheBody(t *testing.T) {
	data := Request{Identifier: "mpopts1", Program: ProgramGetData,
		Securities: []string{"IBM US Equity", "/ISIN/US0378331005", "/CUSIP/037833100"}, Fields: []string{"PX_LAST"},
		Overrides:         map[string]string{"VWAP_START_TIME": "09:30"},
		SecurityOverrides: map[string]map[string]string{"/CUSIP/037833100": {"SETTLE_DT": "20261231", "VWAP_START_TIME": "10:00"}},
		PricingSource:     "BGN", PricingSourceExclusive: true}
	if err := data.Validate(); err != nil {
		t.Fatal(err)
	}
	b, err := data.body()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`{"@type":"Identifier","identifierType":"TICKER","identifierValue":"IBM US Equity","fieldOverrides":[{"@type":"FieldOverride","mnemonic":"VWAP_START_TIME","override":"09:30"}]}`,
		`{"@type":"Identifier","identifierType":"ISIN","identifierValue":"US0378331005",`,
		`{"@type":"Identifier","identifierType":"CUSIP","identifierValue":"037833100","fieldOverrides":[{"@type":"FieldOverride","mnemonic":"SETTLE_DT","override":"20261231"},{"@type":"FieldOverride","mnemonic":"VWAP_START_TIME","override":"10:00"}]}`,
		`"pricingSourceOptions":{"@type":"DataPricingSourceOptions","prefer":{"mnemonic":"BGN"},"exclusive":true}`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("body lacks %s:\n%s", want, b)
		}
	}
	hist := Request{Identifier: "mpopts2", Program: ProgramGetHistory, Securities: []string{"IBM US Equity"},
		Fields: []string{"PX_LAST"}, Start: "2026-01-01", End: "2026-06-30", Periodicity: "weekly", Currency: "EUR", PricingSource: "BVAL"}
	if err := hist.Validate(); err != nil {
		t.Fatal(err)
	}
	b, err = hist.body()
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		RuntimeOptions map[string]any `json:"runtimeOptions"`
		Pricing        map[string]any `json:"pricingSourceOptions"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.RuntimeOptions["historyPriceCurrency"] != "EUR" || got.RuntimeOptions["period"] != "weekly" ||
		got.RuntimeOptions["@type"] != "HistoryRuntimeOptions" || got.Pricing["@type"] != "HistoryPricingSourceOptions" {
		t.Errorf("history body: %s", b)
	}
	if strings.Contains(string(b), "fieldOverrides") {
		t.Errorf("history body has overrides: %s", b)
	}
	for _, c := range []struct {
		r    Request
		want string
	}{
		{Request{Identifier: "x", Program: ProgramGetHistory, Securities: []string{"A"}, Fields: []string{"F"}, Start: "2026-01-01", End: "2026-01-02",
			Overrides: map[string]string{"A": "b"}}, "HAPI ignores security overrides on history"},
		{Request{Identifier: "x", Program: ProgramGetData, Securities: []string{"/RIC/A"}, Fields: []string{"F"}}, "identifier type RIC"},
		{Request{Identifier: "x", Program: ProgramGetData, Securities: []string{"A"}, Fields: []string{"F"}, Currency: "EUR"}, "gethistory's"},
		{Request{Identifier: "x", Program: ProgramGetHistory, Securities: []string{"A"}, Fields: []string{"F"}, Start: "2026-01-01", End: "2026-01-02",
			Periodicity: "hourly"}, "periodicity"},
		{Request{Identifier: "x", Program: ProgramGetData, Securities: make([]string, MaxUniverse+1), Fields: []string{"F"}}, "at most 80000"},
	} {
		if err := c.r.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.r.Overrides, err, c.want)
		}
	}
}
