package service

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/marketpipe/marketpipe/pkg/config"
	"github.com/marketpipe/marketpipe/pkg/vendor"
)

// Vendor returns the vendor client configured by VENDOR_URL and VENDOR_CREDENTIALS
// (VENDOR_TOKEN_URL switches to OAuth2 client credentials; VENDOR_ACCOUNT chooses the account).
// It refuses a vendor that is not the simulator without credentials
// (config.Config.CheckVendorCredentials): the stages that call the vendor get it when they are
// built, so they refuse to start. Every call is counted by status in
// marketpipe_vendor_calls_total. One client is shared by the stages of a process.
func (e *Env) Vendor() (*vendor.Client, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.vendor != nil {
		return e.vendor, nil
	}
	cfg, err := VendorConfig(e.Config)
	if err != nil {
		return nil, err
	}
	cfg.Logger, cfg.TracerProvider = e.Log, e.Tracing.Provider
	calls := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "marketpipe_vendor_calls_total",
		Help: "Vendor HTTP calls by call and status code (0: no response)."}, []string{"call", "status"})
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "marketpipe_vendor_call_seconds",
		Help: "Vendor HTTP call latency.", Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 12)}, []string{"call"})
	for _, c := range []prometheus.Collector{calls, latency} {
		if err := e.Registry.Register(c); err != nil {
			return nil, fmt.Errorf("register vendor metrics: %w", err)
		}
	}
	health := &vendorHealth{name: vendorName(e.Config.VendorURL)}
	cfg.ObserveCall = func(call string, status int, d time.Duration) {
		calls.WithLabelValues(call, strconv.Itoa(status)).Inc()
		latency.WithLabelValues(call).Observe(d.Seconds())
		health.observe(call, status)
	}
	c, err := vendor.New(cfg)
	if err != nil {
		return nil, config.RedactError(fmt.Errorf("vendor client: %w", err), cfg.BaseURL, cfg.TokenURL)
	}
	e.vendor = c
	e.checks["vendor"] = health.check // e.mu is held
	return c, nil
}

// VendorConfig is the vendor client's configuration from c (VENDOR_URL, VENDOR_CREDENTIALS,
// VENDOR_TOKEN_URL, VENDOR_ACCOUNT, VENDOR_RATE_LIMIT), refusing a vendor that is not the simulator without
// credentials: what the stages and `marketpipe vendor check` use.
func VendorConfig(c config.Config) (vendor.Config, error) {
	if err := c.CheckVendorCredentials(); err != nil {
		return vendor.Config{}, err
	}
	cfg := vendor.Config{BaseURL: c.VendorURL, TokenURL: c.VendorTokenURL, Account: c.VendorAccount,
		CallsPerMinute: c.VendorRateLimit}
	if cfg.CallsPerMinute == 0 && !c.VendorOnThisHost() {
		// A simulator on this host has no rate limit, and tests run thousands of polls a minute.
		cfg.CallsPerMinute = vendor.MaxCallsPerMinute
	}
	if path := c.VendorCredentials; path != "" {
		creds, err := vendor.LoadCredentials(path)
		if err != nil {
			return vendor.Config{}, fmt.Errorf("VENDOR_CREDENTIALS: %w", err)
		}
		cfg.Credentials = creds
	}
	return cfg, nil
}

// vendorHealth is the outcome of the last vendor call: the stages that call the vendor are
// ready while it answered, without a request of its own per probe. Before the first call the
// vendor counts as reachable.
type vendorHealth struct {
	name   string // the vendor's address, without credentials
	mu     sync.Mutex
	op     string
	status int // 0: no response
	at     time.Time
}

func (h *vendorHealth) observe(op string, status int) {
	h.mu.Lock()
	h.op, h.status, h.at = op, status, time.Now()
	h.mu.Unlock()
}

// check fails while the last call got no response, a server error, or a refusal of our
// credentials: the vendor cannot serve the stage, and waiting jobs wait on it.
func (h *vendorHealth) check(context.Context) error {
	h.mu.Lock()
	op, status, at := h.op, h.status, h.at
	h.mu.Unlock()
	ago := time.Since(at).Round(time.Second)
	switch {
	case op == "":
		return nil
	case status == 0:
		return fmt.Errorf("%s unreachable: no response to the last call (%s, %s ago)", h.name, op, ago)
	case status >= 500, status == http.StatusUnauthorized, status == http.StatusForbidden:
		return fmt.Errorf("%s failing: the last call (%s, %s ago) was answered %d %s", h.name, op, ago, status, http.StatusText(status))
	}
	return nil
}

// vendorName is VENDOR_URL's scheme and host, for readiness: never its credentials or path.
func vendorName(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "vendor"
	}
	return "vendor " + u.Scheme + "://" + u.Host
}
