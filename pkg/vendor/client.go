// Package vendor is the client of the vendor's asynchronous data web service: Bloomberg Data
// License's REST API ("HAPI", shared/vendor/HAPI.md). The requester submits with it, the poller
// asks whether the output is ready, the collector downloads the file.
//
// The client is safe against the failures a billed, asynchronous API has: it retries idempotent
// calls (GET) itself, honouring Retry-After and backing off with jitter; it never re-POSTs a
// submission blindly (a timed-out POST may have created the request, and duplicates are billed),
// so Submit looks the identifier up first; and it checks every download against the vendor's
// digest. Credentials never appear in its errors, logs or spans.
//
// There are no interfaces here: each stage declares the few methods it calls.
package vendor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"golang.org/x/time/rate"
)

// DefaultBaseURL is Bloomberg's HAPI base; paths such as /catalogs/ are relative to it.
const DefaultBaseURL = "https://api.bloomberg.com/eap"

// APIVersion is sent as the api-version header on every request.
const APIVersion = "2"

// Defaults for Config's zero values.
const (
	DefaultMaxRetries    = 5
	DefaultMinBackoff    = 250 * time.Millisecond
	DefaultMaxBackoff    = 30 * time.Second
	DefaultMaxRetryAfter = 2 * time.Minute
	DefaultRegion        = "default"
)

// Config configures a Client. Only BaseURL is required.
type Config struct {
	// BaseURL is the service root, e.g. DefaultBaseURL or http://127.0.0.1:8081/eap.
	BaseURL string
	// Credentials sign every request; nil sends no auth header (the simulator without
	// -credentials).
	Credentials *Credentials
	// TokenURL, when set, switches from per-request JWTs to OAuth2 client credentials: the
	// client fetches bearer tokens from this endpoint with Credentials and renews them.
	TokenURL string
	// Region is the JWT region claim; default DefaultRegion.
	Region string
	// Account skips catalog discovery when set.
	Account string
	// HTTPClient defaults to a client without a total timeout (downloads can be long); bound
	// calls with the context. The Client uses a copy whose redirects never carry the
	// credentials to another host (see New).
	HTTPClient *http.Client
	// Logger receives retries and lookups at Debug/Warn; default discards.
	Logger *slog.Logger
	// TracerProvider gives the tracer for one span per vendor call; default no-op.
	TracerProvider trace.TracerProvider
	// MaxRetries bounds the retries of one call after its first attempt: 0 means
	// DefaultMaxRetries, a negative value none.
	MaxRetries int
	// MinBackoff and MaxBackoff bound the exponential backoff (full jitter) between retries.
	MinBackoff, MaxBackoff time.Duration
	// MaxRetryAfter is the longest Retry-After the client waits out itself; a longer one is
	// returned in APIError.RetryAfter for the caller to reschedule. Default DefaultMaxRetryAfter.
	MaxRetryAfter time.Duration
	// ObserveCall, when set, is called after every HTTP exchange with the call's name
	// ("account", "submit", "lookup", "output", "download"), the status code (0 for a transport
	// error) and its duration: the hook for the services' "vendor calls by status" metric.
	ObserveCall func(op string, status int, d time.Duration)
	// Now is the clock; default time.Now. Tests replace it.
	Now func() time.Time
	// CallsPerMinute, when positive, is the most HTTP exchanges the client starts per minute
	// (retries included), spread evenly with bursts of up to a second's worth: the vendor's
	// rate limit (MaxCallsPerMinute) is kept to before it answers 429. Zero: no limit.
	CallsPerMinute int
}

// Client talks to the vendor. It is safe for concurrent use.
type Client struct {
	base   string // without trailing slash
	cfg    Config
	hc     *http.Client
	log    *slog.Logger
	tracer trace.Tracer
	auth   authorizer

	// limit paces the exchanges (Config.CallsPerMinute); nil: none.
	limit *rate.Limiter

	mu      sync.Mutex
	account string
}

// New checks cfg, fills in defaults and returns a Client. It fails on a malformed BaseURL or
// unusable credentials; it does not contact the vendor.
//
// A redirect to another origin (scheme, host or port) is followed without the credentials
// (the JWT header, Authorization), and refused for a request other than GET or HEAD, whose body
// a 307 or 308 would send there again: a download may be redirected to a file server, but the
// vendor's secrets stay with the vendor.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("vendor: base URL %q: want http(s)://host/path", cfg.BaseURL)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.TracerProvider == nil {
		cfg.TracerProvider = noop.NewTracerProvider()
	}
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = DefaultMaxRetries
	} else if cfg.MaxRetries < 0 {
		cfg.MaxRetries = 0
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	cfg.MaxBackoff = max(cfg.MaxBackoff, cfg.MinBackoff)
	if cfg.MaxRetryAfter <= 0 {
		cfg.MaxRetryAfter = DefaultMaxRetryAfter
	}
	if cfg.Region == "" {
		cfg.Region = DefaultRegion
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	hc := *cfg.HTTPClient // the caller's client keeps its own redirect policy
	hc.CheckRedirect = keepCredentialsHome(cfg.HTTPClient.CheckRedirect)
	c := &Client{
		base:    strings.TrimRight(u.String(), "/"),
		cfg:     cfg,
		hc:      &hc,
		log:     cfg.Logger,
		tracer:  cfg.TracerProvider.Tracer("github.com/marketpipe/marketpipe/pkg/vendor"),
		account: cfg.Account,
	}
	if n := cfg.CallsPerMinute; n > 0 {
		c.limit = rate.NewLimiter(rate.Limit(float64(n)/60), max(1, (n+59)/60))
	}
	if cr := cfg.Credentials; cr != nil {
		key, err := cr.key()
		if err != nil {
			return nil, err
		}
		if strings.TrimSpace(cr.ClientID) == "" {
			return nil, fmt.Errorf("%w: client_id is empty", ErrCredentials)
		}
		if exp, ok := cr.Expires(); ok && cfg.Now().After(exp) {
			return nil, fmt.Errorf("%w: expired on %s", ErrCredentials, exp.Format(time.DateOnly))
		}
		if cfg.TokenURL != "" {
			c.auth = &oauthAuth{tokenURL: cfg.TokenURL, id: cr.ClientID, secret: cr.ClientSecret,
				scopes: cr.Scopes, hc: c.hc, now: cfg.Now}
		} else {
			c.auth = &jwtAuth{clientID: cr.ClientID, key: key, region: cfg.Region, now: cfg.Now}
		}
	}
	return c, nil
}

// maxRedirects is net/http's own limit, kept when the caller's client sets no policy.
const maxRedirects = 10

// keepCredentialsHome returns the redirect policy of the Client's requests (see New); next, the
// caller's own policy if any, then decides as it would have.
func keepCredentialsHome(next func(*http.Request, []*http.Request) error) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		if from := via[0].URL; !strings.EqualFold(req.URL.Scheme, from.Scheme) || !strings.EqualFold(req.URL.Host, from.Host) {
			if req.Method != http.MethodGet && req.Method != http.MethodHead {
				return fmt.Errorf("vendor: %s redirected from %s to another host, %s: refused", req.Method, from.Host, req.URL.Host)
			}
			for _, h := range credentialHeaders {
				req.Header.Del(h)
			}
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= maxRedirects {
			return fmt.Errorf("vendor: stopped after %d redirects", maxRedirects)
		}
		return nil
	}
}

// credentialHeaders are the request headers that carry credentials (jwtAuth, oauthAuth).
var credentialHeaders = []string{"JWT", "Authorization"}

// call is one HTTP exchange's description.
type call struct {
	op     string // for logs, spans and ObserveCall
	method string
	path   string // relative to the base, starting with '/'
	query  url.Values
	body   []byte
	header http.Header
}

// send performs one exchange. A 2xx response is returned open; any other status becomes an
// *APIError (body read and closed). wrote reports whether the request was fully sent, which
// tells an ambiguous failure (the server may have acted) from one where it cannot have.
func (c *Client) send(ctx context.Context, cl *call) (resp *http.Response, wrote bool, err error) {
	u := c.base + cl.path
	if len(cl.query) > 0 {
		u += "?" + cl.query.Encode()
	}
	var body io.Reader
	if cl.body != nil {
		body = bytes.NewReader(cl.body)
	}
	// WroteRequest runs on the transport's writer goroutine, possibly after Do has returned.
	var sent atomic.Bool
	defer func() { wrote = sent.Load() }()
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			if info.Err == nil {
				sent.Store(true)
			}
		},
	})
	req, err := http.NewRequestWithContext(ctx, cl.method, u, body)
	if err != nil {
		return nil, false, fmt.Errorf("build request: %w", err)
	}
	for k, vs := range cl.header {
		req.Header[k] = vs
	}
	req.Header.Set("api-version", APIVersion)
	if c.auth != nil {
		if err := c.auth.authorize(ctx, req); err != nil {
			return nil, false, fmt.Errorf("authorize: %w", err)
		}
	}
	if c.limit != nil {
		if err := c.limit.Wait(ctx); err != nil {
			return nil, false, fmt.Errorf("wait for the vendor rate limit (%d calls a minute): %w", c.cfg.CallsPerMinute, err)
		}
	}
	start := c.cfg.Now()
	resp, err = c.hc.Do(req)
	if err != nil {
		c.observe(cl.op, 0, start)
		return nil, wrote, err
	}
	c.observe(cl.op, resp.StatusCode, start)
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp, wrote, nil
	}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	resp.Body.Close()
	return nil, wrote, newAPIError(resp, data, c.cfg.Now())
}

func (c *Client) observe(op string, status int, start time.Time) {
	if c.cfg.ObserveCall != nil {
		c.cfg.ObserveCall(op, status, c.cfg.Now().Sub(start))
	}
}

// retrier decides, attempt by attempt, whether and when a failed call is tried again.
type retrier struct {
	c       *Client
	op      string
	attempt int  // retries so far
	renewed bool // a 401 has already been answered by renewing credentials
}

// next returns the delay before the next attempt, or false when err is final. ctx errors,
// permanent 4xx, a Retry-After longer than MaxRetryAfter and spent retries are final.
func (r *retrier) next(ctx context.Context, err error) (time.Duration, bool) {
	if ctx.Err() != nil {
		return 0, false
	}
	var ae *APIError
	if errors.As(err, &ae) {
		if ae.StatusCode == http.StatusUnauthorized {
			// Renew and retry once, whatever MaxRetries says: a token may expire between
			// our check and the server's.
			if r.renewed || r.c.auth == nil {
				return 0, false
			}
			r.renewed = true
			r.c.auth.renew()
			return 0, true
		}
		if !ae.Temporary() {
			return 0, false
		}
	} else if errors.Is(err, ErrCredentials) {
		return 0, false
	}
	if r.attempt >= r.c.cfg.MaxRetries {
		return 0, false
	}
	d := r.c.backoff(r.attempt)
	if ae != nil && ae.RetryAfter > 0 {
		if ae.RetryAfter > r.c.cfg.MaxRetryAfter {
			return 0, false
		}
		d = ae.RetryAfter
	}
	if dl, ok := ctx.Deadline(); ok && r.c.cfg.Now().Add(d).After(dl) {
		return 0, false // waiting would only end in a deadline error; report the real one
	}
	r.attempt++
	r.c.log.LogAttrs(ctx, slog.LevelWarn, "vendor call failed, retrying",
		slog.String("op", r.op), slog.Int("retry", r.attempt), slog.Duration("delay", d),
		slog.String("error", err.Error()))
	return d, true
}

// backoff is exponential with full jitter: spreading retries keeps replicas that failed
// together from retrying together.
func (c *Client) backoff(attempt int) time.Duration {
	d := c.cfg.MinBackoff << min(attempt, 20)
	if d <= 0 || d > c.cfg.MaxBackoff {
		d = c.cfg.MaxBackoff
	}
	return c.cfg.MinBackoff/2 + rand.N(d)
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// get performs an idempotent call with retries and returns the open 2xx response.
func (c *Client) get(ctx context.Context, cl *call) (*http.Response, error) {
	cl.method = http.MethodGet
	r := retrier{c: c, op: cl.op}
	for {
		resp, _, err := c.send(ctx, cl)
		if err == nil {
			trace.SpanFromContext(ctx).SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode),
				attribute.Int("vendor.retries", r.attempt))
			return resp, nil
		}
		d, ok := r.next(ctx, err)
		if !ok {
			return nil, err
		}
		if serr := sleep(ctx, d); serr != nil {
			return nil, fmt.Errorf("%w (gave up waiting to retry: %v)", err, serr)
		}
	}
}

// startSpan starts the span of one vendor call.
func (c *Client) startSpan(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	return c.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
}

// endSpan records err (if any) on span and ends it.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		var ae *APIError
		if errors.As(err, &ae) {
			span.SetAttributes(attribute.Int("http.response.status_code", ae.StatusCode))
		}
	}
	span.End()
}

// escape makes an identifier or key safe as one path segment.
func escape(s string) string { return url.PathEscape(s) }
