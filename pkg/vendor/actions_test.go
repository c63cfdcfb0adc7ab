package vendor_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/dlformat"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/obs"
	"github.com/marketpipe/marketpipe/pkg/simdata"
	"github.com/marketpipe/marketpipe/pkg/vendor"
	"github.com/marketpipe/marketpipe/services/vendorsim"
)

// TestActionsAgainstSimulator submits corporate-actions requests (with and without an action
// filter) to the simulator, downloads them (gzip, digest checked) and checks that the file is a
// getactions reply holding exactly simdata's observations.
func TestActionsAgainstSimulator(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Every getactions layout, and the request body recorded on its way to the simulator.
	layouts, err := simdata.ParseLayouts("getactions,getactions-padded,getactions-delimiter")
	if err != nil {
		t.Fatal(err)
	}
	sim := newSim(t, vendorsim.Options{Seed: 9, RunDate: runDate, Layouts: layouts})
	var bodies [][]byte
	srv := startSimHandler(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			b, _ := io.ReadAll(r.Body)
			bodies = append(bodies, b)
			r.Body = io.NopCloser(bytes.NewReader(b))
		}
		sim.ServeHTTP(w, r)
	}))
	c := newClient(t, vendor.Config{BaseURL: srv + "/eap"})
	for _, r := range []vendor.Request{
		{Identifier: "acts1", Program: vendor.ProgramGetActions,
			Securities: []string{"IBM US Equity", "BAD X Equity", "RC300 N Equity", "AAPL US Equity"},
			Start:      "2025-06-01", End: "2026-01-02"},
		{Identifier: "acts2", Program: vendor.ProgramGetActions, Securities: []string{"IBM US Equity", "MSFT US Equity"},
			Fields: []string{"DVD_CASH"}, Start: "2025-01-01", End: "2025-12-31"},
	} {
		t.Run(r.Identifier, func(t *testing.T) {
			if err := c.Submit(ctx, r); err != nil {
				t.Fatalf("Submit: %v", err)
			}
			var posted struct {
				Type      string          `json:"@type"`
				FieldList json.RawMessage `json:"fieldList"`
				Runtime   struct {
					Type      string `json:"@type"`
					DateRange struct{ StartDate, EndDate string }
				} `json:"runtimeOptions"`
			}
			if err := json.Unmarshal(bodies[len(bodies)-1], &posted); err != nil {
				t.Fatal(err)
			}
			if posted.Type != "ActionsRequest" || posted.Runtime.Type != "ActionsRuntimeOptions" ||
				posted.Runtime.DateRange.StartDate != r.Start || posted.Runtime.DateRange.EndDate != r.End ||
				(len(r.Fields) == 0) != (posted.FieldList == nil) {
				t.Errorf("posted %s", bodies[len(bodies)-1])
			}
			out, err := c.Output(ctx, r.Identifier)
			if err != nil || out == nil {
				t.Fatalf("Output: %+v, %v", out, err)
			}
			if out.Metadata["DL_REQUEST_TYPE"] != "ActionsRequest" {
				t.Errorf("DL_REQUEST_TYPE = %q", out.Metadata["DL_REQUEST_TYPE"])
			}
			body, err := c.Download(ctx, out.Key, out.Digest, out.ContentLength)
			if err != nil {
				t.Fatalf("Download: %v", err)
			}
			defer body.Close()
			dr, err := dlformat.NewReader(body)
			if err != nil {
				t.Fatal(err)
			}
			var got, want []obs.Observation
			for {
				o, err := dr.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatalf("parse: %v", err)
				}
				got = append(got, *o)
			}
			if dr.Program() != simdata.GetActions {
				t.Errorf("PROGRAMNAME = %q", dr.Program())
			}
			spec := events.Spec{Program: r.Program, Securities: r.Securities, Fields: r.Fields, Start: r.Start, End: r.End}
			if err := simdata.Observations(spec, obs.DateOf(runDate), 9, func(o *obs.Observation) error {
				want = append(want, *o)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if len(want) < 10 || len(got) != len(want) {
				t.Fatalf("parsed %d observations, simdata %d", len(got), len(want))
			}
			for i := range got {
				if !got[i].Equal(&want[i]) {
					t.Fatalf("observation %d: parsed %+v, simdata %+v", i, got[i], want[i])
				}
			}
		})
	}
}

func TestActionsRequestValidate(t *testing.T) {
	ok := vendor.Request{Identifier: "a1", Program: vendor.ProgramGetActions, Securities: []string{"IBM US Equity"},
		Start: "2026-01-01", End: "2026-01-31"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	for name, mod := range map[string]func(*vendor.Request){
		"no range":    func(r *vendor.Request) { r.Start, r.End = "", "" },
		"end before":  func(r *vendor.Request) { r.End = "2025-12-31" },
		"empty field": func(r *vendor.Request) { r.Fields = []string{" "} },
	} {
		r := ok
		mod(&r)
		if err := r.Validate(); !errors.Is(err, vendor.ErrInvalidRequest) {
			t.Errorf("%s: Validate = %v, want ErrInvalidRequest", name, err)
		}
	}
}

// startSimHandler serves h (a simulator, possibly wrapped) and returns its base URL.
func startSimHandler(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}
