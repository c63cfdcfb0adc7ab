package vendor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
)

// Account returns the identifier of the account requests go to: Config.Account when set, else
// the only scheduled account of the catalog list (GET /catalogs/; see ChooseAccount). The
// answer is cached for the client's life. It returns ErrNoAccount (wrapped) when the list has
// no such entry, or several.
func (c *Client) Account(ctx context.Context) (acct string, err error) {
	c.mu.Lock()
	acct = c.account
	c.mu.Unlock()
	if acct != "" {
		return acct, nil
	}
	ctx, span := c.startSpan(ctx, "vendor.Account")
	defer func() { endSpan(span, err) }()
	cats, err := c.Catalogs(ctx)
	if err != nil {
		return "", fmt.Errorf("discover account: %w", err)
	}
	if acct, err = ChooseAccount(cats, ""); err != nil {
		return "", fmt.Errorf("discover account: %w", err)
	}
	c.mu.Lock()
	c.account = acct
	c.mu.Unlock()
	return acct, nil
}

var jsonAccept = http.Header{"Accept": {"application/json"}}

// Programs a Request may name, as in events.Spec. pkg/events has no constant for getactions;
// ProgramGetActions (like simdata.GetActions) is its name.
const (
	ProgramGetData    = "getdata"
	ProgramGetHistory = "gethistory"
	ProgramGetActions = "getactions"
)

// Request is one data request: a universe, a field list and, for history, a date range.
//
// A corporate-actions request (ProgramGetActions, HAPI's ActionsRequest) asks for the actions
// of each security between Start and End; its Fields are optional and name the action
// mnemonics wanted (DVD_CASH, STOCK_SPLT, ...), every kind when empty. Its body is HAPI.md's
// shape with @type ActionsRequest, an ActionsFieldList only when Fields are given, and
// runtimeOptions {"@type":"ActionsRuntimeOptions","dateRange":{IntervalDateRange}}.
type Request struct {
	// Identifier is our name for the request at the vendor: letters and digits, at most 21,
	// unique per account. Reusing it is how Submit stays idempotent.
	Identifier string
	Title      string // free text; default Identifier
	Program    string // ProgramGetData, ProgramGetHistory or ProgramGetActions
	Securities []string
	Fields     []string // optional for getactions
	Start, End string   // YYYY-MM-DD, gethistory and getactions only
	// Overrides apply to every security, SecurityOverrides to one (its own win); getdata only.
	Overrides         map[string]string
	SecurityOverrides map[string]map[string]string
	// PricingSource is the preferred pricing source's mnemonic, exclusive when
	// PricingSourceExclusive.
	PricingSource          string
	PricingSourceExclusive bool
	// Periodicity (Periodicities; empty: daily) and Currency (ISO 4217) are gethistory's.
	Periodicity, Currency string
}

var identifierRE = regexp.MustCompile(`^[A-Za-z0-9]{1,21}$`)

// ValidIdentifier reports whether id is acceptable as a request identifier.
func ValidIdentifier(id string) bool { return identifierRE.MatchString(id) }

// Validate checks r before anything is sent: a refused request costs nothing, a malformed one
// sent may be billed. Errors wrap ErrInvalidRequest.
func (r *Request) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidRequest, fmt.Sprintf(format, args...))
	}
	if !ValidIdentifier(r.Identifier) {
		return bad("identifier %q: want 1 to 21 letters or digits", r.Identifier)
	}
	if len(r.Securities) == 0 {
		return bad("no securities")
	}
	if len(r.Securities) > MaxUniverse {
		return bad("%d securities; a universe holds at most %d", len(r.Securities), MaxUniverse)
	}
	for _, s := range r.Securities {
		if strings.TrimSpace(s) == "" {
			return bad("empty security identifier")
		}
		if reason := CheckSecurity(s); reason != "" {
			return bad("%s", reason)
		}
	}
	if len(r.Fields) > MaxFieldList {
		return bad("%d fields; a field list holds at most %d", len(r.Fields), MaxFieldList)
	}
	if (len(r.Overrides) > 0 || len(r.SecurityOverrides) > 0) && r.Program != ProgramGetData {
		return bad("overrides on a %s request: HAPI ignores security overrides on history and actions requests", r.Program)
	}
	for _, s := range r.Securities {
		if n := len(overridesFor(r.Overrides, r.SecurityOverrides[s])); n > MaxOverrides {
			return bad("%s: %d overrides; at most %d per security", s, n, MaxOverrides)
		}
	}
	if r.PricingSource != "" {
		if reason := CheckMnemonic(r.PricingSource); reason != "" {
			return bad("pricing source %s", reason)
		}
	} else if r.PricingSourceExclusive {
		return bad("an exclusive pricing source needs a pricing source")
	}
	if (r.Periodicity != "" || r.Currency != "") && r.Program != ProgramGetHistory {
		return bad("periodicity and currency are gethistory's")
	}
	if r.Periodicity != "" && !slices.Contains(Periodicities, r.Periodicity) {
		return bad("periodicity %q: want one of %s", r.Periodicity, strings.Join(Periodicities, ", "))
	}
	if r.Currency != "" {
		if reason := CheckCurrency(r.Currency); reason != "" {
			return bad("%s", reason)
		}
	}
	if len(r.Fields) == 0 && r.Program != ProgramGetActions {
		return bad("no fields")
	}
	for _, f := range r.Fields {
		if strings.TrimSpace(f) == "" {
			return bad("empty field mnemonic")
		}
	}
	switch r.Program {
	case ProgramGetData:
	case ProgramGetHistory, ProgramGetActions:
		start, err1 := time.Parse(time.DateOnly, r.Start)
		end, err2 := time.Parse(time.DateOnly, r.End)
		if err1 != nil || err2 != nil {
			return bad("%s needs start and end as YYYY-MM-DD, got %q and %q", r.Program, r.Start, r.End)
		}
		if end.Before(start) {
			return bad("end %s before start %s", r.End, r.Start)
		}
	default:
		return bad("program %q: want %s, %s or %s", r.Program, ProgramGetData, ProgramGetHistory, ProgramGetActions)
	}
	return nil
}

// HAPI request body types (shared/vendor/HAPI.md).
type (
	typed struct {
		Type string `json:"@type"`
	}
	apiIdentifier struct {
		Type            string        `json:"@type"`
		IdentifierType  string        `json:"identifierType"`
		IdentifierValue string        `json:"identifierValue"`
		FieldOverrides  []apiOverride `json:"fieldOverrides,omitempty"`
	}
	apiUniverse struct {
		Type     string          `json:"@type"`
		Contains []apiIdentifier `json:"contains"`
	}
	apiField struct {
		Mnemonic string `json:"mnemonic"`
	}
	apiFieldList struct {
		Type     string     `json:"@type"`
		Contains []apiField `json:"contains"`
	}
	apiDateRange struct {
		Type      string `json:"@type"`
		StartDate string `json:"startDate"`
		EndDate   string `json:"endDate"`
	}
	apiRuntimeOptions struct {
		Type                 string       `json:"@type"`
		DateRange            apiDateRange `json:"dateRange"`
		HistoryPriceCurrency string       `json:"historyPriceCurrency,omitempty"`
		Period               string       `json:"period,omitempty"`
	}
	apiFormatting struct {
		Type            string `json:"@type"`
		OutputMediaType string `json:"outputMediaType"`
	}
	apiRequest struct {
		Type           string             `json:"@type"`
		Identifier     string             `json:"identifier"`
		Title          string             `json:"title"`
		Universe       apiUniverse        `json:"universe"`
		FieldList      *apiFieldList      `json:"fieldList,omitempty"`
		Trigger        typed              `json:"trigger"`
		RuntimeOptions *apiRuntimeOptions `json:"runtimeOptions,omitempty"`
		PricingSource  *apiPricingSource  `json:"pricingSourceOptions,omitempty"`
		Formatting     apiFormatting      `json:"formatting"`
	}
)

// MediaTypeDL is the reply-file format the client asks for.
const MediaTypeDL = "text/vnd.blp.dl.std"

// body returns the JSON body of r.
func (r *Request) body() ([]byte, error) {
	ar := apiRequest{
		Identifier: r.Identifier,
		Title:      r.Title,
		Universe:   apiUniverse{Type: "Universe"},
		Trigger:    typed{Type: "SubmitTrigger"},
		Formatting: apiFormatting{Type: "MediaType", OutputMediaType: MediaTypeDL},
	}
	if ar.Title == "" {
		ar.Title = r.Identifier
	}
	for _, s := range r.Securities {
		typ, v := SplitSecurity(strings.TrimSpace(s))
		item := apiIdentifier{Type: "Identifier", IdentifierType: typ, IdentifierValue: v}
		if r.Program == ProgramGetData && (len(r.Overrides) > 0 || len(r.SecurityOverrides[s]) > 0) {
			item.FieldOverrides = overridesFor(r.Overrides, r.SecurityOverrides[s])
		}
		ar.Universe.Contains = append(ar.Universe.Contains, item)
	}
	fl := &apiFieldList{}
	for _, f := range r.Fields {
		fl.Contains = append(fl.Contains, apiField{Mnemonic: f})
	}
	switch r.Program {
	case ProgramGetHistory:
		ar.Type, fl.Type = "HistoryRequest", "HistoryFieldList"
		ar.RuntimeOptions = &apiRuntimeOptions{Type: "HistoryRuntimeOptions",
			DateRange:            apiDateRange{Type: "IntervalDateRange", StartDate: r.Start, EndDate: r.End},
			HistoryPriceCurrency: r.Currency, Period: r.Periodicity}
		if r.PricingSource != "" {
			ar.PricingSource = &apiPricingSource{Type: "HistoryPricingSourceOptions",
				Prefer: apiField{Mnemonic: r.PricingSource}, Exclusive: r.PricingSourceExclusive}
		}
	case ProgramGetActions:
		ar.Type, fl.Type = "ActionsRequest", "ActionsFieldList"
		ar.RuntimeOptions = &apiRuntimeOptions{Type: "ActionsRuntimeOptions",
			DateRange: apiDateRange{Type: "IntervalDateRange", StartDate: r.Start, EndDate: r.End}}
	default:
		ar.Type, fl.Type = "DataRequest", "DataFieldList"
		if r.PricingSource != "" {
			ar.PricingSource = &apiPricingSource{Type: "DataPricingSourceOptions",
				Prefer: apiField{Mnemonic: r.PricingSource}, Exclusive: r.PricingSourceExclusive}
		}
	}
	if len(fl.Contains) > 0 || r.Program != ProgramGetActions {
		ar.FieldList = fl
	}
	return json.Marshal(ar)
}

var figiRE = regexp.MustCompile(`^BBG[0-9A-Z]{9}$`)

// identifierType guesses the identifier scheme: a FIGI is a BB_GLOBAL, anything else (such as
// "IBM US Equity") a TICKER with its yellow key.
func identifierType(s string) string {
	if figiRE.MatchString(s) {
		return "BB_GLOBAL"
	}
	return "TICKER"
}

// Submit creates the request at the vendor (POST /catalogs/{account}/requests/; 201 Created).
//
// Submit is idempotent per identifier, so a caller may repeat it after any failure: a 409 (or a
// Status saying the identifier already exists) for our own identifier counts as success. It
// never re-POSTs blindly: after an ambiguous failure (a timeout, a reset or a 5xx once the
// request was sent) it first looks the identifier up and re-POSTs only on 404. Errors: a
// permanent *APIError (bad request, forbidden) with the vendor's description; ErrInvalidRequest
// before sending; the last error once retries are spent.
func (c *Client) Submit(ctx context.Context, r Request) (err error) {
	ctx, span := c.startSpan(ctx, "vendor.Submit", attribute.String("vendor.request_id", r.Identifier),
		attribute.String("vendor.program", r.Program))
	defer func() { endSpan(span, err) }()
	if err := r.Validate(); err != nil {
		return err
	}
	body, err := r.body()
	if err != nil {
		return fmt.Errorf("submit %s: encode: %w", r.Identifier, err)
	}
	acct, err := c.Account(ctx)
	if err != nil {
		return fmt.Errorf("submit %s: %w", r.Identifier, err)
	}
	post := &call{op: "submit", method: http.MethodPost, path: "/catalogs/" + escape(acct) + "/requests/",
		body: body, header: http.Header{"Content-Type": {"application/json"}, "Accept": {"application/json"}}}
	rt := retrier{c: c, op: "submit"}
	for {
		resp, wrote, err := c.send(ctx, post)
		if err == nil {
			resp.Body.Close()
			c.log.LogAttrs(ctx, slog.LevelDebug, "vendor request created", slog.String("request_id", r.Identifier),
				slog.String("location", resp.Header.Get("Location")))
			return nil
		}
		var ae *APIError
		isAPI := errors.As(err, &ae)
		if isAPI && alreadyExists(ae) {
			c.log.LogAttrs(ctx, slog.LevelInfo, "vendor request already exists", slog.String("request_id", r.Identifier))
			return nil
		}
		// Did the server possibly create it? Only if it got the whole request and did not give
		// a definite answer: a transport error after sending, or a 5xx.
		ambiguous := wrote && (!isAPI || ae.StatusCode >= 500)
		d, ok := rt.next(ctx, err)
		if !ok {
			if ambiguous && ctx.Err() == nil {
				// Last chance: a final lookup tells the caller whether it was created after all.
				if exists, lerr := c.requestExists(ctx, acct, r.Identifier); lerr == nil && exists {
					return nil
				}
			}
			return fmt.Errorf("submit %s: %w", r.Identifier, err)
		}
		if serr := sleep(ctx, d); serr != nil {
			return fmt.Errorf("submit %s: %w (gave up waiting to retry: %v)", r.Identifier, err, serr)
		}
		if ambiguous {
			exists, lerr := c.requestExists(ctx, acct, r.Identifier)
			if lerr != nil {
				return fmt.Errorf("submit %s: after %v: look up: %w", r.Identifier, err, lerr)
			}
			if exists {
				c.log.LogAttrs(ctx, slog.LevelInfo, "vendor request was created despite the failed POST",
					slog.String("request_id", r.Identifier), slog.String("error", err.Error()))
				return nil
			}
		}
	}
}

// alreadyExists reports the vendor's answer to a POST of an identifier it already has.
// Bloomberg documents uniqueness but not the status, so besides 409 a 400 whose description
// says so counts too.
func alreadyExists(ae *APIError) bool {
	if ae.StatusCode == http.StatusConflict {
		return true
	}
	return ae.StatusCode == http.StatusBadRequest &&
		strings.Contains(strings.ToLower(ae.Description), "already exist")
}

// requestExists looks a request up (GET /catalogs/{account}/requests/{id}/): true on 200,
// false on 404.
func (c *Client) requestExists(ctx context.Context, acct, id string) (bool, error) {
	resp, err := c.get(ctx, &call{op: "lookup", path: "/catalogs/" + escape(acct) + "/requests/" + escape(id) + "/",
		header: jsonAccept})
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	return true, nil
}

// RequestExists reports whether the vendor has a request with this identifier: a poller can
// tell "not ready yet" from "never created" with it.
func (c *Client) RequestExists(ctx context.Context, identifier string) (ok bool, err error) {
	ctx, span := c.startSpan(ctx, "vendor.RequestExists", attribute.String("vendor.request_id", identifier))
	defer func() { endSpan(span, err) }()
	acct, err := c.Account(ctx)
	if err != nil {
		return false, fmt.Errorf("look up %s: %w", identifier, err)
	}
	ok, err = c.requestExists(ctx, acct, identifier)
	if err != nil {
		return false, fmt.Errorf("look up %s: %w", identifier, err)
	}
	return ok, nil
}
