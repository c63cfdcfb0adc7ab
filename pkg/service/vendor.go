package service

import (
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/marketpipe/marketpipe/pkg/config"
	"github.com/marketpipe/marketpipe/pkg/vendor"
)

// Vendor returns the vendor client configured by VENDOR_URL and VENDOR_CREDENTIALS
// (VENDOR_TOKEN_URL switches to OAuth2 client credentials). Every call is counted by status in
// marketpipe_vendor_calls_total. One client is shared by the stages of a process.
func (e *Env) Vendor() (*vendor.Client, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.vendor != nil {
		return e.vendor, nil
	}
	cfg := vendor.Config{BaseURL: e.Config.VendorURL, Logger: e.Log, TracerProvider: e.Tracing.Provider}
	if path := e.Config.VendorCredentials; path != "" {
		creds, err := vendor.LoadCredentials(path)
		if err != nil {
			return nil, fmt.Errorf("VENDOR_CREDENTIALS: %w", err)
		}
		cfg.Credentials = creds
	}
	if v, ok := e.Lookup("VENDOR_TOKEN_URL"); ok {
		cfg.TokenURL = v
	}
	calls := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "marketpipe_vendor_calls_total",
		Help: "Vendor HTTP calls by call and status code (0: no response)."}, []string{"call", "status"})
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "marketpipe_vendor_call_seconds",
		Help: "Vendor HTTP call latency.", Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 12)}, []string{"call"})
	for _, c := range []prometheus.Collector{calls, latency} {
		if err := e.Registry.Register(c); err != nil {
			return nil, fmt.Errorf("register vendor metrics: %w", err)
		}
	}
	cfg.ObserveCall = func(call string, status int, d time.Duration) {
		calls.WithLabelValues(call, strconv.Itoa(status)).Inc()
		latency.WithLabelValues(call).Observe(d.Seconds())
	}
	c, err := vendor.New(cfg)
	if err != nil {
		return nil, config.RedactError(fmt.Errorf("vendor client: %w", err), cfg.BaseURL, cfg.TokenURL)
	}
	e.vendor = c
	return c, nil
}
