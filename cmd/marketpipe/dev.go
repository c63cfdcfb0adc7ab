package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/spf13/cobra"

	"github.com/marketpipe/marketpipe/pkg/chserver"
	"github.com/marketpipe/marketpipe/pkg/config"
	"github.com/marketpipe/marketpipe/pkg/events"
	"github.com/marketpipe/marketpipe/pkg/service"
	"github.com/marketpipe/marketpipe/services"
	"github.com/marketpipe/marketpipe/services/vendorsim"
)

type devOptions struct {
	stateDir string
	host     string // what the HTTP endpoints, NATS and the simulator listen on by default
	sim      vendorsim.Options
}

func newDevCmd(lookup config.Lookup) *cobra.Command {
	var o devOptions
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run everything in one process: NATS, the vendor simulator, the five stages, ClickHouse",
		Long: `Run the whole pipeline in one process for a laptop or a demo:

  - an embedded NATS server with JetStream, storing in --state-dir, listening on NATS_URL's
    address so other commands (submit, status) and the nats CLI reach it;
  - the vendor simulator, unless VENDOR_URL is set (then that vendor, with VENDOR_CREDENTIALS:
    dev refuses a VENDOR_URL off this host without them);
  - ClickHouse at CLICKHOUSE_ADDR, or, when nothing answers there, a clickhouse-server started
    from the installed binary on that address with its data in --state-dir;
  - the requester, poller, collector, transformer and loader.

Everything listens on --listen (127.0.0.1: this host only) unless HTTP_ADDR or NATS_URL say
otherwise. The configuration is checked, and HTTP_ADDR bound, before anything starts.
Stops cleanly on Ctrl-C.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDev(cmd.Context(), lookup, o, cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVar(&o.stateDir, "state-dir", ".marketpipe", "where NATS and ClickHouse keep their data")
	cmd.Flags().StringVar(&o.host, "listen", "127.0.0.1", "`host` the health endpoints, NATS and the simulator listen on, unless HTTP_ADDR or NATS_URL is set (0.0.0.0: every interface)")
	cmd.Flags().DurationVar(&o.sim.ReadyAfter, "sim-ready-after", 2*time.Second, "simulator: how long a request takes to be ready")
	cmd.Flags().Uint64Var(&o.sim.Seed, "sim-seed", 0, "simulator: seed of the generated data")
	return cmd
}

// devLookup gives the environment, with defaults suited to a laptop where the environment is
// silent: poll every second, log as text, listen on host only (the services' defaults, with
// host for their host).
func devLookup(lookup config.Lookup, host string) (config.Lookup, error) {
	_, httpPort, err := net.SplitHostPort(config.DefaultHTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("default HTTP_ADDR: %w", err)
	}
	natsURL, err := url.Parse(config.DefaultNATSURL)
	if err != nil {
		return nil, fmt.Errorf("default NATS_URL: %w", err)
	}
	natsURL.Host = net.JoinHostPort(host, natsURL.Port())
	extra := map[string]string{"POLL_INTERVAL": "1s", "LOG_FORMAT": "text", "LOADER_MIGRATE": "true",
		"HTTP_ADDR": net.JoinHostPort(host, httpPort), "NATS_URL": natsURL.String()}
	return func(key string) (string, bool) {
		if v, ok := lookup(key); ok && v != "" {
			return v, true
		}
		v, ok := extra[key]
		return v, ok
	}, nil
}

// checkSettings reads every setting the stages of dev read when they are built (each service's
// settings struct, services.All), so that a bad one stops dev before it starts anything.
func checkSettings(lookup config.Lookup) error {
	settings := []any{service.Process{}}
	for _, s := range services.All {
		settings = append(settings, s.Own()...)
	}
	return service.CheckSettings(lookup, settings...)
}

func runDev(ctx context.Context, lookup config.Lookup, o devOptions, logOut io.Writer) (err error) {
	lookup, err = devLookup(lookup, o.host)
	if err != nil {
		return err
	}
	cfg, err := config.Load(lookup)
	if err != nil {
		return err
	}
	if err := checkSettings(lookup); err != nil {
		return err
	}
	if _, set := lookup("VENDOR_URL"); set {
		if err := cfg.CheckVendorCredentials(); err != nil {
			return err
		}
	}
	natsAddr, err := natsListenAddr(cfg.NATS.URL)
	if err != nil {
		return err
	}
	// Every listener is bound, or its address checked, before anything starts: the simulator's
	// port is chosen by the system, NATS's is checked by startNATS, ClickHouse's by a ping.
	httpLn, err := service.ListenHTTP(cfg.HTTPAddr)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			httpLn.Close()
		}
	}()
	if err := os.MkdirAll(o.stateDir, 0o755); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}

	ns, err := startNATS(natsAddr, filepath.Join(o.stateDir, "nats"))
	if err != nil {
		return err
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	fmt.Fprintf(logOut, "dev: NATS with JetStream at %s (state in %s)\n", ns.ClientURL(), filepath.Join(o.stateDir, "nats"))

	chAddr, stopCH, err := ensureClickHouse(ctx, cfg.ClickHouse.Addr, filepath.Join(o.stateDir, "clickhouse"), logOut)
	if err != nil {
		return err
	}
	defer stopCH()
	cfg.ClickHouse.Addr = chAddr
	if _, set := lookup("CLICKHOUSE_COMPRESSION"); !set && isLoopback(chAddr) {
		// LZ4 would cost the loader and the server CPU for bytes that never leave the host.
		cfg.ClickHouse.Compression = "none"
		fmt.Fprintf(logOut, "dev: INSERTs to %s without LZ4 (CLICKHOUSE_COMPRESSION=none; set it to lz4 to compress)\n", chAddr)
	}

	if _, set := lookup("VENDOR_URL"); !set {
		simURL, stopSim, err := startSimulator(o.host, o.sim)
		if err != nil {
			return err
		}
		defer stopSim()
		cfg.VendorURL, cfg.VendorSimulator = simURL, true
		fmt.Fprintf(logOut, "dev: vendor simulator at %s (outputs ready after %s)\n", simURL, o.sim.ReadyAfter)
	} else {
		fmt.Fprintf(logOut, "dev: vendor at %s\n", config.RedactURL(cfg.VendorURL))
	}

	// As the admin would (`marketpipe migrate`): the stages only bind.
	if err := migrateNATS(ctx, cfg, lookup, io.Discard); err != nil {
		return err
	}
	env, err := service.NewEnv(ctx, "dev", cfg, lookup, logOut)
	if err != nil {
		return err
	}
	var runners []service.Runner
	for _, s := range services.All {
		rs, err := s.Build(ctx, env)
		if err != nil {
			env.NC.Close()
			return err
		}
		runners = append(runners, rs...)
	}
	fmt.Fprintf(logOut, "dev: ready; health and metrics on %s; submit jobs with `marketpipe submit JOB.yaml --wait`\n", httpLn.Addr())
	return env.ServeOn(ctx, httpLn, runners)
}

// natsListenAddr returns the host and port of natsURL, where dev's NATS server listens. Its
// errors show the URL without its secrets.
func natsListenAddr(natsURL string) (string, error) {
	shown := config.RedactURL(natsURL)
	if strings.Contains(natsURL, ",") {
		return "", fmt.Errorf("NATS_URL %q: dev runs one NATS server; give one URL", shown)
	}
	u, err := url.Parse(natsURL)
	if err != nil {
		return "", config.RedactError(fmt.Errorf("NATS_URL %q: %w", shown, err), natsURL)
	}
	if _, _, err := net.SplitHostPort(u.Host); err != nil {
		return "", config.RedactError(fmt.Errorf("NATS_URL %q: want nats://host:port: %w", shown, err), natsURL)
	}
	return u.Host, nil
}

// startNATS runs an embedded JetStream server on addr (host:port).
func startNATS(addr, dir string) (*server.Server, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("NATS address %s: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("NATS address %s: port: %w", addr, err)
	}
	ns, err := server.NewServer(&server.Options{
		ServerName: "marketpipe-dev", Host: host, Port: port, JetStream: true, StoreDir: dir,
		MaxPayload: events.MaxPayload, NoSigs: true, NoLog: true,
	})
	if err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(15 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("nats server on %s did not start (is the port in use?)", addr)
	}
	return ns, nil
}

// ensureClickHouse returns addr when a server answers there; otherwise it starts one from the
// installed binary on that address.
func ensureClickHouse(ctx context.Context, addr, dir string, logOut io.Writer) (string, func(), error) {
	pingCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	err := chserver.Ping(pingCtx, addr)
	cancel()
	if err == nil {
		fmt.Fprintf(logOut, "dev: ClickHouse answers at %s\n", addr)
		return addr, func() {}, nil
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", nil, fmt.Errorf("CLICKHOUSE_ADDR %q: %w", addr, err)
	}
	if host != "127.0.0.1" && host != "localhost" && host != "" {
		return "", nil, fmt.Errorf("no ClickHouse answers at CLICKHOUSE_ADDR=%s, and dev starts one only on 127.0.0.1", addr)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return "", nil, fmt.Errorf("CLICKHOUSE_ADDR %q: %w", addr, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, err
	}
	fmt.Fprintf(logOut, "dev: nothing answers at %s; starting clickhouse-server there (data in %s)\n", addr, dir)
	srv, err := chserver.Start(ctx, chserver.Options{Dir: dir, TCPPort: port})
	if err != nil {
		return "", nil, fmt.Errorf("start clickhouse-server: %w", err)
	}
	return srv.Addr(), func() {
		if err := srv.Stop(); err != nil {
			fmt.Fprintf(logOut, "dev: stop clickhouse-server: %v\n", err)
		}
	}, nil
}

// isLoopback reports whether addr (host:port) names this host's loopback interface.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// startSimulator serves the vendor simulator on a free port of host.
func startSimulator(host string, o vendorsim.Options) (string, func(), error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", nil, fmt.Errorf("vendor simulator: %w", err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	dial := addr.String()
	if addr.IP.IsUnspecified() { // listening on every interface: the stages reach it on loopback
		dial = net.JoinHostPort("127.0.0.1", strconv.Itoa(addr.Port))
	}
	if o.Account == "" {
		o.Account = vendorsim.DefaultAccount
	}
	srv := &http.Server{Handler: vendorsim.NewServer(o), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintf(os.Stderr, "dev: vendor simulator: %v\n", err)
		}
	}()
	return "http://" + dial + "/eap", func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}
