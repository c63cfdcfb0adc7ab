package vendor

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"golang.org/x/text/currency"
)

// HAPI's limits and option values (shared/vendor/HAPI.md, from the DL REST API specification
// v2.8.8). Job files are validated against them before anything is sent.
const (
	// MaxUniverse is the most securities one request's universe may hold.
	MaxUniverse = 80_000
	// MaxUniverseWithOverrides is Bloomberg's recommended bound when the universe carries
	// overrides.
	MaxUniverseWithOverrides = 20_000
	// MaxFieldList is the most fields one field list may hold.
	MaxFieldList = 450
	// MaxOverrides is the most overrides one security may carry.
	MaxOverrides = 19
	// MaxCallsPerMinute is HAPI's rate limit per application (1,200 requests per minute; above
	// it the vendor answers 429). The client keeps to it, or to VENDOR_RATE_LIMIT.
	MaxCallsPerMinute = 1200
)

// IdentifierTypes are HAPI's SecID values: the identifier types a universe item may have.
var IdentifierTypes = []string{"AUSTRIAN", "ISIN", "BB_GLOBAL", "BB_UNIQUE", "BELGIUM", "ISRAELI",
	"CEDEL", "ITALY", "CATS", "CINS", "JAPAN", "COMMON_NUMBER", "CUSIP", "LUXEMBOURG", "CZECH", "SEDOL",
	"IRISH", "DUTCH", "SPAIN", "TICKER", "EUROCLEAR", "VALOREN", "FRENCH", "WPK"}

// Periodicities are the values of a history request's period; daily is the default.
var Periodicities = []string{"daily", "weekly", "monthly", "quarterly", "yearly"}

// mnemonicRE is a field or pricing-source mnemonic.
var mnemonicRE = regexp.MustCompile(`^[A-Z0-9_]{1,64}$`)

// SplitSecurity splits a security as a job writes it: "/ISIN/US0378331005" is an ISIN (any
// SecID, in any case), anything else a TICKER ("IBM US Equity") or, when it looks like one, a
// FIGI (BB_GLOBAL).
func SplitSecurity(s string) (typ, value string) {
	if rest, ok := strings.CutPrefix(s, "/"); ok {
		if t, v, ok := strings.Cut(rest, "/"); ok && v != "" {
			return strings.ToUpper(t), v
		}
	}
	return identifierType(s), s
}

// CheckSecurity returns why a security as a job writes it is not acceptable, or "".
func CheckSecurity(s string) string {
	if !strings.HasPrefix(s, "/") {
		return ""
	}
	typ, v := SplitSecurity(s)
	if v == s {
		return fmt.Sprintf("%q: a typed security is /TYPE/identifier, such as /ISIN/US0378331005", s)
	}
	if !slices.Contains(IdentifierTypes, typ) {
		return fmt.Sprintf("identifier type %s is not one of HAPI's (%s)", typ, strings.Join(IdentifierTypes, ", "))
	}
	return ""
}

// CheckMnemonic returns why m is not a field or pricing-source mnemonic, or "".
func CheckMnemonic(m string) string {
	if !mnemonicRE.MatchString(m) {
		return fmt.Sprintf("%q is not a mnemonic (upper-case letters, digits and '_')", m)
	}
	return ""
}

// CheckCurrency returns why c is not a currency HAPI accepts (an ISO 4217 code), or "".
func CheckCurrency(c string) string {
	if len(c) != 3 || strings.ToUpper(c) != c {
		return fmt.Sprintf("%q is not a currency (three upper-case letters, ISO 4217)", c)
	}
	if _, err := currency.ParseISO(c); err != nil {
		return fmt.Sprintf("%s is not an ISO 4217 currency", c)
	}
	return ""
}

// overridesFor returns the overrides of one security: the universe's, and its own over them.
func overridesFor(universe map[string]string, own map[string]string) []apiOverride {
	all := maps.Clone(universe)
	if all == nil {
		all = map[string]string{}
	}
	maps.Copy(all, own)
	out := make([]apiOverride, 0, len(all))
	for _, k := range slices.Sorted(maps.Keys(all)) {
		out = append(out, apiOverride{Type: "FieldOverride", Mnemonic: k, Override: all[k]})
	}
	return out
}

type (
	apiOverride struct {
		Type     string `json:"@type"`
		Mnemonic string `json:"mnemonic"`
		Override string `json:"override"`
	}
	apiPricingSource struct {
		Type      string   `json:"@type"`
		Prefer    apiField `json:"prefer"`
		Exclusive bool     `json:"exclusive"`
	}
)
