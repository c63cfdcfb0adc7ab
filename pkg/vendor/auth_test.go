package vendor_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/marketpipe/marketpipe/pkg/vendor"
)

const secretHex = "5ec7e75ec7e75ec7e75ec7e75ec7e75e"

func writeCreds(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "creds.json")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestLoadCredentialsRefusesAnOpenFile: a credentials file others may read or write, or its
// group write, is refused, the error giving the fix; once fixed it loads, also group-readable.
func TestLoadCredentialsRefusesAnOpenFile(t *testing.T) {
	path := writeCreds(t, `{"client_id":"cid","client_secret":"`+secretHex+`"}`)
	for _, mode := range []os.FileMode{0o644, 0o604, 0o620, 0o660, 0o606} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		_, err := vendor.LoadCredentials(path)
		if !errors.Is(err, vendor.ErrCredentials) || !strings.Contains(err.Error(), "chmod 600 "+path) {
			t.Errorf("mode %04o: %v, want ErrCredentials saying chmod 600", mode, err)
		}
	}
	for _, mode := range []os.FileMode{0o600, 0o400, 0o640, 0o440} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		if _, err := vendor.LoadCredentials(path); err != nil {
			t.Errorf("mode %04o: %v", mode, err)
		}
	}
}

func TestLoadCredentials(t *testing.T) {
	tests := []struct {
		name    string
		content string
		wantErr bool
	}{
		{"valid", `{"client_id":"cid","client_secret":"` + secretHex + `","expiration_date":1900000000000,"scopes":["eap"]}`, false},
		{"no id", `{"client_secret":"` + secretHex + `"}`, true},
		{"no secret", `{"client_id":"cid"}`, true},
		{"secret not hex", `{"client_id":"cid","client_secret":"` + secretHex + `zz"}`, true},
		{"not json", `client_secret=` + secretHex, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := vendor.LoadCredentials(writeCreds(t, tc.content))
			if (err != nil) != tc.wantErr {
				t.Fatalf("LoadCredentials error %v, want error %v", err, tc.wantErr)
			}
			if err != nil {
				if !errors.Is(err, vendor.ErrCredentials) {
					t.Errorf("error %v does not wrap ErrCredentials", err)
				}
				if strings.Contains(err.Error(), secretHex) {
					t.Errorf("error leaks the secret: %v", err)
				}
				return
			}
			if exp, ok := c.Expires(); !ok || exp.Year() != 2030 || c.ClientID != "cid" || c.Scopes[0] != "eap" {
				t.Errorf("credentials %v, expires %v", c, exp)
			}
		})
	}
	if _, err := vendor.LoadCredentials(filepath.Join(t.TempDir(), "missing.json")); !errors.Is(err, vendor.ErrCredentials) {
		t.Errorf("missing file: %v", err)
	}
}

func TestCredentialsRedacted(t *testing.T) {
	c := &vendor.Credentials{ClientID: "cid", ClientSecret: secretHex, ExpirationDate: 1900000000000}
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	log.Info("creds", "c", *c, "p", c)
	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]string{
		"%v": fmt.Sprintf("%v", *c), "%+v": fmt.Sprintf("%+v", *c), "%#v": fmt.Sprintf("%#v", *c),
		"%s pointer": fmt.Sprintf("%s", c), "slog": logs.String(), "json": string(js),
	} {
		if strings.Contains(s, secretHex) {
			t.Errorf("%s shows the secret: %s", name, s)
		}
		if !strings.Contains(s, "cid") {
			t.Errorf("%s lost the client id: %s", name, s)
		}
	}
}

// TestNoSecretInErrorsOrLogs drives the client through failures with debug logging on and
// checks neither the secret nor any token it sent shows up.
func TestNoSecretInErrorsOrLogs(t *testing.T) {
	var sent []string
	var mu sync.Mutex
	record := func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		sent = append(sent, r.Header.Get("JWT"), strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
		mu.Unlock()
	}
	fail := func(code int) func(http.ResponseWriter, *http.Request) {
		return func(w http.ResponseWriter, r *http.Request) {
			record(w, r)
			status(code, "denied for this client")(w, r)
		}
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	creds := &vendor.Credentials{ClientID: "cid", ClientSecret: secretHex}
	c, _ := scripted(t, vendor.Config{Credentials: creds, Logger: log, MaxRetries: 2},
		fail(503), fail(401), fail(401), fail(500), fail(403))
	var errs []string
	for range 3 {
		if err := c.Submit(context.Background(), histReq); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) == 0 {
		t.Fatal("no errors to check")
	}
	all := strings.Join(errs, "\n") + "\n" + logs.String()
	if strings.Contains(all, secretHex) {
		t.Errorf("secret in errors or logs:\n%s", all)
	}
	for _, tok := range sent {
		if tok != "" && strings.Contains(all, tok) {
			t.Errorf("a token sent to the server is in errors or logs:\n%s", all)
		}
	}
}

func TestJWTClaims(t *testing.T) {
	key, _ := hex.DecodeString(secretHex)
	var claims jwt.MapClaims
	now := time.Unix(1767646800, 0)
	c, _ := scripted(t, vendor.Config{Credentials: &vendor.Credentials{ClientID: "cid", ClientSecret: secretHex},
		Region: "ny", Now: func() time.Time { return now }},
		func(w http.ResponseWriter, r *http.Request) {
			claims = jwt.MapClaims{}
			_, err := jwt.ParseWithClaims(r.Header.Get("JWT"), claims, func(*jwt.Token) (any, error) { return key, nil },
				jwt.WithValidMethods([]string{"HS256"}), jwt.WithTimeFunc(func() time.Time { return now }))
			if err != nil {
				http.Error(w, err.Error(), 401)
				return
			}
			w.Write([]byte(emptyList))
		})
	if _, err := c.Output(context.Background(), "eod20260105a"); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"iss": "cid", "method": "GET", "path": "/eap/catalogs/acct/content/responses/",
		"host": "127.0.0.1", "region": "ny", "exp": float64(now.Unix() + 25), "iat": float64(now.Unix() - 25),
		"nbf": float64(now.Unix() - 25)}
	for k, v := range want {
		if claims[k] != v {
			t.Errorf("claim %s = %v, want %v", k, claims[k], v)
		}
	}
	if jti, _ := claims["jti"].(string); len(jti) < 16 {
		t.Errorf("jti %q", claims["jti"])
	}
}

func TestExpiredCredentialsRefused(t *testing.T) {
	_, err := vendor.New(vendor.Config{BaseURL: "http://127.0.0.1:1/eap",
		Credentials: &vendor.Credentials{ClientID: "cid", ClientSecret: secretHex, ExpirationDate: 1000}})
	if !errors.Is(err, vendor.ErrCredentials) {
		t.Fatalf("New with expired credentials: %v", err)
	}
}

// TestOAuth checks bearer tokens: fetched once, reused, renewed before expiry, and renewed
// once on a 401.
func TestOAuth(t *testing.T) {
	var issued atomic.Int32
	clk := &clock{t: time.Unix(1767646800, 0)}
	tokenSrv := httptestServer(t, func(w http.ResponseWriter, r *http.Request) {
		id, secret, ok := r.BasicAuth()
		if !ok || id != "cid" || secret != secretHex || r.FormValue("grant_type") != "client_credentials" {
			w.WriteHeader(401)
			w.Write([]byte(`{"error":"invalid_client","error_description":"bad client credentials"}`))
			return
		}
		n := issued.Add(1)
		fmt.Fprintf(w, `{"access_token":"tok%d","token_type":"Bearer","expires_in":300}`, n)
	})
	var seen []string
	valid := map[string]bool{"tok1": true, "tok3": true, "tok4": true} // tok2 is "revoked"
	api := func(w http.ResponseWriter, r *http.Request) {
		tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		seen = append(seen, tok)
		if !valid[tok] {
			status(401, "token revoked")(w, r)
			return
		}
		w.Write([]byte(emptyList))
	}
	creds := &vendor.Credentials{ClientID: "cid", ClientSecret: secretHex}
	c, _ := scripted(t, vendor.Config{Credentials: creds, TokenURL: tokenSrv, Now: clk.Now}, api, api, api, api, api)
	ctx := context.Background()
	mustOutput := func() {
		t.Helper()
		if _, err := c.Output(ctx, "eod20260105a"); err != nil {
			t.Fatal(err)
		}
	}
	mustOutput()                   // tok1
	mustOutput()                   // tok1 reused
	clk.Advance(250 * time.Second) // within the last fifth of its life: renew
	mustOutput()                   // tok2 refused → renew → tok3
	if want := "[tok1 tok1 tok2 tok3]"; fmt.Sprint(seen) != want {
		t.Errorf("tokens sent %v, want %s", seen, want)
	}

	bad := &vendor.Credentials{ClientID: "cid", ClientSecret: "00"}
	c2, _ := scripted(t, vendor.Config{Credentials: bad, TokenURL: tokenSrv})
	_, err := c2.Output(ctx, "x")
	if err == nil || !strings.Contains(err.Error(), "bad client credentials") {
		t.Errorf("Output with refused credentials: %v", err)
	}
}

// httptestServer serves h (a token endpoint) and returns its URL.
func httptestServer(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL + "/oauth2/token"
}

func TestSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	c, _ := scripted(t, vendor.Config{TracerProvider: tp},
		status(201, ""), body(emptyList), status(404, "no such key"))
	ctx := context.Background()
	if err := c.Submit(ctx, histReq); err != nil {
		t.Fatal(err)
	}
	c.Output(ctx, histReq.Identifier)
	c.Download(ctx, "missing", "", -1)
	var names []string
	for _, s := range rec.Ended() {
		names = append(names, s.Name()+"/"+s.Status().Code.String())
	}
	if want := "[vendor.Submit/Unset vendor.Output/Unset vendor.Download/Error]"; fmt.Sprint(names) != want {
		t.Errorf("spans %v, want %s", names, want)
	}
}
