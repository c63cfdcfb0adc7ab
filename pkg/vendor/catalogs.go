package vendor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// Catalog is an entry of the vendor's catalog list (GET /catalogs/): an account
// (SubscriptionType "scheduled") or a data catalog such as "bbg".
type Catalog struct {
	Identifier       string `json:"identifier"`
	SubscriptionType string `json:"subscriptionType"`
	Title            string `json:"title"`
}

// Scheduled reports whether the catalog is an account requests can be created in.
func (c Catalog) Scheduled() bool { return c.SubscriptionType == "scheduled" }

// Catalogs lists the catalogs the credentials see (GET /catalogs/). It creates nothing.
func (c *Client) Catalogs(ctx context.Context) (cats []Catalog, err error) {
	ctx, span := c.startSpan(ctx, "vendor.Catalogs")
	defer func() { endSpan(span, err) }()
	resp, err := c.get(ctx, &call{op: "account", path: "/catalogs/", header: jsonAccept})
	if err != nil {
		return nil, fmt.Errorf("list catalogs: %w", err)
	}
	defer resp.Body.Close()
	var list struct {
		Contains []Catalog `json:"contains"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&list); err != nil {
		return nil, fmt.Errorf("list catalogs: decode: %w", err)
	}
	return list.Contains, nil
}

// ChooseAccount returns the account requests go to among cats: want when it is set (it must be
// a scheduled account of the list), else the list's only scheduled account. Errors wrap
// ErrNoAccount: none, want not listed, or several to choose from (they are named).
func ChooseAccount(cats []Catalog, want string) (string, error) {
	var scheduled []string
	for _, c := range cats {
		if c.Scheduled() && c.Identifier != "" {
			scheduled = append(scheduled, c.Identifier)
		}
	}
	switch {
	case want != "":
		for _, id := range scheduled {
			if id == want {
				return want, nil
			}
		}
		return "", fmt.Errorf("%w: account %q is not among the scheduled accounts listed (%s)", ErrNoAccount, want, listOrNone(scheduled))
	case len(scheduled) == 1:
		return scheduled[0], nil
	case len(scheduled) > 1:
		return "", fmt.Errorf("%w: several scheduled accounts (%s): choose one", ErrNoAccount, strings.Join(scheduled, ", "))
	}
	return "", ErrNoAccount
}

func listOrNone(ids []string) string {
	if len(ids) == 0 {
		return "none"
	}
	return strings.Join(ids, ", ")
}
