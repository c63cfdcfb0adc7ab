package vendorsim

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/vendor"
)

func TestTokenEndpoint(t *testing.T) {
	clk := newClock()
	creds := &vendor.Credentials{ClientID: "cid", ClientSecret: "00112233445566778899aabbccddeeff"}
	srv := start(t, Options{Credentials: creds, TokenTTL: 30 * time.Second, Now: clk.Now})
	form := func(v url.Values) string { return v.Encode() }
	ct := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	good := url.Values{"grant_type": {"client_credentials"}, "client_id": {"cid"}, "client_secret": {creds.ClientSecret}}
	for name, tc := range map[string]struct {
		method, body string
		code         int
		want         string
	}{
		"GET":          {"GET", "", http.StatusMethodNotAllowed, "invalid_request"},
		"grant":        {"POST", form(url.Values{"grant_type": {"password"}}), http.StatusBadRequest, "unsupported_grant_type"},
		"wrong secret": {"POST", strings.Replace(form(good), "00112233", "99112233", 1), http.StatusUnauthorized, "invalid_client"},
		"form":         {"POST", form(good), http.StatusOK, "access_token"},
	} {
		t.Run(name, func(t *testing.T) {
			code, _, body := do(t, tc.method, srv.URL+TokenPath, tc.body, ct)
			if code != tc.code || !strings.Contains(string(body), tc.want) {
				t.Fatalf("status %d %s, want %d with %q", code, body, tc.code, tc.want)
			}
			if strings.Contains(string(body), creds.ClientSecret) {
				t.Fatal("the answer echoes the secret")
			}
		})
	}
	_, _, body := do(t, "POST", srv.URL+TokenPath, form(good), ct)
	var tr struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &tr); err != nil || tr.TokenType != "Bearer" || tr.ExpiresIn != 30 {
		t.Fatalf("token answer %s", body)
	}
	hdr := map[string]string{"api-version": "2", "Authorization": "Bearer " + tr.AccessToken}
	if code, _, body := do(t, "GET", srv.URL+Prefix+"/catalogs/", "", hdr); code != http.StatusOK {
		t.Fatalf("with a bearer token: %d %s", code, body)
	}
	hdr["Authorization"] = "Bearer nope"
	if code, _, body := do(t, "GET", srv.URL+Prefix+"/catalogs/", "", hdr); code != http.StatusUnauthorized ||
		!strings.Contains(string(body), "invalid bearer token") {
		t.Fatalf("with an unknown token: %d %s", code, body)
	}
	clk.Advance(30 * time.Second)
	hdr["Authorization"] = "Bearer " + tr.AccessToken
	if code, _, body := do(t, "GET", srv.URL+Prefix+"/catalogs/", "", hdr); code != http.StatusUnauthorized ||
		!strings.Contains(string(body), "expired") {
		t.Fatalf("with an expired token: %d %s", code, body)
	}

	open := start(t, Options{})
	if code, _, _ := do(t, "POST", open.URL+TokenPath, form(good), ct); code != http.StatusNotFound {
		t.Fatalf("token endpoint without credentials: %d, want 404", code)
	}
}
