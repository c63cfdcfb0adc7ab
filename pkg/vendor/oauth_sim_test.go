package vendor_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/vendor"
	"github.com/marketpipe/marketpipe/services/vendorsim"
)

// TestOAuthAgainstSimulator runs the client's OAuth2 mode against the simulator's token
// endpoint: one token serves many calls, it is renewed before it expires (no 401 on the way),
// a token the simulator expires early is answered by one 401, a renewal and a retry, and
// neither the secret nor any token reaches errors or logs.
func TestOAuthAgainstSimulator(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const secret = "8899aabbccddeeff0011223344556677"
	creds := &vendor.Credentials{ClientID: "oauth-client", ClientSecret: secret}
	clk := &clock{t: time.Date(2026, 1, 5, 21, 0, 0, 0, time.UTC)}
	var logs bytes.Buffer
	var logMu sync.Mutex
	log := slog.New(slog.NewJSONHandler(lockedWriter{&logs, &logMu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	sim := newSim(t, vendorsim.Options{Credentials: creds, TokenTTL: 100 * time.Second, Seed: 4,
		RunDate: runDate, Now: clk.Now, Logger: log})

	var mu sync.Mutex
	var bearers []string
	statuses := map[int]int{}
	base := startSimHandler(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != vendorsim.TokenPath {
			if r.Header.Get("JWT") != "" {
				t.Errorf("JWT header sent in OAuth2 mode")
			}
			mu.Lock()
			bearers = append(bearers, strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
			mu.Unlock()
		}
		rec := &codeRecorder{ResponseWriter: w, code: http.StatusOK}
		sim.ServeHTTP(rec, r)
		if r.URL.Path != vendorsim.TokenPath {
			mu.Lock()
			statuses[rec.code]++
			mu.Unlock()
		}
	}))
	c := newClient(t, vendor.Config{BaseURL: base + "/eap", TokenURL: base + vendorsim.TokenPath,
		Credentials: creds, Logger: log, Now: clk.Now})

	// Fetched once, reused by every call.
	r := histReq
	r.Identifier = "oauth1"
	if err := c.Submit(ctx, r); err != nil {
		t.Fatalf("Submit: %v", err)
	}
	out, err := c.Output(ctx, r.Identifier)
	if err != nil || out == nil {
		t.Fatalf("Output: %+v, %v", out, err)
	}
	rc, err := c.Download(ctx, out.Key, out.Digest, out.ContentLength)
	if err != nil {
		t.Fatalf("Download: %v", err)
	}
	if _, err := io.Copy(io.Discard, rc); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	if n := sim.TokensIssued(); n != 1 {
		t.Fatalf("%d tokens fetched for one flow, want 1 (reused)", n)
	}
	distinct := func() map[string]bool {
		mu.Lock()
		defer mu.Unlock()
		m := map[string]bool{}
		for _, b := range bearers {
			m[b] = true
		}
		return m
	}
	if d := distinct(); len(d) != 1 || d[""] {
		t.Fatalf("bearer tokens sent: %d distinct (%v)", len(d), d[""])
	}

	// Renewed before expiry: past the renewal point (4/5 of 100 s), before the expiry.
	clk.Advance(85 * time.Second)
	if ok, err := c.RequestExists(ctx, r.Identifier); !ok || err != nil {
		t.Fatalf("RequestExists: %v, %v", ok, err)
	}
	if n := sim.TokensIssued(); n != 2 {
		t.Fatalf("%d tokens after 85 s of a 100 s token, want 2 (renewed early)", n)
	}
	if statuses[http.StatusUnauthorized] != 0 {
		t.Fatalf("a 401 before the simulator expired anything: %v", statuses)
	}

	// Expired by the simulator: one 401, a new token, the call retried once and successful.
	sim.ExpireTokens()
	if ok, err := c.RequestExists(ctx, r.Identifier); !ok || err != nil {
		t.Fatalf("RequestExists after the tokens expired: %v, %v", ok, err)
	}
	if n, u := sim.TokensIssued(), statuses[http.StatusUnauthorized]; n != 3 || u != 1 {
		t.Fatalf("after ExpireTokens: %d tokens, %d 401s; want 3 and 1", n, u)
	}
	if d := distinct(); len(d) != 3 {
		t.Fatalf("%d distinct bearer tokens sent, want 3", len(d))
	}

	// A wrong secret: the token endpoint's 401, permanent, without the secret.
	const wrong = "00000000000000000000000000000001"
	bad := newClient(t, vendor.Config{BaseURL: base + "/eap", TokenURL: base + vendorsim.TokenPath,
		Credentials: &vendor.Credentials{ClientID: "oauth-client", ClientSecret: wrong}, Logger: log, Now: clk.Now})
	err = bad.Submit(ctx, vendor.Request{Identifier: "oauth2", Program: vendor.ProgramGetData,
		Securities: []string{"IBM US Equity"}, Fields: []string{"PX_LAST"}})
	var ae *vendor.APIError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusUnauthorized || !strings.Contains(err.Error(), "invalid_client") {
		t.Fatalf("Submit with a wrong secret: %v, want the token endpoint's 401 invalid_client", err)
	}
	if n := sim.TokensIssued(); n != 3 {
		t.Fatalf("a token was issued for a wrong secret")
	}

	// Without any auth header: 401 from HAPI.
	anon := newClient(t, vendor.Config{BaseURL: base + "/eap"})
	if _, err := anon.Account(ctx); !errors.As(err, &ae) || ae.StatusCode != http.StatusUnauthorized {
		t.Fatalf("Account without credentials: %v, want 401", err)
	}

	logMu.Lock()
	all := err.Error() + "\n" + logs.String()
	logMu.Unlock()
	for _, s := range []string{secret, wrong} {
		if strings.Contains(all, s) {
			t.Errorf("a secret is in errors or logs:\n%s", all)
		}
	}
	for tok := range distinct() {
		if tok != "" && strings.Contains(all, tok) {
			t.Errorf("bearer token %.6s... is in errors or logs", tok)
		}
	}
	if !strings.Contains(logs.String(), "vendorsim request") {
		t.Error("no simulator log lines were checked")
	}
}

// TestJWTStillAcceptedWithOAuth checks that a simulator with credentials takes both schemes.
func TestJWTStillAcceptedWithOAuth(t *testing.T) {
	creds := &vendor.Credentials{ClientID: "both", ClientSecret: "00112233445566778899aabbccddeeff"}
	sim := startSim(t, vendorsim.Options{Credentials: creds})
	for _, tokenURL := range []string{"", sim.URL + vendorsim.TokenPath} {
		c := newClient(t, vendor.Config{BaseURL: sim.URL + "/eap", Credentials: creds, TokenURL: tokenURL})
		if _, err := c.Account(context.Background()); err != nil {
			t.Errorf("TokenURL %q: Account: %v", tokenURL, err)
		}
	}
}

type codeRecorder struct {
	http.ResponseWriter
	code int
}

func (r *codeRecorder) WriteHeader(code int) { r.code = code; r.ResponseWriter.WriteHeader(code) }

func (r *codeRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
