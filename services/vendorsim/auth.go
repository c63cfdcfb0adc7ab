package vendorsim

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/marketpipe/marketpipe/pkg/vendor"
)

// jwtVerifier checks HAPI's per-request JWT header: HS256 with the un-hexed secret, issuer,
// expiry, and that the token was made for this method and path. A jti is accepted once, since
// a token is meant for one request.
type jwtVerifier struct {
	clientID string
	key      []byte
	now      func() time.Time

	mu   sync.Mutex
	seen map[string]time.Time // jti → expiry
}

func newJWTVerifier(c *vendor.Credentials, now func() time.Time) *jwtVerifier {
	v := &jwtVerifier{clientID: c.ClientID, now: now, seen: map[string]time.Time{}}
	// The secret was validated when loaded; a bad one leaves key empty and every token fails.
	v.key, _ = hex.DecodeString(c.ClientSecret)
	return v
}

// verify returns the reason a request is not authorized (the 401's description). The reasons
// say what is wrong with the token, never what the secret is.
func (v *jwtVerifier) verify(r *http.Request) error {
	tok := r.Header.Get("JWT")
	if tok == "" {
		return errors.New("missing JWT header")
	}
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(tok, claims, func(*jwt.Token) (any, error) { return v.key, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}), jwt.WithExpirationRequired(),
		jwt.WithIssuer(v.clientID), jwt.WithLeeway(5*time.Second), jwt.WithTimeFunc(v.now))
	if err != nil {
		return fmt.Errorf("invalid JWT: %v", err)
	}
	if m, _ := claims["method"].(string); !strings.EqualFold(m, r.Method) {
		return fmt.Errorf("JWT is for method %q, not %s", m, r.Method)
	}
	if p, _ := claims["path"].(string); p != r.URL.Path {
		return fmt.Errorf("JWT is for path %q, not %s", p, r.URL.Path)
	}
	jti, _ := claims["jti"].(string)
	if jti == "" {
		return errors.New("JWT has no jti")
	}
	exp, _ := claims.GetExpirationTime()
	return v.once(jti, exp.Time)
}

// once records jti and refuses it if seen before; expired entries are pruned as it goes.
func (v *jwtVerifier) once(jti string, exp time.Time) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	now := v.now()
	if len(v.seen) > 1024 {
		for k, e := range v.seen {
			if now.After(e.Add(time.Minute)) {
				delete(v.seen, k)
			}
		}
	}
	if _, dup := v.seen[jti]; dup {
		return errors.New("JWT was already used (jti replayed)")
	}
	v.seen[jti] = exp
	return nil
}
