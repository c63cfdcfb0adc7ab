// Package service is what every marketpipe process has around its stages: configuration from
// the environment and flags, the NATS connection and stream declarations, logs, traces,
// Prometheus metrics, /healthz and /readyz, and an ordered shutdown. A stage's main is one call
// to Main with a function that builds its runners.
package service

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"reflect"
	"runtime/debug"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/marketpipe/marketpipe/pkg/config"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/natsx"
	"github.com/marketpipe/marketpipe/pkg/stage"
	"github.com/marketpipe/marketpipe/pkg/telemetry"
	"github.com/marketpipe/marketpipe/pkg/vendor"
)

// Runner is a long-running part of a service, such as a stage; Run returns when ctx ends.
type Runner interface {
	Run(ctx context.Context) error
}

// readyRunner is a runner that knows whether it is working, such as a stage bound to its
// consumer (pkg/stage's Ready): Serve adds it to /readyz as "stage <name>".
type readyRunner interface {
	Runner
	Name() string
	Ready(ctx context.Context) error
}

// Check reports whether a dependency is usable; readiness fails while any check fails.
type Check func(ctx context.Context) error

// Env is what a service's build function gets: configuration and shared connections.
type Env struct {
	Name     string
	Config   config.Config
	Lookup   config.Lookup
	Log      *slog.Logger
	Tracing  *telemetry.Tracing
	NC       *nats.Conn
	JS       jetstream.JetStream
	Streams  *natsx.Streams
	Registry *prometheus.Registry
	Metrics  *stage.Metrics

	mu       sync.Mutex
	checks   map[string]Check
	closers  []func(context.Context) error
	draining bool
	vendor   *vendor.Client
	ackWait  time.Duration
	// stopMetrics flushes the OTEL metric export (OTEL_METRICS_EXPORTER), if any.
	stopMetrics func(context.Context) error
}

// AddReadyCheck adds a dependency check to /readyz.
func (e *Env) AddReadyCheck(name string, c Check) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.checks[name] = c
}

// OnClose registers cleanup run after the runners stopped, in reverse order.
func (e *Env) OnClose(f func(context.Context) error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closers = append(e.closers, f)
}

// StageOptions returns the collaborators every stage of this process shares.
func (e *Env) StageOptions() stage.Options {
	o := stage.Options{Logger: e.Log, Tracer: e.Tracing.Provider, Metrics: e.Metrics, AckWait: e.ackWait,
		Subjects: events.Subjects{}, Bind: true}
	if e.Streams != nil && e.Streams.Ends != nil {
		o.Skip = skipCancelled(e.Streams.Ends)
	}
	return o
}

// skipCancelled is Options.Skip for the pipeline: the events of a run recorded as cancelled in
// ends (events.EndsBucket), except the "cancelled" event itself, which the jobs table records.
func skipCancelled(ends jetstream.KeyValue) func(ctx context.Context, event any) (string, error) {
	return func(ctx context.Context, event any) (string, error) {
		j, ok := event.(*events.Job)
		if !ok || j.State == events.Cancelled {
			return "", nil
		}
		end, ok, err := natsx.RunEnd(ctx, ends, j.ID, j.Generation)
		if err != nil || !ok || end.State != events.Cancelled {
			return "", err
		}
		return "run cancelled by " + end.By, nil
	}
}

// NewEnv connects to NATS, binds the streams the admin created (natsx.Bind) and sets up
// telemetry.
func NewEnv(ctx context.Context, name string, cfg config.Config, lookup config.Lookup, logOut io.Writer) (*Env, error) {
	log := telemetry.NewLogger(logOut, cfg.LogLevel, cfg.LogFormat).With("service", name)
	tr, err := telemetry.NewTracing(ctx, cfg.OTEL, name)
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m, err := stage.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	stopMetrics, err := telemetry.NewMetricExport(ctx, cfg.OTEL, name, reg)
	if err != nil {
		return nil, err
	}
	if err := CheckIdentity(cfg.NATS, name); err != nil {
		return nil, err
	}
	nc, err := natsx.Connect(cfg.NATS, "marketpipe-"+name, log)
	if err != nil {
		return nil, config.RedactError(err, cfg.NATS.URL)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	js = natsx.NameFullStreams(js)
	var proc Process
	if err := config.Read(lookup, &proc); err != nil {
		nc.Close()
		return nil, err
	}
	env := &Env{Name: name, Config: cfg, Lookup: lookup, Log: log, Tracing: tr, NC: nc, JS: js,
		Registry: reg, Metrics: m, checks: map[string]Check{}, ackWait: proc.AckWait, stopMetrics: stopMetrics}
	// Binding the streams waits for JetStream: a service may start before NATS is up. They
	// must exist: the admin creates them (`marketpipe migrate`), services never do.
	for attempt := uint64(1); ; attempt++ {
		bindCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		env.Streams, err = natsx.Bind(bindCtx, js)
		cancel()
		if err == nil {
			break
		}
		if errors.Is(err, natsx.ErrNotSetUp) {
			nc.Close()
			return nil, config.RedactError(err, cfg.NATS.URL)
		}
		if refused := natsx.Refused(nc); refused != nil {
			// No retry can help: the connection is closed for good.
			nc.Close()
			return nil, refused
		}
		log.Warn("waiting for jetstream", "err", config.RedactError(err, cfg.NATS.URL), "attempt", attempt)
		select {
		case <-ctx.Done():
			nc.Close()
			return nil, config.RedactError(fmt.Errorf("bind streams: %w", err), cfg.NATS.URL)
		case <-time.After(min(stage.DefaultBackoff(attempt), 5*time.Second)):
		}
	}
	env.AddReadyCheck("nats", func(context.Context) error {
		if s := nc.Status(); s != nats.CONNECTED {
			return fmt.Errorf("nats %s", s)
		}
		return nil
	})
	return env, nil
}

// CheckIdentity refuses NATS_CREDS that are another identity's than the service's own: each
// service runs with its own credentials (`marketpipe auth init`), whose permissions allow its
// work only. The embedded pipeline of `marketpipe dev` has no credentials.
func CheckIdentity(cfg config.NATS, service string) error {
	if cfg.Creds == "" {
		return nil
	}
	identity, err := natsx.CredsIdentity(cfg.Creds)
	if err != nil {
		return err
	}
	if identity != service {
		return fmt.Errorf("NATS_CREDS %s holds the credentials of %s, not of %s: give each service its own (%s.creds from `marketpipe auth init`)",
			cfg.Creds, identity, service, service)
	}
	return nil
}

// Process holds the settings every service process reads beside config.Config.
type Process struct {
	// AckWait, when set, is how soon the messages of a replica that died are redelivered to the
	// others, for every stage of the process.
	AckWait time.Duration `env:"ACK_WAIT" shown:"per stage, 30s–2m" help:"how long a delivery may go unacknowledged before another replica gets it (InProgress extends it for long work); replaces each stage's own"`
	// MemoryLimit is read by the Go runtime itself; Run sets DefaultMemoryLimit when it is not.
	MemoryLimit string "env:\"GOMEMLIMIT\" shown:\"200MiB (not under `dev`)\" help:\"Go soft memory limit of a service process: the garbage collector works harder near it, which keeps resident memory near the live heap (the Kubernetes manifests set it to the container's limit)\""
}

// Vars lists every variable a service reads: config.Config's, Process's and those of its own
// settings structs.
func Vars(settings ...any) []config.Var {
	vars := append(config.Vars(config.Config{}), config.Vars(Process{})...)
	for _, s := range settings {
		vars = append(vars, config.Vars(s)...)
	}
	return vars
}

// EnvHelp is the "Environment:" section of a service's -h.
func EnvHelp(settings ...any) string { return config.Help(Vars(settings...)) }

// ListenHTTP binds addr (HTTP_ADDR) for ServeOn. A process binds it before it starts anything
// else, so that a busy port stops it before it says it is up.
func ListenHTTP(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on HTTP_ADDR %s: %w", addr, err)
	}
	return ln, nil
}

// Serve is ServeOn on a listener bound to the Env's HTTP_ADDR.
func (e *Env) Serve(ctx context.Context, runners []Runner) error {
	ln, err := ListenHTTP(e.Config.HTTPAddr)
	if err != nil {
		return err
	}
	return e.ServeOn(ctx, ln, runners)
}

// ServeOn runs the HTTP endpoints on ln and the runners until ctx ends, then shuts down in
// order: the runners drain (stop fetching, finish and ack in-flight work), the NATS connection
// drains (flushes what was published), telemetry is flushed, the HTTP server stops.
func (e *Env) ServeOn(ctx context.Context, ln net.Listener, runners []Runner) error {
	srv := &http.Server{Handler: e.Handler(), ReadHeaderTimeout: 5 * time.Second}
	e.Log.Info("serving health and metrics", "addr", ln.Addr().String())
	httpDone := make(chan error, 1)
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			httpDone <- err
		}
		close(httpDone)
	}()

	for _, r := range runners {
		if rc, ok := r.(readyRunner); ok {
			e.AddReadyCheck("stage "+rc.Name(), rc.Ready)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, r := range runners {
		g.Go(func() error { return r.Run(gctx) })
	}
	runErr := g.Wait()
	e.mu.Lock()
	e.draining = true
	e.mu.Unlock()

	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
	defer cancel()
	for i := len(e.closers) - 1; i >= 0; i-- {
		if err := e.closers[i](shutdownCtx); err != nil {
			e.Log.Warn("close", "err", err)
		}
	}
	if err := e.NC.Drain(); err == nil {
		for e.NC.Status() != nats.CLOSED && shutdownCtx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
	}
	e.NC.Close()
	if err := e.Tracing.Shutdown(shutdownCtx); err != nil {
		e.Log.Warn("flush traces", "err", err)
	}
	if err := e.stopMetrics(shutdownCtx); err != nil {
		e.Log.Warn("flush metrics", "err", err)
	}
	_ = srv.Shutdown(shutdownCtx)
	if err := <-httpDone; err != nil && runErr == nil {
		runErr = fmt.Errorf("http server: %w", err)
	}
	e.Log.Info("stopped")
	return runErr
}

// Handler serves /healthz (the process is alive), /readyz (every dependency check passes and
// the process is not shutting down) and /metrics.
func (e *Env) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		e.mu.Lock()
		names := make([]string, 0, len(e.checks))
		for n := range e.checks {
			names = append(names, n)
		}
		checks := e.checks
		draining := e.draining
		e.mu.Unlock()
		sort.Strings(names)
		ok := !draining
		var body []byte
		if draining {
			body = append(body, "shutting down\n"...)
		}
		for _, n := range names {
			if err := checks[n](ctx); err != nil {
				ok = false
				body = fmt.Appendf(body, "%s: %v\n", n, err)
			} else {
				body = fmt.Appendf(body, "%s: ok\n", n)
			}
		}
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		w.Write(body)
	})
	mux.Handle("/metrics", promhttp.HandlerFor(e.Registry, promhttp.HandlerOpts{}))
	return mux
}

// Build makes a service's runners from its Env.
type Build func(ctx context.Context, env *Env) ([]Runner, error)

// Main is a service binary's whole main: flags and environment, signals, run, exit status.
// settings are the service's own settings structs (config.Read), which build reads from
// env.Lookup. Only Main exits the process.
func Main(name, summary string, build Build, settings ...any) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := Run(ctx, name, summary, os.Args[1:], config.OS, os.Stderr, build, settings...)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

// Run parses flags over the environment's configuration, builds the service and serves it
// until ctx ends. settings (see Main) are listed by -h and checked before anything starts.
func Run(ctx context.Context, name, summary string, args []string, lookup config.Lookup, logOut io.Writer, build Build, settings ...any) error {
	cfg, err := config.Load(lookup)
	if err != nil {
		return err
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(logOut)
	fs.Var(redactedURL{&cfg.NATS.URL}, "nats-url", "NATS servers (NATS_URL)")
	fs.StringVar(&cfg.HTTPAddr, "http-addr", cfg.HTTPAddr, "health and metrics address (HTTP_ADDR)")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error (LOG_LEVEL)")
	fs.StringVar(&cfg.LogFormat, "log-format", cfg.LogFormat, "json or text (LOG_FORMAT)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "%s: %s\n\nUsage: %s [flags]\n\nFlags:\n", name, summary, name)
		fs.PrintDefaults()
		fmt.Fprint(fs.Output(), EnvHelp(settings...))
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	var proc Process
	if err := config.Read(lookup, &proc); err != nil {
		return err
	}
	if err := CheckSettings(lookup, settings...); err != nil {
		return err
	}
	if proc.MemoryLimit == "" {
		debug.SetMemoryLimit(DefaultMemoryLimit)
	}
	ln, err := ListenHTTP(cfg.HTTPAddr)
	if err != nil {
		return err
	}
	env, err := NewEnv(ctx, name, cfg, lookup, logOut)
	if err != nil {
		ln.Close()
		if ctx.Err() != nil {
			return nil // stopped while waiting for NATS
		}
		return err
	}
	runners, err := build(ctx, env)
	if err != nil {
		env.NC.Close()
		ln.Close()
		if ctx.Err() != nil {
			// Stopped while waiting for a dependency (ClickHouse, say): a clean shutdown.
			env.Log.Info("stopped before start", "reason", err)
			return nil
		}
		return fmt.Errorf("build %s: %w", name, err)
	}
	return env.ServeOn(ctx, ln, runners)
}

// redactedURL is a flag holding a URL list whose default, printed by -h, hides its secrets.
type redactedURL struct{ p *string }

func (r redactedURL) String() string {
	if r.p == nil {
		return ""
	}
	return config.RedactURL(*r.p)
}

func (r redactedURL) Set(s string) error { *r.p = s; return nil }

// DefaultMemoryLimit is a service's soft memory limit (see runtime/debug.SetMemoryLimit) when
// GOMEMLIMIT is not set. Near it the garbage collector runs more often, so a service's resident
// memory stays near its live heap instead of twice it (docs/performance.md has the loader's
// figures). A service whose live heap needs more gets it; the collector then uses more CPU.
const DefaultMemoryLimit = 200 << 20

// CheckSettings reads each settings struct (a value or pointer of its type) through lookup and
// returns the first error, so that a bad variable stops a process before it starts anything.
func CheckSettings(lookup config.Lookup, settings ...any) error {
	for _, s := range settings {
		t := reflect.TypeOf(s)
		if t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if err := config.Read(lookup, reflect.New(t).Interface()); err != nil {
			return err
		}
	}
	return nil
}

// Only returns a service's single runner as Build's result: Build functions end with
// `return service.Only(Stage(env, ...))`.
func Only[R Runner](r R, err error) ([]Runner, error) {
	if err != nil {
		return nil, err
	}
	return []Runner{r}, nil
}
