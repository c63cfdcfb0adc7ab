package jobspec

import (
	"maps"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/vendor"
)

// The request options of a job file: identifier_type, overrides (and per-security ones),
// pricing_source, pricing_source_exclusive, periodicity and currency. Each is checked against
// HAPI's values and limits (package vendor) here, so a request the vendor would refuse, or
// silently ignore, is never sent.

// securityEntry reads one item of securities: a scalar (IBM US Equity, /ISIN/US0378331005) or
// a mapping {id: US0378331005, type: ISIN, overrides: {MNEMONIC: value}}. It returns the
// security as the job writes it ("" when invalid) and its own overrides.
func (p *parser) securityEntry(it *yaml.Node) (string, map[string]string) {
	v := resolve(it)
	switch v.Kind {
	case yaml.ScalarNode:
		s := strings.TrimSpace(v.Value)
		if v.Tag == "!!null" {
			s = ""
		}
		return p.typedSecurity(it, s, ""), nil
	case yaml.MappingNode:
	default:
		p.errorf(it, "securities", "want a security identifier or {id: ..., type: ..., overrides: {...}}, not %s", kindName(v))
		return "", nil
	}
	var id, typ string
	var overrides map[string]string
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, val := v.Content[i], resolve(v.Content[i+1])
		switch k.Value {
		case "id":
			id, _ = p.scalar("securities", val)
			id = strings.TrimSpace(id)
		case "type":
			typ, _ = p.scalar("securities", val)
		case "overrides":
			overrides = p.overrideMap("securities", val)
		default:
			p.errorf(k, "securities", "unknown key %s in a security (id, type, overrides)", show(k.Value))
		}
	}
	if id == "" {
		p.errorf(it, "securities", "a security given as a mapping needs id:")
		return "", nil
	}
	return p.typedSecurity(it, id, typ), overrides
}

// typedSecurity checks s and writes it with its type: /TYPE/value, or value for a TICKER.
func (p *parser) typedSecurity(n *yaml.Node, s, typ string) string {
	if reason := checkSecurity(s); reason != "" {
		p.errorf(n, "securities", "%s", reason)
		return ""
	}
	if typ != "" {
		if strings.HasPrefix(s, "/") {
			p.errorf(n, "securities", "%s: give the type once, in type: or in the /TYPE/ prefix", show(s))
			return ""
		}
		s = "/" + typ + "/" + s
	}
	return p.canonicalSecurity(n, s, "securities")
}

// canonicalSecurity checks a /TYPE/value security and upper-cases its type ("" when invalid).
func (p *parser) canonicalSecurity(n *yaml.Node, s, field string) string {
	if reason := vendor.CheckSecurity(s); reason != "" {
		p.errorf(n, field, "%s", reason)
		return ""
	}
	if strings.HasPrefix(s, "/") {
		typ, v := vendor.SplitSecurity(s)
		if typ == "TICKER" {
			return v
		}
		return "/" + typ + "/" + v
	}
	return s
}

// overrideMap reads a mapping of field mnemonics to override values.
func (p *parser) overrideMap(field string, v *yaml.Node) map[string]string {
	if v.Kind != yaml.MappingNode {
		p.errorf(v, field, "overrides are a mapping of field mnemonics to values, not %s", kindName(v))
		return nil
	}
	out := map[string]string{}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, val := v.Content[i], resolve(v.Content[i+1])
		if reason := vendor.CheckMnemonic(k.Value); reason != "" {
			p.errorf(k, field, "override %s", reason)
			continue
		}
		if val.Kind != yaml.ScalarNode || val.Tag == "!!null" || val.Value == "" {
			p.errorf(val, field, "override %s: want a value", k.Value)
			continue
		}
		if _, dup := out[k.Value]; dup {
			p.errorf(k, field, "override %s given twice", k.Value)
			continue
		}
		out[k.Value] = val.Value
	}
	return out
}

// options reads the request options once program and securities are known.
func (p *parser) options(values map[string]*yaml.Node) {
	f := p.f
	prog := f.Program
	if v, ok := values["identifier_type"]; ok {
		if s, ok := p.scalar("identifier_type", v); ok {
			t := strings.ToUpper(s)
			if !slices.Contains(vendor.IdentifierTypes, t) {
				p.errorf(v, "identifier_type", "%s is not one of HAPI's identifier types (%s)", show(s), strings.Join(vendor.IdentifierTypes, ", "))
			} else if t != "TICKER" {
				for i, s := range f.Securities {
					if !strings.HasPrefix(s, "/") {
						f.Securities[i] = "/" + t + "/" + s
						if o, ok := f.SecurityOverrides[s]; ok {
							delete(f.SecurityOverrides, s)
							f.SecurityOverrides[f.Securities[i]] = o
						}
					}
				}
			}
		}
	}
	if v, ok := values["overrides"]; ok {
		f.Overrides = p.overrideMap("overrides", v)
	}
	if (len(f.Overrides) > 0 || len(f.SecurityOverrides) > 0) && prog != events.GetData && prog != "" {
		n := p.keys["overrides"]
		if n == nil {
			n = p.keys["securities"]
		}
		p.errorf(n, "overrides", "only getdata takes overrides: HAPI ignores security overrides on history and actions requests")
	} else {
		for _, s := range f.Securities {
			all := maps.Clone(f.Overrides)
			if all == nil {
				all = map[string]string{}
			}
			maps.Copy(all, f.SecurityOverrides[s])
			if len(all) > vendor.MaxOverrides {
				p.errorf(p.keys["securities"], "overrides", "%s has %d overrides; at most %d per security", show(s), len(all), vendor.MaxOverrides)
				break
			}
		}
	}
	if v, ok := values["pricing_source"]; ok {
		if s, ok := p.scalar("pricing_source", v); ok {
			if reason := vendor.CheckMnemonic(s); reason != "" {
				p.errorf(v, "pricing_source", "%s", reason)
			} else {
				f.PricingSource = s
			}
		}
	}
	if v, ok := values["pricing_source_exclusive"]; ok {
		if s, ok := p.scalar("pricing_source_exclusive", v); ok {
			switch {
			case s != "true" && s != "false":
				p.errorf(v, "pricing_source_exclusive", "%s: want true or false", show(s))
			case values["pricing_source"] == nil:
				p.errorf(v, "pricing_source_exclusive", "needs pricing_source")
			default:
				f.PricingSourceExclusive = s == "true"
			}
		}
	}
	if v, ok := values["periodicity"]; ok {
		if s, ok := p.scalar("periodicity", v); ok {
			switch {
			case prog != events.GetHistory && prog != "":
				p.errorf(v, "periodicity", "only gethistory takes a periodicity")
			case !slices.Contains(vendor.Periodicities, s):
				p.errorf(v, "periodicity", "%s: want one of %s", show(s), strings.Join(vendor.Periodicities, ", "))
			default:
				f.Periodicity = s
			}
		}
	}
	if v, ok := values["currency"]; ok {
		if s, ok := p.scalar("currency", v); ok {
			switch reason := vendor.CheckCurrency(s); {
			case prog != events.GetHistory && prog != "":
				p.errorf(v, "currency", "only gethistory takes a currency (historyPriceCurrency)")
			case reason != "":
				p.errorf(v, "currency", "%s", reason)
			default:
				f.Currency = s
			}
		}
	}
}

// incremental reads incremental: (gethistory only).
func (p *parser) incremental(v *yaml.Node) {
	if v == nil {
		return
	}
	s, ok := p.scalar("incremental", v)
	if !ok {
		return
	}
	switch {
	case s != "true" && s != "false":
		p.errorf(v, "incremental", "%s: want true or false", show(s))
	case p.f.Program != events.GetHistory && p.f.Program != "" && s == "true":
		p.errorf(v, "incremental", "only gethistory takes incremental: it skips the dates earlier runs loaded, and %s asks for no dates to skip", p.f.Program)
	default:
		p.f.Incremental = s == "true"
	}
}
