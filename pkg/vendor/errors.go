package vendor

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Sentinel errors. Each is returned wrapped, with what was being done; match with errors.Is.
var (
	// ErrNotFound matches an *APIError with status 404 (an unknown request, key or account).
	ErrNotFound = errors.New("vendor: not found")
	// ErrDigestMismatch is returned by a download's Read, instead of io.EOF, when the decoded
	// bytes do not hash to the expected digest: the file must not be used.
	ErrDigestMismatch = errors.New("vendor: digest mismatch")
	// ErrTruncated is returned by a download's Read when the body ended before its
	// Content-Length, or the gzip stream ended early: the connection was cut.
	ErrTruncated = errors.New("vendor: body truncated")
	// ErrNoAccount means the catalog list holds no scheduled account for these credentials.
	ErrNoAccount = errors.New("vendor: no scheduled account in the catalog list")
	// ErrInvalidRequest means a Request was refused before anything was sent.
	ErrInvalidRequest = errors.New("vendor: invalid request")
	// ErrCredentials means the credentials file or its secret is unusable.
	ErrCredentials = errors.New("vendor: invalid credentials")
)

// APIError is a non-2xx answer from the vendor, with the description from its Status body.
// It never holds request headers, so no credential can leak through it.
type APIError struct {
	StatusCode  int
	Title       string
	Description string
	// RetryAfter is the server's Retry-After (429, 503), zero when absent. When it is longer than
	// the client waits by itself (Config.MaxRetryAfter) the error is returned with it, so the
	// caller can reschedule (e.g. NakWithDelay) instead of holding a worker.
	RetryAfter time.Duration
}

// Error includes the status and the vendor's description, which usually says what to fix.
func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString("vendor: HTTP ")
	b.WriteString(strconv.Itoa(e.StatusCode))
	if e.Title != "" {
		b.WriteString(" " + e.Title)
	} else if t := http.StatusText(e.StatusCode); t != "" {
		b.WriteString(" " + t)
	}
	if e.Description != "" {
		b.WriteString(": " + e.Description)
	}
	if e.RetryAfter > 0 {
		b.WriteString(" (retry after " + e.RetryAfter.String() + ")")
	}
	return b.String()
}

// Temporary reports whether the same call may succeed later: 401 (credentials may be renewed or
// rotated), 408, 429 and 5xx. Other 4xx are permanent: repeating the call cannot help.
func (e *APIError) Temporary() bool {
	switch {
	case e.StatusCode == http.StatusUnauthorized, e.StatusCode == http.StatusRequestTimeout,
		e.StatusCode == http.StatusTooManyRequests, e.StatusCode >= 500:
		return true
	}
	return false
}

// Is lets errors.Is(err, ErrNotFound) match a 404.
func (e *APIError) Is(target error) bool {
	return target == ErrNotFound && e.StatusCode == http.StatusNotFound
}

// status is the vendor's error body: {"@type":"Status","statusCode":..,"title":..,
// "description":..,"errors":[{"detail":..}]}.
type status struct {
	Title       string `json:"title"`
	Description string `json:"description"`
	Errors      []struct {
		Detail string `json:"detail"`
	} `json:"errors"`
}

// maxErrorBody bounds how much of an error body is read: enough for any Status JSON.
const maxErrorBody = 64 << 10

// newAPIError builds the error from a response whose body (at most maxErrorBody bytes) is body.
func newAPIError(resp *http.Response, body []byte, now time.Time) *APIError {
	e := &APIError{StatusCode: resp.StatusCode}
	var st status
	if json.Unmarshal(body, &st) == nil {
		e.Title, e.Description = st.Title, st.Description
		var details []string
		for _, d := range st.Errors {
			if d.Detail != "" && d.Detail != e.Description {
				details = append(details, d.Detail)
			}
		}
		if len(details) > 0 {
			if e.Description != "" {
				e.Description += "; "
			}
			e.Description += strings.Join(details, "; ")
		}
	} else if text := strings.TrimSpace(string(body)); text != "" {
		// Not a Status body (a proxy's HTML page, say): keep a short, printable excerpt.
		if len(text) > 200 {
			text = text[:200] + "..."
		}
		if utf8.ValidString(text) {
			e.Description = strings.Join(strings.Fields(text), " ")
		}
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		e.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), now)
	}
	return e
}

// parseRetryAfter reads delay-seconds or an HTTP-date; zero when absent or unreadable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}
