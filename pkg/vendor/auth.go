package vendor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// authorizer adds credentials to one outgoing request.
type authorizer interface {
	authorize(ctx context.Context, req *http.Request) error
	// renew drops any cached token after a 401, so the next authorize fetches a new one.
	renew()
}

// JWTLifetime is the validity of a per-request JWT. It is short because each token authorizes a
// single request (method and path are claims); nbf is set as far back to absorb clock skew.
const JWTLifetime = 25 * time.Second

// jwtAuth signs every request with its own HS256 JWT, the vendor's long-standing scheme.
type jwtAuth struct {
	clientID string
	key      []byte
	region   string
	now      func() time.Time
}

func (a *jwtAuth) authorize(_ context.Context, req *http.Request) error {
	tok, err := a.token(req.Method, req.URL)
	if err != nil {
		return err
	}
	req.Header.Set("JWT", tok)
	return nil
}

func (a *jwtAuth) renew() {} // every request gets a fresh token anyway

func (a *jwtAuth) token(method string, u *url.URL) (string, error) {
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", fmt.Errorf("jwt id: %w", err)
	}
	now := a.now().Unix()
	life := int64(JWTLifetime / time.Second)
	claims := jwt.MapClaims{
		"iss":    a.clientID,
		"iat":    now - life,
		"nbf":    now - life,
		"exp":    now + life,
		"jti":    hex.EncodeToString(jti[:]),
		"region": a.region,
		"method": method,
		"path":   u.Path,
		"host":   u.Hostname(),
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(a.key)
	if err != nil {
		return "", fmt.Errorf("sign jwt: %w", err) // the error names no key material
	}
	return tok, nil
}

// oauthAuth sends a bearer token from an OAuth2 client-credentials token endpoint, renewing it
// before it expires so requests do not fail at the boundary.
type oauthAuth struct {
	tokenURL string
	id       string
	secret   string
	scopes   []string
	hc       *http.Client
	now      func() time.Time

	mu      sync.Mutex // held while fetching: concurrent callers wait for one fetch
	token   string
	renewAt time.Time
}

func (a *oauthAuth) authorize(ctx context.Context, req *http.Request) error {
	tok, err := a.get(ctx)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	return nil
}

func (a *oauthAuth) renew() {
	a.mu.Lock()
	a.token = ""
	a.mu.Unlock()
}

func (a *oauthAuth) get(ctx context.Context) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.token != "" && a.now().Before(a.renewAt) {
		return a.token, nil
	}
	form := url.Values{"grant_type": {"client_credentials"}}
	if len(a.scopes) > 0 {
		form.Set("scope", strings.Join(a.scopes, " "))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", fmt.Errorf("oauth token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(url.QueryEscape(a.id), url.QueryEscape(a.secret))
	resp, err := a.hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("oauth token: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	if err != nil {
		return "", fmt.Errorf("oauth token: read: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		e := newAPIError(resp, body, a.now())
		if e.Description == "" {
			// RFC 6749 errors: {"error":"invalid_client","error_description":"..."}.
			var oe struct {
				Error       string `json:"error"`
				Description string `json:"error_description"`
			}
			_ = json.Unmarshal(body, &oe)
			e.Description = strings.TrimSpace(oe.Error + " " + oe.Description)
		}
		return "", fmt.Errorf("oauth token: %w", e)
	}
	var tr struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int64  `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &tr); err != nil || tr.AccessToken == "" {
		return "", fmt.Errorf("oauth token: response has no access_token")
	}
	life := time.Duration(tr.ExpiresIn) * time.Second
	if life <= 0 {
		life = 5 * time.Minute
	}
	// Renew when a fifth of the lifetime (at most a minute) is left.
	margin := min(life/5, time.Minute)
	a.token, a.renewAt = tr.AccessToken, a.now().Add(life-margin)
	return a.token, nil
}
