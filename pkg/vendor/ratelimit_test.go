package vendor_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marketpipe/marketpipe/pkg/vendor"
	"github.com/marketpipe/marketpipe/services/vendorsim"
)

// TestCallsPerMinute checks that the client paces its calls: at 60 a minute (one a second,
// bursts of one), a second call right after the first waits for its turn, so one whose context
// ends sooner fails without reaching the vendor, and the next gets through once its turn comes.
func TestCallsPerMinute(t *testing.T) {
	var seen atomic.Int64
	sim := newSim(t, vendorsim.Options{RunDate: runDate})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Add(1)
		sim.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	c := newClient(t, vendor.Config{BaseURL: srv.URL + "/eap", Account: vendorsim.DefaultAccount, CallsPerMinute: 60})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	if _, err := c.Output(ctx, "eod20260105a"); err != nil {
		t.Fatalf("first call: %v", err)
	}
	short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err := c.Output(short, "eod20260105a")
	cancelShort()
	if err == nil || !strings.Contains(err.Error(), "rate limit") {
		t.Fatalf("second call within the same second: got %v, want a wait for the rate limit", err)
	}
	if n := seen.Load(); n != 1 {
		t.Fatalf("the vendor saw %d calls, want 1: the paced call must not be sent", n)
	}
	if _, err := c.Output(ctx, "eod20260105a"); err != nil {
		t.Fatalf("third call, once its turn came: %v", err)
	}
	if n := seen.Load(); n != 2 {
		t.Fatalf("the vendor saw %d calls, want 2", n)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatal("the paced call took the whole test's time")
	}
}
