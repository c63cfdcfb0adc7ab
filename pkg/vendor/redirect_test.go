package vendor_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/marketpipe/marketpipe/pkg/vendor"
)

// A redirect to another host is followed without the vendor's credentials (the JWT header, or
// the OAuth2 bearer token), and refused for a POST; one to the vendor's own host keeps them.
func TestRedirectsKeepCredentialsHome(t *testing.T) {
	const file = "START-OF-FILE\nEND-OF-FILE\n"
	var (
		mu   sync.Mutex
		seen = map[string]http.Header{} // by server and path
	)
	record := func(name string, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		seen[name+" "+r.URL.Path] = r.Header.Clone()
	}
	files := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		record("files", r)
		io.WriteString(w, file)
	}))
	t.Cleanup(files.Close)
	var vendorURL string
	vend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		record("vendor", r)
		switch {
		case r.URL.Path == "/oauth/token":
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"access_token":"tok-secret","token_type":"Bearer","expires_in":3600}`)
		case strings.HasSuffix(r.URL.Path, "/elsewhere.bbg"):
			http.Redirect(w, r, files.URL+"/f/elsewhere.bbg", http.StatusFound)
		case r.URL.Path == "/f/home.bbg":
			io.WriteString(w, file)
		case strings.HasSuffix(r.URL.Path, "/home.bbg"):
			http.Redirect(w, r, vendorURL+"/f/home.bbg", http.StatusFound)
		case r.Method == http.MethodPost:
			http.Redirect(w, r, files.URL+"/eap/catalogs/acct/requests/", http.StatusTemporaryRedirect)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(vend.Close)
	vendorURL = vend.URL
	creds := &vendor.Credentials{ClientID: "cid", ClientSecret: secretHex}
	for _, tc := range []struct {
		name, tokenURL, header string
	}{
		{"jwt", "", "Jwt"},
		{"oauth2", vend.URL + "/oauth/token", "Authorization"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clear(seen)
			c, err := vendor.New(vendor.Config{BaseURL: vend.URL + "/eap", Account: "acct", Credentials: creds,
				TokenURL: tc.tokenURL, MaxRetries: -1})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			for _, key := range []string{"elsewhere.bbg", "home.bbg"} {
				rc, err := c.Download(ctx, key, "", -1)
				if err != nil {
					t.Fatalf("download %s: %v", key, err)
				}
				got, err := io.ReadAll(rc)
				rc.Close()
				if err != nil || string(got) != file {
					t.Fatalf("download %s: %q, %v", key, got, err)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			for _, path := range []string{"vendor /eap/catalogs/acct/content/responses/elsewhere.bbg", "vendor /f/home.bbg"} {
				if seen[path].Get(tc.header) == "" {
					t.Errorf("%s: no %s header: the vendor's own host gets the credentials", path, tc.header)
				}
			}
			h, ok := seen["files /f/elsewhere.bbg"]
			if !ok {
				t.Fatal("the redirect to the other host was not followed")
			}
			for _, name := range []string{"Jwt", "Authorization"} {
				if v := h.Get(name); v != "" {
					t.Errorf("the other host got %s: %.12s...", name, v)
				}
			}
		})
	}

	t.Run("post", func(t *testing.T) {
		clear(seen)
		c, err := vendor.New(vendor.Config{BaseURL: vend.URL + "/eap", Account: "acct", Credentials: creds, MaxRetries: -1})
		if err != nil {
			t.Fatal(err)
		}
		err = c.Submit(context.Background(), vendor.Request{Identifier: "redir1", Program: "getdata",
			Securities: []string{"IBM US Equity"}, Fields: []string{"PX_LAST"}})
		if err == nil || !strings.Contains(err.Error(), "to another host") {
			t.Errorf("Submit = %v, want the redirect refused", err)
		}
		mu.Lock()
		defer mu.Unlock()
		for k := range seen {
			if strings.HasPrefix(k, "files ") {
				t.Errorf("the other host got %s", k)
			}
		}
	})
}
