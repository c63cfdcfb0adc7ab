package vendorsim

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/marketpipe/marketpipe/pkg/vendor"
)

// TokenPath is the OAuth2 token endpoint (client credentials grant), served when the simulator
// has credentials. Point the client's VENDOR_TOKEN_URL (vendor.Config.TokenURL) at it.
const TokenPath = Prefix + "/oauth2/token"

// DefaultTokenTTL is the -token-ttl default: the lifetime of an issued bearer token.
const DefaultTokenTTL = 5 * time.Minute

// tokenIssuer is the OAuth2 client-credentials token endpoint and the bearer-token check.
// Tokens are random, kept in memory with their expiry, and never logged.
type tokenIssuer struct {
	clientID string
	secret   string
	ttl      time.Duration
	now      func() time.Time

	mu     sync.Mutex
	tokens map[string]time.Time // token → expiry
	issued int
}

func newTokenIssuer(c *vendor.Credentials, ttl time.Duration, now func() time.Time) *tokenIssuer {
	if ttl <= 0 {
		ttl = DefaultTokenTTL
	}
	return &tokenIssuer{clientID: c.ClientID, secret: c.ClientSecret, ttl: ttl, now: now, tokens: map[string]time.Time{}}
}

// serveToken answers POST TokenPath as RFC 6749 section 4.4 describes: client_id and
// client_secret in HTTP Basic auth (form-urlencoded, section 2.3.1) or in the form, grant_type
// client_credentials. Errors are RFC 6749 JSON; they never echo what the client sent.
func (ti *tokenIssuer) serveToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		oauthError(w, http.StatusMethodNotAllowed, "invalid_request", "use POST")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "body is not a form")
		return
	}
	if g := r.PostForm.Get("grant_type"); g != "client_credentials" {
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type must be client_credentials")
		return
	}
	id, secret, ok := r.BasicAuth()
	if ok {
		// RFC 6749 2.3.1: both are form-urlencoded before Basic encoding.
		uid, err1 := url.QueryUnescape(id)
		usec, err2 := url.QueryUnescape(secret)
		if err1 == nil && err2 == nil {
			id, secret = uid, usec
		}
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if subtle.ConstantTimeCompare([]byte(id), []byte(ti.clientID)) != 1 ||
		subtle.ConstantTimeCompare([]byte(secret), []byte(ti.secret)) != 1 {
		w.Header().Set("WWW-Authenticate", `Basic realm="vendorsim"`)
		oauthError(w, http.StatusUnauthorized, "invalid_client", "unknown client or wrong secret")
		return
	}
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		oauthError(w, http.StatusInternalServerError, "server_error", "no randomness")
		return
	}
	tok := hex.EncodeToString(b[:])
	now := ti.now()
	ti.mu.Lock()
	for k, exp := range ti.tokens { // prune: at most a few live tokens per client
		if !now.Before(exp) {
			delete(ti.tokens, k)
		}
	}
	ti.tokens[tok] = now.Add(ti.ttl)
	ti.issued++
	ti.mu.Unlock()
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]any{"access_token": tok, "token_type": "Bearer",
		"expires_in": int64((ti.ttl + time.Second - 1) / time.Second)})
}

// verifyBearer checks an Authorization: Bearer token.
func (ti *tokenIssuer) verifyBearer(tok string) error {
	ti.mu.Lock()
	exp, ok := ti.tokens[tok]
	ti.mu.Unlock()
	switch {
	case !ok:
		return errors.New("invalid bearer token")
	case !ti.now().Before(exp):
		return errors.New("bearer token expired")
	}
	return nil
}

// expireAll makes every issued token expired now.
func (ti *tokenIssuer) expireAll() {
	now := ti.now()
	ti.mu.Lock()
	for k := range ti.tokens {
		ti.tokens[k] = now
	}
	ti.mu.Unlock()
}

func oauthError(w http.ResponseWriter, code int, kind, desc string) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, code, map[string]any{"error": kind, "error_description": desc})
}

// bearerToken returns the token of an "Authorization: Bearer" header.
func bearerToken(r *http.Request) (string, bool) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(tok), true
}

// ExpireTokens makes every OAuth2 token issued so far expired, as a vendor revoking or timing
// them out early would: the next request with one gets 401. Tests use it to check the client
// renews and retries.
func (s *Server) ExpireTokens() {
	if s.tokens != nil {
		s.tokens.expireAll()
	}
}

// TokensIssued returns how many OAuth2 tokens the token endpoint has issued.
func (s *Server) TokensIssued() int {
	if s.tokens == nil {
		return 0
	}
	s.tokens.mu.Lock()
	defer s.tokens.mu.Unlock()
	return s.tokens.issued
}
