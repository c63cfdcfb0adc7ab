package vendor

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"
)

// Credentials are the vendor's API credentials, as its JSON credentials file holds them.
//
// The secret must never reach a log, an error or a trace: String, GoString, LogValue and
// MarshalJSON all leave it out, so printing or logging a Credentials value is safe.
type Credentials struct {
	ClientID       string   `json:"client_id"`
	ClientSecret   string   `json:"client_secret"`   // hex
	ExpirationDate int64    `json:"expiration_date"` // epoch milliseconds; 0 = none given
	Scopes         []string `json:"scopes,omitempty"`
}

// LoadCredentials reads and checks a credentials file. A file that others may read or write,
// or its group write, is refused, with the command that fixes it: it holds the vendor
// licence's secret. Its group may read it: that is how a container's user is given a secret
// it does not own (Kubernetes' fsGroup, a host file shared with one group). Errors wrap
// ErrCredentials and never quote the file's content.
func LoadCredentials(path string) (*Credentials, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCredentials, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCredentials, err)
	}
	if perm := fi.Mode().Perm(); perm&0o027 != 0 {
		return nil, fmt.Errorf("%w: %s is open to others or writable by its group (mode %04o): it holds the vendor's secret; run `chmod 600 %s` (or 640 to let the service's group read it; in Kubernetes, mount the Secret with defaultMode 0440 and the pod's fsGroup)",
			ErrCredentials, path, perm, path)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCredentials, path, err)
	}
	var c Credentials
	if err := json.Unmarshal(data, &c); err != nil {
		// json's syntax errors do not quote the input, but type errors may name a value's
		// type only; either way no secret text is echoed.
		return nil, fmt.Errorf("%w: %s: not a credentials JSON file: %v", ErrCredentials, path, err)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &c, nil
}

// Validate checks that the credentials can sign requests.
func (c *Credentials) Validate() error {
	if strings.TrimSpace(c.ClientID) == "" {
		return fmt.Errorf("%w: client_id is empty", ErrCredentials)
	}
	if _, err := c.key(); err != nil {
		return err
	}
	return nil
}

// Expires returns when the credentials expire, and false when the file gives no date.
func (c *Credentials) Expires() (time.Time, bool) {
	if c.ExpirationDate <= 0 {
		return time.Time{}, false
	}
	return time.UnixMilli(c.ExpirationDate).UTC(), true
}

// key returns the HMAC key: the un-hexed secret.
func (c *Credentials) key() ([]byte, error) {
	if c.ClientSecret == "" {
		return nil, fmt.Errorf("%w: client_secret is empty", ErrCredentials)
	}
	k, err := hex.DecodeString(c.ClientSecret)
	if err != nil {
		// hex's error quotes the offending byte; say where instead.
		return nil, fmt.Errorf("%w: client_secret is not hex", ErrCredentials)
	}
	return k, nil
}

const redacted = "REDACTED"

// String describes the credentials without the secret.
func (c Credentials) String() string {
	exp := "none"
	if t, ok := c.Expires(); ok {
		exp = t.Format(time.RFC3339)
	}
	return fmt.Sprintf("vendor.Credentials{ClientID: %q, ClientSecret: %s, Expires: %s, Scopes: %q}",
		c.ClientID, redacted, exp, c.Scopes)
}

// GoString makes %#v as safe as %v.
func (c Credentials) GoString() string { return c.String() }

// LogValue logs the credentials without the secret.
func (c Credentials) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("client_id", c.ClientID), slog.String("client_secret", redacted)}
	if t, ok := c.Expires(); ok {
		attrs = append(attrs, slog.Time("expires", t))
	}
	return slog.GroupValue(attrs...)
}

// MarshalJSON keeps the secret out of any JSON the credentials end up in (a config dump, a
// debug endpoint). Credentials are read from files, never written by this program.
func (c Credentials) MarshalJSON() ([]byte, error) {
	type plain Credentials
	p := plain(c)
	p.ClientSecret = redacted
	return json.Marshal(p)
}
