package vendor

import (
	"errors"
	"strings"
	"testing"
)

func TestChooseAccount(t *testing.T) {
	bbg := Catalog{Identifier: "bbg", SubscriptionType: "bbg"}
	a := Catalog{Identifier: "acct-a", SubscriptionType: "scheduled"}
	b := Catalog{Identifier: "acct-b", SubscriptionType: "scheduled"}
	for _, tt := range []struct {
		name    string
		cats    []Catalog
		want    string
		acct    string
		errText string
	}{
		{"the only scheduled one", []Catalog{bbg, a}, "", "acct-a", ""},
		{"chosen", []Catalog{bbg, a, b}, "acct-b", "acct-b", ""},
		{"several", []Catalog{bbg, a, b}, "", "", "several scheduled accounts (acct-a, acct-b): choose one"},
		{"none", []Catalog{bbg}, "", "", "no scheduled account"},
		{"chosen not listed", []Catalog{bbg, a}, "acct-x", "", `account "acct-x" is not among the scheduled accounts listed (acct-a)`},
		{"a data catalog is not an account", []Catalog{bbg, a}, "bbg", "", `account "bbg" is not among`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ChooseAccount(tt.cats, tt.want)
			if tt.errText == "" {
				if err != nil || got != tt.acct {
					t.Fatalf("ChooseAccount = %q, %v; want %q", got, err, tt.acct)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrNoAccount) || !strings.Contains(err.Error(), tt.errText) {
				t.Fatalf("ChooseAccount = %q, %v; want ErrNoAccount with %q", got, err, tt.errText)
			}
		})
	}
}
