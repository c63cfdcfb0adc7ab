package vendor

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name, v string
		want    time.Duration
	}{
		{"empty", "", 0},
		{"seconds", "7", 7 * time.Second},
		{"zero", "0", 0},
		{"negative", "-3", 0},
		{"http date", now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{"date in the past", now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"garbage", "soon", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseRetryAfter(tc.v, now); got != tc.want {
				t.Errorf("parseRetryAfter(%q) = %v, want %v", tc.v, got, tc.want)
			}
		})
	}
}

func TestAPIError(t *testing.T) {
	tests := []struct {
		name      string
		code      int
		body      string
		wantText  string
		temporary bool
	}{
		{"status body", 400, `{"@type":"Status","statusCode":400,"title":"Bad Request","description":"bad field"}`,
			"vendor: HTTP 400 Bad Request: bad field", false},
		{"errors details", 422, `{"title":"Unprocessable","description":"invalid","errors":[{"detail":"fieldList empty"}]}`,
			"vendor: HTTP 422 Unprocessable: invalid; fieldList empty", false},
		{"html", 502, "<html><body>Bad   gateway</body></html>", "vendor: HTTP 502 Bad Gateway: <html><body>Bad gateway</body></html>", true},
		{"empty", 404, "", "vendor: HTTP 404 Not Found", false},
		{"unauthorized", 401, "", "vendor: HTTP 401 Unauthorized", true},
		{"timeout", 408, "", "vendor: HTTP 408 Request Timeout", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newAPIError(&http.Response{StatusCode: tc.code, Header: http.Header{}}, []byte(tc.body), time.Now())
			if e.Error() != tc.wantText || e.Temporary() != tc.temporary {
				t.Errorf("Error() = %q, Temporary() = %v; want %q, %v", e.Error(), e.Temporary(), tc.wantText, tc.temporary)
			}
			wrapped := fmt.Errorf("output of x: %w", e)
			if errors.Is(wrapped, ErrNotFound) != (tc.code == 404) {
				t.Errorf("errors.Is(ErrNotFound) wrong for %d", tc.code)
			}
		})
	}
}
